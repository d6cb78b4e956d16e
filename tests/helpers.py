"""Shared test helpers: cached user keys, simulations, sample messages and raw-frame injection.

Key generation (RSA-2048, DSA-2048) dominates run time, so every (name, scheme) key set is made once per
test session from a seeded random source and handed to each Simulation through ``sim.keys[name]``.
Simulations use FAST_SCRYPT (the Simulation default) so that a login costs milliseconds.
"""

from __future__ import annotations

import dataclasses
import random
import zlib
from dataclasses import dataclass
from typing import Any

from securechat.crypto.certificates import Certificate, issue_certificate
from securechat.crypto.kdf import FAST_SCRYPT
from securechat.crypto.keys import public_key_der
from securechat.crypto.signatures import SignatureScheme, generate_signing_key
from securechat.errors import ErrorCode
from securechat.protocol import codec
from securechat.protocol import events as ev
from securechat.protocol import messages as m
from securechat.protocol.client import ClientProtocol
from securechat.protocol.identity import UserKeys, generate_user_keys
from securechat.protocol.limits import ServerConfig
from securechat.protocol.server import ServerProtocol
from securechat.simulation import SERVER, Simulation
from securechat.store import MemoryRegistry, new_server_key

RSA = SignatureScheme.RSA_PSS_SHA256
DSA = SignatureScheme.DSA_SHA256

# Every test user certifies RSA-PSS unless a test asks for DSA: importing a DSA public key re-checks the
# domain's primes (about 45 ms each time), which would dominate the run time of the server tests.
DEFAULT_SCHEMES: dict[str, SignatureScheme] = {}

# --- keys, made once per session --------------------------------------------------------------------------

_KEYS: dict[tuple[str, SignatureScheme], UserKeys] = {}


def seeded(label: str) -> Any:
    """A deterministic random source for *label* (never constant: a Random seeded by the label)."""
    return random.Random(zlib.crc32(label.encode())).randbytes


def user_keys(name: str, scheme: SignatureScheme | None = None) -> UserKeys:
    """The session-wide cached keys of *name* (its default scheme unless *scheme* is given)."""
    scheme = scheme or DEFAULT_SCHEMES.get(name, RSA)
    cache_key = (name, scheme)
    if cache_key not in _KEYS:
        _KEYS[cache_key] = generate_user_keys(scheme, random_bytes=seeded(f"keys/{name}/{scheme.value}"))
    return _KEYS[cache_key]


@dataclass(frozen=True)
class ForgedKeys:
    """Key material whose announced public keys are not those of its private keys (key substitution)."""

    scheme: SignatureScheme
    encryption_key: object
    signing_key: object
    encryption_public: bytes
    signing_public: bytes


def substituted_keys(victim: UserKeys, attacker: UserKeys, *, encryption: bool, signing: bool) -> ForgedKeys:
    """Announce the victim's public key(s) while holding the attacker's private keys."""
    return ForgedKeys(
        scheme=victim.scheme if signing else attacker.scheme,
        encryption_key=attacker.encryption_key,
        signing_key=attacker.signing_key,
        encryption_public=victim.encryption_public if encryption else attacker.encryption_public,
        signing_public=victim.signing_public if signing else attacker.signing_public,
    )


# --- simulations ------------------------------------------------------------------------------------------


def password_of(name: str) -> str:
    return f"pw-{name}"


def make_simulation(*users: str, seed: int = 1, dsa: tuple[str, ...] = (), **config: Any) -> Simulation:
    """A Simulation (FAST_SCRYPT unless overridden) with *users* registered and logged in, in order;
    the users named in *dsa* certify DSA, the others RSA-PSS."""
    config.setdefault("scrypt", FAST_SCRYPT)
    sim = Simulation(seed=seed, config=ServerConfig(**config))
    for name in users:
        login_user(sim, name, DSA if name in dsa else None)
    return sim


def login_user(sim: Simulation, name: str, scheme: SignatureScheme | None = None) -> ClientProtocol:
    """Register and log in *name* with its cached keys; the connection label is the username."""
    keys = user_keys(name, scheme)
    sim.keys[name] = keys
    client = sim.register_and_login(name, password_of(name), keys.scheme)
    assert client.username == name, sim.events_of(name)
    return client


def connect(sim: Simulation, label: str) -> ClientProtocol:
    """A new connection whose handshake has completed (nobody logged in)."""
    client = sim.add_client(label)
    sim.run_until_idle()
    return client


def register_only(sim: Simulation, label: str, name: str | None = None) -> ClientProtocol:
    """Connect and register *name* (default: *label*) without logging in."""
    name = name or label
    keys = user_keys(name)
    sim.keys[name] = keys
    client = connect(sim, label)
    client.register(name, password_of(name), keys)
    sim.run_until_idle()
    sim.last_event(label, ev.RegistrationSucceeded)
    return client


def relogin(sim: Simulation, label: str, name: str) -> ClientProtocol:
    """A new connection *label* logging in as the already registered *name*."""
    client = connect(sim, label)
    client.login(name, password_of(name), user_keys(name))
    sim.run_until_idle()
    return client


def peer_of(sim: Simulation, label: str) -> int:
    return sim._peer_ids[label]


def request(sim: Simulation, label: str, message: m.Message, *, run: bool = True) -> int | None:
    """Send *message* from *label*'s client inside its channel, bypassing the client's own checks.

    The message is rebuilt with the client's next request id when it has a ``rid`` field.
    """
    client = sim.clients[label]
    rid: int | None = None
    if "rid" in {f.name for f in dataclasses.fields(message)}:
        rid = client.link.next_rid
        client.link.next_rid += 1
        message = dataclasses.replace(message, rid=rid)
    client.link.send(message)
    if run:
        sim.run_until_idle()
    return rid


def send_inner_bodies(sim: Simulation, label: str, bodies: list[bytes], *, run: bool = True) -> None:
    """Frame arbitrary inner bodies, seal them as one record with *label*'s channel, and deliver."""
    plaintext = b"".join(codec.frame(body) for body in bodies)
    send_record_plaintext(sim, label, plaintext, run=run)


def send_record_plaintext(sim: Simulation, label: str, plaintext: bytes, *, run: bool = True) -> None:
    """Seal *plaintext* (anything, even badly framed) as the next record of *label*'s channel."""
    client = sim.clients[label]
    assert client.link.records is not None and not client.link.inner
    sim.flush()
    record = codec.encode_unchecked("record", {"data": client.link.records.seal(plaintext)})  # any size
    sim.inject(label, SERVER, record)
    if run:
        sim.run_until_idle()


def server_push(sim: Simulation, label: str, *messages: m.Message, run: bool = True) -> None:
    """Seal *messages* with the server's channel to *label* and deliver them (a malicious server)."""
    peer = sim.server.peers[peer_of(sim, label)]
    assert peer.records is not None and not peer.inner
    plaintext = b"".join(codec.encode_frame(msg) for msg in messages)
    sim.inject(SERVER, label, codec.encode_frame(m.Record(data=peer.records.seal(plaintext))))
    if run:
        sim.run_until_idle()


# --- assertions -------------------------------------------------------------------------------------------


def assert_serves(sim: Simulation, label: str) -> tuple[str, ...]:
    """Sanity probe (tlsfuzzer style): *label* asks ``who`` and gets a WhoResult for that request."""
    client = sim.clients[label]
    rid = client.who()
    sim.run_until_idle()
    listed = sim.last_event(label, ev.WhoListed)
    assert listed.rid == rid, sim.events_of(label)[-3:]
    return listed.online


def failures(sim: Simulation, label: str) -> list[ev.RequestFailed]:
    return sim.events_of(label, ev.RequestFailed)


def last_failure(sim: Simulation, label: str) -> ev.RequestFailed:
    return sim.last_event(label, ev.RequestFailed)


def server_errors(sim: Simulation, label: str | None = None) -> list[ev.ErrorSent]:
    errors = [e for e in sim.server_events if isinstance(e, ev.ErrorSent)]
    if label is not None:
        errors = [e for e in errors if e.peer == peer_of(sim, label)]
    return errors


def closed_peers(sim: Simulation) -> set[int]:
    return {e.peer for e in sim.server_events if isinstance(e, ev.PeerClosed)}


def is_closed(sim: Simulation, label: str) -> bool:
    return peer_of(sim, label) in closed_peers(sim)


def presence_of(sim: Simulation, label: str, username: str) -> list[bool]:
    return [e.online for e in sim.events_of(label, ev.PresenceChanged) if e.username == username]


def chat_messages_to(sim: Simulation, label: str) -> list[m.ChatMessage]:
    """Every chat_message the server queued for *label*, decoded from the server's trace."""
    peer = peer_of(sim, label)
    out = []
    for entry in sim.server_trace:
        if entry.peer == peer and entry.direction == "send" and entry.layer == "inner" and entry.type == "chat_message":
            message = codec.decode_message(entry.data[codec.HEADER_BYTES:])
            assert isinstance(message, m.ChatMessage)
            out.append(message)
    return out


def all_chat_messages(sim: Simulation) -> list[m.ChatMessage]:
    seen: dict[bytes, m.ChatMessage] = {}
    for entry in sim.server_trace:
        if entry.direction == "send" and entry.layer == "inner" and entry.type == "chat_message":
            seen.setdefault(entry.data, codec.decode_message(entry.data[codec.HEADER_BYTES:]))  # type: ignore[arg-type]
    return list(seen.values())


def open_chat(sim: Simulation, label: str, *members: str) -> str:
    client = sim.clients[label]
    rid = client.open_chat(list(members))
    sim.run_until_idle()
    opened = sim.last_event(label, ev.ChatOpened)
    assert opened.rid == rid
    return opened.chat_id


def received_texts(sim: Simulation, label: str, chat_id: str | None = None) -> list[tuple[str, str]]:
    return [(e.sender, e.text) for e in sim.events_of(label, ev.ChatReceived)
            if chat_id is None or e.chat_id == chat_id]


def rejections(sim: Simulation, label: str) -> list[ev.MessageRejected]:
    return sim.events_of(label, ev.MessageRejected)


# --- a server and a client without the Simulation (make_pair) ----------------------------------------------


class Pair:
    """One ServerProtocol and one ClientProtocol pumped by hand (for direct, sans-Simulation tests)."""

    def __init__(self, seed: str = "pair", config: ServerConfig | None = None) -> None:
        self.random_bytes = seeded(seed)
        self.now = 1_700_000_000.0
        self.server_key = new_server_key(random_bytes=self.random_bytes)
        self.registry = MemoryRegistry()
        self.server = ServerProtocol(server_key=self.server_key, registry=self.registry,
                                     config=config or ServerConfig(scrypt=FAST_SCRYPT), random_bytes=self.random_bytes)
        self.client = ClientProtocol(server_key=(self.server_key.public_der, self.server_key.scheme.value),
                                     random_bytes=self.random_bytes)
        self.peer = 1
        self.server.connection_made(self.peer, "192.0.2.1", self.now)
        self.client_events: list[ev.Event] = []
        self.server_events: list[ev.ServerEvent] = []
        self.closed = False

    def pump(self, rounds: int = 50) -> None:
        for _ in range(rounds):
            moved = False
            data = self.client.data_to_send()
            if data and not self.closed:
                self.server.receive_data(self.peer, data, self.now)
                moved = True
            while (job := self.server.next_job()) is not None:
                job.run()
                self.server.job_done(job, self.now)
                moved = True
            for peer, out in self.server.data_to_send():
                assert peer == self.peer
                self.client.receive_data(out, self.now)
                moved = True
            if self.peer in self.server.peers_to_close() and not self.closed:
                self.closed = True
                self.client.receive_data(b"", self.now)
                moved = True
            while (event := self.server.next_event()) is not None:
                self.server_events.append(event)
            while (cevent := self.client.next_event()) is not None:
                self.client_events.append(cevent)
            if not moved:
                return
        raise AssertionError("pair did not settle")


def make_pair(seed: str = "pair", config: ServerConfig | None = None, *, connect_now: bool = True) -> Pair:
    pair = Pair(seed, config)
    if connect_now:
        pair.client.connect()
        pair.pump()
    return pair


# --- one valid instance of every wire message ---------------------------------------------------------------


def sample_certificate(name: str = "alice") -> Certificate:
    ca = generate_signing_key(SignatureScheme.ED25519, random_bytes=seeded("sample-ca"))
    keys = user_keys(name)
    return issue_certificate(
        username=name, signature_scheme=keys.scheme, encryption_key=keys.encryption_public,
        signing_key=keys.signing_public, serial=7, now=1_700_000_000, validity_seconds=3600,
        ca_private_key=ca, ca_scheme=SignatureScheme.ED25519, random_bytes=seeded("sample-cert"),
    )


def sample_messages() -> dict[str, m.Message]:
    """One instance with valid, canonical values of every class in MESSAGE_CLASSES, keyed by TYPE."""
    cert = sample_certificate()
    b32, sig = bytes(range(32)), b"\x05" * 64
    der = public_key_der(generate_signing_key(SignatureScheme.ED25519, random_bytes=seeded("sample-der")))
    samples: list[m.Message] = [
        m.ClientHello(random=b32, key_share=bytes(reversed(b32))),
        m.ServerHello(random=b32, key_share=b32, server_key=der, server_scheme="ed25519", signature=sig),
        m.Record(data=b"\x00\x01sealed bytes"),
        m.Error(code="bad_field", message="field 'seq': bad", rid=9, ref="chat_send"),
        m.Register(rid=1, username="alice", password="correct horse", signature_scheme="rsa-pss-sha256",
                   encryption_key=cert.encryption_key, signing_key=cert.signing_key),
        m.RegisterChallenge(rid=1, wrapped_nonce=b"\x42" * 256),
        m.RegisterProof(rid=1, nonce=b32, signature=sig),
        m.Registered(rid=1, certificate=cert),
        m.Login(rid=2, username="alice", password="pw \u00e9\u4e2d", signature=sig),
        m.LoginOk(rid=2, username="alice", certificate=cert, online=("alice", "bob")),
        m.Logout(rid=3),
        m.Bye(rid=3),
        m.Who(rid=4),
        m.WhoResult(rid=4, online=("alice",)),
        m.Status(rid=5, username="bob"),
        m.StatusResult(rid=5, username="bob", online=False),
        m.Presence(username="carol", online=True),
        m.GetCertificates(rid=6, usernames=("bob", "carol")),
        m.Certificates(rid=6, certificates=(cert,), unknown=("zed",)),
        m.ChatOpen(rid=7, members=("bob", "dave")),
        m.ChatOpened(rid=7, chat_id="c0123", members=("alice", "bob"), offline=("dave",), unknown=()),
        m.ChatInvite(rid=8, chat_id="c0123", username="carol"),
        m.ChatInvited(rid=8, chat_id="c0123", username="carol"),
        m.ChatLeave(rid=9, chat_id="c0123"),
        m.ChatLeft(rid=9, chat_id="c0123"),
        m.ChatKey(chat_id="c0123", epoch=2, mode="server-key", suite="aes-256-gcm", reason="invite", actor="alice",
                  members=("alice", "bob", "carol"), wrap_root=b32, wrap_path=(b32, b32), wrapped_key=b"\x07" * 256,
                  signature=sig),
        m.ChatSend(rid=10, chat_id="c0123", epoch=2, seq=1, ciphertext=b"\x01" * 40, signature=sig),
        m.ChatMessage(chat_id="c0123", epoch=2, sender="alice", seq=1, ciphertext=b"\x01" * 40, signature=sig),
        m.ChatEpoch(chat_id="c0123", epoch=3, mode="contributory", suite="aes-256-gcm", reason="leave",
                    actor="carol", members=("alice", "bob"), signature=sig),
        m.ShareCommit(chat_id="c0123", epoch=3, commitment=b32, signature=sig),
        m.ShareCommitted(chat_id="c0123", epoch=3, sender="bob", commitment=b32, signature=sig),
        m.KeyShare(chat_id="c0123", epoch=3, recipient="bob", wrapped_share=b"\x09" * 256, nonce=b32[:16],
                   timestamp=1_700_000_000, signature=sig),
        m.KeyShareDelivery(chat_id="c0123", epoch=3, sender="alice", recipient="bob", wrapped_share=b"\x09" * 256,
                           nonce=b32[:16], timestamp=1_700_000_000, signature=sig),
        m.KeyConfirm(chat_id="c0123", epoch=3, mac=b32),
        m.KeyConfirmed(chat_id="c0123", epoch=3, sender="bob", mac=b32),
        m.RoundTimeout(chat_id="c0123", epoch=3, missing=("carol",)),
        m.CertRenew(rid=12, signature=sig),
        m.CertRenewed(rid=12, certificate=cert),
        m.ChatInvitation(chat_id="c0123", inviter="alice", mode="server-key", suite="aes-256-gcm", expires_in=600),
        m.ChatAnswer(rid=13, chat_id="c0123", accept=True),
        m.ChatAnswered(rid=13, chat_id="c0123", accepted=True),
        m.InvitationClosed(chat_id="c0123", username="bob", outcome="declined"),
        m.ChatRefused(chat_id="c0123", epoch=2, sender="bob", seq=3, code="key_changed"),
        m.ChatRefusal(chat_id="c0123", epoch=2, recipient="alice", seq=3, code="key_changed"),
    ]
    return {msg.TYPE: msg for msg in samples}


FATAL_SERVER_CODES = {ErrorCode.FRAME_TOO_LARGE, ErrorCode.BAD_FRAME, ErrorCode.BAD_RECORD,
                      ErrorCode.HANDSHAKE_FAILED, ErrorCode.SERVER_BUSY}
