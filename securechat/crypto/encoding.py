"""Byte encodings shared by every crypto recipe: field framing, hashes, fingerprints and base64.

Owns: ``encode_fields`` (the one unambiguous encoding of everything that is signed, MACed, used as
AAD or hashed into a transcript), ``sha256``, ``hmac_sha256``, ``constant_time_equal``, the
human-comparable ``fingerprint`` format and strict base64 (``b64e``/``b64d``), plus the
``RandomBytes`` type of every injected randomness source.

Must not: import pycryptodome (this module only needs the standard library), do I/O, read a clock
or draw randomness of its own.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
from collections.abc import Callable

from securechat.errors import ErrorCode, RemoteProtocolError

#: Every randomness source is injected with this shape (docs/STYLE.md 1.1); ``os.urandom`` fits it.
RandomBytes = Callable[[int], bytes]

# A field's length is written in 4 bytes, so no field may reach 4 GiB.
_MAX_FIELD_BYTES = 2**32 - 1
# Integers travel as 8-byte big-endian unsigned numbers.
_INT_BYTES = 8
# fingerprint(): 16 bytes (128 bits) of SHA-256 is beyond any second-preimage search, and 8 groups
# of 4 hex digits are short enough to read aloud and compare by eye.
_FINGERPRINT_BYTES = 16
_FINGERPRINT_GROUP_CHARS = 4


def _encode_field(field: bytes | str | int) -> bytes:
    """One field, without its length prefix."""
    # bool is a subclass of int: True would silently become 1, so refuse it before the int case.
    if isinstance(field, bool):
        raise TypeError("encode_fields: bool is not a valid field (use an int)")
    if isinstance(field, (bytes, bytearray)):
        return bytes(field)
    if isinstance(field, str):
        return field.encode("utf-8")
    if isinstance(field, int):
        if not 0 <= field < 2**64:
            raise ValueError("encode_fields: int field must be in 0..2**64-1")
        return field.to_bytes(_INT_BYTES, "big")
    raise TypeError(f"encode_fields: unsupported field type {type(field).__name__}")


def encode_fields(label: str, *fields: bytes | str | int) -> bytes:
    """Encode *label* and *fields* so that no two different inputs give the same bytes.

    Layout: ``UTF-8(label) || 0x00``, then for each field a 4-byte big-endian length followed by
    the field: bytes as-is, str as UTF-8, int as 8-byte big-endian unsigned. The label names the
    purpose (domain separation: a certificate's bytes can never be read as a chat header); the
    length prefixes make ``("ab", "c")`` differ from ``("a", "bc")``. Field *types* are not encoded:
    each label fixes its own sequence of types, so callers must always pass the same kinds.

    Raises:
        TypeError: a field is a bool or of an unsupported type.
        ValueError: the label contains NUL, an int is outside 0..2**64-1, or a field is >= 4 GiB.
    """
    if "\x00" in label:
        # The NUL terminates the label; a label containing one would be ambiguous.
        raise ValueError("encode_fields: label must not contain NUL")
    parts = [label.encode("utf-8"), b"\x00"]
    for field in fields:
        encoded = _encode_field(field)
        if len(encoded) > _MAX_FIELD_BYTES:
            raise ValueError("encode_fields: field too long for a 4-byte length")
        parts.append(len(encoded).to_bytes(4, "big"))
        parts.append(encoded)
    return b"".join(parts)


def sha256(data: bytes) -> bytes:
    """The 32-byte SHA-256 digest of *data*."""
    return hashlib.sha256(data).digest()


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    """The full 32-byte HMAC-SHA256 of *data* under *key* (RFC 2104)."""
    return hmac.digest(key, data, "sha256")


def constant_time_equal(a: bytes, b: bytes) -> bool:
    """Compare two secrets (tags, hashes) in time independent of where they differ."""
    return hmac.compare_digest(a, b)


def fingerprint(data: bytes) -> str:
    """A short, human-comparable fingerprint of *data*.

    Format: the first 16 bytes of SHA-256(data) as lowercase hex, in 8 groups of 4 digits joined
    by ``":"``, e.g. ``"3fa2:91c0:5d1e:77ab:0c3e:9f10:2b64:e8d5"`` (39 characters).
    """
    digits = sha256(data)[:_FINGERPRINT_BYTES].hex()
    step = _FINGERPRINT_GROUP_CHARS
    return ":".join(digits[i : i + step] for i in range(0, len(digits), step))


def b64e(data: bytes) -> str:
    """Standard base64 (RFC 4648 section 4) with padding, as text."""
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def b64d(text: str) -> bytes:
    """Decode canonical, padded, standard base64 received from a peer.

    Strict: rejects non-str input, characters outside the alphabet, whitespace, missing or extra
    padding, and non-canonical encodings (non-zero unused bits), so every byte string has exactly
    one accepted text form.

    Raises:
        RemoteProtocolError: (``BAD_FIELD``) for anything but canonical base64 text.
    """
    if not isinstance(text, str):
        raise RemoteProtocolError("base64 field is not a string", ErrorCode.BAD_FIELD)
    try:
        data = binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII str
        raise RemoteProtocolError("base64 field is not valid base64", ErrorCode.BAD_FIELD) from None
    # strict_mode still accepts "QR==" for b"A"; re-encoding pins the one canonical form.
    if b64e(data) != text:
        raise RemoteProtocolError("base64 field is not valid base64", ErrorCode.BAD_FIELD)
    return data


__all__ = [
    "RandomBytes",
    "b64d",
    "b64e",
    "constant_time_equal",
    "encode_fields",
    "fingerprint",
    "hmac_sha256",
    "sha256",
]
