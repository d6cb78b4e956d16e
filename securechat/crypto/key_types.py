"""The names of the kinds of key securechat holds, for annotations everywhere in the package.

Owns: one type name per role a key plays (PROTOCOL.md 6.1: every user has an RSA-OAEP encryption key pair and a
signing key pair of one ``SignatureScheme``; the server signs with a key of its own; each handshake makes an
ephemeral X25519 key and, in the hybrid option, an ML-KEM-768 key, PROTOCOL.md 5). The key objects themselves are
pycryptodome's; these names are aliases over its classes, so that code outside ``securechat.crypto`` can say which
kind of key it holds without importing pycryptodome (docs/STYLE.md section 5) and without passing keys as ``object``.
Only ``securechat.crypto`` looks inside a key.

The aliases say what a key is for; the crypto functions still check at run time that a key is of the kind and size
they need (a DSA key handed to ``wrap_key`` raises ``TypeError``, one offered to ``verify`` for the RSA-PSS scheme
is a failed verification), because roles that share a class (an RSA signing key and an RSA encryption key) cannot
be told apart by the type checker.

Must not: hold any logic, or be imported for anything but annotations and ``isinstance`` checks.
"""

from __future__ import annotations

from typing import TypeAlias

from Crypto.PublicKey.DSA import DsaKey
from Crypto.PublicKey.ECC import EccKey
from Crypto.PublicKey.MLKEM import MLKEMKey
from Crypto.PublicKey.RSA import RsaKey

#: Any long-term key object securechat imports or exports (SPKI DER, PKCS#8 PEM), public or private:
#: RSA, DSA, ECC P-256 or Ed25519.
AnyKey: TypeAlias = RsaKey | DsaKey | EccKey

#: A private signing key: RSA-PSS (RSA), DSA, ECDSA P-256 or Ed25519 (ECC), per ``SignatureScheme``.
#: A user's identity signing key and the server's (CA) key are both of this kind.
SigningKey: TypeAlias = RsaKey | DsaKey | EccKey

#: The public half of a ``SigningKey``: checks signatures (``verify``, ``verify_certificate``).
VerifyKey: TypeAlias = RsaKey | DsaKey | EccKey

#: A private RSA-OAEP key (RSA >= 2048 bits): unwraps keys wrapped to its public half (``unwrap_key``).
EncryptionPrivateKey: TypeAlias = RsaKey

#: The public half of an ``EncryptionPrivateKey``: keys are wrapped to it (``wrap_key``).
EncryptionPublicKey: TypeAlias = RsaKey

#: A public key received as SPKI DER (``load_public_key``): a ``VerifyKey`` or an ``EncryptionPublicKey``.
PublicKey: TypeAlias = VerifyKey | EncryptionPublicKey

#: An ephemeral X25519 private key of one handshake (``generate_ephemeral``, ``shared_secret``).
EphemeralKey: TypeAlias = EccKey

#: An ephemeral ML-KEM-768 private key of one hybrid handshake (``generate_kem_key``, ``decapsulate``).
KemPrivateKey: TypeAlias = MLKEMKey

__all__ = [
    "AnyKey",
    "EncryptionPrivateKey",
    "EncryptionPublicKey",
    "EphemeralKey",
    "KemPrivateKey",
    "PublicKey",
    "SigningKey",
    "VerifyKey",
]
