"""Key derivation: HKDF-SHA256 for keys from secrets, scrypt for passwords.

Owns: ``hkdf_sha256``, the scrypt parameter sets (``ScryptParams``, ``OWASP_SCRYPT``, ``FAST_SCRYPT``)
and the self-describing password records of ``hash_password``/``verify_password``.

Must not: do I/O, read a clock, or draw randomness except through the injected ``random_bytes``.
A wrong password is a normal outcome (docs/STYLE.md 6): ``verify_password`` returns False, never raises.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass

from Crypto.Hash import SHA256
from Crypto.Protocol.KDF import HKDF, scrypt

from securechat.crypto.encoding import RandomBytes, b64d, b64e, constant_time_equal
from securechat.errors import RemoteProtocolError

#: Salt length of a password record: 128 bits, the NIST SP 800-132 minimum, unique per record.
SALT_BYTES = 16
#: Length of the stored scrypt output: 256 bits, as much as SHA-256 can carry.
HASH_BYTES = 32

# verify_password() refuses records asking for more memory than this, so a corrupted or planted
# record cannot make one login allocate gigabytes. 256 MiB is twice OWASP_SCRYPT.
_MAX_SCRYPT_MEMORY_BYTES = 256 * 2**20
_RECORD_PREFIX = "scrypt"
# n, r and p as plain decimal numbers: no sign, no leading zero, no whitespace.
_DECIMAL = re.compile(r"[1-9][0-9]{0,9}")


@dataclass(frozen=True)
class ScryptParams:
    """scrypt cost parameters (RFC 7914).

    Fields:
        n: CPU/memory cost, a power of two >= 2.
        r: block size (8 in every common recommendation).
        p: parallelisation.
    """

    n: int
    r: int = 8
    p: int = 1

    def __post_init__(self) -> None:
        for name in ("n", "r", "p"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"ScryptParams.{name} must be an int")
        if self.n < 2 or self.n & (self.n - 1):
            raise ValueError("ScryptParams.n must be a power of two >= 2")
        if self.r < 1 or self.p < 1:
            raise ValueError("ScryptParams.r and .p must be >= 1")

    @property
    def memory_bytes(self) -> int:
        """Memory one hash needs, 128*n*r*p bytes (p flows run one after the other, but this is
        the usual figure quoted for a parameter set)."""
        return 128 * self.n * self.r * self.p


#: OWASP Password Storage Cheat Sheet minimum for scrypt: 2^17, r=8, p=1 (128 MiB, ~0.3 s).
OWASP_SCRYPT = ScryptParams(n=2**17, r=8, p=1)
#: For tests and demos ONLY (1 MiB, ~2 ms): far too cheap to slow down a password guesser.
FAST_SCRYPT = ScryptParams(n=2**10, r=8, p=1)


def hkdf_sha256(ikm: bytes, *, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF (RFC 5869) with SHA-256: extract with *salt*, expand with *info* to *length* bytes.

    An empty *salt* means HashLen zero bytes, as RFC 5869 section 2.2 says (pycryptodome's HKDF
    does this substitution itself, checked by the Wycheproof EmptySalt vectors).

    Raises:
        ValueError: *length* is < 1 or > 255*32 = 8160 (the RFC 5869 maximum).
    """
    if length < 1:
        raise ValueError("hkdf_sha256: length must be >= 1")
    # pycryptodome raises ValueError itself above 255*HashLen ("SizeTooLarge" vectors).
    return HKDF(ikm, length, salt, SHA256, 1, context=info)


def _normalise(password: str) -> bytes:
    # NFC first: "é" typed as one code point or as "e" + combining accent must hash the same.
    if not isinstance(password, str):
        raise TypeError("password must be a str")
    return unicodedata.normalize("NFC", password).encode("utf-8")


def _scrypt(password: str, salt: bytes, params: ScryptParams) -> bytes:
    """scrypt (RFC 7914). The standard library's OpenSSL scrypt when the build has it, else pycryptodome's.

    Both give the same bytes (tests/test_crypto.py checks RFC 7914's vectors and equality), so records made by
    one verify with the other. OpenSSL's is about 25 % faster and releases the GIL for the whole
    computation, which is what lets a burst of logins at the OWASP cost use both cores (docs/PERFORMANCE.md).
    """
    secret = _normalise(password)
    if _HASHLIB_SCRYPT:
        return hashlib.scrypt(secret, salt=salt, n=params.n, r=params.r, p=params.p, dklen=HASH_BYTES,
                              maxmem=params.memory_bytes + 2**20)
    return scrypt(secret, salt, HASH_BYTES, params.n, params.r, params.p)


def _pycryptodome_scrypt(password: bytes, salt: bytes, params: ScryptParams, length: int) -> bytes:
    """pycryptodome's scrypt, kept callable so tests can compare both implementations."""
    return scrypt(password, salt, length, params.n, params.r, params.p)


_HASHLIB_SCRYPT = hasattr(hashlib, "scrypt")


def hash_password(password: str, params: ScryptParams, *, random_bytes: RandomBytes = os.urandom) -> str:
    """Hash *password* with scrypt and a fresh salt into a self-describing record.

    The record is ``"scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>"``: it carries its own parameters,
    so the cost can be raised later without invalidating stored records. The password is
    NFC-normalised, then encoded as UTF-8, before hashing.
    """
    salt = random_bytes(SALT_BYTES)
    if len(salt) != SALT_BYTES:
        raise ValueError("random_bytes returned the wrong number of bytes")
    digest = _scrypt(password, salt, params)
    return "$".join((_RECORD_PREFIX, str(params.n), str(params.r), str(params.p), b64e(salt), b64e(digest)))


def _parse_record(record: str) -> tuple[ScryptParams, bytes, bytes] | None:
    """Split a record into (params, salt, hash); None if anything is off."""
    if not isinstance(record, str):
        return None
    parts = record.split("$")
    if len(parts) != 6 or parts[0] != _RECORD_PREFIX:
        return None
    if not all(_DECIMAL.fullmatch(text) for text in parts[1:4]):
        return None
    try:
        params = ScryptParams(n=int(parts[1]), r=int(parts[2]), p=int(parts[3]))
        salt, digest = b64d(parts[4]), b64d(parts[5])
    except (ValueError, RemoteProtocolError):
        return None
    if params.memory_bytes > _MAX_SCRYPT_MEMORY_BYTES:
        return None
    if len(salt) != SALT_BYTES or len(digest) != HASH_BYTES:
        return None
    return params, salt, digest


def verify_password(password: str, record: str) -> bool:
    """True if *password* matches *record* (from ``hash_password``); False otherwise.

    A malformed record, or one demanding more than 256 MiB, gives False rather than an exception:
    the caller treats it like a wrong password. The hashes are compared in constant time.
    """
    parsed = _parse_record(record)
    if parsed is None:
        return False
    params, salt, expected = parsed
    try:
        actual = _scrypt(password, salt, params)
    except (TypeError, ValueError):
        return False
    return constant_time_equal(actual, expected)


def dummy_password_record(params: ScryptParams, *, random_bytes: RandomBytes = os.urandom) -> str:
    """A valid record for a random password nobody knows.

    A server checks a login for an unknown user against such a record, so that the failure costs
    one scrypt like a wrong password does, and timing does not reveal which usernames exist.
    """
    return hash_password(b64e(random_bytes(SALT_BYTES)), params, random_bytes=random_bytes)


__all__ = [
    "FAST_SCRYPT",
    "HASH_BYTES",
    "OWASP_SCRYPT",
    "SALT_BYTES",
    "ScryptParams",
    "dummy_password_record",
    "hash_password",
    "hkdf_sha256",
    "verify_password",
]
