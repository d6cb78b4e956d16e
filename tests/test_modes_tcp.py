"""The chat modes (PROTOCOL.md 7) over real sockets on 127.0.0.1 (port 0): TcpServer and three TcpClients.

Keys come from the session cache of tests.helpers. Every server and client is closed in a finally/fixture.
Note: ``TcpClient.open_chat`` returns once the epoch-1 membership is installed; in contributory chats the key
exists only after the rounds, so these tests wait for ChatKeyed (and retry a send refused locally).
"""

from __future__ import annotations

import time

import pytest

from securechat.errors import LocalProtocolError
from securechat.net.tcp_server import TcpServer
from securechat.protocol import events as ev
from securechat.protocol import messages as m
from tests.helpers import DSA, user_keys
from tests.live import User as LiveUser  # noqa: N814 (this module adds a retrying send)
from tests.live import start_server

pytestmark = pytest.mark.tcp  # a live server and clients (tests/guard.py)

WAIT = 10.0
NAMES = ("alice", "bob", "carol")


@pytest.fixture
def server(make_server):  # type: ignore[no-untyped-def]
    return make_server()


class User(LiveUser):
    """A live user (tests/live.py) that keeps the events ``expect`` skipped, and retries a send refused locally."""

    def __init__(self, server: TcpServer, name: str) -> None:
        super().__init__(server, name, user_keys(name, DSA if name == "bob" else None), keep_skipped=True)

    def send(self, chat_id: str, text: str) -> None:
        """Send, retrying while the client refuses locally (certificates or key confirmation not in yet)."""
        deadline = time.monotonic() + WAIT
        while True:
            try:
                self.client.send(chat_id, text)
                return
            except LocalProtocolError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)


@pytest.fixture
def users(server):  # type: ignore[no-untyped-def]
    made = [User(server, name).join() for name in NAMES]
    try:
        yield made
    finally:
        for user in made:
            user.client.close()


def open_and_key(users, mode: str) -> str:  # type: ignore[no-untyped-def]
    alice = users[0]
    opened = alice.client.open_chat([u.name for u in users[1:]], mode=mode)
    for user in users:
        keyed = user.expect(ev.ChatKeyed, lambda e: e.chat_id == opened.chat_id and e.epoch == 1)
        assert keyed.mode == mode
    return opened.chat_id


@pytest.mark.parametrize("mode", ["contributory", "contributory-xor", "hybrid"])
def test_three_tcp_clients_chat_in_mode(users, mode: str) -> None:  # type: ignore[no-untyped-def]
    alice, bob, carol = users
    cid = open_and_key(users, mode)
    if mode != "hybrid":
        keys = {u.name: u.client.protocol.book.chats[cid].key for u in users}
        assert None not in keys.values() and len(set(keys.values())) == 1
    alice.send(cid, f"hello in {mode}")
    for user in (bob, carol):
        got = user.expect(ev.ChatReceived, lambda e: e.chat_id == cid and e.sender == "alice")
        assert got.text == f"hello in {mode}" and got.signature_scheme == alice.keys.scheme.value
    bob.send(cid, "dsa bob answers")
    for user in (alice, carol):
        got = user.expect(ev.ChatReceived, lambda e: e.chat_id == cid and e.sender == "bob")
        assert got.text == "dsa bob answers" and got.signature_scheme == DSA.value
    for user in users:
        assert not [e for e in user.seen if isinstance(e, (ev.ChatAborted, ev.MessageRejected))]


def test_stale_epoch_key_share_over_tcp(users) -> None:  # type: ignore[no-untyped-def]
    alice, bob, carol = users
    cid = open_and_key(users, "contributory")
    carol.client.leave(cid)
    for user in (alice, bob):
        user.expect(ev.ChatKeyed, lambda e: e.chat_id == cid and e.epoch == 2)
    # alice sends, raw inside her channel, an envelope of epoch 1 (now stale)
    stale = m.KeyShare(chat_id=cid, epoch=1, recipient="bob", wrapped_share=b"\x02" * 256, nonce=b"\x03" * 16,
                       timestamp=int(time.time()), signature=b"\x01" * 64)

    def raw(protocol) -> int:  # type: ignore[no-untyped-def]
        protocol.link.send(stale)
        return 0

    alice.client._command(raw)
    failed = alice.expect(ev.RequestFailed, lambda e: e.ref == "key_share")
    assert failed.code == "stale_epoch"
    # the server relayed nothing, and the chat still works at epoch 2
    alice.send(cid, "still fine")
    got = bob.expect(ev.ChatReceived, lambda e: e.chat_id == cid)
    assert got.text == "still fine" and got.epoch == 2
    assert not [e for e in bob.seen if isinstance(e, (ev.ChatAborted, ev.MessageRejected))]


@pytest.mark.parametrize("mode", ["server-key", "contributory", "hybrid"])
def test_cbc_hmac_suite_over_tcp(users, mode: str) -> None:  # type: ignore[no-untyped-def]
    """AES-256-CBC + HMAC-SHA256 (encrypt-then-MAC) is selectable per chat in every mode."""
    alice, bob, carol = users
    opened = alice.client.open_chat(["bob", "carol"], mode=mode, suite="aes-256-cbc-hmac-sha256")
    for user in users:
        keyed = user.expect(ev.ChatKeyed, lambda e: e.chat_id == opened.chat_id and e.epoch == 1)
        assert keyed.suite == "aes-256-cbc-hmac-sha256"
    alice.send(opened.chat_id, f"cbc in {mode}")
    for user in (bob, carol):
        got = user.expect(ev.ChatReceived, lambda e: e.chat_id == opened.chat_id)
        assert got.text == f"cbc in {mode}"


def test_lobby_over_tcp() -> None:
    """every online user is in the lobby; a message reaches everyone but the sender."""
    from securechat.errors import ErrorCode
    from securechat.net.tcp_client import RequestError

    srv = start_server(lobby=True)
    made: list[User] = []
    try:
        for name in NAMES:
            made.append(User(srv, name).join())
        alice, bob, carol = made
        for user in made:
            user.expect(ev.ChatKeyed, lambda e: e.chat_id == m.LOBBY_ID and e.members == NAMES)
        alice.send(m.LOBBY_ID, "hello lobby")
        for user in (bob, carol):
            got = user.expect(ev.ChatReceived, lambda e: e.chat_id == m.LOBBY_ID)
            assert (got.sender, got.text) == ("alice", "hello lobby")
        with pytest.raises(RequestError) as refused:
            bob.client.leave(m.LOBBY_ID)
        assert refused.value.code is ErrorCode.UNEXPECTED_MESSAGE
        carol.client.logout()
        keyed = alice.expect(ev.ChatKeyed, lambda e: e.chat_id == m.LOBBY_ID and "carol" in e.left)
        assert keyed.members == ("alice", "bob")
        assert not [e for e in alice.seen + bob.seen if isinstance(e, ev.ChatReceived) and e.sender == "alice"]
    finally:
        for user in made:
            user.client.close()
        srv.stop()
