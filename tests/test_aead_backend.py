"""The optional AES-256-GCM backend: ``aead.set_backend("cryptography")``.

The issue accepts an accelerated backend only if it is optional, selected explicitly, and produces
byte-identical records to the pycryptodome path. These tests hold it to that: identical ``seal`` output over
random and edge-case inputs, cross-unseal both ways, the AES-GCM Wycheproof vectors under the same policy as
``test_wycheproof.py``, identical failures, and a whole simulated session with identical trace bytes.
``cryptography`` is in requirements.txt (optional: tests and benchmarks), so these run in CI.
"""

from __future__ import annotations

import ast
import json
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from securechat.crypto import aead
from securechat.crypto.aead import CipherSuite, seal, unseal
from securechat.crypto.signatures import SignatureScheme
from securechat.errors import ErrorCode, IntegrityError
from securechat.protocol import events as ev
from securechat.protocol.channel import RECORD_AAD, RecordLayer
from securechat.protocol.identity import UserKeys, generate_user_keys
from securechat.simulation import Simulation, flip_bit
from tests.test_wycheproof import VECTORS, _gcm_check, _gcm_setup

pytest.importorskip("cryptography")

BACKENDS = ("pycryptodome", "cryptography")


@pytest.fixture(autouse=True)
def default_backend() -> Iterator[None]:
    """Every test starts and ends on the default backend, whatever it selects or however it fails."""
    aead.set_backend("pycryptodome")
    yield
    aead.set_backend("pycryptodome")


def _under(backend: str, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    aead.set_backend(backend)
    try:
        return fn(*args, **kwargs)
    finally:
        aead.set_backend("pycryptodome")


def _cases() -> list[tuple[bytes, bytes, bytes, bytes]]:
    rng = random.Random(20261122)
    sizes = [0, 1, 15, 16, 17, 31, 32, 33, 255, 256, 300, 1024, 4096, 16 * 1024, 64 * 1024, 64 * 1024 + 1]
    sizes += [rng.randrange(0, 2048) for _ in range(150)]
    cases = []
    for i, size in enumerate(sizes):
        aad = b"" if i % 5 == 0 else rng.randbytes(rng.choice([1, 12, 20, 64, 300]))
        cases.append((rng.randbytes(32), rng.randbytes(12), aad, rng.randbytes(size)))
    cases.append((bytes(32), bytes(12), b"", b""))  # all-zero key and nonce, empty everything
    cases.append((b"\xff" * 32, b"\xff" * 12, b"\xff" * 64, b"\xff" * 1000))
    return cases


CASES = _cases()


# --- selection ------------------------------------------------------------------------------------------------


def test_default_is_pycryptodome_and_selection_is_explicit() -> None:
    assert aead.backend() == "pycryptodome"
    aead.set_backend("cryptography")
    assert aead.backend() == "cryptography"
    aead.set_backend("pycryptodome")
    assert aead.backend() == "pycryptodome"


def test_unknown_backend_is_refused_and_nothing_changes() -> None:
    with pytest.raises(ValueError, match="unknown AEAD backend"):
        aead.set_backend("openssl")
    assert aead.backend() == "pycryptodome"


def test_missing_package_gives_a_clear_error_and_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    key, nonce, aad, plaintext = CASES[3]
    before = seal(key, plaintext, aad=aad, nonce=nonce)
    # None in sys.modules makes the import raise ImportError, as if the package were not installed.
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
    with pytest.raises(RuntimeError, match="pip install cryptography"):
        aead.set_backend("cryptography")
    assert aead.backend() == "pycryptodome"
    assert seal(key, plaintext, aad=aad, nonce=nonce) == before


def test_only_crypto_imports_cryptography() -> None:
    """Like pycryptodome (test_architecture.py): the recipe layer is the only door to crypto libraries."""
    package = Path(__file__).resolve().parent.parent / "securechat"
    offenders = []
    for path in package.rglob("*.py"):
        text = path.read_text()
        names = set()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        if ("cryptography" in names or '"cryptography.' in text) and path.parent.name != "crypto":
            offenders.append(path)
    assert offenders == []


# --- byte-identical output ------------------------------------------------------------------------------------


def test_seal_is_byte_identical_across_backends() -> None:
    reference = [seal(key, pt, aad=aad, nonce=nonce) for key, nonce, aad, pt in CASES]
    aead.set_backend("cryptography")
    accelerated = [seal(key, pt, aad=aad, nonce=nonce) for key, nonce, aad, pt in CASES]
    assert accelerated == reference
    assert all(type(s) is bytes for s in accelerated)
    assert len(reference[14]) == 64 * 1024 + aead.TAG_BYTES  # the 64 KiB case is in


def test_bytearray_plaintext_is_accepted_alike() -> None:
    key, nonce, aad, pt = CASES[10]
    reference = seal(key, bytearray(pt), aad=aad, nonce=nonce)
    assert _under("cryptography", seal, key, bytearray(pt), aad=aad, nonce=nonce) == reference


@pytest.mark.parametrize(("sealer", "opener"), [BACKENDS, BACKENDS[::-1]])
def test_cross_unseal(sealer: str, opener: str) -> None:
    for key, nonce, aad, pt in CASES:
        sealed = _under(sealer, seal, key, pt, aad=aad, nonce=nonce)
        assert _under(opener, unseal, key, sealed, aad=aad, nonce=nonce) == pt


@pytest.mark.parametrize("backend", BACKENDS)
def test_cbc_hmac_suite_is_unchanged(backend: str) -> None:
    key, nonce, aad, pt = CASES[5]
    reference = seal(key, pt, aad=aad, nonce=nonce, suite=CipherSuite.AES_256_CBC_HMAC_SHA256)
    sealed = _under(backend, seal, key, pt, aad=aad, nonce=nonce, suite=CipherSuite.AES_256_CBC_HMAC_SHA256)
    assert sealed == reference
    assert _under(backend, unseal, key, sealed, aad=aad, nonce=nonce,
                  suite=CipherSuite.AES_256_CBC_HMAC_SHA256) == pt


def test_record_layer_records_are_identical() -> None:
    def records() -> list[bytes]:
        layer = RecordLayer(send_key=bytes(range(32)), receive_key=bytes(32))
        return [layer.seal(b"frame %d" % i * (i + 1)) for i in range(50)]

    assert _under("cryptography", records) == records()


# --- identical failures ---------------------------------------------------------------------------------------


def _failure(backend: str, key: bytes, sealed: bytes, aad: bytes, nonce: bytes) -> tuple[type, str, ErrorCode]:
    with pytest.raises(Exception) as info:
        _under(backend, unseal, key, sealed, aad=aad, nonce=nonce)
    exc = info.value
    return type(exc), str(exc.args[0]), getattr(exc, "code", None)


def test_failures_raise_the_same_integrity_error() -> None:
    key, nonce, aad, pt = CASES[20]
    sealed = seal(key, pt, aad=aad, nonce=nonce)
    flipped = bytearray(sealed)
    flipped[len(flipped) // 2] ^= 1
    bad_inputs = [
        (key, bytes(flipped), aad, nonce),                   # ciphertext or tag bit flipped
        (key, sealed[:-1], aad, nonce),                      # truncated tag
        (key, sealed[:15], aad, nonce),                      # shorter than a tag
        (key, b"", aad, nonce),                              # empty
        (key, sealed, aad + b"x", nonce),                    # altered aad
        (key, sealed, aad, bytes(12)),                       # other nonce
        (bytes(32), sealed, aad, nonce),                     # other key
        (key, sealed + b"\0", aad, nonce),                   # trailing byte
    ]
    for case in bad_inputs:
        got = {backend: _failure(backend, *case) for backend in BACKENDS}
        assert got["pycryptodome"] == got["cryptography"]
        assert got["cryptography"][0] is IntegrityError
        assert got["cryptography"][2] is ErrorCode.BAD_RECORD


@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_sizes_are_the_callers_bug_alike(backend: str) -> None:
    aead.set_backend(backend)
    with pytest.raises(ValueError):
        seal(bytes(16), b"x", aad=b"", nonce=bytes(12))
    with pytest.raises(ValueError):
        seal(bytes(32), b"x", aad=b"", nonce=bytes(16))
    with pytest.raises(ValueError):
        unseal(bytes(32), bytes(32), aad=b"", nonce=bytes(8))
    with pytest.raises(TypeError):
        seal(bytes(32), "text", aad=b"", nonce=bytes(12))  # type: ignore[arg-type]


def test_record_layer_refuses_a_replay_alike() -> None:
    def replay() -> tuple[type, ErrorCode]:
        a = RecordLayer(send_key=bytes(32), receive_key=bytes(32))
        b = RecordLayer(send_key=bytes(32), receive_key=bytes(32))
        first = a.seal(b"one")
        b.open(first)
        with pytest.raises(IntegrityError) as info:
            b.open(first)
        return type(info.value), info.value.code

    assert _under("cryptography", replay) == replay() == (IntegrityError, ErrorCode.BAD_RECORD)
    assert RECORD_AAD  # the record layer's aad is what these tests run under


# --- Wycheproof through the accelerated backend ---------------------------------------------------------------


def test_wycheproof_aes_gcm_through_the_cryptography_backend() -> None:
    """The same policy as test_wycheproof.py: 256/96/128 vectors as their verdict says, others refused."""
    data = json.loads((VECTORS / "aes_gcm_test.json").read_text())
    aead.set_backend("cryptography")
    run, failures = 0, []
    for group in data["testGroups"]:
        supported = _gcm_setup(group)
        for test in group["tests"]:
            run += 1
            problem = _gcm_check(supported, test)
            if problem is not None:
                failures.append(f"tcId {test['tcId']}: {problem}")
    assert aead.backend() == "cryptography"
    assert run == data["numberOfTests"]
    assert failures == []


# --- a whole session ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys() -> dict[str, UserKeys]:
    rng = random.Random(99)
    return {
        "alice": generate_user_keys(SignatureScheme.ED25519, random_bytes=rng.randbytes),
        "bob": generate_user_keys(SignatureScheme.ED25519, random_bytes=rng.randbytes),
        "carol": generate_user_keys(SignatureScheme.ED25519, random_bytes=rng.randbytes),
    }


def _session(keys: dict[str, UserKeys], tamper: bool = False) -> tuple[list[tuple[str, str, float, bytes]], list]:
    """Three users, a server-key chat, messages both ways, a leave; optionally one flipped bit."""
    sim = Simulation(seed=42)
    sim.keys.update(keys)
    alice = sim.register_and_login("alice", "pw-a")
    bob = sim.register_and_login("bob", "pw-b")
    sim.register_and_login("carol", "pw-c")
    alice.open_chat(["bob", "carol"])
    sim.run_until_idle()
    chat_id = sim.last_event("alice", ev.ChatOpened).chat_id
    for i in range(5):
        alice.send_chat(chat_id, f"hello {i} " + "x" * (i * 300))
        bob.send_chat(chat_id, f"reply {i}")
        sim.run_until_idle()
    if tamper:
        sim.intercept = flip_bit(-1, source="alice", carrying="chat_send")
        alice.send_chat(chat_id, "tampered")
        sim.run_until_idle()
    sim.client("carol").leave(chat_id)
    sim.run_until_idle()
    trace = [(r.source, r.target, r.time, r.data) for r in sim.trace]
    received = [e for e in sim.events_of("bob") if isinstance(e, ev.ChatReceived)]
    closed = [(e.code) for name in ("alice", "bob", "carol") for e in sim.events_of(name, ev.ConnectionClosed)]
    return trace, [received, closed]


@pytest.mark.parametrize("tamper", [False, True], ids=["clean", "flipped-bit"])
def test_simulation_trace_bytes_are_identical_under_each_backend(keys: dict[str, UserKeys], tamper: bool) -> None:
    reference = _session(keys, tamper)
    accelerated = _under("cryptography", _session, keys, tamper)
    assert accelerated[0] == reference[0]
    assert accelerated[1] == reference[1]
    assert len(reference[1][0]) == 5  # bob got alice's five messages in both runs
    if tamper:
        assert reference[1][1]  # the flipped record closed alice's connection, the same way in both


# --- the relay's hand-built chat_message (same commit: the hot path the faster backend exposes) ------------------


def test_relayed_chat_message_frame_is_byte_identical_to_the_codec() -> None:
    """``server_relay.chat_message_frame`` skips the dataclass round; it must equal ``encode_frame`` exactly."""
    from securechat.protocol import messages as m
    from securechat.protocol.codec import decode_message, encode_frame
    from securechat.protocol.server_relay import chat_message_frame

    rng = random.Random(7)
    for i in range(200):
        hybrid = i % 3 == 0
        names = tuple(f"user{j}" for j in range(rng.randrange(1, 5))) if hybrid else None
        send = m.ChatSend(
            rid=None if i % 2 else i, chat_id=rng.choice(["c" + "ab" * 16, "lobby", "salle-été-☃", 'q"\\\n']),
            epoch=rng.randrange(1, 2**40), seq=rng.randrange(1, 2**32), ciphertext=rng.randbytes(rng.randrange(0, 3000)),
            signature=rng.randbytes(rng.choice([64, 71, 256])), wrap_recipients=names,
            wraps=tuple(rng.randbytes(256) for _ in names) if names else None)
        sender = rng.choice(["alice", "bob", "u0001"])
        expected = encode_frame(m.ChatMessage(
            chat_id=send.chat_id, epoch=send.epoch, sender=sender, seq=send.seq, ciphertext=send.ciphertext,
            signature=send.signature, wrap_recipients=send.wrap_recipients, wraps=send.wraps))
        assert chat_message_frame(send, sender) == expected
        assert isinstance(decode_message(expected[4:]), m.ChatMessage)
