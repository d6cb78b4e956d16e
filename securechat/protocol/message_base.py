"""The base of every wire message, its field declaration helper, and the limits and names the messages share
(docs/PROTOCOL.md 3 and 10).

Owns: ``Message``, ``f``, the per-class field table ``wire_fields`` and the shared constants. ``messages.py``
defines the messages on top of these and re-exports them; ``messages_membership.py`` holds the chat membership
messages (open, invite, invitations, refusal notices, leave). Must not: serialise, check state or do crypto.

A message is valid from the moment it exists (docs/STYLE.md 3, as h11's events): ``Message.__post_init__`` checks
every field with the kind declared for it by ``f`` (securechat/protocol/fields.py), the same kinds and limits the
decoder applies, and stores the canonical value (a name normalised, a list as a tuple, a choice as its enum).
A bad value is our own mistake: LocalProtocolError (BAD_FIELD, naming the field), nothing built, nothing sent.
``codec.message_from_dict`` builds received messages through the same constructor and re-raises that error as
RemoteProtocolError, so what we construct is exactly what the peer decodes. Tests and attack tools that must put
malformed bytes on the wire write them with ``codec.encode_unchecked``, never through a message class.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

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


class WireField(NamedTuple):
    """One field of a message class as the codec reads it."""

    name: str
    kind: Kind
    optional: bool  # PROTOCOL.md 3.2: only an Optional kind may be absent on the wire
    loads: bool     # its wire form differs from its Python form (Kind.loads)


_WIRE_FIELDS: dict[type[Message], tuple[WireField, ...]] = {}
_CHECKS: dict[type[Message], tuple[tuple[str, Callable[[str, Any], Any], bool], ...]] = {}


def wire_fields(cls: type[Message]) -> tuple[WireField, ...]:
    """The fields of *cls* in declaration order (the wire order), with their kinds; computed once per class."""
    table = _WIRE_FIELDS.get(cls)
    if table is None:
        table = _WIRE_FIELDS[cls] = tuple(
            WireField(fld.name, fld.metadata["kind"], isinstance(fld.metadata["kind"], Optional),
                      fld.metadata["kind"].loads())
            for fld in dataclasses.fields(cls))
    return table


@dataclass(frozen=True, kw_only=True)
class Message:
    """Base of every wire message. ``TYPE`` is the JSON ``type`` string.

    Raises:
        LocalProtocolError: BAD_FIELD at construction if a field breaks its kind (PROTOCOL.md 3.2).
    """

    TYPE: ClassVar[str] = ""

    def __post_init__(self) -> None:
        checks = _CHECKS.get(type(self))
        if checks is None:
            checks = _CHECKS[type(self)] = _checks(type(self))
        values = self.__dict__
        for name, check, optional in checks:
            value = values[name]
            if value is None and optional:
                continue  # an absent Optional field (Optional.check would return None: skipped on the hot path)
            canonical = check(name, value)
            if canonical is not value:
                object.__setattr__(self, name, canonical)


def _checks(cls: type[Message]) -> tuple[tuple[str, Callable[[str, Any], Any], bool], ...]:
    """Each field's check, the inner kind's for an Optional field (its None is handled by the caller)."""
    return tuple((fld.name, fld.kind.inner.check if isinstance(fld.kind, Optional) else fld.kind.check, fld.optional)
                 for fld in wire_fields(cls))
