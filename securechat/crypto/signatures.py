"""Digital signatures: one table of schemes, and sign/verify through it.

Owns: ``SignatureScheme`` (the wire names), ``SCHEMES`` (the single table mapping each scheme to how
it generates keys, signs, verifies and recognises its keys, in the way aioquic's tls.py maps
``SIGNATURE_ALGORITHMS``), the fixed DSA domain ``DSA_2048_256_DOMAIN`` and ``generate_dsa_domain``.
Adding a scheme is one entry in ``SCHEMES``.

Must not: branch on the scheme anywhere but in the table, hash a re-serialised structure (callers
pass the exact bytes that travel), do I/O, or let ``verify`` raise anything but
``AuthenticationError``: a bad signature, a malformed one and a key of the wrong kind (a downgrade
attempt) are the same failure to the caller.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from Crypto.Hash import SHA256
from Crypto.Math.Primality import PROBABLY_PRIME, generate_probable_prime, test_probable_prime
from Crypto.PublicKey import DSA, ECC, RSA
from Crypto.PublicKey.DSA import DsaKey
from Crypto.PublicKey.ECC import EccKey
from Crypto.PublicKey.RSA import RsaKey
from Crypto.Signature import DSS, eddsa, pss

from securechat.crypto.encoding import RandomBytes
from securechat.crypto.key_types import AnyKey, SigningKey, VerifyKey
from securechat.errors import AuthenticationError, ErrorCode, RemoteProtocolError

_RSA_BITS = 2048
# Verifying cost grows with the modulus; nothing in securechat makes keys above 4096 bits.
_RSA_MAX_BITS = 4096
_RSA_E = 65537
# PSS salt = hash length (RFC 8017 9.1 recommends it); verify demands exactly this length.
_PSS_SALT_BYTES = 32
_DSA_L_BITS, _DSA_N_BITS = 2048, 256
_P256 = "NIST P-256"  # pycryptodome's canonical name in EccKey.curve
_ED25519 = "Ed25519"
_BAD_SIGNATURE = "signature did not verify"

#: DSA domain parameters (p, q, g) with L=2048, N=256 (FIPS 186-4 4.2), shared by every DSA key.
#: pycryptodome's DSA.generate(2048) makes a fresh domain with a 224-bit q, which is both slow and
#: not the size we want, so these were made once with OpenSSL 3.0:
#: ``openssl genpkey -genparam -algorithm DSA -pkeyopt dsa_paramgen_bits:2048
#: -pkeyopt dsa_paramgen_q_bits:256 -pkeyopt dsa_paramgen_md:sha256``.
#: Public and reusable; DSA.generate re-checks them (p, q prime, q | p-1, g of order q) on every use.
DSA_2048_256_DOMAIN: tuple[int, int, int] = (
    int(
        "8eba60d19b7f8d8c1c575533465f26b51857e8f02950b709c94952014dda84032a0e8c2fbdc44c0c11872f0a7be21416"
        "abcd81e04965befc32dc22e2e5c3903b112175d0aee1e5b6d9bdbc89a6aae815f57543963483849059692bbcaa3e65a3"
        "1274934c27235154ddf508a642bd156f09955f8a2d3775c4e6eb77f9408ddad947b67efb32957bef98da6def787fd026"
        "6253043f87333bc8ecf707f03166969eeda132c6a17c486b300396049170d8dd02a5290c6406c994d4dfa22726154eaf"
        "a11b78b7cba2db17ff826d944e1d08203bf1c25122af6592070708f4e86b3a6b3e99f1993295e599912d99b9ef61f477"
        "c0e40049a8aca5ff5d987429d8054259",
        16,
    ),
    int("fcffb8d5d63af7d573ee2d040185213103f57be72c3e1accbeb758c0e615b81d", 16),
    int(
        "7fef60df11d3d8f149a8c3061920891f6d8296dd9fd86f8001f9392d975ca5b44f1e25da16751ed8bc7506262768657a"
        "b0561c366fa3d6994fcd04d4c241797c754010b6c92e5f93769fcc731f64840341270ae21ef38322f9c26b19c5b84f57"
        "9dc8db600e608e9abff0cce65dd7d59c47ff70c16761475c342b32d022c95d9ae9923ecc95a7cdedf140e747ba399b0e"
        "0a3541fef525e40a4049a57d312c98e61596a697737ac5919961fbdbb7e4f93a131118e5ac43d152616c549896ba0f77"
        "5811da2113f1d1f4fd0b5a5507e1d0cb18fae120de2c1e8fcd9ee654310ea8e072a83aef32bdc8425cc74d7d7187ead0"
        "dd74867a60dfea57e0009d886f647f03",
        16,
    ),
)

# FIPS 186-4 4.2: the q size that goes with each p size (we use N=256 for L=2048, not 224).
_DSA_N_FOR_L = {1024: 160, 2048: 256, 3072: 256}


class SignatureScheme(StrEnum):
    """Signature schemes; the value is the name that travels on the wire."""

    RSA_PSS_SHA256 = "rsa-pss-sha256"
    DSA_SHA256 = "dsa-2048-sha256"
    ECDSA_P256_SHA256 = "ecdsa-p256-sha256"
    ED25519 = "ed25519"


@dataclass(frozen=True)
class SchemeParams:
    """Everything securechat knows about one scheme.

    Fields:
        name: human label for menus and notebooks.
        generate: makes a private key from a randomness source.
        sign: (private key, data, random_bytes) -> signature bytes.
        verify: (public key, data, signature) -> None; raises (any exception) if not authentic.
        key_check: True if a key object is of this scheme's kind and size (public or private).
        user_selectable: may a user pick it for their identity key.
    """

    name: str
    generate: Callable[[RandomBytes], SigningKey]
    # Any: each entry's sign/verify takes only the key class its key_check admits (DsaKey | EccKey for DSS,
    # RsaKey for PSS), and sign()/verify() call it after that check; a Callable type cannot say so.
    sign: Callable[[Any, bytes, RandomBytes], bytes]
    verify: Callable[[Any, bytes, bytes], None]
    key_check: Callable[[AnyKey], bool]
    user_selectable: bool


def _pss(key: RsaKey, random_bytes: RandomBytes | None = None) -> Any:
    # MGF1 hash and salt length are explicit: pycryptodome's defaults follow the message hash,
    # which would silently change if someone swapped SHA256 for another hash.
    return pss.new(
        key,
        mask_func=lambda seed, length: pss.MGF1(seed, length, SHA256),
        salt_bytes=_PSS_SALT_BYTES,
        rand_func=random_bytes,
    )


def _is_rsa(key: AnyKey) -> bool:
    return isinstance(key, RsaKey) and _RSA_BITS <= key.n.bit_length() <= _RSA_MAX_BITS


def _is_dsa(key: AnyKey) -> bool:
    return isinstance(key, DsaKey) and (key.p.bit_length(), key.q.bit_length()) == (_DSA_L_BITS, _DSA_N_BITS)


def _is_p256(key: AnyKey) -> bool:
    return isinstance(key, EccKey) and key.curve == _P256


def _is_ed25519(key: AnyKey) -> bool:
    return isinstance(key, EccKey) and key.curve == _ED25519


def _dss_verify(key: DsaKey | EccKey, data: bytes, signature: bytes) -> None:
    # DSS.verify raises ValueError when not authentic (and returns False when it is: ignore it).
    # encoding='der' makes pycryptodome decode strictly: BER variants are rejected.
    DSS.new(key, "fips-186-3", encoding="der").verify(SHA256.new(data), signature)


def _dss_sign(key: DsaKey | EccKey, data: bytes, random_bytes: RandomBytes) -> bytes:
    return DSS.new(key, "fips-186-3", encoding="der", randfunc=random_bytes).sign(SHA256.new(data))


SCHEMES: dict[SignatureScheme, SchemeParams] = {
    SignatureScheme.RSA_PSS_SHA256: SchemeParams(
        name="RSA-PSS 2048 / SHA-256",
        generate=lambda rb: RSA.generate(_RSA_BITS, randfunc=rb, e=_RSA_E),
        sign=lambda key, data, rb: _pss(key, rb).sign(SHA256.new(data)),
        verify=lambda key, data, sig: _pss(key).verify(SHA256.new(data), sig),
        key_check=_is_rsa,
        user_selectable=True,
    ),
    SignatureScheme.DSA_SHA256: SchemeParams(
        name="DSA 2048/256 / SHA-256",
        # The fixed domain makes key generation one modular exponentiation instead of a prime search.
        generate=lambda rb: DSA.generate(_DSA_L_BITS, randfunc=rb, domain=DSA_2048_256_DOMAIN),
        sign=_dss_sign,
        verify=_dss_verify,
        key_check=_is_dsa,
        user_selectable=True,
    ),
    SignatureScheme.ECDSA_P256_SHA256: SchemeParams(
        name="ECDSA P-256 / SHA-256",
        generate=lambda rb: ECC.generate(curve="p256", randfunc=rb),
        sign=_dss_sign,
        verify=_dss_verify,
        key_check=_is_p256,
        user_selectable=True,
    ),
    SignatureScheme.ED25519: SchemeParams(
        name="Ed25519",
        generate=lambda rb: ECC.generate(curve="ed25519", randfunc=rb),
        # RFC 8032 pure Ed25519 signs the message itself (no prehash) and needs no randomness.
        sign=lambda key, data, rb: eddsa.new(key, "rfc8032").sign(data),
        verify=lambda key, data, sig: eddsa.new(key, "rfc8032").verify(data, sig),
        key_check=_is_ed25519,
        user_selectable=True,
    ),
}


def parse_scheme(value: object) -> SignatureScheme:
    """The ``SignatureScheme`` named by a wire value.

    Raises:
        RemoteProtocolError: (``BAD_FIELD``) *value* is not the name of a scheme.
    """
    if isinstance(value, str):
        try:
            return SignatureScheme(value)
        except ValueError:
            pass
    raise RemoteProtocolError("unknown signature scheme", ErrorCode.BAD_FIELD)


def generate_signing_key(scheme: SignatureScheme, *, random_bytes: RandomBytes = os.urandom) -> SigningKey:
    """A new private key for *scheme* (DSA keys reuse ``DSA_2048_256_DOMAIN``)."""
    return SCHEMES[SignatureScheme(scheme)].generate(random_bytes)


def sign(scheme: SignatureScheme, private_key: SigningKey, data: bytes, *, random_bytes: RandomBytes = os.urandom) -> bytes:
    """Sign *data* (the exact bytes that travel) with *private_key* under *scheme*.

    Raises:
        ValueError: *private_key* is not a private key of the kind *scheme* needs (a local bug).
    """
    params = SCHEMES[SignatureScheme(scheme)]
    if not params.key_check(private_key) or not private_key.has_private():
        raise ValueError(f"key does not fit signature scheme {scheme}")
    if not isinstance(data, bytes):
        raise TypeError("data to sign must be bytes")
    return params.sign(private_key, data, random_bytes)


def verify(scheme: SignatureScheme, public_key: VerifyKey, data: bytes, signature: bytes) -> None:
    """Check that *signature* over *data* was made by *public_key* under *scheme*.

    Raises:
        AuthenticationError: (``BAD_SIGNATURE``) for every failure, with one message: wrong
            signature, malformed signature bytes, unknown scheme, or a key of the wrong kind or
            size for *scheme* (e.g. a DSA key offered with the RSA scheme: a downgrade).
    """
    try:
        params = SCHEMES[SignatureScheme(scheme)]
        if not (params.key_check(public_key) and isinstance(data, bytes) and isinstance(signature, bytes)):
            raise ValueError("unusable input")
        params.verify(public_key, data, signature)
    except Exception:  # the contract: nothing but AuthenticationError leaves verify()
        raise AuthenticationError(_BAD_SIGNATURE, ErrorCode.BAD_SIGNATURE) from None


def generate_dsa_domain(bits: int, *, random_bytes: RandomBytes = os.urandom) -> tuple[int, int, int]:
    """Make fresh DSA domain parameters (p, q, g) with |p| = *bits* (1024, 2048 or 3072).

    Follows the shape of FIPS 186-4 A.1.1.2 (random q of N bits, then random p = k*2q + 1 of L bits
    until one is prime) with g = 2^((p-1)/q) mod p (A.2.1, h = 2, 3, ...). Not verifiable with a
    seed like A.1.1.2 proper: for the notebook showing why DSA keygen is slow (hundreds of
    L-bit primality tests), not for production; securechat uses ``DSA_2048_256_DOMAIN``.
    """
    n_bits = _DSA_N_FOR_L.get(bits)
    if n_bits is None:
        raise ValueError("DSA modulus size must be 1024, 2048 or 3072 bits")
    q = int(generate_probable_prime(exact_bits=n_bits, randfunc=random_bytes))
    while True:
        x = int.from_bytes(random_bytes(bits // 8), "big") | (1 << (bits - 1))
        p = x - (x % (2 * q)) + 1  # p - 1 is a multiple of 2q
        if p.bit_length() == bits and test_probable_prime(p, random_bytes) == PROBABLY_PRIME:
            break
    for h in range(2, p - 1):
        g = pow(h, (p - 1) // q, p)
        if g != 1:
            return p, q, g
    raise AssertionError("unreachable: some h has g != 1")


__all__ = [
    "DSA_2048_256_DOMAIN",
    "SCHEMES",
    "SchemeParams",
    "SignatureScheme",
    "generate_dsa_domain",
    "generate_signing_key",
    "parse_scheme",
    "sign",
    "verify",
]
