"""The client library under a long, chatty session and a skewed clock, over real sockets on 127.0.0.1 port 0.

Memory: TcpClient keeps no event that nobody reads (docs/SECURITY.md, "the client"): with a callback, its poll
queue holds at most EVENT_QUEUE_LIMIT_WITH_CALLBACK events. Clock skew (PROTOCOL.md 6.3): a client whose clock is
2 minutes behind or ahead of the server's registers, logs in and agrees a contributory key.
"""

from __future__ import annotations

import ast
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from securechat.crypto.kdf import FAST_SCRYPT
from securechat.net.tcp_client import EVENT_QUEUE_LIMIT_WITH_CALLBACK, TcpClient
from securechat.net.tcp_server import TcpServer
from securechat.protocol import events as ev
from securechat.protocol.limits import ServerConfig
from securechat.store import MemoryRegistry, new_server_key
from tests.helpers import password_of, user_keys

WAIT = 20.0
PACKAGE = Path(__file__).resolve().parent.parent / "securechat"


@pytest.fixture
def server() -> Iterator[TcpServer]:
    srv = TcpServer(server_key=new_server_key(), registry=MemoryRegistry(),
                    config=ServerConfig(scrypt=FAST_SCRYPT, lobby=False)).start()
    try:
        yield srv
    finally:
        srv.stop()


def _user(srv: TcpServer, name: str, **kw: object) -> TcpClient:
    key = srv.protocol.server_key
    client = TcpClient(*srv.address, server_key=(key.public_der, key.scheme.value), timeout=WAIT, **kw)  # type: ignore[arg-type]
    client.register(name, password_of(name), user_keys(name))
    client.login(name, password_of(name), user_keys(name))
    return client


def _until(predicate, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.tcp
def test_a_client_with_a_callback_keeps_a_bounded_number_of_unread_events(server: TcpServer) -> None:
    seen: list[ev.ChatReceived] = []
    alice = _user(server, "alice", on_event=lambda e: seen.append(e) if isinstance(e, ev.ChatReceived) else None)
    bob = _user(server, "bob")
    try:
        chat = bob.open_chat(["alice"]).chat_id
        _until(lambda: alice.keyed_epoch(chat) == 1, "alice's key")
        for i in range(300):
            bob.send(chat, f"message {i} " + "x" * 200)
        _until(lambda: len(seen) == 300, "300 messages at alice")
        assert [e.text.split()[1] for e in seen] == [str(i) for i in range(300)]  # the callback saw every one
        assert alice.events.qsize() <= EVENT_QUEUE_LIMIT_WITH_CALLBACK
        assert alice.dropped_events >= 300 - EVENT_QUEUE_LIMIT_WITH_CALLBACK
        assert bob.events.qsize() <= 1024  # bob polls nothing either; his queue is bounded too
    finally:
        alice.close()
        bob.close()


def test_the_terminal_client_reads_protocol_state_only_through_locked_accessors() -> None:
    """Reading ClientProtocol's chats or invitations from the input thread while the reader thread mutates them is
    a race; the terminal client must use TcpClient's accessors (chat_list, open_invitations, username,
    identity_fingerprint...), never ``<anything>.protocol``."""
    paths = [PACKAGE / "client.py", *sorted((PACKAGE / "terminal").glob("*.py"))]
    assert len(paths) > 5  # the terminal package is there: this test looks at real files
    for path in paths:
        tree = ast.parse(path.read_text())
        reached = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr == "protocol"]
        assert reached == [], f"{path.name} reads .protocol at lines {reached}"


@pytest.mark.tcp
@pytest.mark.parametrize("alice_skew, bob_skew", [(-120.0, 120.0), (120.0, -120.0)])
def test_clients_two_minutes_off_the_server_clock_register_and_agree_a_key(
        server: TcpServer, alice_skew: float, bob_skew: float) -> None:
    inbox: list[ev.ChatReceived] = []
    alice = _user(server, "alice", clock=lambda: time.time() + alice_skew)
    bob = _user(server, "bob", clock=lambda: time.time() + bob_skew,
                on_event=lambda e: inbox.append(e) if isinstance(e, ev.ChatReceived) else None)
    try:
        chat = alice.open_chat(["bob"], mode="contributory").chat_id
        bob.wait_for_key(chat, 1)
        alice.send(chat, "our clocks disagree by four minutes")
        _until(lambda: len(inbox) == 1, "bob's message")
        assert inbox[0].text == "our clocks disagree by four minutes" and inbox[0].sender == "alice"
    finally:
        alice.close()
        bob.close()
