"""LAB ONLY: a DSA key that signs every message with the same nonce (PROTOCOL.md 16, dsa-nonce-reuse).

Owns: ``repeated_nonce_dsa_key``, the one weakened primitive of the lab variants. The client builds it only
when its explicit ``LabMode`` names ``dsa-nonce-reuse`` (``securechat.protocol.lab``); nothing else imports this
module. Two signatures under one nonce ``k`` share ``r`` and give away the private key:
``k = (h1 - h2) / (s1 - s2)`` and ``x = (s1 k - h1) / r`` mod q (the attack is in ``securechat.labs.attacks``).
Must not: be used for anything but a lab.
"""

from __future__ import annotations

from typing import Any

from Crypto.Math.Numbers import Integer
from Crypto.PublicKey.DSA import DsaKey

from .encoding import sha256
from .key_types import SigningKey


class _RepeatedNonceDsaKey(DsaKey):
    """A DsaKey whose signing ignores the fresh nonce DSS draws and uses one fixed ``k`` instead."""

    _lab_k: int

    def _sign(self, m: Any, k: Any) -> Any:  # LAB ONLY: the weakening is this one line
        # Named, not super(): mypy's untyped_calls_exclude (pyproject.toml) matches DsaKey._sign by its full name.
        return DsaKey._sign(self, m, Integer(self._lab_k))


def repeated_nonce_dsa_key(key: SigningKey) -> SigningKey:
    """A copy of the private DSA *key* that reuses one nonce for every signature (k fixed per key)."""
    if not isinstance(key, DsaKey) or not key.has_private():
        raise ValueError("dsa-nonce-reuse needs a private DSA signing key")
    weak = _RepeatedNonceDsaKey({c: Integer(int(getattr(key, c))) for c in ("y", "g", "p", "q", "x")})
    q = int(key.q)
    weak._lab_k = 2 + int.from_bytes(sha256(b"securechat lab repeated nonce" + int(key.x).to_bytes(32, "big")),
                                     "big") % (q - 3)
    return weak


__all__ = ["repeated_nonce_dsa_key"]
