"""Framing and (de)serialisation: bytes <-> Message, and nothing about state.

Owns: the 4-byte big-endian length prefix, the frame size limits, strict JSON parsing (PROTOCOL.md 3), and
packing inner frames into record plaintexts and splitting them again (PROTOCOL.md 5.3). Must not: know which message is
allowed when (``states.py``), touch keys, sockets or clocks.

Received messages are built through their own constructors, which check every field (message_base.py); a failed
check is re-raised as RemoteProtocolError here. ``encode_unchecked`` is the one way to write a malformed message,
for tests and attack tools only.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import struct
from collections.abc import Sequence
from typing import Any

from ..crypto.certificates import Certificate
from ..crypto.encoding import b64e
from ..errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from .fields import Kind, as_remote, bad
from .message_base import wire_fields
from .messages import MESSAGE_TYPES, ChatMessage, ChatSend, Message, Record

HEADER_BYTES = 4
# PROTOCOL.md 3.1: before the channel is up only hellos and errors travel; 16 KiB is twenty times the largest.
MAX_HANDSHAKE_FRAME_BYTES = 16 * 1024
# PROTOCOL.md 3.1: after the handshake a record holds at most one record's worth of inner frames.
MAX_FRAME_BYTES = 1024 * 1024 + 1024
# PROTOCOL.md 5.3: a record's plaintext is capped so one AEAD call bounds latency and memory.
MAX_RECORD_PLAINTEXT_BYTES = 256 * 1024
MAX_JSON_DEPTH = 8  # no message nests deeper than a list of certificate objects

_LENGTH = struct.Struct(">I")


def frame(body: bytes) -> bytes:
    """Prefix *body* with its 4-byte big-endian length."""
    return _LENGTH.pack(len(body)) + body


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # docs/THREATS.md 5: with duplicate keys, what is signed and what is parsed could differ.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _depth(value: Any, limit: int) -> int:
    if limit < 0:
        raise ValueError("nested too deeply")
    if isinstance(value, dict):
        return 1 + max((_depth(v, limit - 1) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v, limit - 1) for v in value), default=0)
    return 0


def parse_json(body: bytes) -> dict[str, Any]:
    """Parse one frame body strictly into a JSON object with a string ``type`` (PROTOCOL.md 3.1).

    Raises:
        RemoteProtocolError: BAD_JSON for invalid UTF-8 or JSON, NaN/Infinity, duplicate keys, huge integers,
            deep nesting or a non-object; UNKNOWN_TYPE for a missing or unknown ``type``.
    """
    if body[:1] != b"{":
        # Checked before json.loads: a 100k-deep array must not reach the recursive parser at all.
        raise RemoteProtocolError("frame body is not a JSON object", ErrorCode.BAD_JSON)
    try:
        value = json.loads(
            body.decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_unique_keys
        )
        if body.count(b"{") + body.count(b"[") > MAX_JSON_DEPTH:  # fewer brackets cannot nest deeper (hot path)
            _depth(value, MAX_JSON_DEPTH)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RemoteProtocolError("frame body is not valid JSON", ErrorCode.BAD_JSON) from None
    if not isinstance(value, dict):
        raise RemoteProtocolError("frame body is not a JSON object", ErrorCode.BAD_JSON)
    kind = value.get("type")
    if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
        raise RemoteProtocolError("missing or unknown message type", ErrorCode.UNKNOWN_TYPE)
    return value


def peek(body: bytes) -> tuple[int | None, str | None]:
    """Best effort, for the error that answers a frame which failed validation (PROTOCOL.md 9): its ``rid`` and
    its ``type`` if they can be read and are well-formed, else None. Parses the body once."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError, UnicodeDecodeError):
        return None, None
    if not isinstance(value, dict):
        return None, None
    rid, kind = value.get("rid"), value.get("type")
    return (rid if type(rid) is int and 0 <= rid < 2**63 else None,
            kind if isinstance(kind, str) and kind in MESSAGE_TYPES else None)


def message_from_dict(value: dict[str, Any]) -> Message:
    """Build the typed message from a parsed object, validating every field (PROTOCOL.md 3.2).

    The fields are loaded from their wire form here and checked by the message's own constructor (the rules a
    sender meets, message_base.py); a failed check is re-raised as the peer's error.

    Raises:
        RemoteProtocolError: BAD_FIELD for an unknown, missing or malformed field.
    """
    cls = MESSAGE_TYPES[value["type"]]
    allowed, required, loaders = _decoding(cls)
    if not allowed.issuperset(value):
        raise bad(sorted(set(value) - allowed)[0], "unknown field")
    kwargs = value.copy()
    del kwargs["type"]
    if not required <= kwargs.keys():
        _first_failure(cls, value)
    try:
        for name, kind in loaders:
            if name in kwargs:
                kwargs[name] = kind.load(name, kwargs[name])
    except RemoteProtocolError:
        _first_failure(cls, value)
        raise
    try:
        return cls(**kwargs)
    except LocalProtocolError as exc:
        raise as_remote(exc) from None


def _first_failure(cls: type[Message], value: dict[str, Any]) -> None:
    """Raise the error for the first bad field in the schema's order (PROTOCOL.md 3.2 validates field by field,
    and the error names the field): the slow path, taken only when a field is missing or cannot be loaded."""
    for name, kind, optional, _ in wire_fields(cls):
        if name in value:
            kind.decode(name, value[name])
        elif not optional:
            # PROTOCOL.md 3.2: only fields marked optional may be absent; defaults are for senders only.
            raise bad(name, "missing")


_DECODING: dict[type[Message], tuple[frozenset[str], frozenset[str], tuple[tuple[str, Kind], ...]]] = {}


def _decoding(cls: type[Message]) -> tuple[frozenset[str], frozenset[str], tuple[tuple[str, Kind], ...]]:
    """For *cls*, computed once (the relay hot path): the JSON members a frame may have (its fields and ``type``),
    those it must have, and the fields whose wire form must be loaded."""
    table = _DECODING.get(cls)
    if table is None:
        fields = wire_fields(cls)
        table = _DECODING[cls] = (frozenset(fld.name for fld in fields) | {"type"},
                                  frozenset(fld.name for fld in fields if not fld.optional),
                                  tuple((fld.name, fld.kind) for fld in fields if fld.loads))
    return table


def decode_message(body: bytes) -> Message:
    """Parse and validate one frame body."""
    return message_from_dict(parse_json(body))


def message_to_dict(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"type": message.TYPE}
    for fld in dataclasses.fields(message):
        value = getattr(message, fld.name)
        if value is None and fld.default is None:
            continue  # optional fields that are absent are left out, not sent as null
        out[fld.name] = fld.metadata["kind"].encode(value)
    return out


def encode_message(message: Message) -> bytes:
    """Serialise *message* as a compact UTF-8 JSON body (without the length prefix)."""
    return json.dumps(message_to_dict(message), separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode_frame(message: Message) -> bytes:
    return frame(encode_message(message))


def _unchecked_json(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return b64e(bytes(value))
    if isinstance(value, (list, tuple)):
        return [_unchecked_json(item) for item in value]
    if isinstance(value, dict):
        return {key: _unchecked_json(item) for key, item in value.items()}
    if isinstance(value, Certificate):
        return value.to_dict()
    return value


def encode_unchecked(type_: str, fields: dict[str, Any]) -> bytes:
    """FOR TESTS AND ATTACK TOOLS ONLY: the length-prefixed frame of ``{"type": type_, **fields}``, checked by nothing.

    Message classes refuse malformed values at construction (message_base.py), so a test or a lab attack that must
    put a malformed message on the wire (an oversized record, a bad name, a missing field, an unknown type) writes
    it with this instead. ``bytes`` become base64, tuples lists and certificates objects, so the fields of a valid
    message (absent ones left out) give exactly what ``encode_frame`` gives; everything else is written as given
    (no schema, no limits, no normalisation; a lone surrogate is written as the invalid UTF-8 it encodes to). Never call it from securechat's own protocol code.
    """
    body = {"type": type_, **{name: _unchecked_json(value) for name, value in fields.items()}}
    return frame(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))


# The same compact UTF-8 JSON as encode_message, with one encoder built once instead of per call.
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def chat_message_frame(msg: ChatSend, sender: str) -> bytes:
    """The relayed chat_message frame, byte-identical to ``encode_frame(ChatMessage(...))``.

    The relay hot path: every field of *msg* was validated when it was decoded, and
    *sender* is the authenticated username, so the frame is built straight from them in ChatMessage's field
    order, without a second dataclass -> per-field kinds -> dict round.
    """
    out = {"type": ChatMessage.TYPE, "chat_id": msg.chat_id, "epoch": msg.epoch, "sender": sender,
           "seq": msg.seq, "ciphertext": b64e(msg.ciphertext), "signature": b64e(msg.signature)}
    if msg.wrap_recipients is not None:
        out["wrap_recipients"] = list(msg.wrap_recipients)
    if msg.wraps is not None:
        out["wraps"] = [b64e(w) for w in msg.wraps]
    if msg.key_commitment is not None:
        out["key_commitment"] = b64e(msg.key_commitment)
    if msg.prev_hash is not None:
        out["prev_hash"] = b64e(msg.prev_hash)
    return frame(_JSON(out).encode("utf-8"))



def pack_records(frames: Sequence[bytes], limit: int = MAX_RECORD_PLAINTEXT_BYTES) -> list[bytes]:
    """PROTOCOL.md 5.3: the record plaintexts that carry *frames* (encoded inner frames), in order, as few as
    *limit* allows; a frame longer than *limit* travels in a record of its own. Both sides pack with this."""
    records: list[bytes] = []
    batch: list[bytes] = []
    size = 0
    for data in frames:
        if batch and size + len(data) > limit:
            records.append(b"".join(batch))
            batch, size = [], 0
        batch.append(data)
        size += len(data)
    if batch:
        records.append(b"".join(batch))
    return records


def split_frames(plaintext: bytes) -> list[bytes]:
    """Split a record plaintext into its inner frame bodies (PROTOCOL.md 5.3).

    Raises:
        RemoteProtocolError: BAD_FRAME if the plaintext is not an exact sequence of non-empty frames.
    """
    bodies: list[bytes] = []
    offset = 0
    while offset < len(plaintext):
        if len(plaintext) - offset < HEADER_BYTES:
            raise RemoteProtocolError("truncated inner frame header", ErrorCode.BAD_FRAME)
        (length,) = _LENGTH.unpack_from(plaintext, offset)
        offset += HEADER_BYTES
        if length == 0 or offset + length > len(plaintext):
            raise RemoteProtocolError("inner frame length does not fit the record", ErrorCode.BAD_FRAME)
        bodies.append(plaintext[offset:offset + length])
        offset += length
    if not bodies:
        raise RemoteProtocolError("empty record", ErrorCode.BAD_FRAME)
    return bodies


class FrameDecoder:
    """Reassembles length-prefixed frames from a byte stream, refusing oversized ones before buffering them.

    ``max_frame_bytes`` may be raised by the owner once the channel is up (PROTOCOL.md 3.1).
    """

    def __init__(self, max_frame_bytes: int = MAX_HANDSHAKE_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        self.eof = False

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        """Append received bytes; ``b""`` marks the end of the stream."""
        if not data:
            self.eof = True
        self._buffer += data
        self._check_header()

    def _check_header(self) -> None:
        if len(self._buffer) < HEADER_BYTES:
            return
        (length,) = _LENGTH.unpack_from(self._buffer, 0)
        if length > self.max_frame_bytes:
            # docs/THREATS.md 3: refused on the prefix alone, before any body is read or allocated.
            raise RemoteProtocolError(
                f"frame of {length} bytes exceeds {self.max_frame_bytes}", ErrorCode.FRAME_TOO_LARGE
            )
        if length == 0:
            raise RemoteProtocolError("zero-length frame", ErrorCode.BAD_FRAME)

    def next_frame(self) -> bytes | None:
        """Return the next complete frame body, or None if more bytes are needed."""
        if len(self._buffer) < HEADER_BYTES:
            return None
        self._check_header()
        (length,) = _LENGTH.unpack_from(self._buffer, 0)
        if len(self._buffer) < HEADER_BYTES + length:
            return None
        body = bytes(self._buffer[HEADER_BYTES:HEADER_BYTES + length])
        del self._buffer[:HEADER_BYTES + length]
        return body

    @property
    def truncated(self) -> bool:
        """True if the stream ended inside a frame (docs/THREATS.md 1, 2)."""
        return self.eof and bool(self._buffer)


# --- the record hot path (PROTOCOL.md 5.1) -------------------------------------------------------------------
# Every frame after the handshake is a record, so its two common directions skip the general machinery. Both
# are pure optimisations: ``encode_record_frame`` is byte-identical to ``encode_frame(Record(data=...))`` and
# ``record_payload`` accepts only what ``decode_message`` would accept as a Record (anything else returns None
# and goes through the strict general path). tests/test_codec.py checks both claims.
_RECORD_PREFIX = b'{"type":"record","data":"'
_RECORD_SUFFIX = b'"}'
# The schema's limit on a record's sealed bytes (messages.Record.data), read from the schema itself.
_RECORD_MAX_BYTES: int = next(f.metadata["kind"] for f in dataclasses.fields(Record) if f.name == "data").max_bytes


def encode_record_frame(sealed: bytes) -> bytes:
    body = _RECORD_PREFIX + base64.b64encode(sealed) + _RECORD_SUFFIX
    return _LENGTH.pack(len(body)) + body


def record_payload(body: bytes) -> bytes | None:
    """The sealed bytes of a record frame in its canonical compact form, or None if the body is anything else."""
    if not (body.startswith(_RECORD_PREFIX) and body.endswith(_RECORD_SUFFIX)):
        return None
    text = body[len(_RECORD_PREFIX):-len(_RECORD_SUFFIX)]
    try:
        data = binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error:
        return None
    if len(data) > _RECORD_MAX_BYTES or base64.b64encode(data) != text:
        return None  # too long or non-canonical base64: let the general path give its precise error
    return data


def record_data(body: bytes) -> tuple[bytes, str]:
    """The sealed bytes of a frame that must be a record, and its type (for tracing).

    Raises:
        RemoteProtocolError: as ``decode_message``, or UNEXPECTED_MESSAGE for a valid frame of another type.
    """
    data = record_payload(body)
    if data is not None:
        return data, Record.TYPE
    message = decode_message(body)
    if not isinstance(message, Record):
        raise RemoteProtocolError(f"{message.TYPE} outside a record", ErrorCode.UNEXPECTED_MESSAGE)
    return message.data, Record.TYPE
