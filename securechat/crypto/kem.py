"""ML-KEM-768 (FIPS 203) key encapsulation for the hybrid handshake option (X25519 + ML-KEM-768).

Owns: ephemeral ML-KEM-768 key generation, the public key format (the raw 1184-byte FIPS 203
encapsulation key ``ek``, not its SPKI DER), encapsulation and decapsulation through HPKE (RFC 9180)
in export-only mode, and the checks on a peer's key share and ciphertext.

How the 32-byte secret is obtained (so that another implementation can interoperate): pycryptodome
4.4 exposes no public ML-KEM encaps/decaps, so both go through HPKE, base mode, with the ciphersuite
KEM 0x0041 (ML-KEM-768, draft-ietf-hpke-pq: the KEM shared secret is ML-KEM's 32-byte ``K`` as is),
KDF 0x0001 (HKDF-SHA256), AEAD 0xFFFF (export-only). ``enc`` is the 1088-byte ML-KEM ciphertext.
With ``suite_id = b"HPKE" || 0x0041 || 0x0001 || 0xFFFF`` (2 bytes big-endian each) and RFC 9180's
``LabeledExtract``/``LabeledExpand`` (prefix ``b"HPKE-v1"``)::

    info_hash   = LabeledExtract(b"", b"info_hash", context)        # context is HPKE's info
    psk_id_hash = LabeledExtract(b"", b"psk_id_hash", b"")
    ksc         = 0x00 || psk_id_hash || info_hash                  # mode_base
    secret      = LabeledExtract(K, b"secret", b"")                 # psk = b""
    exporter    = LabeledExpand(secret, b"exp", ksc, 32)
    result      = LabeledExpand(exporter, b"sec", b"", 32)          # Export(exporter_context=b"", L=32)

i.e. RFC 9180 ``SendExport``/``ReceiveExport`` with ``info = context``, ``exporter_context = b""``
and ``L = 32``. The caller's ``context`` (the protocol label) is therefore bound into every secret.

Implicit rejection: ML-KEM never reports a tampered ciphertext of the right length; decapsulation
then yields a pseudorandom, unrelated secret. The caller's key confirmation (the transcript MAC of
the handshake) is what detects it.

Randomness: key generation draws its 64-byte seed ``d || z`` from the injected ``random_bytes``.
Encapsulation cannot be driven by it: ``HPKE.new`` has no ``randfunc`` parameter and draws the
32-byte ML-KEM message ``m`` from ``Crypto.Random.get_random_bytes`` (the OS generator) itself, so
``encapsulate`` accepts ``random_bytes`` for the house signature but does not use it, and its
output is not reproducible.

Must not: derive channel keys or combine this secret with the X25519 one (the caller runs HKDF over
both secrets and the transcript), keep keys between handshakes, or do I/O.
"""

from __future__ import annotations

import os

from Crypto.Protocol import HPKE
from Crypto.PublicKey import MLKEM
from Crypto.PublicKey.MLKEM import MLKEMKey

from securechat.crypto.encoding import RandomBytes
from securechat.crypto.key_types import KemPrivateKey
from securechat.errors import AuthenticationError, ErrorCode

#: Raw FIPS 203 ML-KEM-768 encapsulation key length (FIPS 203, Table 3), as we send it.
MLKEM768_PUBLIC_BYTES = 1184
#: ML-KEM-768 ciphertext length (FIPS 203, Table 3): the HPKE ``enc`` we send back.
MLKEM768_CIPHERTEXT_BYTES = 1088
_SECRET_BYTES = 32
_PARAM_SET = MLKEM.ML_KEM_768
_EXPORTER_CONTEXT = b""
_BAD_SHARE = "bad key share"


def generate_kem_key(*, random_bytes: RandomBytes = os.urandom) -> tuple[KemPrivateKey, bytes]:
    """A fresh ML-KEM-768 key pair: (private key object, raw 1184-byte encapsulation key).

    The 64-byte seed comes from *random_bytes*, so a seeded source gives the same key pair.
    """
    private_key = MLKEM.generate(param_set=_PARAM_SET, randfunc=random_bytes)
    return private_key, bytes(private_key.ek)


def _check_context(context: bytes) -> None:
    if not isinstance(context, bytes):
        raise TypeError("the KEM context must be bytes")


def encapsulate(
    peer_public: bytes, *, context: bytes, random_bytes: RandomBytes = os.urandom
) -> tuple[bytes, bytes]:
    """Encapsulate to the peer's raw encapsulation key: (1088-byte ciphertext, 32-byte secret).

    *random_bytes* is not used: pycryptodome's HPKE draws the encapsulation randomness from the OS
    itself (see the module docstring).

    Raises:
        AuthenticationError: (``HANDSHAKE_FAILED``) "bad key share" for a peer key that is not
            1184 bytes or fails the FIPS 203 modulus check.
        TypeError: *context* is not bytes (a local bug).
    """
    del random_bytes  # not injectable in pycryptodome 4.4 (HPKE.new has no randfunc)
    _check_context(context)
    if not isinstance(peer_public, bytes) or len(peer_public) != MLKEM768_PUBLIC_BYTES:
        raise AuthenticationError(_BAD_SHARE, ErrorCode.HANDSHAKE_FAILED)
    try:
        peer_key = MLKEM.construct(param_set=_PARAM_SET, ek=peer_public)
        sender = HPKE.new(receiver_key=peer_key, aead_id=HPKE.AEAD.EXPORT_ONLY, info=context)
        secret = bytes(sender.export(_EXPORTER_CONTEXT, _SECRET_BYTES))
    except (ValueError, TypeError):
        raise AuthenticationError(_BAD_SHARE, ErrorCode.HANDSHAKE_FAILED) from None
    ciphertext = bytes(sender.enc)
    if len(ciphertext) != MLKEM768_CIPHERTEXT_BYTES:  # pragma: no cover - library invariant
        raise AuthenticationError(_BAD_SHARE, ErrorCode.HANDSHAKE_FAILED)
    return ciphertext, secret


def decapsulate(private_key: KemPrivateKey, ciphertext: bytes, *, context: bytes) -> bytes:
    """The 32-byte secret that :func:`encapsulate` produced for *ciphertext* under *context*.

    A tampered ciphertext of the right length is not detected here (ML-KEM implicit rejection):
    it yields a different, pseudorandom secret, which the handshake's key confirmation refuses.

    Raises:
        AuthenticationError: (``HANDSHAKE_FAILED``) "bad key share" for a ciphertext that is not
            1088 bytes or that the library refuses.
        TypeError: *private_key* is not an ML-KEM-768 private key, or *context* is not bytes
            (local bugs).
    """
    if not (
        isinstance(private_key, MLKEMKey)
        and private_key.param_set == _PARAM_SET
        and private_key.has_private()
    ):
        raise TypeError("decapsulate needs an ML-KEM-768 private key")
    _check_context(context)
    if not isinstance(ciphertext, bytes) or len(ciphertext) != MLKEM768_CIPHERTEXT_BYTES:
        raise AuthenticationError(_BAD_SHARE, ErrorCode.HANDSHAKE_FAILED)
    try:
        receiver = HPKE.new(
            receiver_key=private_key, aead_id=HPKE.AEAD.EXPORT_ONLY, enc=ciphertext, info=context
        )
        return bytes(receiver.export(_EXPORTER_CONTEXT, _SECRET_BYTES))
    except (ValueError, TypeError):
        raise AuthenticationError(_BAD_SHARE, ErrorCode.HANDSHAKE_FAILED) from None


__all__ = [
    "MLKEM768_CIPHERTEXT_BYTES",
    "MLKEM768_PUBLIC_BYTES",
    "decapsulate",
    "encapsulate",
    "generate_kem_key",
]
