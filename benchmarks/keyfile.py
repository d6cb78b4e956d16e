"""Benchmark users' keys: generated once per run (RSA key generation is slow) and shared by every user.

Every benchmark user registers the same UserKeys under a different name, which the server accepts. The keys are
written unprotected to a temporary file so the server process and helper processes load the same ones; they
are throwaway keys of a benchmark run, never user keys.
"""

from __future__ import annotations

from pathlib import Path

from Crypto.PublicKey import ECC, RSA

from securechat.crypto.signatures import SignatureScheme
from securechat.protocol.identity import UserKeys, generate_user_keys


def make_keys(path: Path) -> UserKeys:
    keys = generate_user_keys(SignatureScheme.ED25519)
    enc = keys.encryption_key.export_key(format="DER")  # type: ignore[attr-defined]
    sig = keys.signing_key.export_key(format="DER")  # type: ignore[attr-defined]
    path.write_bytes(len(enc).to_bytes(4, "big") + enc + sig)
    return keys


def load_keys(path: Path) -> UserKeys:
    data = path.read_bytes()
    n = int.from_bytes(data[:4], "big")
    return UserKeys(scheme=SignatureScheme.ED25519, encryption_key=RSA.import_key(data[4:4 + n]),
                    signing_key=ECC.import_key(data[4 + n:]))
