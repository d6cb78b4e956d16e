"""Key wrapping: a symmetric key encrypted to one member's RSA public key with RSA-OAEP.

Owns: ``wrap_key``/``unwrap_key`` (RSA-OAEP, RFC 8017 7.1, with SHA-256, MGF1-SHA-256 and the empty
label), used to hand a group session key to each member.

Must not: do I/O, or tell a caller (or a peer watching error codes and timing) why an unwrap
failed: bad length, bad padding, wrong key and unexpected plaintext length all raise the same
``IntegrityError``, since distinguishable OAEP errors are Manger's attack.
"""

from __future__ import annotations

import os
from typing import Any

from Crypto.Cipher import oaep
from Crypto.Hash import SHA256
from Crypto.PublicKey.RSA import RsaKey
from Crypto.Signature import pss

from securechat.crypto.encoding import RandomBytes
from securechat.crypto.key_types import EncryptionPrivateKey, EncryptionPublicKey
from securechat.crypto.keys import RSA_BITS
from securechat.errors import ErrorCode, IntegrityError

_UNWRAP_FAILED = "key unwrap failed"


def _oaep(key: RsaKey, *, label: bytes = b"", random_bytes: RandomBytes | None = None) -> Any:
    # Hash and MGF hash are explicit: the legacy PKCS1_OAEP.new(key) still defaults to SHA-1.
    return oaep.new(
        key,
        hashmod=SHA256,
        mask_func=lambda seed, length: pss.MGF1(seed, length, SHA256),
        label=label,
        rand_func=random_bytes,
    )


def _check_rsa(key: EncryptionPublicKey | EncryptionPrivateKey, *, private: bool) -> RsaKey:
    # A key of the wrong kind is the caller's bug, not something a peer can cause: TypeError.
    if not isinstance(key, RsaKey) or key.n.bit_length() < RSA_BITS:
        raise TypeError(f"key wrapping needs an RSA key of at least {RSA_BITS} bits")
    if private and not key.has_private():
        raise TypeError("unwrap_key needs a private RSA key")
    return key


def wrap_key(public_key: EncryptionPublicKey, key: bytes, *, random_bytes: RandomBytes = os.urandom) -> bytes:
    """Encrypt the symmetric *key* to *public_key* (RSA >= 2048 bits) with RSA-OAEP-SHA256.

    Returns:
        The wrapped key, as long as the RSA modulus (256 bytes for RSA-2048).

    Raises:
        TypeError: *public_key* is not an RSA key of at least 2048 bits, or *key* is not bytes.
        ValueError: *key* is too long for OAEP (more than 190 bytes for RSA-2048).
    """
    if not isinstance(key, bytes):
        raise TypeError("the key to wrap must be bytes")
    return bytes(_oaep(_check_rsa(public_key, private=False), random_bytes=random_bytes).encrypt(key))


def _oaep_decrypt(private_key: RsaKey, wrapped: bytes, label: bytes) -> bytes:
    """OAEP decryption with an explicit *label* (for the Wycheproof vectors); same errors as unwrap."""
    try:
        return bytes(_oaep(private_key, label=label).decrypt(wrapped))
    except (ValueError, TypeError, IndexError):
        raise IntegrityError(_UNWRAP_FAILED, ErrorCode.KEY_UNWRAP_FAILED) from None


def unwrap_key(private_key: EncryptionPrivateKey, wrapped: bytes, *, expected_length: int | None = 32) -> bytes:
    """Recover a key wrapped by ``wrap_key``; *expected_length* None accepts any length.

    Raises:
        IntegrityError: (``KEY_UNWRAP_FAILED``) for every failure, always with the message
            "key unwrap failed".
        TypeError: *private_key* is not a private RSA key of at least 2048 bits (a local bug).
    """
    rsa_key = _check_rsa(private_key, private=True)
    if not isinstance(wrapped, bytes):
        raise IntegrityError(_UNWRAP_FAILED, ErrorCode.KEY_UNWRAP_FAILED)
    key = _oaep_decrypt(rsa_key, wrapped, b"")
    if expected_length is not None and len(key) != expected_length:
        raise IntegrityError(_UNWRAP_FAILED, ErrorCode.KEY_UNWRAP_FAILED)
    return key


__all__ = ["unwrap_key", "wrap_key"]
