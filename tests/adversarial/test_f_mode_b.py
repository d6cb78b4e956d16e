"""Scripted conversations for mode B (contributory chat keys through a blind relay): docs/THREATS.md 46-50.

Every script runs against a LIVE TcpServer on 127.0.0.1 over real sockets, with the sanity conversation before
and after. The malicious member ("Mallory") is a real TcpClient whose ClientProtocol runs the honest agreement;
the script intercepts its outgoing key-share envelopes and confirmations (``Mallory.hold``) and sends forged
ones instead, built with Mallory's own keys exactly as a modified client would (wrap_key + sign over the
envelope bytes of PROTOCOL.md 7.6). The malicious server of 46 and 49 is played by the server process itself:
a second server with the same CA key and a different account for "bob" (46), a registry holding a certificate
from another CA (46), and a patched relay that pushes an envelope captured at an earlier epoch (49).
"""

from __future__ import annotations

import os
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from securechat.crypto.certificates import issue_certificate
from securechat.crypto.kdf import FAST_SCRYPT
from securechat.crypto.signatures import SignatureScheme, sign
from securechat.crypto.wrap import wrap_key
from securechat.errors import ErrorCode
from securechat.net.tcp_client import ChatAbortedError, TcpClient
from securechat.net.tcp_server import TcpServer
from securechat.protocol import agreement as ag
from securechat.protocol import events as ev
from securechat.protocol import messages as m
from securechat.protocol.codec import encode_frame
from securechat.protocol.identity import UserKeys
from securechat.protocol.limits import ServerConfig
from securechat.protocol.registry import UserRecord
from securechat.store import MemoryRegistry, new_server_key

from .conftest import IO_TIMEOUT, PASSWORD, RawConn, count, fresh_name, online_client, pinned, sanity, wait_until

pytestmark = pytest.mark.tcp  # every script talks to a live server (tests/guard.py)

TARGET = bytes(range(32))  # the key Mallory wants the chat to use (say, a key it knows from an earlier epoch)


def xor(*values: bytes) -> bytes:
    out = bytes(32)
    for v in values:
        out = bytes(a ^ b for a, b in zip(out, v))
    return out


class Mallory:
    """A member whose client holds back its envelopes and confirmations so the script can send forged ones."""

    def __init__(self, client: TcpClient) -> None:
        self.client = client
        self.held: list[m.Message] = []
        proto = client.protocol
        original = proto.link.send

        def send_inner(message: Any) -> None:
            if isinstance(message, (m.KeyShare, m.KeyConfirm)):
                self.held.append(message)
                return
            original(message)

        proto.link.send = send_inner  # type: ignore[method-assign]
        self._original = original

    @property
    def name(self) -> str:
        assert self.client.protocol.username is not None
        return self.client.protocol.username

    def agreement(self, chat_id: str) -> ag.Agreement:
        book = self.client.protocol.book
        assert book is not None
        agreement = book.agreements.get(chat_id)
        assert isinstance(agreement, ag.Agreement), "Mallory has no agreement running"
        return agreement

    def wait_shares(self, chat_id: str, names: tuple[str, ...]) -> dict[str, bytes]:
        """Wait (the last mover) until the other members' shares reached Mallory; return them."""
        assert wait_until(lambda: all(n in self._shares(chat_id) for n in names), IO_TIMEOUT), \
            f"shares of {names} never reached Mallory"
        return dict(self._shares(chat_id))

    def _shares(self, chat_id: str) -> dict[str, bytes]:
        with self.client._lock:  # noqa: SLF001
            book = self.client.protocol.book
            agreement = book.agreements.get(chat_id) if book else None
            return dict(agreement.shares) if isinstance(agreement, ag.Agreement) else {}

    def envelope(self, chat_id: str, epoch: int, recipient: str, share: bytes) -> m.KeyShare:
        book = self.client.protocol.book
        assert book is not None
        keys: UserKeys = book.keys
        _cert, _signing, encryption = book.certificates[recipient]
        wrapped = wrap_key(encryption, share)
        nonce, stamp = os.urandom(ag.NONCE_BYTES), int(time.time())
        signature = sign(keys.scheme, keys.signing_key, ag.envelope_signed_bytes(
            chat_id, epoch, self.name, recipient, wrapped, nonce, stamp))
        return m.KeyShare(chat_id=chat_id, epoch=epoch, recipient=recipient, wrapped_share=wrapped, nonce=nonce,
                          timestamp=stamp, signature=signature)

    def send(self, *messages: m.Message) -> None:
        with self.client._lock:  # noqa: SLF001
            for message in messages:
                self._original(message)
            data = self.client.protocol.data_to_send()
            if data:
                self.client.transport.send(data)
        count("F", len(messages))


def open_async(client: TcpClient, members: list[str], mode: str) -> str:
    """chat_open without waiting for the key (the agreement is what the script attacks)."""
    return client.open_chat(members, mode=mode, wait_for_key=False).chat_id


def aborted(client: TcpClient, chat_id: str) -> ev.ChatAborted:
    """The ChatAborted the client reported for *chat_id* (waits for it)."""
    with pytest.raises(ChatAbortedError) as info:
        client.wait_for_key(chat_id, 1)
    return info.value.aborted


def chat_key(client: TcpClient, chat_id: str) -> bytes | None:
    with client._lock:  # noqa: SLF001
        chat = client.protocol.book.chats.get(chat_id) if client.protocol.book else None
        return None if chat is None else chat.key


def events_of(client: TcpClient, kind: type) -> list[Any]:
    """Every event of *kind* the client has reported so far (drains its queue, keeps them in ``seen``)."""
    seen: list[Any] = getattr(client, "_seen_events", [])
    while True:
        try:
            seen.append(client.events.get_nowait())
        except Exception:
            break
    client._seen_events = seen  # type: ignore[attr-defined]  # noqa: SLF001
    return [e for e in seen if isinstance(e, kind)]


@pytest.fixture
def trio(server: TcpServer, key_pool: list[UserKeys]) -> Any:
    """alice, bob (honest) and Mallory, all online on the module server."""
    made: list[TcpClient] = []

    def make() -> tuple[TcpClient, TcpClient, Mallory]:
        alice = online_client(server, key_pool[0], fresh_name("alice"))
        bob = online_client(server, key_pool[3], fresh_name("bob"))  # RSA-PSS signer: mixed schemes
        mallory = online_client(server, key_pool[2], fresh_name("mallory"))
        made.extend([alice, bob, mallory])
        return alice, bob, Mallory(mallory)

    yield make
    for client in made:
        client.close()


# --- 46 key substitution ---------------------------------------------------------------------------------------

def _server_with(key: Any) -> TcpServer:
    return TcpServer(server_key=key, registry=MemoryRegistry(), config=ServerConfig(scrypt=FAST_SCRYPT)).start()


def test_f46_substituted_key_for_pinned_peer_gives_key_changed_and_no_share(key_pool: list[UserKeys]) -> None:
    """The server (the CA) certifies Mallory's keys as "bob": alice, who pinned bob's real fingerprint, gets
    PeerKeyChanged{code key_changed} and sends bob no share until she accepts the change."""
    ca = new_server_key()
    first = _server_with(ca)
    second = _server_with(ca)  # same CA key: every certificate it issues is CA-valid for alice
    clients: list[TcpClient] = []
    try:
        sanity(first, key_pool[0])
        sanity(second, key_pool[0])
        bob_name, alice_name = fresh_name("bob"), fresh_name("alice")
        real_bob = TcpClient(*first.address, server_key=pinned(first), timeout=IO_TIMEOUT)
        clients.append(real_bob)
        registered = real_bob.register(bob_name, PASSWORD, key_pool[3])
        pins = {bob_name: registered.certificate.identity_fingerprint()}  # alice verified bob's safety number

        received: list[str] = []
        fake_bob = TcpClient(*second.address, server_key=pinned(second), timeout=IO_TIMEOUT,
                             trace=lambda e: received.append(e.type) if e.layer == "inner" else None)
        clients.append(fake_bob)
        fake_bob.register(bob_name, PASSWORD, key_pool[2])  # Mallory's keys under bob's name
        fake_bob.login(bob_name, PASSWORD, key_pool[2])
        alice = TcpClient(*second.address, server_key=pinned(second), timeout=IO_TIMEOUT, pins=pins)
        clients.append(alice)
        alice.register(alice_name, PASSWORD, key_pool[0])
        alice.login(alice_name, PASSWORD, key_pool[0])
        for mode in ("contributory", "contributory-xor"):
            chat_id = open_async(alice, [bob_name], mode)
            assert wait_until(lambda: bool(events_of(alice, ev.PeerKeyChanged)))
            changed = events_of(alice, ev.PeerKeyChanged)[0]
            assert changed.code == ErrorCode.KEY_CHANGED.value == "key_changed"
            assert changed.username == bob_name and changed.pinned == pins[bob_name] != changed.seen
            time.sleep(0.5)
            assert "key_share_delivery" not in received, "alice sent a share to the substituted key"
            assert alice.keyed_epoch(chat_id) == 0 and chat_key(alice, chat_id) is None
            assert alice.pins[bob_name] == pins[bob_name]  # the pin is not overwritten
            count("F")
        sanity(first, key_pool[0])
        sanity(second, key_pool[0])
    finally:
        for client in clients:
            client.close()
        first.stop()
        second.stop()


def test_f46_certificate_not_from_the_ca_gives_bad_certificate(key_pool: list[UserKeys]) -> None:
    """A malicious relay serves, as bob's, a certificate signed by another CA: bad_certificate, no share."""
    ca, rogue = new_server_key(), new_server_key()
    registry = MemoryRegistry()
    srv = TcpServer(server_key=ca, registry=registry, config=ServerConfig(scrypt=FAST_SCRYPT)).start()
    clients: list[TcpClient] = []
    try:
        sanity(srv, key_pool[0])
        bob_name = fresh_name("bob")
        bob = online_client(srv, key_pool[3], bob_name)
        clients.append(bob)
        keys = key_pool[2]
        record = registry.get_user(bob_name) if hasattr(registry, "get_user") else None
        forged = issue_certificate(
            username=bob_name, signature_scheme=keys.scheme, encryption_key=keys.encryption_public,
            signing_key=keys.signing_public, serial=999, now=int(time.time()) - 60, validity_seconds=86400,
            ca_private_key=rogue.private_key, ca_scheme=rogue.scheme)
        _replace_certificate(registry, bob_name, forged, record)
        alice = online_client(srv, key_pool[0], fresh_name("alice"))
        clients.append(alice)
        chat_id = open_async(alice, [bob_name], "contributory")
        assert wait_until(lambda: any(e.code == ErrorCode.BAD_CERTIFICATE.value
                                      for e in events_of(alice, ev.MessageRejected)))
        time.sleep(0.3)
        assert alice.keyed_epoch(chat_id) == 0 and chat_key(alice, chat_id) is None
        assert bob_name not in alice.pins
        count("F")
        sanity(srv, key_pool[0])
    finally:
        for client in clients:
            client.close()
        srv.stop()


def _replace_certificate(registry: MemoryRegistry, name: str, cert: Any, _record: Any) -> None:
    """Overwrite the stored certificate of *name* (the server playing a rogue CA)."""
    users = registry._users  # type: ignore[attr-defined]  # noqa: SLF001
    key = next(k for k in users if k == name or getattr(users[k], "username", None) == name)
    old: UserRecord = users[key]
    users[key] = UserRecord(username=old.username, password_record=old.password_record, certificate=cert)


# --- 47 XOR last mover -----------------------------------------------------------------------------------------

def test_f47_xor_last_mover_forces_the_key(server: TcpServer, keys: UserKeys, trio: Any) -> None:
    """contributory-xor (insecure on purpose): Mallory waits for both shares, then reveals
    TARGET xor share_alice xor share_bob; every member confirms and the chat key IS the target."""
    sanity(server, keys)
    alice, bob, mallory = trio()
    chat_id = open_async(alice, [bob.protocol.username, mallory.name], ag.XOR)
    shares = mallory.wait_shares(chat_id, (alice.protocol.username, bob.protocol.username))
    forced = xor(TARGET, *shares.values())
    agreement = mallory.agreement(chat_id)
    mallory.send(*(mallory.envelope(chat_id, 1, n, forced) for n in shares),
                 m.KeyConfirm(chat_id=chat_id, epoch=1, mac=ag.confirmation(TARGET, agreement.transcript(), mallory.name)))
    alice.wait_for_key(chat_id, 1)
    bob.wait_for_key(chat_id, 1)
    assert chat_key(alice, chat_id) == TARGET
    assert chat_key(bob, chat_id) == TARGET
    sanity(server, keys)


def test_f47_last_mover_in_contributory_gives_commitment_mismatch(server: TcpServer, keys: UserKeys,
                                                                  trio: Any) -> None:
    """The same attack in the real design: Mallory committed to its random share before seeing any other, so the
    forced share does not match its commitment: commitment_mismatch at every honest member, key != target."""
    sanity(server, keys)
    alice, bob, mallory = trio()
    chat_id = open_async(alice, [bob.protocol.username, mallory.name], ag.SECURE)
    shares = mallory.wait_shares(chat_id, (alice.protocol.username, bob.protocol.username))
    forced = xor(TARGET, *shares.values())
    mallory.send(*(mallory.envelope(chat_id, 1, n, forced) for n in shares))
    for victim in (alice, bob):
        failure = aborted(victim, chat_id)
        assert failure.code == ErrorCode.COMMITMENT_MISMATCH.value == "commitment_mismatch"
        assert failure.epoch == 1
        assert chat_key(victim, chat_id) != TARGET
    # And the derivation is HKDF, not XOR: even the XOR of the honest shares with the target is no key.
    assert ag.derive_key(ag.SECURE, chat_id, 1, {"a": forced, **shares}, b"t") != TARGET
    sanity(server, keys)


def test_f47_honest_contributory_key_is_not_the_xor(server: TcpServer, keys: UserKeys, trio: Any) -> None:
    """Control: when Mallory plays honestly the agreement completes, all three hold one key, and it is not the
    XOR of the shares (so no member can steer it by choosing its share last)."""
    sanity(server, keys)
    alice, bob, mallory = trio()
    chat_id = open_async(alice, [bob.protocol.username, mallory.name], ag.SECURE)
    shares = mallory.wait_shares(chat_id, (alice.protocol.username, bob.protocol.username))
    mine = mallory.agreement(chat_id).share
    mallory.send(*mallory.held)
    mallory.held.clear()
    alice.wait_for_key(chat_id, 1)
    bob.wait_for_key(chat_id, 1)
    key = chat_key(alice, chat_id)
    assert key is not None and key == chat_key(bob, chat_id)
    assert key != xor(mine, *shares.values())
    sanity(server, keys)


# --- 48 cancellation and equivocation -------------------------------------------------------------------------

def test_f48_echoed_share_is_duplicate_share(server: TcpServer, keys: UserKeys, trio: Any) -> None:
    """Mallory echoes alice's share (under XOR it would cancel hers): duplicate_share at alice and at bob."""
    sanity(server, keys)
    alice, bob, mallory = trio()
    a_name, b_name = alice.protocol.username, bob.protocol.username
    chat_id = open_async(alice, [b_name, mallory.name], ag.XOR)
    shares = mallory.wait_shares(chat_id, (a_name, b_name))
    mallory.send(mallory.envelope(chat_id, 1, a_name, shares[a_name]),
                 mallory.envelope(chat_id, 1, b_name, shares[a_name]))
    for victim in (alice, bob):
        failure = aborted(victim, chat_id)
        assert failure.code == ErrorCode.DUPLICATE_SHARE.value == "duplicate_share"
        assert chat_key(victim, chat_id) is None
    sanity(server, keys)


def test_f48_equivocation_gives_key_confirmation_failed(server: TcpServer, keys: UserKeys, trio: Any) -> None:
    """contributory-xor has no commitments: Mallory sends alice one share and bob another. Their keys differ,
    and the confirmation round turns the silent split into key_confirmation_failed at both."""
    sanity(server, keys)
    alice, bob, mallory = trio()
    a_name, b_name = alice.protocol.username, bob.protocol.username
    chat_id = open_async(alice, [b_name, mallory.name], ag.XOR)
    shares = mallory.wait_shares(chat_id, (a_name, b_name))
    s1, s2 = os.urandom(32), os.urandom(32)
    transcript = mallory.agreement(chat_id).transcript()
    alice_view = xor(s1, *shares.values())
    mallory.send(mallory.envelope(chat_id, 1, a_name, s1), mallory.envelope(chat_id, 1, b_name, s2),
                 m.KeyConfirm(chat_id=chat_id, epoch=1, mac=ag.confirmation(alice_view, transcript, mallory.name)))
    for victim in (alice, bob):
        failure = aborted(victim, chat_id)
        assert failure.code == ErrorCode.KEY_CONFIRMATION_FAILED.value == "key_confirmation_failed"
    # Both derived a key locally (different ones), but neither reported the chat usable.
    assert alice.keyed_epoch(chat_id) == 0 and bob.keyed_epoch(chat_id) == 0
    sanity(server, keys)


def test_f48_equivocation_in_contributory_is_caught_by_commitments(server: TcpServer, keys: UserKeys,
                                                                   trio: Any) -> None:
    """In the real design, different shares to different members contradict the single signed commitment."""
    sanity(server, keys)
    alice, bob, mallory = trio()
    a_name, b_name = alice.protocol.username, bob.protocol.username
    chat_id = open_async(alice, [b_name, mallory.name], ag.SECURE)
    mallory.wait_shares(chat_id, (a_name, b_name))
    honest = mallory.agreement(chat_id).share
    mallory.send(mallory.envelope(chat_id, 1, a_name, honest), mallory.envelope(chat_id, 1, b_name, os.urandom(32)))
    assert aborted(bob, chat_id).code == ErrorCode.COMMITMENT_MISMATCH.value
    sanity(server, keys)


# --- 49 stale shares ------------------------------------------------------------------------------------------

def test_f49_key_share_for_old_epoch_refused_by_server(server: TcpServer, keys: UserKeys, key_pool: list[UserKeys],
                                                       raw: Callable[..., RawConn]) -> None:
    """A member sends a key_share for epoch 1 after the chat moved to epoch 2: stale_epoch, kept, not relayed."""
    sanity(server, keys)
    alice = online_client(server, key_pool[0], fresh_name("alice"))
    carol = online_client(server, key_pool[1], fresh_name("carol"))
    try:
        attacker = raw()
        name = fresh_name("raw")
        attacker.register_and_login(name, key_pool[3])
        attacker.send_obj({"type": "chat_open", "rid": 1, "members": [alice.protocol.username],
                           "mode": ag.XOR, "suite": "aes-256-gcm"})
        chat_id = attacker.expect("chat_opened", rid=1)["chat_id"]
        attacker.send_obj({"type": "chat_invite", "rid": 2, "chat_id": chat_id,
                           "username": carol.protocol.username})
        attacker.expect("chat_epoch", chat_id=chat_id, epoch=2)
        stale = m.KeyShare(chat_id=chat_id, epoch=1, recipient=alice.protocol.username, wrapped_share=bytes(256),
                           nonce=bytes(16), timestamp=int(time.time()), signature=bytes(64))
        attacker.send_record(encode_frame(stale))
        attacker.expect_error(ErrorCode.STALE_EPOCH, closed=False)
        count("F")
        # Round messages of an old epoch are refused the same way.
        for msg in (m.ShareCommit(chat_id=chat_id, epoch=1, commitment=bytes(32), signature=bytes(64)),
                    m.KeyConfirm(chat_id=chat_id, epoch=1, mac=bytes(32))):
            attacker.send_record(encode_frame(msg))
            attacker.expect_error(ErrorCode.STALE_EPOCH, closed=False)
            count("F")
        time.sleep(0.3)
        assert not [e for e in events_of(alice, ev.MessageRejected) if e.code == ErrorCode.STALE_EPOCH.value], \
            "the stale envelope was relayed"
    finally:
        alice.close()
        carol.close()
    sanity(server, keys)


def test_f49_replayed_old_epoch_envelope_rejected_by_client(server: TcpServer, keys: UserKeys,
                                                            key_pool: list[UserKeys],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The relay (malicious) pushes bob, at epoch 2, an envelope it relayed to him at epoch 1: bob rejects it
    with stale_epoch (the envelope is signed over the epoch) and epoch 2's agreement still completes."""
    sanity(server, keys)
    captured: list[bytes] = []
    replay_to: list[str] = []
    lock = threading.Lock()

    def tracer(entry: ev.TraceEntry) -> None:
        if entry.direction == "receive" and entry.layer == "inner" and b'"key_share_delivery"' in entry.data:
            with lock:
                captured.append(bytes(entry.data))

    alice = online_client(server, key_pool[0], fresh_name("alice"))
    bob = online_client(server, key_pool[3], fresh_name("bob"), trace=tracer)
    carol = online_client(server, key_pool[1], fresh_name("carol"))
    try:
        chat_id = open_async(alice, [bob.protocol.username], ag.SECURE)
        alice.wait_for_key(chat_id, 1)
        bob.wait_for_key(chat_id, 1)
        assert captured, "no envelope reached bob at epoch 1"
        old = captured[0]
        assert b'"epoch":1' in old

        modes = server.protocol.relay.modes
        original = modes.on_key_share

        def malicious_relay(p: Any, msg: m.KeyShare) -> None:
            original(p, msg)
            chat = server.protocol.chats.get(msg.chat_id)
            if replay_to and chat is not None:
                # the stale epoch-1 envelope, exactly as relayed before (framed body), to that member if online
                framed = old if not old.startswith(b"{") else struct.pack(">I", len(old)) + old
                modes.deliver(chat, replay_to.pop(), framed, "key_share_delivery", mailbox=False)

        monkeypatch.setattr(modes, "on_key_share", malicious_relay)
        replay_to.append(bob.protocol.username)
        alice.invite(chat_id, carol.protocol.username)
        assert wait_until(lambda: any(e.code == ErrorCode.STALE_EPOCH.value
                                      for e in events_of(bob, ev.MessageRejected)))
        rejected = [e for e in events_of(bob, ev.MessageRejected) if e.code == ErrorCode.STALE_EPOCH.value]
        assert rejected[0].chat_id == chat_id
        count("F")
        for client in (alice, bob, carol):
            client.wait_for_key(chat_id, 2)
        assert chat_key(alice, chat_id) == chat_key(bob, chat_id) == chat_key(carol, chat_id) is not None
    finally:
        for client in (alice, bob, carol):
            client.close()
    sanity(server, keys)


# --- 50 concurrent membership changes ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode", [ag.SECURE, ag.XOR])
def test_f50_concurrent_invite_and_leave_converge_in_contributory(server: TcpServer, keys: UserKeys,
                                                                  key_pool: list[UserKeys], mode: str) -> None:
    """Two invites and a leave at once: epochs strictly increase one change at a time, every remaining member
    ends on the same epoch with the same confirmed key, and a message afterwards reaches everyone."""
    sanity(server, keys)
    names = [fresh_name(p) for p in ("ann", "ben", "cat", "dan", "eve")]
    clients = [online_client(server, key_pool[i % 4], n) for i, n in enumerate(names)]
    ann, ben, cat, dan, eve = clients
    try:
        chat_id = ann.open_chat([names[1], names[2]], mode=mode)
        chat_id = chat_id.chat_id
        for c in (ann, ben, cat):
            c.wait_for_key(chat_id, 1)
        errors: list[BaseException] = []

        def run(fn: Callable[[], Any]) -> None:
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(f,)) for f in (
            lambda: ann.invite(chat_id, names[3]), lambda: ben.invite(chat_id, names[4]), lambda: cat.leave(chat_id))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(IO_TIMEOUT * 2)
        assert not errors, errors
        remaining = (ann, ben, dan, eve)
        assert wait_until(lambda: all(c.chat_epoch(chat_id) == 4 for c in remaining), IO_TIMEOUT * 2), \
            [c.chat_epoch(chat_id) for c in remaining]
        for c in remaining:
            c.wait_for_key(chat_id, 4)
        keys_seen = {chat_key(c, chat_id) for c in remaining}
        assert len(keys_seen) == 1 and None not in keys_seen
        ann.send(chat_id, "after the changes")
        for c in (ben, dan, eve):
            assert wait_until(lambda c=c: any(getattr(e, "text", None) == "after the changes"
                                               for e in events_of(c, ev.ChatReceived)), IO_TIMEOUT)
        count("F", 3)
    finally:
        for c in clients:
            c.close()
    sanity(server, keys)
