"""Nothing lost: K clients, several chats, M messages each, exactly once and in order;
and the AES-GCM nonce audit over a full TCP scenario (docs/THREATS.md 34)."""

from __future__ import annotations

import collections
import threading
import time

import pytest

from securechat.crypto import aead
from securechat.crypto.signatures import SignatureScheme
from securechat.net.tcp_client import TcpClient
from securechat.net.tcp_server import TcpServer
from securechat.protocol import events as ev
from securechat.protocol.identity import generate_user_keys
from tests.live import start_server, wait_until

pytestmark = pytest.mark.tcp  # a live server under load (tests/guard.py)

K, M = 6, 40
CHATS = [(0, 1, 2, 3), (2, 3, 4, 5), (0, 1, 4, 5)]  # every client is in two of the three chats
PASSWORD = "load password"


@pytest.fixture(scope="module")
def lkeys():
    return [generate_user_keys(SignatureScheme.ED25519) for _ in range(2)] + [
        generate_user_keys(SignatureScheme.RSA_PSS_SHA256)]


class Member:
    def __init__(self, server: TcpServer, name: str, keys) -> None:
        self.name = name
        self.received: list[ev.ChatReceived] = []
        self.rejected: list[ev.MessageRejected] = []
        self.lock = threading.Lock()
        key = server.protocol.server_key
        self.client = TcpClient(*server.address, server_key=(key.public_der, key.scheme.value), timeout=15,
                                on_event=self._on_event)
        self.client.register(name, PASSWORD, keys)
        self.client.login(name, PASSWORD, keys)

    def _on_event(self, event: ev.Event) -> None:
        with self.lock:
            if isinstance(event, ev.ChatReceived):
                self.received.append(event)
            elif isinstance(event, ev.MessageRejected):
                self.rejected.append(event)


def _server() -> TcpServer:
    return start_server()


def _wait(predicate, timeout: float) -> bool:
    return wait_until(predicate, timeout)


def test_every_message_delivered_exactly_once_in_sender_order(lkeys):
    server = _server()
    members: list[Member] = []
    try:
        members = [Member(server, f"user{i}", lkeys[i % len(lkeys)]) for i in range(K)]
        chat_ids = []
        for group in CHATS:
            opened = members[group[0]].client.open_chat([members[i].name for i in group[1:]])
            for i in group:
                members[i].client.wait_for_key(opened.chat_id, 1)
            chat_ids.append(opened.chat_id)
        errors: list[BaseException] = []

        def send_all(i: int) -> None:
            try:
                mine = [c for c, group in zip(chat_ids, CHATS) if i in group]
                for n in range(1, M + 1):
                    for chat_id in mine:
                        members[i].client.send(chat_id, f"{members[i].name}|{chat_id}|{n}")
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=send_all, args=(i,)) for i in range(K)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        expected = {i: sum(M * (len(group) - 1) for group in CHATS if i in group) for i in range(K)}
        assert _wait(lambda: all(len(members[i].received) >= expected[i] for i in range(K)), 60)
        time.sleep(0.3)  # anything extra (a duplicate) would arrive now
        for i, member in enumerate(members):
            assert member.rejected == []
            assert len(member.received) == expected[i]
            per_sender: dict[tuple[str, str], list[int]] = collections.defaultdict(list)
            for event in member.received:
                sender, chat_id, n = event.text.split("|")
                assert sender == event.sender and chat_id == event.chat_id
                per_sender[(chat_id, sender)].append(int(n))
                assert event.seq == int(n) and event.gap == 0
            for (chat_id, sender), ns in per_sender.items():
                assert ns == list(range(1, M + 1)), (member.name, sender, chat_id)
            senders = {(c, members[j].name) for c, group in zip(chat_ids, CHATS) if i in group
                       for j in group if j != i}
            assert set(per_sender) == senders
    finally:
        for member in members:
            member.client.close()
        server.stop()


def test_nonce_audit_over_tcp(lkeys):
    seen: list[tuple[bytes, bytes]] = []
    hook = lambda key_hash, nonce: seen.append((key_hash, nonce))  # noqa: E731
    aead.AUDIT_HOOKS.append(hook)
    server = _server()
    members: list[Member] = []
    try:
        members = [Member(server, f"n{i}", lkeys[i % len(lkeys)]) for i in range(4)]
        a, b, c, d = members
        chat = a.client.open_chat([b.name, c.name])
        for epoch_round, action in enumerate([None, "invite", "leave"], start=1):
            if action == "invite":
                a.client.invite(chat.chat_id, d.name)
            elif action == "leave":
                c.client.leave(chat.chat_id)
            a.client.wait_for_key(chat.chat_id, epoch_round)
            b.client.wait_for_key(chat.chat_id, epoch_round)
            for n in range(20):  # seq restarts at 1 in every epoch: the key must change
                a.client.send(chat.chat_id, f"a{epoch_round}.{n}")
                b.client.send(chat.chat_id, f"b{epoch_round}.{n}")
            assert _wait(lambda: sum(1 for e in b.received if e.epoch == epoch_round) == 20, 20)
        # a reconnect: a new channel, the same user
        b.client.logout()
        members[1] = Member.__new__(Member)
        again = Member.__new__(Member)
        again.received, again.rejected, again.lock, again.name = [], [], threading.Lock(), b.name
        key = server.protocol.server_key
        again.client = TcpClient(*server.address, server_key=(key.public_der, key.scheme.value), timeout=15)
        members[1] = again
        again.client.login(b.name, PASSWORD, lkeys[1])
        again.client.who()
    finally:
        for member in members:
            if hasattr(member, "client"):
                member.client.close()
        server.stop()
        aead.AUDIT_HOOKS.remove(hook)
    assert len(seen) > 200
    duplicates = [pair for pair, n in collections.Counter(seen).items() if n > 1]
    assert duplicates == []
    print(f"nonce audit: {len(seen)} AEAD encryptions, {len(set(seen))} distinct (key, nonce) pairs")
