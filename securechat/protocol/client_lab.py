"""LAB ONLY: the client's lab variants (PROTOCOL.md 16.1), each the one switch that weakens one check.

Owns: what an explicit client ``LabMode`` changes in ``ClientProtocol``: ``dsa-nonce-reuse`` (sign with one
repeated DSA nonce), ``unbound-login`` (the login proof signs an empty transcript), ``unpinned-client`` (the
pinned server key is not compared) and ``no-key-commitment`` (hybrid key commitments are not checked). Without a
lab mode (the default) every function here returns the secure behaviour. Must not: weaken anything unless its
variant is named in the lab mode it is given.
"""

from __future__ import annotations

from dataclasses import replace

from ..crypto.signatures import SignatureScheme
from ..errors import ErrorCode, LocalProtocolError
from .identity import UserKeys
from .lab import LabMode, LabVariant, lab_has


def check_lab(lab: LabMode | None, *, verify_key_commitment: bool) -> bool:
    """Refuse a lab mode that is not a client's, and ``verify_key_commitment=False`` without its lab variant;
    returns whether hybrid key commitments are checked (PROTOCOL.md 7.7)."""
    if lab is not None and (not isinstance(lab, LabMode) or lab.side != "client"):
        raise LocalProtocolError("lab must be a client LabMode (securechat.protocol.lab)", ErrorCode.BAD_FIELD)
    if not verify_key_commitment and not lab_has(lab, LabVariant.NO_KEY_COMMITMENT):
        raise LocalProtocolError("verify_key_commitment=False is the no-key-commitment lab variant: it needs "
                                 "lab=LabMode({no-key-commitment}, 'client', ...)", ErrorCode.BAD_FIELD)
    return verify_key_commitment and not lab_has(lab, LabVariant.NO_KEY_COMMITMENT)


def checks_pin(lab: LabMode | None) -> bool:
    """unpinned-client: the server key is accepted whatever was pinned."""
    return not lab_has(lab, LabVariant.UNPINNED_CLIENT)


def login_keys(lab: LabMode | None, keys: UserKeys) -> UserKeys:
    """dsa-nonce-reuse: the keys the login proof is signed with (the same keys, signing with one nonce)."""
    return lab_weak_keys(keys) if lab_has(lab, LabVariant.DSA_NONCE_REUSE) else keys


def login_transcript(lab: LabMode | None, transcript: bytes) -> bytes:
    """unbound-login: the proof signs an empty transcript instead of this channel's (PROTOCOL.md 6.2)."""
    return b"" if lab_has(lab, LabVariant.UNBOUND_LOGIN) else transcript


def lab_weak_keys(keys: UserKeys) -> UserKeys:
    """dsa-nonce-reuse: the same keys, signing with one repeated DSA nonce (the weakened key's module is loaded
    only here, only for this variant)."""
    from ..crypto.lab_weak import repeated_nonce_dsa_key
    if keys.scheme is not SignatureScheme.DSA_SHA256:
        raise LocalProtocolError("lab variant dsa-nonce-reuse needs a dsa-2048-sha256 signing key",
                                 ErrorCode.BAD_FIELD)
    return replace(keys, signing_key=repeated_nonce_dsa_key(keys.signing_key))
