"""securechat certificates: the server, a small CA, binds a username to two public keys.

Owns: the ``Certificate`` record, its to-be-signed bytes, its strict dict form for the wire,
``issue_certificate`` (CA side) and ``verify_certificate`` (every client), and the identity
fingerprint users compare out of band.

Must not: read a clock (``now`` is passed in), do I/O, or trust anything in a certificate before
``verify_certificate`` has checked it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

from securechat.crypto.encoding import RandomBytes, b64d, b64e, encode_fields, fingerprint
from securechat.crypto.key_types import EncryptionPublicKey, SigningKey, VerifyKey
from securechat.crypto.keys import is_encryption_key, key_fingerprint, load_public_key
from securechat.crypto.signatures import SCHEMES, SignatureScheme, parse_scheme, sign, verify
from securechat.errors import AuthenticationError, ErrorCode, RemoteProtocolError, SecureChatError

#: Format version of the certificate; bumped if tbs() ever changes.
CERT_VERSION = 1

_TBS_LABEL = "securechat v1 certificate"
_IDENTITY_LABEL = "securechat v1 identity"
# Wire limits (from_dict): ints fit a signed 64-bit integer, names are short, and binary fields
# are bounded so that a hostile dict cannot make us parse megabytes of "key".
_MAX_INT = 2**63 - 1
_MAX_NAME_CHARS = 64
_MAX_KEY_DER_BYTES = 2048
_MAX_SIGNATURE_BYTES = 1024
_INT_FIELDS = ("version", "serial", "not_before", "not_after")
_NAME_FIELDS = ("username", "issuer")
_SCHEME_FIELDS = ("signature_scheme", "issuer_scheme")
_BINARY_LIMITS = {
    "encryption_key": _MAX_KEY_DER_BYTES,
    "signing_key": _MAX_KEY_DER_BYTES,
    "signature": _MAX_SIGNATURE_BYTES,
}


@dataclass(frozen=True, kw_only=True, repr=False)
class Certificate:
    """A username bound to an encryption key and a signing key by the CA's signature.

    Fields:
        version: ``CERT_VERSION``.
        serial: unique per certificate issued by this CA.
        username: the identity certified.
        signature_scheme: scheme of ``signing_key``.
        encryption_key: SPKI DER of the user's RSA-OAEP key.
        signing_key: SPKI DER of the user's signing key.
        not_before, not_after: validity window, unix seconds, ``not_before <= now < not_after``.
        issuer: ``key_fingerprint`` of the CA public key.
        issuer_scheme: scheme of the CA's signature.
        signature: the CA's signature over ``tbs()``.
    """

    version: int
    serial: int
    username: str
    signature_scheme: SignatureScheme
    encryption_key: bytes
    signing_key: bytes
    not_before: int
    not_after: int
    issuer: str
    issuer_scheme: SignatureScheme
    signature: bytes

    def __repr__(self) -> str:
        # Short on purpose: the DER keys and signature make the default repr unreadable in notebooks and logs.
        return (f"Certificate(username={self.username!r}, scheme={self.signature_scheme.value}, "
                f"serial={self.serial}, valid={self.not_before}..{self.not_after}, issuer={self.issuer!r})")

    def tbs(self) -> bytes:
        """The exact bytes the CA signs: every field but the signature, in ``encode_fields``."""
        return encode_fields(
            _TBS_LABEL,
            self.version,
            self.serial,
            self.username,
            self.signature_scheme.value,
            self.encryption_key,
            self.signing_key,
            self.not_before,
            self.not_after,
            self.issuer,
            self.issuer_scheme.value,
        )

    def identity_fingerprint(self) -> str:
        """The fingerprint users compare out of band: username and both keys, nothing else.

        Stable when the CA re-issues the certificate (new serial, validity or CA signature); it
        changes exactly when the identity keys change.
        """
        return fingerprint(encode_fields(_IDENTITY_LABEL, self.username, self.encryption_key, self.signing_key))

    def to_dict(self) -> dict[str, int | str]:
        """The JSON-ready form: ints and strings as-is, binary fields as base64."""
        out: dict[str, int | str] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bytes):
                out[field.name] = b64e(value)
            elif isinstance(value, SignatureScheme):
                out[field.name] = value.value
            else:
                out[field.name] = value
        return out

    @classmethod
    def from_dict(cls, d: object) -> Certificate:
        """Parse the output of ``to_dict`` received from a peer, strictly.

        Raises:
            RemoteProtocolError: (``BAD_FIELD``) not a dict with exactly the certificate's keys,
                an int that is a bool or outside 0..2**63-1, a name that is not a 1..64-character
                str, an unknown scheme, non-canonical base64, or an oversized key or signature.
        """
        expected = {field.name for field in fields(cls)}
        if not isinstance(d, dict) or set(d) != expected:
            raise _bad_field("certificate must have exactly the certificate fields")
        ints: dict[str, int] = {}
        for name in _INT_FIELDS:
            value = d[name]
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_INT:
                raise _bad_field(f"certificate field {name} must be an int in 0..2**63-1")
            ints[name] = value
        names: dict[str, str] = {}
        for name in _NAME_FIELDS:
            value = d[name]
            if not isinstance(value, str) or not 0 < len(value) <= _MAX_NAME_CHARS:
                raise _bad_field(f"certificate field {name} must be a str of 1..{_MAX_NAME_CHARS} characters")
            names[name] = value
        schemes = {name: parse_scheme(d[name]) for name in _SCHEME_FIELDS}
        binary: dict[str, bytes] = {}
        for name, limit in _BINARY_LIMITS.items():
            data = b64d(d[name])
            if len(data) > limit:
                raise _bad_field(f"certificate field {name} is longer than {limit} bytes")
            binary[name] = data
        return cls(version=ints["version"], serial=ints["serial"], username=names["username"],
                   signature_scheme=schemes["signature_scheme"], encryption_key=binary["encryption_key"],
                   signing_key=binary["signing_key"], not_before=ints["not_before"], not_after=ints["not_after"],
                   issuer=names["issuer"], issuer_scheme=schemes["issuer_scheme"], signature=binary["signature"])


def _bad_field(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, ErrorCode.BAD_FIELD)


# PROTOCOL.md 6.3: the one tolerance for clocks that disagree. Certificates are issued backdated by it and
# accepted up to it outside their window; key-share envelope timestamps use the same window (PROTOCOL.md 7.6).
CLOCK_SKEW_SECONDS = 300


def issue_certificate(
    *,
    username: str,
    signature_scheme: SignatureScheme,
    encryption_key: bytes,
    signing_key: bytes,
    serial: int,
    now: int,
    validity_seconds: int,
    ca_private_key: SigningKey,
    ca_scheme: SignatureScheme,
    random_bytes: RandomBytes = os.urandom,
) -> Certificate:
    """Certify *username*'s keys (SPKI DER), valid from ``now - CLOCK_SKEW_SECONDS`` (backdated, PROTOCOL.md 6.3)
    until ``now + validity_seconds``, signed by the CA.

    Raises:
        ValueError: *validity_seconds* is not positive, or the CA key does not fit *ca_scheme*.
    """
    if validity_seconds <= 0:
        raise ValueError("validity_seconds must be positive")
    unsigned = Certificate(
        version=CERT_VERSION,
        serial=serial,
        username=username,
        signature_scheme=SignatureScheme(signature_scheme),
        encryption_key=encryption_key,
        signing_key=signing_key,
        not_before=max(0, now - CLOCK_SKEW_SECONDS),  # backdated: a client whose clock is behind accepts it
        not_after=now + validity_seconds,
        issuer=key_fingerprint(ca_private_key),
        issuer_scheme=SignatureScheme(ca_scheme),
        signature=b"",
    )
    signature = sign(ca_scheme, ca_private_key, unsigned.tbs(), random_bytes=random_bytes)
    return replace(unsigned, signature=signature)


def _reject(rule: str) -> AuthenticationError:
    # Naming the rule is fine here: this is a local check, the result is not sent to anyone.
    return AuthenticationError(f"certificate rejected: {rule}", ErrorCode.BAD_CERTIFICATE)


def _load_keys(cert: Certificate) -> tuple[EncryptionPublicKey, VerifyKey]:
    try:
        encryption_key, signing_key = load_public_key(cert.encryption_key), load_public_key(cert.signing_key)
    except SecureChatError:
        raise _reject("a certified key cannot be loaded") from None
    if not is_encryption_key(encryption_key):
        raise _reject("encryption key is not RSA of at least 2048 bits")
    if not SCHEMES[cert.signature_scheme].key_check(signing_key):
        raise _reject("signing key does not match the signature scheme")
    return encryption_key, signing_key


def verify_certificate(
    cert: Certificate, *, ca_public_key: VerifyKey, ca_scheme: SignatureScheme, now: float, username: str | None = None
) -> tuple[EncryptionPublicKey, VerifyKey]:
    """Check *cert* against the CA key and the time *now*; returns (encryption key, signing key).

    Rules, in order: version, issuer is the CA's key fingerprint, issuer scheme is *ca_scheme*, the
    CA signature over ``tbs()``, ``not_before - CLOCK_SKEW_SECONDS <= now < not_after + CLOCK_SKEW_SECONDS``
    (PROTOCOL.md 6.3: clocks of a LAN's laptops are often minutes apart), the username (if given), and
    both keys load, the encryption key being RSA >= 2048 bits and the signing key of the kind
    ``signature_scheme`` needs.

    Raises:
        AuthenticationError: (``BAD_CERTIFICATE``) "certificate rejected: <rule>".
    """
    if cert.version != CERT_VERSION:
        raise _reject("unsupported version")
    if cert.issuer != key_fingerprint(ca_public_key):
        raise _reject("issued by another CA")
    if cert.issuer_scheme != ca_scheme:
        raise _reject("issuer scheme mismatch")
    try:
        verify(ca_scheme, ca_public_key, cert.tbs(), cert.signature)
    except (SecureChatError, ValueError, TypeError):
        raise _reject("bad CA signature") from None
    if not cert.not_before - CLOCK_SKEW_SECONDS <= now < cert.not_after + CLOCK_SKEW_SECONDS:
        raise _reject("outside its validity period")
    if username is not None and cert.username != username:
        raise _reject("issued to another user")
    return _load_keys(cert)


__all__ = ["CERT_VERSION", "CLOCK_SKEW_SECONDS", "Certificate", "issue_certificate", "verify_certificate"]
