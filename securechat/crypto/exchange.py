"""Ephemeral X25519 key agreement (RFC 7748) for the client-server channel.

Owns: ephemeral key generation, the raw 32-byte public key format, and the checks on a peer's key
share: wrong length, low-order points and an all-zero shared secret are refused.

Must not: derive channel keys (the caller runs HKDF over the shared secret and the transcript),
keep keys between handshakes, or do I/O.
"""

from __future__ import annotations

import os

from Crypto.Protocol import DH
from Crypto.PublicKey import ECC
from Crypto.PublicKey.ECC import EccKey

from securechat.crypto.encoding import RandomBytes, constant_time_equal
from securechat.crypto.key_types import EphemeralKey
from securechat.errors import AuthenticationError, ErrorCode

#: Raw X25519 public key (and shared secret) length, RFC 7748 section 5.
X25519_PUBLIC_BYTES = 32
_CURVE = "Curve25519"  # pycryptodome's name in EccKey.curve
_BAD_SHARE = "bad key share"


def generate_ephemeral(*, random_bytes: RandomBytes = os.urandom) -> tuple[EphemeralKey, bytes]:
    """A fresh X25519 key pair: (private key object, raw 32-byte public key)."""
    private_key = ECC.generate(curve="curve25519", randfunc=random_bytes)
    return private_key, bytes(private_key.public_key().export_key(format="raw"))


def _private_from_raw(raw: bytes) -> EphemeralKey:
    """An X25519 private key object from its raw 32 bytes. For the Wycheproof vectors only."""
    return DH.import_x25519_private_key(raw)


def shared_secret(private_key: EphemeralKey, peer_public: bytes) -> bytes:
    """The 32-byte X25519 shared secret between *private_key* and the peer's raw public key.

    pycryptodome 4.4 already refuses the low-order points (the 12 encodings of the 8-torsion
    points and their non-canonical twins) when importing; the all-zero check below stays as the
    RFC 7748 section 6.1 safeguard, independent of the library.

    Raises:
        AuthenticationError: (``HANDSHAKE_FAILED``) "bad key share" for a peer key that is not 32
            bytes, is rejected by the library, or yields the all-zero secret.
        TypeError: *private_key* is not an X25519 private key (a local bug).
    """
    if not (isinstance(private_key, EccKey) and private_key.curve == _CURVE and private_key.has_private()):
        raise TypeError("shared_secret needs an X25519 private key")
    if not isinstance(peer_public, bytes) or len(peer_public) != X25519_PUBLIC_BYTES:
        raise AuthenticationError(_BAD_SHARE, ErrorCode.HANDSHAKE_FAILED)
    try:
        peer_key = DH.import_x25519_public_key(peer_public)
        secret = bytes(DH.key_agreement(static_priv=private_key, static_pub=peer_key, kdf=lambda z: z))
    except (ValueError, TypeError):
        raise AuthenticationError(_BAD_SHARE, ErrorCode.HANDSHAKE_FAILED) from None
    # A low-order peer point forces this value whatever our key: the channel would be unkeyed.
    if len(secret) != X25519_PUBLIC_BYTES or constant_time_equal(secret, bytes(X25519_PUBLIC_BYTES)):
        raise AuthenticationError(_BAD_SHARE, ErrorCode.HANDSHAKE_FAILED)
    return secret


__all__ = ["X25519_PUBLIC_BYTES", "generate_ephemeral", "shared_secret"]
