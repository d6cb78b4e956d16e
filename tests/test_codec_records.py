"""The record hot path of codec.py is a pure optimisation: same bytes out, never more accepted (PROTOCOL.md 5.1)."""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from securechat.errors import RemoteProtocolError
from securechat.protocol import messages as m
from securechat.protocol.codec import (
    HEADER_BYTES, decode_message, encode_frame, encode_record_frame, record_data, record_payload,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_encode_record_frame_is_byte_identical_to_the_general_encoder(sealed: bytes) -> None:
    assert encode_record_frame(sealed) == encode_frame(m.Record(data=sealed))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_canonical_records_take_the_fast_path(sealed: bytes) -> None:
    body = encode_record_frame(sealed)[HEADER_BYTES:]
    assert record_payload(body) == sealed
    assert record_data(body) == (sealed, "record")


def _general(body: bytes) -> bytes | None:
    try:
        message = decode_message(body)
    except RemoteProtocolError:
        return None
    return message.data if isinstance(message, m.Record) else None


BODIES = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda middle: b'{"type":"record","data":"' + middle + b'"}', st.binary(max_size=64)),
    st.builds(lambda text: b'{"type":"record","data":"' + text.encode("utf-8", "surrogatepass") + b'"}',
              st.text(alphabet="ABCDabcd0123+/=\\\" u\n", max_size=40)),
)


@settings(max_examples=1000, deadline=None)
@given(BODIES)
def test_the_fast_path_accepts_only_what_the_strict_path_accepts(body: bytes) -> None:
    fast = record_payload(body)
    if fast is not None:
        assert _general(body) == fast


def test_non_canonical_or_escaped_records_fall_back_to_the_strict_path() -> None:
    escaped = b'{"type":"record","data":"\\u0041QID"}'  # valid JSON, but not our canonical form
    assert record_payload(escaped) is None
    non_canonical = b'{"type":"record","data":"QR=="}'   # padding bits set: strict base64 refuses it
    assert record_payload(non_canonical) is None and _general(non_canonical) is None
    spaced = b'{"type": "record", "data": "' + base64.b64encode(b"x") + b'"}'
    assert record_payload(spaced) is None and _general(spaced) == b"x"
