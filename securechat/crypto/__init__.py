"""securechat.crypto: the recipe layer over pycryptodome (docs/STYLE.md section 5).

Owns: every cryptographic operation securechat performs, in securechat's own terms: byte encodings
(``encoding``), AEAD (``aead``), key derivation and password hashing (``kdf``), signatures through
one scheme table (``signatures``), key objects (``keys``) and the names of their kinds (``key_types``), RSA-OAEP key wrapping (``wrap``), X25519
(``exchange``) and certificates (``certificates``).

Must not: be bypassed (no other package imports ``Crypto``), import socket, threading, select or
time, print, or draw randomness except through an injected ``random_bytes`` (default os.urandom).
"""

from __future__ import annotations

from securechat.crypto.aead import (
    AUDIT_HOOKS,
    BACKENDS,
    KEY_BYTES,
    NONCE_BYTES,
    TAG_BYTES,
    CipherSuite,
    backend,
    nonce_from_counter,
    seal,
    set_backend,
    unseal,
)
from securechat.crypto.certificates import CERT_VERSION, Certificate, issue_certificate, verify_certificate
from securechat.crypto.encoding import (
    RandomBytes,
    b64d,
    b64e,
    constant_time_equal,
    encode_fields,
    fingerprint,
    hmac_sha256,
    sha256,
)
from securechat.crypto.exchange import X25519_PUBLIC_BYTES, generate_ephemeral, shared_secret
from securechat.crypto.kdf import (
    FAST_SCRYPT,
    HASH_BYTES,
    OWASP_SCRYPT,
    SALT_BYTES,
    ScryptParams,
    dummy_password_record,
    hash_password,
    hkdf_sha256,
    verify_password,
)
from securechat.crypto.kem import (
    MLKEM768_CIPHERTEXT_BYTES,
    MLKEM768_PUBLIC_BYTES,
    decapsulate,
    encapsulate,
    generate_kem_key,
)
from securechat.crypto.key_types import (
    AnyKey,
    EncryptionPrivateKey,
    EncryptionPublicKey,
    EphemeralKey,
    KemPrivateKey,
    PublicKey,
    SigningKey,
    VerifyKey,
)
from securechat.crypto.keys import (
    RSA_BITS,
    describe_key,
    generate_encryption_key,
    is_encryption_key,
    key_fingerprint,
    load_private_key,
    load_public_key,
    private_key_pem,
    public_key_der,
    public_key_pem,
    public_of,
)
from securechat.crypto.signatures import (
    DSA_2048_256_DOMAIN,
    SCHEMES,
    SchemeParams,
    SignatureScheme,
    generate_dsa_domain,
    generate_signing_key,
    parse_scheme,
    sign,
    verify,
)
from securechat.crypto.wrap import unwrap_key, wrap_key

__all__ = [
    "AUDIT_HOOKS",
    "BACKENDS",
    "CERT_VERSION",
    "DSA_2048_256_DOMAIN",
    "FAST_SCRYPT",
    "HASH_BYTES",
    "KEY_BYTES",
    "NONCE_BYTES",
    "OWASP_SCRYPT",
    "RSA_BITS",
    "SALT_BYTES",
    "SCHEMES",
    "TAG_BYTES",
    "X25519_PUBLIC_BYTES",
    "AnyKey",
    "Certificate",
    "CipherSuite",
    "EncryptionPrivateKey",
    "EncryptionPublicKey",
    "EphemeralKey",
    "KemPrivateKey",
    "PublicKey",
    "RandomBytes",
    "SchemeParams",
    "ScryptParams",
    "SignatureScheme",
    "SigningKey",
    "VerifyKey",
    "b64d",
    "backend",
    "b64e",
    "constant_time_equal",
    "describe_key",
    "dummy_password_record",
    "encode_fields",
    "fingerprint",
    "generate_dsa_domain",
    "generate_encryption_key",
    "generate_ephemeral",
    "generate_signing_key",
    "hash_password",
    "hkdf_sha256",
    "hmac_sha256",
    "is_encryption_key",
    "issue_certificate",
    "key_fingerprint",
    "load_private_key",
    "load_public_key",
    "nonce_from_counter",
    "parse_scheme",
    "private_key_pem",
    "public_key_der",
    "public_key_pem",
    "public_of",
    "seal",
    "set_backend",
    "sha256",
    "shared_secret",
    "sign",
    "unseal",
    "unwrap_key",
    "verify",
    "verify_certificate",
    "verify_password",
    "wrap_key",
    "MLKEM768_CIPHERTEXT_BYTES",
    "MLKEM768_PUBLIC_BYTES",
    "decapsulate",
    "encapsulate",
    "generate_kem_key",
]
