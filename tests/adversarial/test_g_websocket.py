"""SECURITY.md W1-W10: bad input on the WebSocket port (docs/PROTOCOL.md section 15), from a raw socket.

Each script sends what a hostile or broken WebSocket peer would (unmasked frames, text, oversize and fragmented
messages, a stalled handshake, header floods, plain HTTP), checks the exact answer (an HTTP status before the
upgrade, a close frame with the code of PROTOCOL.md 15.6 after it) and the close, and then that the server still
serves everyone else: an honest WebSocket user and an honest TCP user register, log in and list each other.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from benchmarks.ws_wire import client_frame as ws_frame
from benchmarks.ws_wire import opening_request as request
from securechat.crypto.kdf import FAST_SCRYPT
from securechat.net import ws, ws_handshake
from securechat.net.tcp_client import TcpClient
from securechat.net.tcp_server import TcpServer
from securechat.protocol.client import ClientProtocol
from securechat.protocol.codec import frame
from securechat.protocol.identity import UserKeys
from securechat.protocol.limits import ServerConfig
from securechat.store import MemoryRegistry, new_server_key

from .conftest import IO_TIMEOUT, PASSWORD, count, fresh_name, pinned, wait_until

pytestmark = pytest.mark.tcp  # every script talks to a live server (tests/guard.py)

ALLOWED_ORIGIN = "https://chat.example.org"


@pytest.fixture(scope="module")
def wserver() -> Iterator[TcpServer]:
    srv = TcpServer(server_key=new_server_key(), registry=MemoryRegistry(), config=ServerConfig(scrypt=FAST_SCRYPT),
                    ws_port=0, ws_origins=frozenset({ALLOWED_ORIGIN})).start()
    try:
        yield srv
    finally:
        srv.stop()


def ws_sanity(srv: TcpServer, keys: UserKeys) -> None:
    """An honest WebSocket user and an honest TCP user get in and see each other: the server still serves."""
    assert srv.ws_address is not None
    names = fresh_name("wsok"), fresh_name("tcpok")
    urls = f"ws://127.0.0.1:{srv.ws_address[1]}/securechat", f"tcp://127.0.0.1:{srv.address[1]}"
    made: list[TcpClient] = []
    try:
        for name, url in zip(names, urls):
            client = TcpClient(url=url, server_key=pinned(srv), timeout=IO_TIMEOUT)
            made.append(client)
            client.register(name, PASSWORD, keys)
            client.login(name, PASSWORD, keys)
        assert set(names) <= set(made[0].who())
    finally:
        for client in made:
            client.close()


# --- a raw WebSocket attacker (request() and ws_frame() come from benchmarks/ws_wire.py, shared with the fuzzer) --


class WsConn:
    def __init__(self, srv: TcpServer) -> None:
        assert srv.ws_address is not None
        self.sock = socket.create_connection(srv.ws_address, timeout=IO_TIMEOUT)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_until_closed(self, timeout: float = IO_TIMEOUT) -> bytes:
        """Everything the server sends until it closes the TCP connection (fails if it does not in time)."""
        deadline = time.monotonic() + timeout
        data = self.buffer
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk
        raise AssertionError(f"the server did not close the connection; got {data[:200]!r}")

    def http_status(self, timeout: float = IO_TIMEOUT) -> tuple[int, bytes]:
        data = self.read_until_closed(timeout)
        assert data.startswith(b"HTTP/1.1 "), data[:100]
        return int(data[9:12]), data

    def upgrade(self, **kw: object) -> None:
        self.send(request(**kw))  # type: ignore[arg-type]
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            assert chunk, "closed during the handshake"
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        assert f"sec-websocket-protocol: {ws.SUBPROTOCOL}".encode() in head.lower()

    def close_code(self, timeout: float = IO_TIMEOUT) -> int:
        """Read server frames until its close frame; return the code, and check the TCP close follows."""
        frames = parse_frames(self.read_until_closed(timeout))
        closes = [payload for opcode, payload in frames if opcode == 0x8]
        assert closes, frames
        return int.from_bytes(closes[0][:2], "big")

    def close(self) -> None:
        self.sock.close()


def parse_frames(data: bytes) -> list[tuple[int, bytes]]:
    frames = []
    while len(data) >= 2:
        opcode, n = data[0] & 0x0F, data[1] & 0x7F
        offset = 2
        if n == 126:
            n, offset = int.from_bytes(data[2:4], "big"), 4
        elif n == 127:
            n, offset = int.from_bytes(data[2:10], "big"), 10
        assert not data[1] & 0x80, "server frames are never masked"
        frames.append((opcode, data[offset:offset + n]))
        data = data[offset + n:]
    return frames


@pytest.fixture
def conn(wserver: TcpServer) -> Iterator[WsConn]:
    c = WsConn(wserver)
    yield c
    c.close()


# --- before the upgrade: HTTP answers ----------------------------------------------------------------------------

@pytest.mark.parametrize("raw, status", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 426),                              # a browser or curl
    (b"POST /securechat HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 426),
    (b"hello\r\n\r\n", 400),                                                  # not HTTP at all
    (b"GET /securechat HTTP/1.0\r\nHost: x\r\n\r\n", 400),
    (request("/other"), 404),
    (request(origin="https://evil.example"), 403),                            # cross-site WebSocket hijacking
    (request(protocol=None), 400),                                            # no securechat.v1 offered
    (request(protocol="chat, superchat"), 400),
    (request().replace(b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", b""), 400),  # wsproto's own check
    (request().replace(b"Version: 13", b"Version: 8"), 426),
    (b"GET /securechat HTTP/1.1\r\nHost: x\r\n\xff\xfe: y\r\n\r\n", 400),
])
def test_w1_plain_http_and_bad_upgrades_get_a_short_answer(wserver, conn, keys, raw, status) -> None:
    conn.send(raw)
    count("W")
    got, data = conn.http_status()
    assert got == status, data
    assert len(data) < 512 and b"\r\n\r\n" in data  # short, and never an echo of the request
    ws_sanity(wserver, keys)


def test_w1_an_allowed_origin_is_upgraded(wserver, conn) -> None:
    conn.upgrade(origin=ALLOWED_ORIGIN)
    conn.send(ws_frame(0x8, (1000).to_bytes(2, "big")))
    assert conn.close_code() == 1000


def test_w2_header_floods_are_answered_431(wserver, keys) -> None:
    big = WsConn(wserver)
    many = WsConn(wserver)
    try:
        big.send(request(extra="X-Pad: " + "a" * 20_000 + "\r\n"))
        many.send(b"GET /securechat HTTP/1.1\r\n" + b"X: y\r\n" * (ws.MAX_HEADER_LINES + 10))  # never ends
        count("W", 2)
        assert big.http_status()[0] == 431
        assert many.http_status()[0] == 431
    finally:
        big.close()
        many.close()
    ws_sanity(wserver, keys)


def test_w3_stalled_opening_handshakes_are_closed_at_the_deadline(wserver, keys, monkeypatch) -> None:
    monkeypatch.setattr(ws_handshake, "HANDSHAKE_DEADLINE_SECONDS", 1.0)
    baseline = wserver.connection_count
    stalled = [WsConn(wserver) for _ in range(20)]
    try:
        for c in stalled[:10]:
            c.send(b"GET /securechat HTTP/1.1\r\nHost: x\r\n")  # half a request, then nothing
        count("W", 20)  # and ten that send nothing at all
        ws_sanity(wserver, keys)  # honest users get in while they hang
        for c in stalled:
            assert c.http_status(timeout=6)[0] == 408
    finally:
        for c in stalled:
            c.close()
    assert wait_until(lambda: wserver.connection_count <= baseline)


# --- after the upgrade: close frames -----------------------------------------------------------------------------

def test_w4_unmasked_client_frame_is_a_protocol_error(wserver, conn, keys) -> None:
    conn.upgrade()
    conn.send(ws_frame(0x2, frame(b"{}"), mask=False))
    count("W")
    assert conn.close_code() == ws.CloseCode.PROTOCOL_ERROR
    ws_sanity(wserver, keys)


@pytest.mark.parametrize("payload", [b"hello", "\u00e9".encode(), b"\xff\xfe"])  # valid and invalid UTF-8
def test_w5_text_messages_are_refused(wserver, conn, keys, payload) -> None:
    conn.upgrade()
    conn.send(ws_frame(0x1, payload))
    count("W")
    assert conn.close_code() in (ws.CloseCode.UNSUPPORTED_DATA, 1007)  # 1007: wsproto refuses bad UTF-8 first
    ws_sanity(wserver, keys)


def test_w6_oversized_messages_single_and_fragmented_are_too_big(wserver, keys) -> None:
    single, fragmented = WsConn(wserver), WsConn(wserver)
    try:
        single.upgrade()
        single.send(ws_frame(0x2, b"\0" * (ws.MAX_MESSAGE_BYTES + 1)))
        fragmented.upgrade()
        piece = b"\0" * (256 * 1024)
        fragmented.send(ws_frame(0x2, piece, fin=False))
        for _ in range(ws.MAX_MESSAGE_BYTES // len(piece)):
            fragmented.send(ws_frame(0x0, piece, fin=False))
        count("W", 2)
        assert single.close_code() == ws.CloseCode.MESSAGE_TOO_BIG
        assert fragmented.close_code() == ws.CloseCode.MESSAGE_TOO_BIG
    finally:
        single.close()
        fragmented.close()
    ws_sanity(wserver, keys)


def test_w7_fragmented_message_is_reassembled_but_broken_fragmentation_is_an_error(wserver, keys) -> None:
    good, bad = WsConn(wserver), WsConn(wserver)
    try:
        good.upgrade()  # a proxy may refragment a message (RFC 6455 5.4): accepted
        client = ClientProtocol(server_key=pinned(wserver))
        client.connect()
        hello = client.data_to_send()
        good.send(ws_frame(0x2, hello[:3], fin=False) + ws_frame(0x9, b"ping between fragments")
                  + ws_frame(0x0, hello[3:10], fin=False) + ws_frame(0x0, hello[10:]))
        good.sock.settimeout(IO_TIMEOUT)
        data = b""
        while not any(op == 0x2 for op, _ in parse_frames(data)):
            chunk = good.sock.recv(65536)
            assert chunk
            data += chunk
        kinds = [op for op, _ in parse_frames(data)]
        assert kinds[0] == 0xA and 0x2 in kinds  # the pong, then the server_hello as one binary message
        bad.upgrade()
        bad.send(ws_frame(0x0, b"continuation with nothing to continue"))
        count("W", 2)
        assert bad.close_code() == ws.CloseCode.PROTOCOL_ERROR
    finally:
        good.close()
        bad.close()
    ws_sanity(wserver, keys)


@pytest.mark.parametrize("what, data", [
    ("two frames in one message", ws_frame(0x2, frame(b"a") + frame(b"b"))),
    ("a length prefix that does not match", ws_frame(0x2, frame(b"abc")[:-1])),
    ("an empty message", ws_frame(0x2, b"")),
    ("a reserved bit without an extension", ws_frame(0x2, frame(b"{}"), rsv=4)),
    ("a control frame over 125 bytes", ws_frame(0x9, b"p" * 126)),
    ("an unknown opcode", ws_frame(0x3, b"")),
])
def test_w8_malformed_messages_and_frames_are_protocol_errors(wserver, conn, keys, what, data) -> None:
    conn.upgrade()
    conn.send(data)
    count("W")
    assert conn.close_code() == ws.CloseCode.PROTOCOL_ERROR, what
    ws_sanity(wserver, keys)


def test_w9_a_securechat_error_closes_with_the_mapped_code(wserver, conn, keys) -> None:
    conn.upgrade()
    conn.send(ws_frame(0x2, frame(b"not json")))  # a clear frame that is no client_hello: bad_json, closed
    count("W")
    frames = parse_frames(conn.read_until_closed())
    assert frames[0][0] == 0x2 and b"bad_json" in frames[0][1]  # the securechat error frame comes first
    assert frames[-1][0] == 0x8
    assert int.from_bytes(frames[-1][1][:2], "big") == ws.CloseCode.POLICY_VIOLATION
    assert frames[-1][1][2:] == b"bad_json"  # the close reason is the error code
    ws_sanity(wserver, keys)


def test_w3_too_many_handshakes_under_way_get_503_at_once(wserver, keys, monkeypatch) -> None:
    monkeypatch.setattr(ws_handshake, "MAX_PENDING_HANDSHAKES_PER_ADDRESS", 4)
    assert wait_until(lambda: wserver.connection_count == 0)  # earlier scripts' connections are gone
    stalled = [WsConn(wserver) for _ in range(4)]
    extra = WsConn(wserver)
    try:
        for c in stalled:
            c.send(b"GET /securechat HTTP/1.1\r\n")
        assert wait_until(lambda: wserver.connection_count >= 4)
        count("W", 5)
        assert extra.http_status(timeout=3)[0] == 503  # at once, not at the deadline
    finally:
        for c in (*stalled, extra):
            c.close()
    assert wait_until(lambda: wserver.connection_count == 0)
    ws_sanity(wserver, keys)  # once they are gone, new handshakes are taken again
