"""No expensive work for strangers (PROTOCOL.md 6.1 step 2 and 10): a connection that has not logged in gets
cheap, bounded answers to ``register``; ``name_taken`` answers are budgeted per address; every refusal before
login counts toward the connection's error cap."""

from __future__ import annotations

import dataclasses

import pytest
from Crypto.PublicKey import DSA

from securechat.crypto import keys as key_module
from securechat.crypto.keys import public_key_der
from securechat.crypto.signatures import SignatureScheme, generate_dsa_domain
from securechat.errors import ErrorCode
from securechat.protocol import events as ev
from securechat.protocol import messages as m
from securechat.protocol import server_accounts
from securechat.protocol.codec import encode_message
from securechat.protocol.server import MAX_PRELOGIN_FRAME_BYTES
from securechat.simulation import Simulation
from tests.helpers import (
    connect, failures, is_closed, make_simulation, peer_of, request, seeded, send_inner_bodies, server_errors,
    user_keys,
)


def _register(name: str, *, signing_key: bytes | None = None, scheme: str | None = None) -> m.Register:
    keys = user_keys("mallory")
    return m.Register(rid=None, username=name, password="pw-x", signature_scheme=scheme or keys.scheme.value,
                      encryption_key=keys.encryption_public, signing_key=signing_key or keys.signing_public)


def _codes(sim: Simulation, label: str) -> list[str]:
    return [f.code for f in failures(sim, label)]


def _same_address(sim: Simulation, label: str, address: str = "192.0.2.7") -> None:
    sim.server.peers[peer_of(sim, label)].address = address


@pytest.fixture(scope="module")
def other_domain_key() -> bytes:
    """A DSA public key over a domain that is not the reference one (1024 bits: quick to make)."""
    p, q, g = generate_dsa_domain(1024, random_bytes=seeded("dsa-domain"))
    return public_key_der(DSA.generate(1024, randfunc=seeded("dsa-key"), domain=(p, q, g)))


def test_taken_name_is_answered_before_any_key_is_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    sim = make_simulation("bob")
    connect(sim, "eve")
    imported: list[bytes] = []
    real = server_accounts.load_public_key
    monkeypatch.setattr(server_accounts, "load_public_key",
                        lambda der, **kw: imported.append(der) or real(der, **kw))
    request(sim, "eve", _register("bob"))
    assert _codes(sim, "eve") == [ErrorCode.NAME_TAKEN.value] and imported == []
    request(sim, "eve", _register("newname"))
    assert len(imported) == 2 and sim.messages_of("eve", "receive", "register_challenge")


def test_dsa_key_of_another_domain_is_refused_before_primality_proving(monkeypatch: pytest.MonkeyPatch,
                                                                        other_domain_key: bytes) -> None:
    sim = make_simulation()
    connect(sim, "eve")
    proved: list[bytes] = []
    real = key_module.DSA.import_key
    monkeypatch.setattr(key_module.DSA, "import_key", lambda der, *a, **kw: proved.append(der) or real(der, *a, **kw))
    request(sim, "eve", _register("eve", signing_key=other_domain_key, scheme="dsa-2048-sha256"))
    (failure,) = failures(sim, "eve")
    assert failure.code == ErrorCode.BAD_FIELD.value and "reference domain" in failure.message
    assert proved == [] and not is_closed(sim, "eve")
    # a key in the reference domain is still welcome, without primality proving either
    dsa = user_keys("dsauser", SignatureScheme.DSA_SHA256)
    request(sim, "eve", dataclasses.replace(_register("dsauser"), signature_scheme=dsa.scheme.value,
                                            signing_key=dsa.signing_public))
    assert sim.messages_of("eve", "receive", "register_challenge") and proved == []


def test_register_flood_on_one_connection_is_cut_off() -> None:
    """200 register frames for a taken name: one record of them is refused from its length prefix (a
    connection that has not logged in may send records of 64 KiB at most); sent in records that fit, they get a
    bounded number of answers, then the connection is closed (it used to get 200 name_taken answers, and could
    repeat for ever)."""
    sim = make_simulation("bob")
    connect(sim, "eve")
    body = encode_message(_register("bob"))
    send_inner_bodies(sim, "eve", [body] * 200)
    assert [e.code for e in server_errors(sim, "eve")] == [ErrorCode.FRAME_TOO_LARGE.value]
    assert is_closed(sim, "eve")
    connect(sim, "eve2")
    per_record = MAX_PRELOGIN_FRAME_BYTES // 2 // (len(body) + 4)  # the record frame is base64 JSON: 4/3
    for _ in range(0, 200, per_record):
        if is_closed(sim, "eve2"):
            break
        send_inner_bodies(sim, "eve2", [body] * per_record)
    errors = server_errors(sim, "eve2")
    assert is_closed(sim, "eve2")
    assert len(errors) <= sim.server.config.max_refusals_before_login + 2  # the last refusal, then the close
    codes = [e.code for e in errors]
    assert codes.count(ErrorCode.NAME_TAKEN.value) <= sim.server.config.register_per_connection_burst
    assert ErrorCode.RATE_LIMITED.value in codes and errors[-1].fatal
    connect(sim, "alice")  # others are served
    assert sim.clients["alice"].state.name == "CONNECTED"


def test_name_taken_answers_are_budgeted_per_address_and_say_nothing_once_spent() -> None:
    """Probing usernames from one address over many connections: after the budget, every register from that
    address is rate_limited, whether the name exists or not, so the refusal itself reveals nothing."""
    sim = make_simulation("bob")
    cfg = sim.server.config
    budget = int(cfg.name_taken_per_address_burst)
    taken = 0
    for i in range(budget + 5):
        label = f"probe{i}"
        connect(sim, label)
        _same_address(sim, label)
        request(sim, label, _register("bob"))
        taken += _codes(sim, label).count(ErrorCode.NAME_TAKEN.value)
    assert taken == budget
    connect(sim, "probe-free")
    _same_address(sim, "probe-free")
    request(sim, "probe-free", _register("freename"))
    assert _codes(sim, "probe-free") == [ErrorCode.RATE_LIMITED.value]  # same answer as for a taken name
    # another address is not affected, and the budget refills with time
    connect(sim, "elsewhere")
    request(sim, "elsewhere", _register("bob"))
    assert _codes(sim, "elsewhere") == [ErrorCode.NAME_TAKEN.value]
    sim.advance(2 / cfg.name_taken_per_address_per_second)
    connect(sim, "later")
    _same_address(sim, "later")
    request(sim, "later", _register("bob"))
    assert _codes(sim, "later") == [ErrorCode.NAME_TAKEN.value]


def test_every_refusal_before_login_counts_toward_the_error_cap() -> None:
    """Failed logins (throttles off) are refusals too: the connection is closed after the cap."""
    sim = make_simulation("bob", failures_before_backoff=10_000, address_failures_allowed=10_000,
                          max_refusals_before_login=5)
    client = connect(sim, "eve")
    for _ in range(7):
        if is_closed(sim, "eve"):
            break
        client.login("bob", "wrong", user_keys("bob"))
        sim.run_until_idle()
    assert is_closed(sim, "eve")
    # the refusal that goes over the cap is still answered, then the connection is closed
    assert _codes(sim, "eve").count(ErrorCode.AUTH_FAILED.value) == 6
    assert [e.code for e in server_errors(sim, "eve")][-1] == ErrorCode.LIMIT_EXCEEDED.value
    assert failures(sim, "eve")[-1].message == "too many refused requests"
    assert sim.clients["eve"].closed


def test_an_address_that_spent_its_refusals_gets_server_busy_before_any_handshake() -> None:
    """Reconnecting does not reset the bill: refusals before login are also counted per address, and once that
    budget is spent new connections from the address are refused at admission (no handshake work)."""
    sim = make_simulation("bob", refusals_per_address_burst=10, refusals_per_address_per_second=1.0)
    for i in range(3):
        label = f"eve{i}"
        connect(sim, label)
        _same_address(sim, label)
        for _ in range(4):
            request(sim, label, _register("bob"))
    assert len(server_errors(sim)) >= 10
    # the simulation gives each connection its own address: the next one from 192.0.2.7 is made directly
    sim.server.connection_made(9001, "192.0.2.7", sim.now)
    out = dict(sim.server.data_to_send())
    assert b"too many refused requests from your address" in out[9001]
    assert 9001 in sim.server.peers_to_close()
    sim.server.connection_made(9002, "198.51.100.9", sim.now)  # another address is served
    assert 9002 not in dict(sim.server.data_to_send())
    sim.server.connection_made(9003, "192.0.2.7", sim.now + 5)  # the budget refills
    assert 9003 not in dict(sim.server.data_to_send())
