"""docs/THREATS.md E37-E45 and E50 for mode server-key (E46-E49 are mode B: not applicable yet)."""

from __future__ import annotations

import json
import queue
import threading
import time

import pytest

from securechat.crypto.encoding import b64d, b64e
from securechat.errors import ErrorCode
from securechat.protocol import events as ev
from securechat.protocol import messages as m
from securechat.protocol.codec import decode_message, message_from_dict

from .conftest import RawConn, count, fresh_name, online_client, open_with, registered_name, wait_until

pytestmark = [pytest.mark.tcp, pytest.mark.usefixtures("sane_before_and_after")]  # a live server

E = ErrorCode
CHAT = {"mode": "server-key", "suite": "aes-256-gcm"}


class Traced:
    """An online TcpClient that keeps every inner frame it received (as an eavesdropping member would)."""

    def __init__(self, server, keys):
        self.frames: list[bytes] = []
        self.client = online_client(server, keys, trace=self._trace)
        self.name = self.client.protocol.username

    def _trace(self, entry: ev.TraceEntry) -> None:
        if entry.direction == "receive" and entry.layer == "inner":
            self.frames.append(entry.data)

    def received(self, kind: str) -> list[m.Message]:
        out = []
        for data in list(self.frames):
            body = data[4:] if data[:1] == b"\x00" else data
            try:
                msg = decode_message(body)
            except Exception:
                continue
            if msg.TYPE == kind:
                out.append(msg)
        return out

    def wait_text(self, text: str, timeout: float = 5.0) -> ev.ChatReceived:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self.client.events.get(timeout=0.2)
            except queue.Empty:
                continue
            if isinstance(event, ev.ChatReceived) and event.text == text:
                return event
        raise AssertionError(f"{self.name} never received {text!r}")

    def book(self):
        return self.client.protocol.book


@pytest.fixture
def trio(server, key_pool):
    people = [Traced(server, key_pool[i]) for i in range(3)]
    yield people
    for p in people:
        p.client.close()


def test_e37_invitee_not_online(server, trio, keys):
    alice, bob, _ = trio
    offline = registered_name(server, keys)
    count("E", 2)
    # PROTOCOL.md 7.11: an offline invitee is invited, never added; nothing changes until it accepts
    alone = alice.client.open_chat([offline])
    assert alone.members == (alice.name,) and alone.offline == (offline,) and alone.pending == (offline,)
    chat = alice.client.open_chat([bob.name])
    alice.client.invite(chat.chat_id, offline)
    server_chat = server.protocol.chats.get(chat.chat_id)
    assert server_chat.epoch == 1 and offline not in server_chat.members
    assert alice.client.chat_epoch(chat.chat_id) == 1


def test_e38_ex_member_cannot_read_after_leaving(server, trio):
    alice, bob, carol = trio
    chat = alice.client.open_chat([bob.name, carol.name])
    carol.client.wait_for_key(chat.chat_id, 1)
    old_key = carol.book().chats[chat.chat_id].key
    carol.client.leave(chat.chat_id)
    alice.client.wait_for_key(chat.chat_id, 2)
    bob.client.wait_for_key(chat.chat_id, 2)
    alice.client.send(chat.chat_id, "after carol left")
    bob.wait_text("after carol left")
    time.sleep(0.2)
    assert not [msg for msg in carol.received("chat_message") if msg.epoch == 2]  # the server stopped routing
    assert alice.book().chats[chat.chat_id].key != old_key  # a fresh key for epoch 2
    # a modified client that kept the old key and obtained the epoch-2 ciphertext still cannot open it
    captured = bob.received("chat_message")[-1]
    with carol.client._lock:
        rejected = carol.book().open(captured)
    count("E")
    assert isinstance(rejected, ev.MessageRejected)
    from securechat.crypto import aead
    from securechat.protocol.constructions import chat_header
    from securechat.protocol.chats import ClientChat
    stale = ClientChat(chat_id=chat.chat_id, mode="server-key", suite="aes-256-gcm", epoch=2,
                       members=(alice.name, bob.name), key=old_key)
    header = chat_header(chat_id=chat.chat_id, epoch=2, sender=alice.name, seq=captured.seq, suite="aes-256-gcm")
    with pytest.raises(Exception):
        aead.unseal(stale.key_for(alice.name), captured.ciphertext, aad=header,
                    nonce=aead.nonce_from_counter(captured.seq))


def test_e39_ex_member_cannot_send_after_leaving(server, key_pool):
    alice = Traced(server, key_pool[0])
    carol = RawConn(server)
    try:
        carol.register_and_login(fresh_name("carol"), key_pool[1])
        chat = open_with(alice.client, [carol])
        carol.send_obj({"type": "chat_leave", "rid": 2, "chat_id": chat.chat_id})
        carol.expect("chat_left", rid=2)
        count("E")
        carol.send_obj({"type": "chat_send", "rid": 3, "chat_id": chat.chat_id, "epoch": 1, "seq": 1,
                        "ciphertext": "AAAA", "signature": "AAAA"})
        err = carol.expect_error(E.NOT_MEMBER, closed=False)
        assert err["rid"] == 3
    finally:
        carol.close()
        alice.client.close()


def test_e40_new_member_cannot_read_old_messages(server, trio):
    alice, bob, carol = trio
    chat = alice.client.open_chat([bob.name])
    alice.client.send(chat.chat_id, "before carol")
    bob.wait_text("before carol")
    alice.client.invite(chat.chat_id, carol.name)
    carol.client.wait_for_key(chat.chat_id, 2)
    time.sleep(0.2)
    assert carol.received("chat_message") == []  # the server keeps no history to replay
    old = bob.received("chat_message")[-1]
    with carol.client._lock:
        rejected = carol.book().open(old)
    count("E")
    assert isinstance(rejected, ev.MessageRejected) and rejected.code == E.STALE_EPOCH.value


def test_e41_spoofed_sender_fails_signature(server, key_pool):
    alice, bob = Traced(server, key_pool[0]), Traced(server, key_pool[1])
    mallory = RawConn(server)
    try:
        mallory.register_and_login(fresh_name("mallory"), key_pool[2])
        chat = open_with(alice.client, [mallory], (bob.name,))
        bob.client.wait_for_key(chat.chat_id, 1)
        alice.client.send(chat.chat_id, "from alice")
        bob.wait_text("from alice")
        genuine = bob.received("chat_message")[-1]
        # mallory holds the chat key and re-sends alice's ciphertext and signature as her own message
        count("E")
        mallory.send_obj({"type": "chat_send", "rid": 4, "chat_id": chat.chat_id, "epoch": genuine.epoch,
                          "seq": genuine.seq + 1, "ciphertext": b64e(genuine.ciphertext),
                          "signature": b64e(genuine.signature)})
        deadline = time.monotonic() + 5
        rejected = None
        while time.monotonic() < deadline and rejected is None:
            event = bob.client.events.get(timeout=5)
            if isinstance(event, ev.MessageRejected):
                rejected = event
            assert not isinstance(event, ev.ChatReceived), event
        assert rejected is not None and rejected.code == E.BAD_SIGNATURE.value
        assert rejected.sender == mallory.cp.username  # the server labelled it with the real sender
    finally:
        mallory.close()
        alice.client.close()
        bob.client.close()


def test_e42_replay_and_cross_session_replay(server, trio):
    alice, bob, carol = trio
    chat = alice.client.open_chat([bob.name])
    other = alice.client.open_chat([bob.name])
    alice.client.send(chat.chat_id, "once")
    bob.wait_text("once")
    genuine = [msg for msg in bob.received("chat_message") if msg.chat_id == chat.chat_id][-1]
    count("E", 2)
    with bob.client._lock:
        again = bob.book().open(genuine)
        moved = bob.book().open(m.ChatMessage(chat_id=other.chat_id, epoch=genuine.epoch, sender=genuine.sender,
                                              seq=genuine.seq, ciphertext=genuine.ciphertext,
                                              signature=genuine.signature))
    assert again.code == E.REPLAY.value
    assert moved.code == E.BAD_SIGNATURE.value


def test_e43_dropped_and_reordered_messages_are_detected(server, trio):
    alice, bob, _ = trio
    chat = alice.client.open_chat([bob.name])
    for i in range(3):
        alice.client.send(chat.chat_id, f"m{i}")
    bob.wait_text("m2")
    msgs = [msg for msg in bob.received("chat_message") if msg.chat_id == chat.chat_id]
    # replay them into a second copy of bob's book that lost all three, as a malicious server would
    count("E", 2)
    with bob.client._lock:
        book = bob.book()
        book.chats[chat.chat_id].last_seq = {}  # as if bob had received none of the three
        first = book.open(msgs[0])
        skipped = book.open(msgs[2])  # the server dropped m1
        late = book.open(msgs[1])    # ...and delivers it after m2
    assert isinstance(first, ev.ChatReceived) and first.gap == 0
    assert isinstance(skipped, ev.ChatReceived) and skipped.gap == 1
    assert isinstance(late, ev.MessageRejected) and late.code == E.REPLAY.value


def _captured_chat_key(server, key_pool):
    alice = Traced(server, key_pool[0])
    member = RawConn(server)
    member.register_and_login(fresh_name("member"), key_pool[1])
    chat = open_with(alice.client, [member])
    key = member.expect("chat_key", chat_id=chat.chat_id)
    return alice, member, key


@pytest.mark.parametrize("change", ["ghost_member", "other_epoch", "other_chat"])
def test_e44_ghost_member_or_altered_distribution_is_rejected(server, key_pool, change):
    alice, member, key = _captured_chat_key(server, key_pool)
    try:
        forged = dict(key)
        if change == "ghost_member":
            forged["members"] = key["members"] + ["ghost"]
        elif change == "other_epoch":
            forged["epoch"] = 5
        else:
            forged["chat_id"] = "cforged"
        count("E")
        result = member.cp.book.install_key(message_from_dict(forged))
        assert isinstance(result, ev.MessageRejected) and result.code == E.BAD_SIGNATURE.value
        honest = member.cp.book.install_key(message_from_dict(key))
        assert isinstance(honest, ev.ChatKeyed) and set(honest.members) == set(key["members"])
    finally:
        member.close()
        alice.client.close()


@pytest.mark.parametrize("how", ["bitflip", "truncated", "random", "empty"])
def test_e45_malformed_oaep_wraps_give_one_error(server, key_pool, how):
    alice, member, key = _captured_chat_key(server, key_pool)
    try:
        wrapped = bytearray(b64d(key["wrapped_key"]))
        if how == "bitflip":
            wrapped[10] ^= 1
        elif how == "truncated":
            wrapped = wrapped[:-1]
        elif how == "random":
            import os
            wrapped = bytearray(os.urandom(len(wrapped)))
        else:
            wrapped = bytearray()
        forged = dict(key, wrapped_key=b64e(bytes(wrapped)))
        count("E")
        result = member.cp.book.install_key(message_from_dict(forged))
        assert isinstance(result, ev.MessageRejected) and result.code == E.KEY_UNWRAP_FAILED.value
        assert key["chat_id"] not in member.cp.book.chats  # the key was never used
    finally:
        member.close()
        alice.client.close()


def test_e45_wrap_matching_signed_digest_but_bad_padding(server, key_pool):
    """A malicious server can sign a digest of a bad wrap: the unwrap itself must fail with the same code."""
    from securechat.crypto.signatures import sign
    from securechat.protocol.constructions import chat_key_signed_bytes, wrap_tree
    import os
    alice, member, key = _captured_chat_key(server, key_pool)
    try:
        msg = message_from_dict(key)
        bad_wrap = os.urandom(len(msg.wrapped_key))
        mine = msg.members.index(member.cp.username)
        wraps = tuple(bad_wrap if i == mine else os.urandom(len(bad_wrap)) for i in range(len(msg.members)))
        root, paths = wrap_tree(msg.members, wraps)
        ca = server.protocol.server_key
        signature = sign(ca.scheme, ca.private_key, chat_key_signed_bytes(
            chat_id=msg.chat_id, epoch=msg.epoch, mode=msg.mode, suite=msg.suite, reason=msg.reason,
            actor=msg.actor, members=msg.members, wrap_root=root))
        import dataclasses
        forged = dataclasses.replace(msg, wrap_root=root, wrap_path=paths[mine], wrapped_key=bad_wrap,
                                     signature=signature)
        count("E")
        result = member.cp.book.install_key(forged)
        assert isinstance(result, ev.MessageRejected) and result.code == E.KEY_UNWRAP_FAILED.value
    finally:
        member.close()
        alice.client.close()


def test_e50_concurrent_invite_leave_converge(server, key_pool):
    people = [Traced(server, key_pool[i % 3]) for i in range(5)]
    try:
        a, b, c, d, e = people
        chat = a.client.open_chat([b.name, c.name])
        for p in (b, c):
            p.client.wait_for_key(chat.chat_id, 1)
        errors = []

        def run(fn):
            try:
                fn()
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(f,)) for f in (
            lambda: a.client.invite(chat.chat_id, d.name),
            lambda: c.client.leave(chat.chat_id),
            lambda: b.client.invite(chat.chat_id, e.name),
        )]
        count("E", 3)
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert not errors
        final = server.protocol.chats.get(chat.chat_id)
        # PROTOCOL.md 7.11: an invite returns when the invitation is recorded; the join follows the answer
        assert wait_until(lambda: final.epoch == 4, 10)
        assert set(final.members) == {a.name, b.name, d.name, e.name}
        members = [a, b, d, e]
        for p in members:
            p.client.wait_for_key(chat.chat_id, 4)
        assert len({p.book().chats[chat.chat_id].key for p in members}) == 1
        epochs = [msg.epoch for msg in a.received("chat_key") if msg.chat_id == chat.chat_id]
        assert epochs == sorted(set(epochs))  # strictly increasing, one change per epoch
        a.client.send(chat.chat_id, "converged")
        for p in (b, d, e):
            p.wait_text("converged")
    finally:
        for p in people:
            p.client.close()
