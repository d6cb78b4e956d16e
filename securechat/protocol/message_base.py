"""The base of every wire message, its field declaration helper, and the limits and names the messages share
(docs/PROTOCOL.md 3 and 10).

Owns: ``Message``, ``f`` and the shared constants. ``messages.py`` defines the messages on top of these and
re-exports them; ``messages_membership.py`` holds the chat membership messages (open, invite, invitations,
refusal notices, leave). Must not: serialise, check state or do crypto.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..crypto.aead import CipherSuite
from ..crypto.signatures import SignatureScheme
from .fields import Blob, Integer, Kind, Optional, Text
from .vocabulary import ChatMode, RekeyReason

PROTOCOL_VERSION = 1
MAX_CHAT_MEMBERS = 256          # PROTOCOL.md 10: bounds one key distribution to 256 RSA-OAEP wraps
MAX_WRAP_PATH = (MAX_CHAT_MEMBERS - 1).bit_length()  # PROTOCOL.md 7.2: a Merkle audit path over 256 wraps: 8
MAX_CHAT_BODY_BYTES = 64 * 1024  # PROTOCOL.md 10: one chat message's ciphertext
MAX_PASSWORD_CHARS = 1024        # docs/THREATS.md 9: a 1 MB password must not reach scrypt
MAX_LIST_ITEMS = 10_000          # who/online lists: more users than a class session holds
KEY_BLOB = Blob(max_bytes=2048)  # SubjectPublicKeyInfo DER: RSA-2048 is 294 bytes, DSA-2048 about 840
SIGNATURE_BLOB = Blob(max_bytes=1024)
CHAT_ID = Text(max_chars=64)
RID = Optional(Integer())

SCHEME_NAMES = tuple(s.value for s in SignatureScheme)
SUITE_NAMES = tuple(s.value for s in CipherSuite)
# PROTOCOL.md 7: how a chat's keys are made. "server-key": the server generates and wraps them;
# "contributory": members agree on them through a blind relay; "contributory-xor" (the XOR
# derivation, INSECURE, for the attack labs); "hybrid": a fresh key per message.
# The names themselves are enums in vocabulary.py; these tuples keep the old spellings importable.
CHAT_MODES = tuple(ChatMode)
KEYLESS_MODES = tuple(mode for mode in ChatMode if mode.keyless)  # the server never holds a key for these
LOBBY_ID = "lobby"  # PROTOCOL.md 7.8: the single room every online user is in (hybrid mode)
REKEY_REASONS = tuple(RekeyReason)


def f(kind: Kind, default: Any = dataclasses.MISSING) -> Any:
    """Declare a message field with its wire kind."""
    if default is dataclasses.MISSING:
        return field(metadata={"kind": kind})
    return field(default=default, metadata={"kind": kind})


@dataclass(frozen=True, kw_only=True)
class Message:
    """Base of every wire message. ``TYPE`` is the JSON ``type`` string."""

    TYPE: ClassVar[str] = ""
