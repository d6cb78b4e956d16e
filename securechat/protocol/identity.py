"""A user's key material as the client protocol needs it (PROTOCOL.md 6.1).

Owns: ``UserKeys`` (the RSA-OAEP encryption key pair and the signing key pair of the chosen scheme) and their
generation with an optional progress callback. Must not: read or write files (``securechat.keystore`` does),
or send anything.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from ..crypto.encoding import RandomBytes
from ..crypto.key_types import EncryptionPrivateKey, SigningKey
from ..crypto.keys import generate_encryption_key, key_fingerprint, public_key_der
from ..crypto.signatures import SignatureScheme, generate_signing_key


@dataclass(frozen=True)
class UserKeys:
    """Private keys never leave the client; only ``encryption_public``/``signing_public`` are sent."""

    scheme: SignatureScheme
    encryption_key: EncryptionPrivateKey
    signing_key: SigningKey

    @property
    def encryption_public(self) -> bytes:
        return public_key_der(self.encryption_key)

    @property
    def signing_public(self) -> bytes:
        return public_key_der(self.signing_key)

    @property
    def fingerprints(self) -> tuple[str, str]:
        return key_fingerprint(self.encryption_key), key_fingerprint(self.signing_key)


def generate_user_keys(
    scheme: SignatureScheme,
    *,
    random_bytes: RandomBytes = os.urandom,
    progress: Callable[[str], None] | None = None,
) -> UserKeys:
    """Generate both key pairs; *progress* is told before each slow step (issue: show a progress line)."""
    if progress:
        progress("generating RSA-2048 encryption key (RSA-OAEP)")
    encryption_key = generate_encryption_key(random_bytes=random_bytes)
    if progress:
        progress(f"generating {scheme.value} signing key")
    signing_key = generate_signing_key(scheme, random_bytes=random_bytes)
    if progress:
        progress("keys ready")
    return UserKeys(scheme=scheme, encryption_key=encryption_key, signing_key=signing_key)
