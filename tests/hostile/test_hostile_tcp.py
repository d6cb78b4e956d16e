"""Hostile server over real sockets: the same scripted server behind 127.0.0.1 port 0, driving a real TcpClient.

What the sans-I/O cases cannot show: that the reader thread survives forgeries, ends cleanly (and wakes every
waiting caller) on a fatal frame, an oversized prefix or a half-closed stream, and that a server which never
answers costs the caller a bounded wait, not a hang.
"""

from __future__ import annotations

import dataclasses
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from securechat.errors import SecureChatError
from securechat.net.tcp_client import ConnectionClosedError, TcpClient
from securechat.protocol import events as ev
from securechat.protocol import messages as m
from securechat.protocol.codec import MAX_FRAME_BYTES, FrameDecoder, decode_message, record_data, split_frames
from securechat.protocol.identity import UserKeys
from securechat.store import ServerKey

from .world import Conn, HostileServer, as_relayed

pytestmark = pytest.mark.tcp  # a hostile server over real sockets (tests/guard.py)

IO_TIMEOUT = 5.0


class SocketConn(Conn):
    """The server's side of one TCP connection: what the script 'feeds' is written to the socket."""

    sock: socket.socket

    def feed(self, data: bytes) -> list[ev.Event]:
        self.world.frames_sent += 1
        if data:
            self.sock.sendall(data)
        return []


class LoopbackHostile:
    """Accepts ONE connection on 127.0.0.1:0 and answers it from a thread with HostileServer's honest replies."""

    def __init__(self, world: HostileServer) -> None:
        self.world = world
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(IO_TIMEOUT)
        self.address = self.listener.getsockname()
        self.conn: SocketConn | None = None
        self.lock = threading.Lock()  # the script and the thread both use world
        self.stop = threading.Event()
        self.answer = True  # False: read but never answer (a server that stalls)
        self.thread = threading.Thread(target=self._serve, name="hostile-loopback", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        sock.settimeout(0.1)
        conn = SocketConn(label="victim", client=None, world=self.world)  # type: ignore[arg-type]
        conn.sock = sock
        decoder = FrameDecoder(max_frame_bytes=MAX_FRAME_BYTES)
        self.conn = conn
        while not self.stop.is_set():
            try:
                data = sock.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            decoder.feed(data)
            while (body := decoder.next_frame()) is not None:
                with self.lock:
                    if conn.records is None:
                        messages = [decode_message(body)]
                    else:
                        sealed, _ = record_data(body)
                        messages = [decode_message(i) for i in split_frames(conn.records.open(sealed))]
                    for msg in messages:
                        conn.received.append(msg)
                        if self.answer or isinstance(msg, m.ClientHello):
                            self.world._answer(conn, msg)  # noqa: SLF001 - the harness is one unit
                            self.world.pump()

    def send(self, data: bytes) -> None:
        assert self.conn is not None
        self.conn.sock.sendall(data)

    def push(self, *messages: m.Message) -> None:
        with self.lock:
            assert self.conn is not None
            self.conn.push(*messages)

    def close(self) -> None:
        self.stop.set()
        if self.conn is not None:
            try:
                self.conn.sock.close()
            except OSError:
                pass
        self.listener.close()
        self.thread.join(IO_TIMEOUT)


@pytest.fixture
def loopback(world: HostileServer, people: dict[str, UserKeys]) -> Iterator[LoopbackHostile]:
    world.now = time.time()  # TcpClient reads the real clock: certificates are issued around it
    for name in ("alice", "bob", "carol"):
        world.enroll(name, people[name])
    server = LoopbackHostile(world)
    yield server
    server.close()
    assert not server.thread.is_alive()


@pytest.fixture
def victim(loopback: LoopbackHostile, world: HostileServer, people: dict[str, UserKeys]) -> Iterator[TcpClient]:
    client = TcpClient(*loopback.address, server_key=world.pinned, timeout=IO_TIMEOUT)
    try:
        client.login("alice", "pw", people["alice"])
        yield client
    finally:
        client.close()
        assert not client._reader.is_alive()  # noqa: SLF001 - the reader thread is always joined


def next_event(client: TcpClient, kind: type, timeout: float = IO_TIMEOUT) -> ev.Event:
    return client.wait_for(kind, timeout=timeout)


def test_forged_message_over_tcp_is_rejected_and_the_reader_lives(loopback: LoopbackHostile, victim: TcpClient,
                                                                   world: HostileServer, people: dict) -> None:
    bob = world.login("bob", people["bob"])
    with loopback.lock:
        rid = bob.client.open_chat(["alice"])
        world.pump()
    chat_id = [e for e in bob.events if isinstance(e, ev.ChatOpened) and e.rid == rid][0].chat_id
    victim.wait_for_key(chat_id, 1)
    with loopback.lock:
        world.hooks["chat_send"] = lambda c, msg: []
        bob.client.send_chat(chat_id, "genuine")
        world.pump()
    send = [s for s in bob.received if isinstance(s, m.ChatSend)][-1]
    genuine = as_relayed(send, "bob")
    loopback.push(dataclasses.replace(genuine, ciphertext=send.ciphertext[:-1] + b"\x00"))
    rejected = next_event(victim, ev.MessageRejected)
    assert (rejected.sender, rejected.code) == ("bob", "bad_signature")  # type: ignore[attr-defined]
    loopback.push(genuine)
    got = next_event(victim, ev.ChatReceived)
    assert (got.sender, got.text) == ("bob", "genuine")  # type: ignore[attr-defined]
    loopback.push(genuine)  # replayed
    assert next_event(victim, ev.MessageRejected).code == "replay"  # type: ignore[attr-defined]
    assert "alice" in victim.who()  # the connection still serves requests


@pytest.mark.parametrize(("bad", "code"), [
    ("garbage-inner", "bad_json"), ("oversized-prefix", "frame_too_large"), ("cut-mid-frame", "connection_lost"),
    ("fatal-error", "bad_record"), ("replayed-record", "bad_record"),
])
def test_fatal_frame_over_tcp_ends_the_reader_and_wakes_callers(loopback: LoopbackHostile, victim: TcpClient,
                                                                bad: str, code: str) -> None:
    """One ConnectionClosed with the reason; the reader thread ends; a caller waiting on a reply is woken with
    ConnectionClosedError at once (not after its timeout); later commands raise a SecureChatError, not a crash."""
    loopback.answer = False  # the who below stays unanswered: the caller waits until the close wakes it
    failure: list[BaseException] = []

    def waiting_caller() -> None:
        try:
            victim.who()
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            failure.append(exc)

    caller = threading.Thread(target=waiting_caller)
    caller.start()
    time.sleep(0.1)
    with loopback.lock:
        conn = loopback.conn
        assert conn is not None
        if bad == "garbage-inner":
            conn.feed(conn.inner(b"\x00\x01garbage"))
        elif bad == "oversized-prefix":
            conn.feed(struct.pack(">I", MAX_FRAME_BYTES + 1))
        elif bad == "cut-mid-frame":
            record = conn.message(m.Presence(username="bob", online=True))
            conn.feed(record[:7])
            conn.sock.shutdown(socket.SHUT_WR)
        elif bad == "fatal-error":
            conn.push(m.Error(code="bad_record", message="closing"))
        else:
            record = conn.message(m.Presence(username="bob", online=True))
            conn.feed(record)
            conn.feed(record)
    closed = next_event(victim, ev.ConnectionClosed)
    assert closed.code == code, closed  # type: ignore[attr-defined]
    caller.join(IO_TIMEOUT)
    assert not caller.is_alive() and len(failure) == 1 and isinstance(failure[0], ConnectionClosedError), failure
    victim._reader.join(IO_TIMEOUT)  # noqa: SLF001
    assert not victim._reader.is_alive()  # noqa: SLF001
    with pytest.raises(SecureChatError):
        victim.who()


def test_server_that_never_answers_costs_a_bounded_wait(loopback: LoopbackHostile, world: HostileServer,
                                                        people: dict) -> None:
    client = TcpClient(*loopback.address, server_key=world.pinned, timeout=0.5)
    try:
        loopback.answer = False
        with pytest.raises(TimeoutError):
            client.login("alice", "pw", people["alice"])
        assert client.closed is None  # still connected: the application decides what to do
    finally:
        client.close()


def test_byte_at_a_time_server_is_read_correctly(loopback: LoopbackHostile, victim: TcpClient) -> None:
    with loopback.lock:
        conn = loopback.conn
        assert conn is not None
        record = conn.message(m.Presence(username="bob", online=True))
    for i in range(len(record)):
        loopback.send(record[i:i + 1])
    changed = next_event(victim, ev.PresenceChanged)
    assert changed == ev.PresenceChanged(username="bob", online=True)


def test_wrong_server_key_is_refused_before_any_credential(world: HostileServer, ca: ServerKey) -> None:
    """A TcpClient pinned to another key: the handshake fails and the login never leaves the machine."""
    from securechat.store import new_server_key
    loop = LoopbackHostile(world)
    try:
        other = new_server_key()
        with pytest.raises(ConnectionClosedError):
            TcpClient(*loop.address, server_key=(other.public_der, other.scheme.value), timeout=IO_TIMEOUT)
        time.sleep(0.1)
        assert loop.conn is not None and not any(isinstance(x, m.Login) for x in loop.conn.received)
    finally:
        loop.close()
