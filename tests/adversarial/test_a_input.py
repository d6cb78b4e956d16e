"""docs/THREATS.md A1-A9: bad input and framing, against a live server, with sanity before and after."""

from __future__ import annotations

import json
import time

import pytest

from securechat.errors import ErrorCode
from securechat.protocol.codec import MAX_FRAME_BYTES, MAX_HANDSHAKE_FRAME_BYTES, frame

from .conftest import PASSWORD, count, fresh_name, length_prefix, sanity, wait_until

pytestmark = [pytest.mark.tcp, pytest.mark.usefixtures("sane_before_and_after")]  # a live server

E = ErrorCode
CHAT = {"mode": "server-key", "suite": "aes-256-gcm"}


def online(raw, keys):
    conn = raw()
    conn.register_and_login(fresh_name("a"), keys)
    return conn


# --- A1 truncated frame ------------------------------------------------------------------------------------

def test_a1_truncated_frame_then_eof_is_never_processed(server, raw):
    baseline = server.connection_count
    conn = raw(handshake=False)
    count("A")
    conn.send_raw(length_prefix(100) + b"{" * 40)
    conn.sock.shutdown(1)  # EOF inside the frame
    conn.expect_closed()
    assert wait_until(lambda: server.connection_count == baseline - 0 or server.connection_count < baseline + 1)
    assert not any(p.state.name != "AWAIT_HELLO" for p in server.protocol.peers.values() if p.id == 0)


def test_a1_truncated_frame_stalled_closes_at_frame_deadline(make_server, raw, keys):
    srv = make_server(frame_deadline_seconds=1)
    sanity(srv, keys)
    conn = raw(srv)
    conn.register_and_login(fresh_name("a"), keys)
    count("A")
    started = time.monotonic()
    conn.send_raw(length_prefix(100) + b"{" * 40)  # a record frame that never completes
    conn.expect_error(E.BAD_FRAME, closed=True, timeout=6)
    assert time.monotonic() - started < 5
    sanity(srv, keys)


# --- A2 truncated or zero prefix ---------------------------------------------------------------------------

def test_a2_two_prefix_bytes_then_eof_quiet_close(server, raw):
    conn = raw(handshake=False)
    count("A")
    conn.send_raw(b"\x00\x00")
    conn.sock.shutdown(1)
    messages, eof = conn.read_frames()
    assert eof and messages == []


def test_a2_zero_prefix_before_handshake(server, raw):
    conn = raw(handshake=False)
    count("A")
    conn.send_raw(length_prefix(0))
    conn.expect_error(E.BAD_FRAME, closed=True)


def test_a2_zero_prefix_inside_channel(server, raw, keys):
    conn = online(raw, keys)
    count("A")
    conn.send_raw(length_prefix(0))
    conn.expect_error(E.BAD_FRAME, closed=True)


@pytest.mark.parametrize("plaintext", [b"\x00\x00\x00\x00", b"\x00\x00", b"\x00\x00\x00\x09{}", b""])
def test_a2_bad_inner_framing_inside_record(server, raw, keys, plaintext):
    conn = online(raw, keys)
    count("A")
    conn.send_record(plaintext)
    conn.expect_error(E.BAD_FRAME, closed=True)


# --- A3 oversized prefix -----------------------------------------------------------------------------------

@pytest.mark.parametrize("length", [0xFFFFFFFF, MAX_HANDSHAKE_FRAME_BYTES + 1])
def test_a3_oversized_prefix_before_handshake_refused_before_body(server, raw, length):
    conn = raw(handshake=False)
    count("A")
    conn.send_raw(length_prefix(length))  # no body at all: the answer must come from the prefix alone
    conn.expect_error(E.FRAME_TOO_LARGE, closed=True, timeout=3)


@pytest.mark.parametrize("length", [0xFFFFFFFF, MAX_FRAME_BYTES + 1])
def test_a3_oversized_prefix_inside_channel_refused_before_body(server, raw, keys, length):
    conn = online(raw, keys)
    count("A")
    conn.send_raw(length_prefix(length))
    conn.expect_error(E.FRAME_TOO_LARGE, closed=True, timeout=3)
    assert all(p.decoder.buffered <= 4 for p in list(server.protocol.peers.values()))


# --- A4 invalid UTF-8 or JSON ------------------------------------------------------------------------------

BAD_JSON_BODIES = [b"\xff\xfe", b'{"type":', b"[]", b'["client_hello"]', b"null", b'{"type":"who"', b"{\xff}",
                   b'{"type":"who",}', b"\xef\xbb\xbf{}"]


@pytest.mark.parametrize("body", BAD_JSON_BODIES)
def test_a4_bad_json_before_channel_closes(server, raw, body):
    conn = raw(handshake=False)
    count("A")
    conn.send_raw(frame(body))
    conn.expect_error(E.BAD_JSON, closed=True)


@pytest.mark.parametrize("body", BAD_JSON_BODIES)
def test_a4_bad_json_inside_channel_before_login_keeps(server, raw, body):
    conn = raw()
    count("A")
    conn.send_inner(body)
    conn.expect_error(E.BAD_JSON, closed=False)


@pytest.mark.parametrize("body", BAD_JSON_BODIES)
def test_a4_bad_json_inside_channel_after_login_keeps(server, raw, keys, body):
    conn = online(raw, keys)
    count("A")
    conn.send_inner(body)
    conn.expect_error(E.BAD_JSON, closed=False)


def test_a4_bad_outer_json_after_handshake_closes(server, raw):
    conn = raw()
    count("A")
    conn.send_raw(frame(b'{"type":'))
    conn.expect_error(E.BAD_JSON, closed=True)


# --- A5 JSON edge cases ------------------------------------------------------------------------------------

EDGE_BODIES = {
    "nan": (b'{"type":"status","rid":1,"username":NaN}', E.BAD_JSON),
    "infinity": (b'{"type":"who","rid":Infinity}', E.BAD_JSON),
    "neg_infinity": (b'{"type":"who","rid":-Infinity}', E.BAD_JSON),
    "5000_digits": (b'{"type":"who","rid":' + b"9" * 5000 + b"}", E.BAD_JSON),
    "deep_nesting": (b'{"type":"who","x":' + b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"}", E.BAD_JSON),
    "deep_array": (b'{"type":"who","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}", E.BAD_JSON),
    "duplicate_keys": (b'{"type":"status","username":"a","username":"b"}', E.BAD_JSON),
    "duplicate_type": (b'{"type":"who","type":"logout"}', E.BAD_JSON),
    "lone_surrogate_name": (b'{"type":"status","rid":1,"username":"\\ud800"}', E.BAD_FIELD),
}


@pytest.mark.parametrize("case", sorted(EDGE_BODIES))
def test_a5_json_edge_cases_after_login(server, raw, keys, case):
    body, code = EDGE_BODIES[case]
    conn = online(raw, keys)
    count("A")
    conn.send_inner(body)
    conn.expect_error(code, closed=False)


def test_a5_lone_surrogate_password_before_login(server, raw):
    conn = raw()
    count("A")
    conn.send_inner(b'{"type":"login","rid":3,"username":"alice","password":"x\\udc00","signature":"AAAA"}')
    err = conn.expect_error(E.BAD_FIELD, closed=False)
    assert err["rid"] == 3


def test_a5_duplicate_keys_in_chat_send_relays_nothing(server, raw, keys, key_pool):
    sender, receiver = online(raw, key_pool[0]), online(raw, key_pool[1])
    sender.send_obj({"type": "chat_open", "rid": 5, "members": [receiver.cp.username], **CHAT})
    receiver.accept_invitation()
    opened = sender.expect("chat_opened", rid=5)
    receiver.expect("chat_key", chat_id=opened["chat_id"])
    body = ('{"type":"chat_send","chat_id":"%s","chat_id":"cx","epoch":1,"seq":1,"ciphertext":"AAAA",'
            '"signature":"AAAA"}' % opened["chat_id"]).encode()
    count("A")
    sender.send_inner(body)
    sender.expect_error(E.BAD_JSON, closed=False)
    messages, _ = receiver.read_frames(0.5)
    assert not [msg for msg in messages if msg["type"] == "chat_message"]


# --- A6 wrong types or ranges ------------------------------------------------------------------------------

WRONG_FIELDS = [
    {"type": "chat_send", "chat_id": "c1", "epoch": 1, "seq": "7", "ciphertext": "AAAA", "signature": "AAAA"},
    {"type": "chat_send", "chat_id": "c1", "epoch": 1, "seq": True, "ciphertext": "AAAA", "signature": "AAAA"},
    {"type": "chat_send", "chat_id": "c1", "epoch": 1, "seq": -1, "ciphertext": "AAAA", "signature": "AAAA"},
    {"type": "chat_send", "chat_id": "c1", "epoch": 1, "seq": 2**64, "ciphertext": "AAAA", "signature": "AAAA"},
    {"type": "chat_send", "chat_id": "c1", "epoch": 1.5, "seq": 1, "ciphertext": "AAAA", "signature": "AAAA"},
    {"type": "chat_send", "chat_id": "c1", "epoch": 1, "seq": 1, "ciphertext": "AAA", "signature": "AAAA"},
    {"type": "chat_send", "chat_id": "c1", "epoch": 1, "seq": 1, "ciphertext": "AAAA"},
    {"type": "chat_open", "members": "alice", **CHAT},
    {"type": "chat_open", "members": [None], **CHAT},
    {"type": "chat_open", "members": ["bob", "bob"], **CHAT},
    {"type": "chat_open", "members": ["bob"], "mode": "no-such-mode", "suite": "aes-256-gcm"},
    {"type": "status", "username": None},
    {"type": "status", "username": 7},
    {"type": "status", "username": "bob", "extra": 1},
    {"type": "who", "rid": True},
    {"type": "who", "rid": -1},
    {"type": "get_certificates", "usernames": {"a": 1}},
]


@pytest.mark.parametrize("obj", WRONG_FIELDS, ids=[str(i) for i in range(len(WRONG_FIELDS))])
def test_a6_wrong_types_and_ranges(server, raw, keys, obj):
    conn = online(raw, keys)
    count("A")
    conn.send_obj(obj)
    conn.expect_error(E.BAD_FIELD, closed=False)


# --- A7 unknown or missing type ----------------------------------------------------------------------------

@pytest.mark.parametrize("obj", [{"type": "admin_shutdown"}, {"rid": 1}, {"type": 7}, {"type": None},
                                 {"type": "WHO"}])
def test_a7_unknown_type_after_login_keeps(server, raw, keys, obj):
    conn = online(raw, keys)
    count("A")
    conn.send_obj(obj)
    conn.expect_error(E.UNKNOWN_TYPE, closed=False)


def test_a7_unknown_type_before_handshake_closes(server, raw):
    conn = raw(handshake=False)
    count("A")
    conn.send_raw(frame(b'{"type":"admin_shutdown"}'))
    conn.expect_error(E.UNKNOWN_TYPE, closed=True)


def test_a7_unknown_type_in_channel_before_login_keeps(server, raw):
    conn = raw()
    count("A")
    conn.send_obj({"type": "admin_shutdown"})
    conn.expect_error(E.UNKNOWN_TYPE, closed=False)


# --- A8 out-of-state messages ------------------------------------------------------------------------------

def test_a8_chat_before_login_closes(server, raw):
    conn = raw()
    count("A")
    conn.send_obj({"type": "chat_send", "chat_id": "c1", "epoch": 1, "seq": 1, "ciphertext": "AAAA",
                   "signature": "AAAA"})
    conn.expect_error(E.UNEXPECTED_MESSAGE, closed=True)


@pytest.mark.parametrize("kind", ["who", "logout_then_who", "register_proof", "chat_leave"])
def test_a8_requests_before_login_close(server, raw, kind):
    conn = raw()
    count("A")
    objs = {
        "who": {"type": "who"},
        "logout_then_who": {"type": "chat_open", "members": ["bob"], **CHAT},
        "register_proof": {"type": "register_proof", "nonce": "A" * 43 + "=", "signature": "AAAA"},
        "chat_leave": {"type": "chat_leave", "chat_id": "c1"},
    }
    conn.send_obj(objs[kind])
    conn.expect_error(E.UNEXPECTED_MESSAGE, closed=True)


def test_a8_login_before_handshake_closes(server, raw):
    conn = raw(handshake=False)
    count("A")
    conn.send_raw(frame(json.dumps({"type": "login", "username": "alice", "password": PASSWORD,
                                    "signature": "AAAA"}).encode()))
    conn.expect_error(E.UNEXPECTED_MESSAGE, closed=True)


def test_a8_second_client_hello_in_clear_mid_session_closes(server, raw, keys):
    conn = online(raw, keys)
    count("A")
    conn.send_raw(frame(json.dumps({"type": "client_hello", "version": 1, "random": "A" * 43 + "=",
                                    "key_share": "A" * 43 + "=", "key_exchange": "x25519"}).encode()))
    conn.expect_error(E.UNEXPECTED_MESSAGE, closed=True)


@pytest.mark.parametrize("obj", [
    {"type": "client_hello", "version": 1, "random": "A" * 43 + "=", "key_share": "A" * 43 + "=",
     "key_exchange": "x25519"},
    {"type": "register_proof", "nonce": "A" * 43 + "=", "signature": "AAAA"},
    {"type": "login", "username": "alice", "password": "x", "signature": "AAAA"},
    {"type": "chat_message", "chat_id": "c1", "epoch": 1, "sender": "bob", "seq": 1, "ciphertext": "AAAA",
     "signature": "AAAA"},
    {"type": "presence", "username": "bob", "online": True},
    {"type": "error", "code": "bad_frame", "message": ""},
    {"type": "record", "data": "AAAA"},
], ids=lambda o: o["type"])
def test_a8_out_of_state_after_login_keeps(server, raw, keys, obj):
    conn = online(raw, keys)
    count("A")
    conn.send_obj(obj)
    conn.expect_error(E.UNEXPECTED_MESSAGE, closed=False)
    assert conn.cp.username in server.protocol.online  # state unchanged


def test_a8_second_register_after_login_keeps(server, raw, keys):
    conn = online(raw, keys)
    count("A")
    conn.send_obj({"type": "register", "username": "zed", "password": "x", "signature_scheme": "ed25519",
                   "encryption_key": "AAAA", "signing_key": "AAAA"})
    conn.expect_error(E.UNEXPECTED_MESSAGE, closed=False)


def test_a8_leave_or_invite_for_chat_not_in(server, raw, key_pool):
    a, b, c = (online(raw, k) for k in key_pool[:3])
    a.send_obj({"type": "chat_open", "rid": 1, "members": [b.cp.username], **CHAT})
    b.accept_invitation()
    chat_id = a.expect("chat_opened", rid=1)["chat_id"]
    count("A", 4)
    c.send_obj({"type": "chat_leave", "rid": 2, "chat_id": chat_id})
    assert c.expect_error(E.NOT_MEMBER, closed=False)["rid"] == 2
    c.send_obj({"type": "chat_invite", "rid": 3, "chat_id": chat_id, "username": c.cp.username})
    assert c.expect_error(E.NOT_MEMBER, closed=False)["rid"] == 3
    c.send_obj({"type": "chat_leave", "rid": 4, "chat_id": "cnothere"})
    c.expect_error(E.UNKNOWN_CHAT, closed=False)
    c.send_obj({"type": "chat_invite", "rid": 5, "chat_id": "cnothere", "username": b.cp.username})
    c.expect_error(E.UNKNOWN_CHAT, closed=False)
    assert server.protocol.chats.get(chat_id).members == [a.cp.username, b.cp.username]
    assert server.protocol.chats.get(chat_id).epoch == 1


# --- A9 oversized fields -----------------------------------------------------------------------------------

def test_a9_oversized_fields(server, raw, keys):
    conn = online(raw, keys)
    cases = [
        {"type": "status", "username": "a" * 10_000},
        {"type": "chat_open", "members": [f"n{i}" for i in range(10_000)], **CHAT},
        {"type": "chat_send", "chat_id": "c1", "epoch": 1, "seq": 1, "ciphertext": "A" * (200 * 1024 * 4 // 3),
         "signature": "AAAA"},
        {"type": "chat_send", "chat_id": "c" * 65, "epoch": 1, "seq": 1, "ciphertext": "AAAA", "signature": "AAAA"},
    ]
    for obj in cases:
        count("A")
        conn.send_obj(obj)
        conn.expect_error(E.BAD_FIELD, closed=False)


def test_a9_long_password_and_username_before_login(server, raw):
    conn = raw()
    for obj in [{"type": "login", "username": "alice", "password": "p" * 2000, "signature": "AAAA"},
                {"type": "login", "username": "a" * 10_000, "password": "p", "signature": "AAAA"}]:
        count("A")
        conn.send_obj(obj)
        conn.expect_error(E.BAD_FIELD, closed=False)


def test_a9_megabyte_password_or_huge_member_list_is_frame_too_large(server, raw, keys):
    conn = raw()
    count("A")
    conn.send_obj({"type": "login", "username": "alice", "password": "p" * 1024 * 1024, "signature": "AAAA"})
    conn.expect_error(E.FRAME_TOO_LARGE, closed=True)
    conn2 = online(raw, keys)
    count("A")
    conn2.send_obj({"type": "chat_open", "members": [f"n{i}" for i in range(100_000)], **CHAT})
    conn2.expect_error(E.FRAME_TOO_LARGE, closed=True)
