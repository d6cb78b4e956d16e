"""docs/THREATS.md D27-D36: the secure channel, attacked on the wire of a live server."""

from __future__ import annotations

import json
import socket
import struct
import time

import pytest

from securechat.crypto.encoding import b64d, b64e
from securechat.errors import ErrorCode, LocalProtocolError, SecureChatError
from securechat.net.tcp_client import ConnectionClosedError, TcpClient
from securechat.protocol import events as ev
from securechat.protocol import messages as m
from securechat.protocol.channel import MAX_RECORDS_PER_DIRECTION
from securechat.protocol.codec import encode_frame, frame
from securechat.store import new_server_key

from .conftest import RawConn, count, fresh_name, online_client, pinned, sanity, wait_until

pytestmark = [pytest.mark.tcp, pytest.mark.usefixtures("sane_before_and_after")]  # a live server

E = ErrorCode

# Wycheproof x25519_test.json LowOrderPublic / ZeroSharedSecret points (and non-canonical twins).
LOW_ORDER = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
]


def read_clear_frame(sock: socket.socket) -> bytes:
    head = b""
    while len(head) < 4:
        head += sock.recv(4 - len(head))
    (length,) = struct.unpack(">I", head)
    body = b""
    while len(body) < length:
        body += sock.recv(length - len(body))
    return head + body


def closed_event(conn: RawConn) -> ev.ConnectionClosed:
    closed = [e for e in iter(conn.cp.next_event, None) if isinstance(e, ev.ConnectionClosed)]
    assert closed, "client did not abort"
    return closed[0]


def test_d27_mitm_substituted_key_share_aborts_before_credentials(server):
    conn = RawConn(server, handshake=False)
    try:
        conn.cp.connect()
        conn.send_raw(conn.cp.data_to_send())
        hello = json.loads(read_clear_frame(conn.sock)[4:])
        mitm_key = bytearray(b64d(hello["key_share"]))
        mitm_key[0] ^= 0x40  # the attacker substitutes its own X25519 share
        hello["key_share"] = b64e(bytes(mitm_key))
        count("D")
        conn.cp.receive_data(frame(json.dumps(hello).encode()), time.time())
        assert closed_event(conn).code == E.HANDSHAKE_FAILED.value
        assert conn.cp.data_to_send() == b""  # nothing further, no credential
        with pytest.raises(LocalProtocolError):
            conn.cp.login("alice", "pw", None)  # type: ignore[arg-type]
    finally:
        conn.close()


def test_d27_client_pinned_to_another_key_never_sends_credentials(server, keys):
    other = new_server_key()
    count("D")
    with pytest.raises(ConnectionClosedError) as info:
        TcpClient(*server.address, server_key=(other.public_der, other.scheme.value), timeout=5)
    assert E.HANDSHAKE_FAILED.value in str(info.value)


def test_d28_replayed_old_server_hello_is_refused(server):
    first = RawConn(server, handshake=False)
    first.cp.connect()
    first.send_raw(first.cp.data_to_send())
    old_hello = read_clear_frame(first.sock)
    first.close()
    second = RawConn(server, handshake=False)
    try:
        second.cp.connect()
        count("D")
        second.cp.receive_data(old_hello, time.time())  # fresh client random: the signature no longer fits
        assert closed_event(second).code == E.HANDSHAKE_FAILED.value
    finally:
        second.close()


@pytest.mark.parametrize("point", LOW_ORDER)
def test_d29_low_order_key_share(server, raw, point):
    conn = raw(handshake=False)
    count("D")
    conn.send_raw(frame(json.dumps({"type": "client_hello", "version": 1, "random": b64e(bytes(32)),
                                    "key_share": b64e(bytes.fromhex(point)), "key_exchange": "x25519"}).encode()))
    conn.expect_error(E.HANDSHAKE_FAILED, closed=True)


def online_raw(raw, keys):
    conn = raw()
    conn.register_and_login(fresh_name("d"), keys)
    return conn


def who_record(conn: RawConn, rid: int) -> bytes:
    return conn.seal(frame(b'{"type":"who","rid":%d}' % rid))


def test_d30_record_replay_processed_once_then_closed(server, raw, keys):
    conn = online_raw(raw, keys)
    record = who_record(conn, 41)
    conn.send_raw(record)
    conn.expect("who_result", rid=41)
    count("D")
    conn.send_raw(record)
    messages, eof = conn.read_frames()
    if not eof:
        more, eof = conn.read_frames()
        messages += more
    assert [msg["code"] for msg in messages if msg["type"] == "error"] == [E.BAD_RECORD.value]
    assert not [msg for msg in messages if msg["type"] == "who_result"]
    conn.expect_closed()


def test_d31_reordered_records(server, raw, keys):
    conn = online_raw(raw, keys)
    first, second = who_record(conn, 1), who_record(conn, 2)
    count("D")
    conn.send_raw(second + first)
    conn.expect_error(E.BAD_RECORD, closed=True)


def _tamper(record: bytes, how: str) -> bytes:
    outer = json.loads(record[4:])
    data = bytearray(b64d(outer["data"]))
    if how == "ciphertext":
        data[0] ^= 1
    elif how == "tag":
        data[-1] ^= 0x80
    elif how == "truncated_tag":
        data = data[:-4]
    elif how == "empty":
        data = bytearray()
    outer["data"] = b64e(bytes(data))
    return frame(json.dumps(outer).encode())


@pytest.mark.parametrize("how", ["ciphertext", "tag", "truncated_tag", "empty"])
def test_d32_tampered_record_releases_nothing(server, raw, key_pool, how):
    sender, receiver = online_raw(raw, key_pool[0]), online_raw(raw, key_pool[1])
    sender.send_obj({"type": "chat_open", "rid": 1, "members": [receiver.cp.username], "mode": "server-key",
                     "suite": "aes-256-gcm"})
    receiver.accept_invitation()
    chat_id = sender.expect("chat_opened", rid=1)["chat_id"]
    receiver.expect("chat_key", chat_id=chat_id)
    body = json.dumps({"type": "chat_send", "chat_id": chat_id, "epoch": 1, "seq": 1, "ciphertext": "AAAA",
                       "signature": "AAAA"}).encode()
    count("D")
    sender.send_raw(_tamper(sender.seal(frame(body)), how))
    sender.expect_error(E.BAD_RECORD, closed=True)
    messages, _ = receiver.read_frames(0.5)
    assert not [msg for msg in messages if msg["type"] == "chat_message"]


def test_d32_tampered_length_prefix_closes(server, raw, keys):
    conn = online_raw(raw, keys)
    record = bytearray(who_record(conn, 5))
    record[3] -= 1  # the frame now ends one byte early: the outer JSON is cut
    count("D")
    conn.send_raw(bytes(record))
    conn.expect_error(E.BAD_JSON, closed=True)


def test_d33_reflected_record(server, raw, keys):
    conn = online_raw(raw, keys)
    conn.send_obj({"type": "who", "rid": 7})
    # capture the server's next record raw, before our record layer opens it
    conn.sock.settimeout(5)
    reflected = read_clear_frame(conn.sock)
    conn.cp.link.records.open(b64d(json.loads(reflected[4:])["data"]))  # keep our own counter in step
    count("D")
    conn.send_raw(reflected)
    conn.expect_error(E.BAD_RECORD, closed=True)


def test_d35_connection_cut_mid_stream(server, raw, key_pool):
    observer = online_client(server, key_pool[1])
    victim = online_raw(raw, key_pool[0])
    name = victim.cp.username
    try:
        assert name in observer.who()
        victim.send_raw(struct.pack(">I", 500) + b"{" * 100)  # half a frame, then a reset
        victim.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        count("D")
        victim.sock.close()
        assert wait_until(lambda: name not in server.protocol.online)
        deadline = time.monotonic() + 5
        seen = False
        while time.monotonic() < deadline and not seen:
            event = observer.events.get(timeout=5)
            seen = isinstance(event, ev.PresenceChanged) and event.username == name and not event.online
        assert seen
        assert name not in observer.who()
    finally:
        observer.close()


def test_d35_client_reports_connection_lost_distinct_from_bye(make_server, keys):
    srv = make_server()
    a = online_client(srv, keys)
    b = online_client(srv, keys)
    a.logout()
    assert a.closed is not None and a.closed.code is None  # clean bye
    count("D")
    srv.stop()
    assert wait_until(lambda: b.closed is not None)
    assert b.closed.code == E.CONNECTION_LOST.value
    b.close()


def test_d36_client_refuses_to_wrap_its_counter(server, raw, keys):
    conn = online_raw(raw, keys)
    conn.cp.link.records.sent = MAX_RECORDS_PER_DIRECTION
    with pytest.raises(SecureChatError) as info:
        conn.cp.link.records.seal(b"x")
    assert info.value.code is E.LIMIT_EXCEEDED


def test_d36_server_closes_at_receive_counter_limit(server, raw, keys):
    conn = online_raw(raw, keys)
    peer = server.protocol.online[conn.cp.username]
    server.protocol.peers[peer].records.received = MAX_RECORDS_PER_DIRECTION
    count("D")
    conn.send_obj({"type": "who", "rid": 1})
    _, eof = conn.read_frames()
    assert eof or conn.expect_closed() is None
    sanity(server, keys)


def test_d36_server_send_counter_exhaustion_closes_only_that_peer(make_server, raw, keys):
    srv = make_server()
    conn = raw(srv)
    conn.register_and_login(fresh_name("d"), keys)
    peer = srv.protocol.online[conn.cp.username]
    srv.protocol.peers[peer].records.sent = MAX_RECORDS_PER_DIRECTION
    count("D")
    conn.send_obj({"type": "who", "rid": 1})  # the reply cannot be sealed under this key any more
    conn.expect_closed()
    sanity(srv, keys)  # the engine must survive: everyone else is still served
