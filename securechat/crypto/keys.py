"""Key objects: generation of encryption keys, import/export, fingerprints and inspection.

Owns: the RSA encryption key size, the SubjectPublicKeyInfo (SPKI) DER form in which public keys
travel and are certified, the encrypted PKCS#8 PEM form in which private keys rest on disk, key
fingerprints, and ``describe_key`` for the notebooks. Key objects are pycryptodome's; other packages
name them by role with the aliases of ``securechat.crypto.key_types`` and only securechat.crypto
looks inside them.

Must not: do I/O (callers read and write the files), accept a public key in any form other than
canonical SPKI DER, or write a private key unencrypted.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeGuard

from Crypto import IncorrectPassphraseError
from Crypto.PublicKey import DSA, ECC, RSA
from Crypto.PublicKey.DSA import DsaKey
from Crypto.PublicKey.ECC import EccKey
from Crypto.PublicKey.RSA import RsaKey
from Crypto.Util.asn1 import DerBitString, DerInteger, DerObjectId, DerSequence

from securechat.crypto.encoding import RandomBytes, fingerprint
from securechat.crypto.key_types import AnyKey, EncryptionPrivateKey, EncryptionPublicKey, PublicKey
from securechat.crypto.signatures import DSA_2048_256_DOMAIN
from securechat.errors import AuthenticationError, ErrorCode, RemoteProtocolError

#: RSA modulus size for encryption (and RSA-PSS) keys: 112-bit security (NIST SP 800-57 table 2).
RSA_BITS = 2048
# Verifying or encrypting costs grow with the modulus; nothing in securechat makes larger keys.
_RSA_MAX_BITS = 4096
_RSA_E = 65537
# A 4096-bit RSA or 3072-bit DSA SPKI is < 1300 bytes; anything longer is not a key we use.
_MAX_PUBLIC_KEY_DER_BYTES = 2048
_DSA_L_BITS = (2048, 3072)
_CURVES = ("NIST P-256", "Ed25519")


def _dsa_domain(der: bytes) -> tuple[int, int, int]:
    spki = DerSequence().decode(der, nr_elements=2)
    algorithm = DerSequence().decode(spki[0], nr_elements=2)
    params = DerSequence().decode(algorithm[1], nr_elements=3, only_ints_expected=True)
    return int(params[0]), int(params[1]), int(params[2])


def _import_dsa(der: bytes) -> DsaKey:
    """DSA SPKI import that skips re-proving the primality of our own fixed domain.

    pycryptodome's importer re-tests p and q for primality on every import (about 20 ms for L=2048). For the
    domain securechat ships (``DSA_2048_256_DOMAIN``, already verified) that work is wasted, and it made a login
    for an existing DSA user measurably slower than one for an unknown name (docs/THREATS.md 17). Any other domain
    goes through the full importer. The subgroup check on y still runs for every key (``_acceptable_key``).
    """
    p, q, g = _dsa_domain(der)
    if (p, q, g) != DSA_2048_256_DOMAIN:
        return DSA.import_key(der)
    spki = DerSequence().decode(der, nr_elements=2)
    y = DerInteger().decode(DerBitString().decode(spki[1]).value).value
    return DSA.construct((y, g, p, q), consistency_check=False)


_DSA_OID = "1.2.840.10040.4.1"  # id-dsa (RFC 3279)
# The SPKI algorithm OIDs we accept, each with the one importer that may read it.
_IMPORTERS: dict[str, Callable[[bytes], AnyKey]] = {
    "1.2.840.113549.1.1.1": RSA.import_key,  # rsaEncryption (RFC 8017)
    _DSA_OID: _import_dsa,
    "1.2.840.10045.2.1": ECC.import_key,  # id-ecPublicKey (RFC 5480)
    "1.3.101.112": ECC.import_key,  # id-Ed25519 (RFC 8410)
}

# PKCS#8 protection: scrypt + AES-256-CBC. pycryptodome's default scrypt cost (N=2^17, 128 MiB) is
# refused by OpenSSL 3.0, whose scrypt PBE stops at 32 MiB; N=2^14, r=8, p=5 (16 MiB) is one of the
# OWASP-equivalent scrypt settings and OpenSSL reads it (tests/test_crypto.py checks with `openssl pkey`).
_PKCS8_PROTECTION = "scryptAndAES256-CBC"
# salt_size: pycryptodome's default is 8 bytes; 16 matches our password records (NIST SP 800-132).
# Typed Any: pycryptodome types it as its private ProtParams TypedDict.
_PKCS8_PARAMS: Any = {"iteration_count": 2**14, "block_size": 8, "parallelization": 5, "salt_size": 16}
_ENCRYPTED_PEM_HEADER = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"
_PRIVATE_KEY_FAILED = "private key file could not be opened"
_BAD_PUBLIC_KEY = "public key is not a valid SubjectPublicKeyInfo of a supported kind"


def _supported(key: object) -> TypeGuard[AnyKey]:
    return isinstance(key, (RsaKey, DsaKey)) or (isinstance(key, EccKey) and key.curve in _CURVES)


def _require_supported(key: AnyKey) -> AnyKey:
    if isinstance(key, (RsaKey, DsaKey)) or (isinstance(key, EccKey) and key.curve in _CURVES):
        return key
    raise TypeError(f"unsupported key object {type(key).__name__}")


def generate_encryption_key(*, random_bytes: RandomBytes = os.urandom) -> EncryptionPrivateKey:
    """A new RSA-2048 private key (e = 65537) for RSA-OAEP key wrapping."""
    return RSA.generate(RSA_BITS, randfunc=random_bytes, e=_RSA_E)


def public_of(key: AnyKey) -> AnyKey:
    """The public half of *key* (itself if already public)."""
    return _require_supported(key).public_key()


def public_key_der(key: AnyKey) -> bytes:
    """The SubjectPublicKeyInfo DER (RFC 5280 4.1) of *key*'s public half.

    Works for RSA, DSA, ECC P-256 and Ed25519 key objects, public or private. ECC points are
    uncompressed, so one key has one encoding.
    """
    der = _require_supported(key).public_key().export_key(format="DER")
    return bytes(der)


def public_key_pem(key: AnyKey) -> str:
    """The SPKI of *key*'s public half as PEM text (``-----BEGIN PUBLIC KEY-----``), newline-terminated."""
    pem = _require_supported(key).public_key().export_key(format="PEM")
    # RSA and DSA return bytes, ECC returns str; none ends with a newline, as PEM files do.
    text = pem.decode("ascii") if isinstance(pem, bytes) else str(pem)
    return text.rstrip("\n") + "\n"


def _algorithm_oid(der: bytes) -> str:
    # SubjectPublicKeyInfo ::= SEQUENCE { algorithm SEQUENCE { OID, params OPTIONAL }, BIT STRING }
    spki = DerSequence().decode(der, nr_elements=2)
    algorithm = DerSequence().decode(spki[0], nr_elements=(1, 2))
    return str(DerObjectId().decode(algorithm[0]).value)


def is_encryption_key(key: AnyKey) -> TypeGuard[EncryptionPublicKey | EncryptionPrivateKey]:
    """True for an RSA key usable with RSA-OAEP here (``wrap_key``/``unwrap_key``): 2048 to 4096 bits."""
    return isinstance(key, RsaKey) and RSA_BITS <= key.n.bit_length() <= _RSA_MAX_BITS


def _acceptable_key(key: AnyKey) -> bool:
    if isinstance(key, RsaKey):
        return is_encryption_key(key)
    if isinstance(key, DsaKey):
        p, q, y = int(key.p), int(key.q), int(key.y)
        # pycryptodome checks 0 < y < p only; also demand y in the order-q subgroup (SP 800-89 5.3.1).
        return p.bit_length() in _DSA_L_BITS and 1 < y < p - 1 and pow(y, q, p) == 1
    return isinstance(key, EccKey) and key.curve in _CURVES


def load_public_key(der: bytes, *, reference_dsa_domain: bool = False) -> PublicKey:
    """Import a public key received from a peer, strictly.

    Accepts only canonical SPKI DER of an RSA (2048-4096 bits), DSA (p of 2048 or 3072 bits),
    ECC P-256 or Ed25519 public key: the bytes must equal what ``public_key_der`` would produce
    for the key, so PEM, OpenSSH, certificates, private keys, BER variants and trailing data are all
    refused. With *reference_dsa_domain*, a DSA key must use ``DSA_2048_256_DOMAIN``: it is refused
    before any primality proving of another domain (tens of milliseconds of work a stranger could
    make the server do at will; PROTOCOL.md 6.1).

    Raises:
        RemoteProtocolError: (``BAD_FIELD``) for anything else.
    """
    if not isinstance(der, bytes) or not 0 < len(der) <= _MAX_PUBLIC_KEY_DER_BYTES:
        raise RemoteProtocolError(_BAD_PUBLIC_KEY, ErrorCode.BAD_FIELD)
    try:
        oid = _algorithm_oid(der)
        if reference_dsa_domain and oid == _DSA_OID and _dsa_domain(der) != DSA_2048_256_DOMAIN:
            raise RemoteProtocolError("DSA keys must use the reference domain", ErrorCode.BAD_FIELD)
        key: AnyKey = _IMPORTERS[oid](der)
        canonical = not key.has_private() and public_key_der(key) == der
    except (KeyError, ValueError, IndexError, TypeError):
        canonical = False
    if not canonical or not _acceptable_key(key):
        raise RemoteProtocolError(_BAD_PUBLIC_KEY, ErrorCode.BAD_FIELD)
    return key


def private_key_pem(key: AnyKey, passphrase: str, *, random_bytes: RandomBytes = os.urandom) -> bytes:
    """*key* as an encrypted PKCS#8 PEM (``-----BEGIN ENCRYPTED PRIVATE KEY-----``).

    Protection: PBES2 with scrypt (N=2^14, r=8, p=5, 16-byte salt) and AES-256-CBC, readable by OpenSSL 3.0
    (``openssl pkey -in key.pem``). *random_bytes* supplies the scrypt salt and the CBC IV.

    Raises:
        ValueError: *key* has no private half, or *passphrase* is empty.
    """
    private = _require_supported(key)
    if not private.has_private():
        raise ValueError("private_key_pem needs a private key")
    if not isinstance(passphrase, str) or not passphrase:
        raise ValueError("passphrase must be a non-empty str")
    protection, params = _PKCS8_PROTECTION, _PKCS8_PARAMS
    # Each key class spells "PKCS#8, please" differently: pkcs=8, pkcs8=True, use_pkcs8=True.
    pem: bytes | str
    if isinstance(private, RsaKey):
        pem = private.export_key(
            format="PEM",
            passphrase=passphrase,
            pkcs=8,
            protection=protection,
            randfunc=random_bytes,
            prot_params=params,
        )
    elif isinstance(private, DsaKey):
        pem = private.export_key(
            format="PEM",
            passphrase=passphrase,
            pkcs8=True,
            protection=protection,
            randfunc=random_bytes,
            prot_params=params,
        )
    else:
        pem = private.export_key(
            format="PEM",
            passphrase=passphrase,
            use_pkcs8=True,
            protection=protection,
            randfunc=random_bytes,
            prot_params=params,
        )
    return pem.encode("ascii") if isinstance(pem, str) else bytes(pem)


def load_private_key(pem: bytes, passphrase: str) -> AnyKey:
    """Decrypt a private key written by ``private_key_pem``.

    Only encrypted PKCS#8 is accepted: a plaintext key file means the file was not written by us.

    Raises:
        AuthenticationError: (``AUTH_FAILED``) wrong passphrase or unreadable file (one message).
    """
    failed = AuthenticationError(_PRIVATE_KEY_FAILED, ErrorCode.AUTH_FAILED)
    if not isinstance(pem, bytes) or not pem.lstrip().startswith(_ENCRYPTED_PEM_HEADER):
        raise failed
    if not isinstance(passphrase, str) or not passphrase:
        raise failed
    # The key type is inside the encrypted part. Each importer decrypts (one scrypt) and rejects
    # other key types with ValueError; a wrong passphrase fails the first importer already.
    for importer in (RSA.import_key, ECC.import_key, DSA.import_key):
        try:
            key = importer(pem, passphrase)
        except IncorrectPassphraseError:
            break  # the passphrase is wrong whatever the key type: no need to try the others
        except (ValueError, IndexError, TypeError):
            continue
        if _supported(key) and key.has_private():
            return key
        break
    raise failed


def _import_private_der(der: bytes) -> EncryptionPrivateKey:
    """Unencrypted PKCS#8/PKCS#1 RSA private key DER. For the Wycheproof OAEP vectors only."""
    return RSA.import_key(der)


def key_fingerprint(key: AnyKey) -> str:
    """``fingerprint`` of the SPKI DER of *key*'s public half."""
    return fingerprint(public_key_der(key))


def describe_key(key: AnyKey) -> dict[str, int | str]:
    """The numbers inside *key*, for notebooks: type, size in bits, then the components.

    RSA: n, e (and d if private). DSA: p, q, g, y (and x). ECC and Ed25519: curve, the public
    point x, y (and the scalar d). Private components are included: never log the result.
    """
    known = _require_supported(key)
    info: dict[str, int | str]
    if isinstance(known, RsaKey):
        info = {"type": "RSA", "bits": int(known.n).bit_length(), "n": int(known.n), "e": int(known.e)}
        if known.has_private():
            info["d"] = int(known.d)
    elif isinstance(known, DsaKey):
        info = {"type": "DSA", "bits": int(known.p).bit_length()}
        info.update({name: int(getattr(known, name)) for name in ("p", "q", "g", "y")})
        if known.has_private():
            info["x"] = int(known.x)
    else:
        p256 = known.curve == "NIST P-256"
        point = known.pointQ
        info = {"type": "ECC" if p256 else "Ed25519", "curve": known.curve, "bits": 256 if p256 else 255}
        info.update({"x": int(point.x), "y": int(point.y)})
        if known.has_private():
            info["d"] = int(known.d)
    return info


__all__ = [
    "RSA_BITS",
    "describe_key",
    "generate_encryption_key",
    "is_encryption_key",
    "key_fingerprint",
    "load_private_key",
    "load_public_key",
    "private_key_pem",
    "public_key_der",
    "public_key_pem",
    "public_of",
]
