"""Authenticated encryption with associated data: ``seal`` and ``unseal``.

Owns: the two cipher suites of securechat (AES-256-GCM, and AES-256-CBC + HMAC-SHA256 in
encrypt-then-MAC), the counter-to-nonce rule, and ``AUDIT_HOOKS`` for the nonce-reuse audit.

Must not: choose nonces (the caller derives them from counters, so that they never repeat under one
key), keep cipher objects between calls, do I/O, or reveal *why* an ``unseal`` failed: a short input,
a bad tag and bad padding all raise the same ``IntegrityError`` (like Fernet's ``InvalidToken``).

Backends: AES-256-GCM runs on pycryptodome by default. ``set_backend("cryptography")``
selects pyca/cryptography's AESGCM for the GCM suite instead (~1 µs per call against pycryptodome's ~45-90 µs of
cipher setup). It is optional (``cryptography`` need not be installed), selected explicitly and process-wide,
and produces byte-identical output (tests/test_aead_backend.py). CBC-HMAC always runs on pycryptodome.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from Crypto.Cipher import AES
from Crypto.Util.Padding import pad, unpad

from securechat.crypto.encoding import constant_time_equal, encode_fields, hmac_sha256, sha256
from securechat.crypto.kdf import hkdf_sha256
from securechat.errors import ErrorCode, IntegrityError

#: AES-256: both suites take one 32-byte key.
KEY_BYTES = 32
#: 96-bit nonce, the size GCM is designed for (NIST SP 800-38D 8.2.1); pycryptodome's default is 16.
NONCE_BYTES = 12
#: Full 128-bit GCM tag; truncated tags weaken GCM's forgery bound.
TAG_BYTES = 16

#: Test-only instrumentation: every ``seal`` calls each hook with ``(sha256(key), nonce)`` before
#: encrypting, so a test can record all pairs and assert that no nonce repeats under one key.
#: The key is hashed so that a hook never sees key material. Leave it empty in production.
AUDIT_HOOKS: list[Callable[[bytes, bytes], None]] = []

_BLOCK_BYTES = 16  # AES block
_CBC_MAC_BYTES = 32  # full HMAC-SHA256 output, never truncated
_CBC_ENC_INFO = b"securechat v1 cbc-hmac enc"
_CBC_MAC_INFO = b"securechat v1 cbc-hmac mac"
_CBC_MAC_LABEL = "securechat v1 cbc-hmac"
# One message for every unseal failure: naming the failed check would give an oracle.
_UNSEAL_FAILED = "record failed authentication"


class CipherSuite(StrEnum):
    """The AEAD suites of securechat; the value is the name that travels on the wire."""

    AES_256_GCM = "aes-256-gcm"
    AES_256_CBC_HMAC_SHA256 = "aes-256-cbc-hmac-sha256"


def nonce_from_counter(counter: int) -> bytes:
    """The 12-byte nonce for message *counter*: 4 zero bytes, then the counter as 8 bytes big-endian.

    A strictly increasing counter per key gives unique nonces without any randomness.

    Raises:
        ValueError: *counter* is outside 0..2**64-1.
    """
    if isinstance(counter, bool) or not isinstance(counter, int):
        raise TypeError("counter must be an int")
    if not 0 <= counter < 2**64:
        raise ValueError("counter must be in 0..2**64-1")
    return bytes(4) + counter.to_bytes(8, "big")


def _check_inputs(key: bytes, nonce: bytes, aad: bytes) -> None:
    # Wrong sizes are the caller's bug, not a forgery: ValueError, never IntegrityError.
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        raise ValueError(f"key must be {KEY_BYTES} bytes")
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_BYTES:
        raise ValueError(f"nonce must be {NONCE_BYTES} bytes")
    if not isinstance(aad, bytes):
        raise TypeError("aad must be bytes")


def _check_data(data: bytes, name: str) -> None:
    # bytes(5) would silently be five zero bytes: refuse anything that is not already bytes.
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"{name} must be bytes")


# --- AES-256-GCM ---------------------------------------------------------------------------------


def _gcm_seal(key: bytes, plaintext: bytes, aad: bytes, nonce: bytes) -> bytes:
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce, mac_len=TAG_BYTES)  # one object per message
    cipher.update(aad)
    ciphertext, tag = cipher.encrypt_and_digest(plaintext)
    return ciphertext + tag


def _gcm_unseal(key: bytes, sealed: bytes, aad: bytes, nonce: bytes) -> bytes:
    if len(sealed) < TAG_BYTES:
        raise IntegrityError(_UNSEAL_FAILED, ErrorCode.BAD_RECORD)
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce, mac_len=TAG_BYTES)
    cipher.update(aad)
    try:
        return cipher.decrypt_and_verify(sealed[:-TAG_BYTES], sealed[-TAG_BYTES:])
    except ValueError:
        raise IntegrityError(_UNSEAL_FAILED, ErrorCode.BAD_RECORD) from None


# pyca/cryptography's AESGCM, loaded only by set_backend("cryptography"); None while it is not selected.
_PYCA: tuple[Any, type[Exception]] | None = None


def _pyca_gcm_seal(key: bytes, plaintext: bytes, aad: bytes, nonce: bytes) -> bytes:
    assert _PYCA is not None
    aesgcm, _ = _PYCA
    return bytes(aesgcm(key).encrypt(nonce, plaintext, aad))  # a new object per message, as above


def _pyca_gcm_unseal(key: bytes, sealed: bytes, aad: bytes, nonce: bytes) -> bytes:
    assert _PYCA is not None
    aesgcm, invalid_tag = _PYCA
    if len(sealed) < TAG_BYTES:
        raise IntegrityError(_UNSEAL_FAILED, ErrorCode.BAD_RECORD)
    try:
        return bytes(aesgcm(key).decrypt(nonce, sealed, aad))
    except invalid_tag:
        raise IntegrityError(_UNSEAL_FAILED, ErrorCode.BAD_RECORD) from None


# --- AES-256-CBC + HMAC-SHA256, encrypt-then-MAC ---------------------------------------------------


def _cbc_keys(key: bytes) -> tuple[bytes, bytes]:
    # Separate encryption and MAC keys: one key in two algorithms voids both security proofs.
    return (
        hkdf_sha256(key, salt=b"", info=_CBC_ENC_INFO),
        hkdf_sha256(key, salt=b"", info=_CBC_MAC_INFO),
    )


def _cbc_iv(enc_key: bytes, nonce: bytes) -> bytes:
    # CBC needs an IV the attacker cannot predict; encrypting the unique nonce under the secret
    # key gives one without randomness (the "encrypted counter" IV of NIST SP 800-38A App. C).
    return AES.new(enc_key, AES.MODE_ECB).encrypt(nonce + bytes(_BLOCK_BYTES - NONCE_BYTES))


def _cbc_encrypt(enc_key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    """Raw AES-CBC with PKCS#7 padding (any AES key size; exposed privately for Wycheproof)."""
    return AES.new(enc_key, AES.MODE_CBC, iv=iv).encrypt(pad(plaintext, _BLOCK_BYTES, style="pkcs7"))


def _cbc_decrypt(enc_key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """Raw AES-CBC decryption and PKCS#7 unpadding.

    Alone this is a padding oracle; ``unseal`` only calls it after the MAC has verified.
    """
    if not ciphertext or len(ciphertext) % _BLOCK_BYTES:
        raise IntegrityError(_UNSEAL_FAILED, ErrorCode.BAD_RECORD)
    padded = AES.new(enc_key, AES.MODE_CBC, iv=iv).decrypt(ciphertext)
    try:
        return unpad(padded, _BLOCK_BYTES, style="pkcs7")
    except ValueError:
        raise IntegrityError(_UNSEAL_FAILED, ErrorCode.BAD_RECORD) from None


def _cbc_tag(mac_key: bytes, aad: bytes, nonce: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    # The MAC covers aad, nonce and IV as well as the ciphertext, each length-prefixed.
    return hmac_sha256(mac_key, encode_fields(_CBC_MAC_LABEL, aad, nonce, iv, ciphertext))


def _cbc_hmac_seal(key: bytes, plaintext: bytes, aad: bytes, nonce: bytes) -> bytes:
    enc_key, mac_key = _cbc_keys(key)
    iv = _cbc_iv(enc_key, nonce)
    ciphertext = _cbc_encrypt(enc_key, iv, plaintext)
    return iv + ciphertext + _cbc_tag(mac_key, aad, nonce, iv, ciphertext)


def _cbc_hmac_unseal(key: bytes, sealed: bytes, aad: bytes, nonce: bytes) -> bytes:
    # iv (1 block) + at least one ciphertext block + tag, ciphertext a whole number of blocks.
    body = len(sealed) - _BLOCK_BYTES - _CBC_MAC_BYTES
    if body < _BLOCK_BYTES or body % _BLOCK_BYTES:
        raise IntegrityError(_UNSEAL_FAILED, ErrorCode.BAD_RECORD)
    enc_key, mac_key = _cbc_keys(key)
    iv, ciphertext, tag = sealed[:_BLOCK_BYTES], sealed[_BLOCK_BYTES:-_CBC_MAC_BYTES], sealed[-_CBC_MAC_BYTES:]
    # Verify before decrypting: unpadding unauthenticated data is the padding-oracle attack.
    if not constant_time_equal(_cbc_tag(mac_key, aad, nonce, iv, ciphertext), tag):
        raise IntegrityError(_UNSEAL_FAILED, ErrorCode.BAD_RECORD)
    return _cbc_decrypt(enc_key, iv, ciphertext)


_SEAL: dict[CipherSuite, Callable[[bytes, bytes, bytes, bytes], bytes]] = {
    CipherSuite.AES_256_GCM: _gcm_seal,
    CipherSuite.AES_256_CBC_HMAC_SHA256: _cbc_hmac_seal,
}
_UNSEAL: dict[CipherSuite, Callable[[bytes, bytes, bytes, bytes], bytes]] = {
    CipherSuite.AES_256_GCM: _gcm_unseal,
    CipherSuite.AES_256_CBC_HMAC_SHA256: _cbc_hmac_unseal,
}


#: The AEAD backends ``set_backend`` accepts; the first is the default.
BACKENDS = ("pycryptodome", "cryptography")
_backend = BACKENDS[0]


def backend() -> str:
    """The name of the AES-256-GCM backend in use: ``"pycryptodome"`` (default) or ``"cryptography"``."""
    return _backend


def set_backend(name: str) -> None:
    """Select the AES-256-GCM implementation for the whole process (optional, explicit).

    Both produce byte-identical output and raise the same ``IntegrityError``; only speed differs. Select it
    before any connection exists (records sealed by one backend open with the other, but a switch while
    threads seal is not a supported operation).

    Raises:
        ValueError: *name* is not one of ``BACKENDS``.
        RuntimeError: ``"cryptography"`` was asked for but the package is not installed; nothing changes.
    """
    global _PYCA, _backend
    if name not in BACKENDS:
        raise ValueError(f"unknown AEAD backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "cryptography":
        try:
            aead_module = importlib.import_module("cryptography.hazmat.primitives.ciphers.aead")
            exceptions = importlib.import_module("cryptography.exceptions")
        except ImportError as exc:
            raise RuntimeError(
                "AEAD backend 'cryptography' needs the optional package: pip install cryptography"
            ) from exc
        _PYCA = (aead_module.AESGCM, exceptions.InvalidTag)
        _SEAL[CipherSuite.AES_256_GCM] = _pyca_gcm_seal
        _UNSEAL[CipherSuite.AES_256_GCM] = _pyca_gcm_unseal
    else:
        _SEAL[CipherSuite.AES_256_GCM] = _gcm_seal
        _UNSEAL[CipherSuite.AES_256_GCM] = _gcm_unseal
    _backend = name


def seal(
    key: bytes, plaintext: bytes, *, aad: bytes, nonce: bytes, suite: CipherSuite = CipherSuite.AES_256_GCM
) -> bytes:
    """Encrypt *plaintext* and authenticate it together with the header bytes *aad*.

    The *nonce* must never repeat under one *key*: derive it with ``nonce_from_counter``.

    Returns:
        AES-256-GCM: ``ciphertext || tag`` (16-byte tag).
        AES-256-CBC-HMAC-SHA256: ``iv || ciphertext || tag`` (16-byte IV, 32-byte tag).

    Raises:
        ValueError: *key* is not 32 bytes or *nonce* not 12 bytes.
    """
    _check_inputs(key, nonce, aad)
    _check_data(plaintext, "plaintext")
    for hook in AUDIT_HOOKS:
        hook(sha256(key), nonce)
    return _SEAL[CipherSuite(suite)](key, bytes(plaintext), aad, nonce)


def unseal(
    key: bytes, sealed: bytes, *, aad: bytes, nonce: bytes, suite: CipherSuite = CipherSuite.AES_256_GCM
) -> bytes:
    """Check and decrypt the output of ``seal``; returns the plaintext.

    Raises:
        IntegrityError: (``BAD_RECORD``) for every failure: too short, bad tag, altered *aad* or
            *nonce*, bad padding. The caller may re-raise with another code.
        ValueError: *key* is not 32 bytes or *nonce* not 12 bytes (a bug of the caller).
    """
    _check_inputs(key, nonce, aad)
    _check_data(sealed, "sealed")
    return _UNSEAL[CipherSuite(suite)](key, bytes(sealed), aad, nonce)


__all__ = [
    "AUDIT_HOOKS",
    "BACKENDS",
    "KEY_BYTES",
    "NONCE_BYTES",
    "TAG_BYTES",
    "CipherSuite",
    "backend",
    "nonce_from_counter",
    "seal",
    "set_backend",
    "unseal",
]
