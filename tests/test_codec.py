"""Framing and (de)serialisation (protocol/codec.py): round trips, size limits and strict parsing.

Round trips follow h11's SIMPLE_CASES: every message is fed whole, one byte at a time and followed by
trailing bytes. Malformed input follows docs/THREATS.md entries 2-9: each case expects one exact error code and
never any other exception.
"""

from __future__ import annotations

import json
import struct

import pytest

from securechat.errors import ErrorCode, RemoteProtocolError
from securechat.protocol import codec
from securechat.protocol import messages as m
from securechat.protocol.codec import (
    MAX_FRAME_BYTES,
    MAX_HANDSHAKE_FRAME_BYTES,
    FrameDecoder,
    decode_message,
    encode_frame,
    encode_message,
    frame,
    message_from_dict,
    parse_json,
    split_frames,
)
from tests.helpers import sample_messages

SAMPLES = sample_messages()
CASES = sorted(SAMPLES)


def expect(code: ErrorCode, body: bytes) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        decode_message(body)
    assert info.value.code is code, info.value
    return info.value


def body_of(value: object) -> bytes:
    return json.dumps(value).encode()


def test_samples_cover_every_message_class() -> None:
    assert {type(s) for s in SAMPLES.values()} == set(m.MESSAGE_CLASSES)
    assert set(m.MESSAGE_TYPES) == set(SAMPLES)


# --- round trips ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", CASES)
def test_round_trip_whole(kind: str) -> None:
    message = SAMPLES[kind]
    body = encode_message(message)
    assert decode_message(body) == message
    assert encode_message(decode_message(body)) == body  # canonical: re-encoding gives the same bytes


@pytest.mark.parametrize("kind", CASES)
def test_round_trip_one_byte_at_a_time(kind: str) -> None:
    data = encode_frame(SAMPLES[kind])
    decoder = FrameDecoder(max_frame_bytes=MAX_FRAME_BYTES)
    bodies = []
    for i in range(len(data)):
        decoder.feed(data[i:i + 1])
        if (body := decoder.next_frame()) is not None:
            bodies.append(body)
    assert [decode_message(b) for b in bodies] == [SAMPLES[kind]]
    assert decoder.buffered == 0 and decoder.next_frame() is None


@pytest.mark.parametrize("kind", CASES)
def test_round_trip_with_trailing_bytes(kind: str) -> None:
    data = encode_frame(SAMPLES[kind])
    decoder = FrameDecoder(max_frame_bytes=MAX_FRAME_BYTES)
    decoder.feed(data + data + b"\x00\x00")  # two frames and the start of a third prefix
    assert decode_message(decoder.next_frame() or b"") == SAMPLES[kind]
    assert decode_message(decoder.next_frame() or b"") == SAMPLES[kind]
    assert decoder.next_frame() is None and decoder.buffered == 2
    decoder.feed(b"")
    assert decoder.truncated


def test_several_frames_in_one_feed_come_out_in_order() -> None:
    decoder = FrameDecoder(max_frame_bytes=MAX_FRAME_BYTES)
    decoder.feed(b"".join(encode_frame(SAMPLES[k]) for k in CASES))
    out = []
    while (body := decoder.next_frame()) is not None:
        out.append(decode_message(body))
    assert out == [SAMPLES[k] for k in CASES]


def test_optional_fields_absent_are_omitted_not_null() -> None:
    assert json.loads(encode_message(m.Who())) == {"type": "who"}
    assert decode_message(b'{"type":"who","rid":null}') == m.Who()
    assert "ref" not in json.loads(encode_message(m.Error(code="x")))


def test_non_ascii_text_travels_as_utf8() -> None:
    body = encode_message(m.Error(code="x", message="\u00e9\u4e2d"))
    assert "\u00e9\u4e2d".encode() in body
    assert decode_message(body).message == "\u00e9\u4e2d"  # type: ignore[attr-defined]


# --- framing limits (docs/THREATS.md 1-3) ---------------------------------------------------------------------------


@pytest.mark.parametrize("announced", [MAX_HANDSHAKE_FRAME_BYTES + 1, 0xFFFFFFFF])
def test_frame_too_large_refused_on_the_prefix_alone(announced: int) -> None:
    decoder = FrameDecoder()
    decoder.feed(struct.pack(">I", announced)[:2])
    assert decoder.next_frame() is None  # half a prefix: wait
    with pytest.raises(RemoteProtocolError) as info:
        decoder.feed(struct.pack(">I", announced)[2:])  # no body byte was sent
    assert info.value.code is ErrorCode.FRAME_TOO_LARGE
    assert decoder.buffered == 4  # nothing of the body was read or allocated


def test_frame_limit_is_raised_after_the_handshake_but_still_enforced() -> None:
    decoder = FrameDecoder(max_frame_bytes=MAX_FRAME_BYTES)
    decoder.feed(struct.pack(">I", MAX_FRAME_BYTES))  # exactly the limit: accepted, waits for the body
    assert decoder.next_frame() is None
    decoder = FrameDecoder(max_frame_bytes=MAX_FRAME_BYTES)
    with pytest.raises(RemoteProtocolError) as info:
        decoder.feed(struct.pack(">I", MAX_FRAME_BYTES + 1))
    assert info.value.code is ErrorCode.FRAME_TOO_LARGE


def test_handshake_limit_accepts_exactly_the_limit() -> None:
    decoder = FrameDecoder()
    decoder.feed(struct.pack(">I", MAX_HANDSHAKE_FRAME_BYTES) + b"{" * 10)
    assert decoder.next_frame() is None


def test_zero_length_frame_is_bad_frame() -> None:
    decoder = FrameDecoder()
    with pytest.raises(RemoteProtocolError) as info:
        decoder.feed(b"\x00\x00\x00\x00")
    assert info.value.code is ErrorCode.BAD_FRAME


def test_truncated_stream_is_reported() -> None:
    decoder = FrameDecoder()
    decoder.feed(struct.pack(">I", 100) + b"x" * 40)
    assert decoder.next_frame() is None
    decoder.feed(b"")
    assert decoder.eof and decoder.truncated and decoder.next_frame() is None
    clean = FrameDecoder()
    clean.feed(frame(b"{}"))
    clean.next_frame()
    clean.feed(b"")
    assert clean.eof and not clean.truncated


# --- split_frames (PROTOCOL.md 5.3) -------------------------------------------------------------------------------


def test_split_frames_good() -> None:
    assert split_frames(frame(b"a")) == [b"a"]
    assert split_frames(frame(b"abc") + frame(b"{}") + frame(b"z")) == [b"abc", b"{}", b"z"]


@pytest.mark.parametrize("plaintext", [
    b"",                                  # an empty record
    b"\x00\x00",                          # half a header
    b"\x00\x00\x00\x00",                  # a zero-length frame
    b"\x00\x00\x00\x05abc",               # length beyond the record
    frame(b"ok") + b"\x00",               # trailing partial header
    frame(b"ok") + b"\x00\x00\x00\x00",   # trailing empty frame
    b"\xff\xff\xff\xff" + b"x" * 10,
])
def test_split_frames_bad(plaintext: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        split_frames(plaintext)
    assert info.value.code is ErrorCode.BAD_FRAME


# --- JSON edge cases (docs/THREATS.md 4-5) ----------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    b"\xff\xfe",
    b'{"type":"who\xff"}',                               # invalid UTF-8 inside the object
    b'{"type":"who","rid":"\xed\xa0\x80"}',              # a UTF-8-encoded surrogate (CESU-8) is invalid UTF-8
    b'{"type":',
    b'[{"type":"who"}]',                                  # a bare array
    b'"who"', b"7", b"null", b" {\"type\":\"who\"}",
    b'{"type":"who","rid":NaN}',
    b'{"type":"who","rid":Infinity}',
    b'{"type":"who","rid":-Infinity}',
    b'{"type":"who","rid":' + b"7" * 5000 + b"}",        # Python's int-string limit
    b'{"type":"who","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    b'{"type":"who","x":' + b"[" * 9 + b"]" * 9 + b"}",  # deeper than MAX_JSON_DEPTH
    b'{"type":"who","type":"who"}',                       # duplicate keys
    b'{"type":"status","username":"alice","username":"bob"}',
    b'{"type":"who"} trailing',
    b'{"type":"who"}{"type":"who"}',
    b"{}}",
])
def test_malformed_json_is_bad_json(body: bytes) -> None:
    expect(ErrorCode.BAD_JSON, body)


def test_lone_surrogate_in_a_text_field_is_bad_field() -> None:
    expect(ErrorCode.BAD_FIELD, b'{"type":"error","code":"\\ud800"}')
    expect(ErrorCode.BAD_FIELD, b'{"type":"login","username":"alice","password":"a\\udfffb","signature":"AAAA"}')
    expect(ErrorCode.BAD_FIELD, b'{"type":"status","username":"\\ud800"}')


def test_nesting_within_the_limit_is_parsed() -> None:
    value = parse_json(b'{"type":"who","x":' + b"[" * 7 + b"]" * 7 + b"}")
    assert value["type"] == "who"


@pytest.mark.parametrize("body", [
    b'{"type":"admin_shutdown"}', b'{"rid":1}', b'{"type":7}', b'{"type":null}', b'{"type":"WHO"}', b"{}",
    b'{"type":["who"]}',
])
def test_unknown_or_missing_type_is_unknown_type(body: bytes) -> None:
    expect(ErrorCode.UNKNOWN_TYPE, body)


# --- schema (docs/THREATS.md 6, 9) --------------------------------------------------------------------------------------------

SEND = {"type": "chat_send", "rid": 1, "chat_id": "c1", "epoch": 1, "seq": 7, "ciphertext": "AAAA", "signature": "AAAA"}


def test_valid_chat_send_decodes() -> None:
    assert decode_message(body_of(SEND)) == m.ChatSend(rid=1, chat_id="c1", epoch=1, seq=7, ciphertext=b"\0\0\0",
                                                        signature=b"\0\0\0")


@pytest.mark.parametrize("field, value", [
    ("seq", "7"), ("seq", True), ("seq", -1), ("seq", 0), ("seq", 2**64), ("seq", 2**32), ("seq", 7.0), ("seq", None),
    ("epoch", 0), ("epoch", 2**63), ("rid", -1), ("rid", "1"), ("rid", False),
    ("chat_id", 5), ("chat_id", "c" * 65), ("ciphertext", "not base64!"), ("ciphertext", "QR=="),
    ("signature", None),
])
def test_wrong_type_or_range_is_bad_field(field: str, value: object) -> None:
    error = expect(ErrorCode.BAD_FIELD, body_of({**SEND, field: value}))
    assert repr(field) in str(error)


OPEN = {"type": "chat_open", "mode": "server-key", "suite": "aes-256-gcm"}


@pytest.mark.parametrize("body", [
    {**OPEN, "members": "alice"},
    {**OPEN, "members": ["alice", "alice"]},
    {**OPEN, "members": ["alice", None]},
    {**OPEN, "members": ["x%d" % i for i in range(256)]},
    {"type": "status", "username": None},
    {"type": "status", "username": "alice\u200b"},
    {"type": "status", "username": "\u0430lice"},
    {"type": "status", "username": "a" * 10_000},
    {"type": "login", "username": "alice", "password": "p" * 1025, "signature": "AAAA"},
    {"type": "presence", "username": "bob", "online": 1},
    {"type": "client_hello", "version": 2, "random": "A" * 43 + "=", "key_share": "A" * 43 + "="},
    {"type": "client_hello", "random": "A" * 43 + "=", "key_share": "AAAA"},
    {**OPEN, "members": ["bob"], "mode": "member-key"},
    {**OPEN, "members": ["bob"], "suite": "rot13"},
    {"type": "registered", "certificate": {"serial": 1}},
    {"type": "chat_key", "chat_id": "c", "epoch": 1, "mode": "server-key", "suite": "aes-256-gcm", "reason": "coup",
     "actor": "alice", "members": [], "wrap_root": "", "wrap_path": [], "wrapped_key": "", "signature": ""},
])
def test_schema_violations_are_bad_field(body: dict[str, object]) -> None:
    expect(ErrorCode.BAD_FIELD, body_of(body))


def test_open_template_is_valid() -> None:
    assert decode_message(body_of({**OPEN, "members": ["bob"]})) == m.ChatOpen(members=("bob",))


def test_unknown_field_is_bad_field() -> None:
    error = expect(ErrorCode.BAD_FIELD, b'{"type":"who","admin":true}')
    assert "'admin'" in str(error)


def test_missing_required_field_is_bad_field() -> None:
    error = expect(ErrorCode.BAD_FIELD, b'{"type":"status"}')
    assert "'username'" in str(error)
    # defaults are for senders only: a client_hello without version is refused
    expect(ErrorCode.BAD_FIELD, body_of({"type": "client_hello", "random": "A" * 43 + "=", "key_share": "A" * 43 + "="}))


@pytest.mark.parametrize("raw", ["Alice", "ALICE", "\uff41\uff4c\uff49\uff43\uff45"])
def test_usernames_are_normalised_on_decode(raw: str) -> None:
    status = decode_message(body_of({"type": "status", "username": raw}))
    assert status == m.Status(username="alice")
    open_ = decode_message(body_of({"type": "chat_open", "members": [raw, "Bob"], "mode": "server-key",
                                   "suite": "aes-256-gcm"}))
    assert open_.members == ("alice", "bob")  # type: ignore[attr-defined]


def test_message_from_dict_checks_every_field() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        message_from_dict({"type": "who", "rid": "x"})
    assert info.value.code is ErrorCode.BAD_FIELD


def test_encode_frame_is_the_length_prefixed_body() -> None:
    body = encode_message(m.Who(rid=1))
    assert encode_frame(m.Who(rid=1)) == struct.pack(">I", len(body)) + body
    assert codec.frame(b"abc") == b"\x00\x00\x00\x03abc"
