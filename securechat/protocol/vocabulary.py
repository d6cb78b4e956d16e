"""The protocol's small vocabularies as types: chat modes, key exchanges, job outcomes, availabilities.

Owns: every closed set of names that travels on the wire or between the protocol's parts, as ``StrEnum``s whose
values are the exact wire strings (docs/PROTOCOL.md), so a member compares equal to its string and encodes as
it. Field choices (``messages.py``), state tables (``states.py``) and both sides' logic are built from these;
nothing else spells the strings. ``ErrorCode`` and the table of fatal codes live in ``securechat.errors``;
signature schemes and cipher suites in ``securechat.crypto``. Must not: import anything but the standard library.
"""

from __future__ import annotations

from enum import StrEnum


class ChatMode(StrEnum):
    """PROTOCOL.md 7: how a chat's keys are made (``chat_open.mode``, ``chat_epoch.mode``, ``chat_key.mode``)."""

    SERVER_KEY = "server-key"              # 7.2: the server generates each epoch's key and wraps it per member
    CONTRIBUTORY = "contributory"          # 7.6: members agree on it through a blind relay (commit, reveal, HKDF)
    CONTRIBUTORY_XOR = "contributory-xor"  # 7.6: the XOR derivation, INSECURE, kept for the attack labs
    HYBRID = "hybrid"                      # 7.7: a fresh key per message, wrapped for each recipient

    @property
    def contributory(self) -> bool:
        """The members make the key in rounds the server relays (7.6)."""
        return self in CONTRIBUTORY_MODES

    @property
    def keyless(self) -> bool:
        """The server never holds a key for this chat: it only signs the membership (7.7)."""
        return self in KEYLESS_MODES


CONTRIBUTORY_MODES = frozenset({ChatMode.CONTRIBUTORY, ChatMode.CONTRIBUTORY_XOR})
KEYLESS_MODES = frozenset({ChatMode.CONTRIBUTORY, ChatMode.CONTRIBUTORY_XOR, ChatMode.HYBRID})


class KeyExchange(StrEnum):
    """PROTOCOL.md 4.1 and 4.4: ``client_hello.key_exchange``."""

    X25519 = "x25519"
    X25519_MLKEM768 = "x25519+mlkem768"  # the post-quantum hybrid: X25519 and ML-KEM-768 through HKDF


class JobOutcome(StrEnum):
    """How a slow job ended (``jobs.py``); the password-job outcomes drive PROTOCOL.md 8.2's job table."""

    REGISTERED = "registered"
    LOGGED_IN = "logged_in"
    RENEWED = "renewed"  # a certificate renewal (PROTOCOL.md 6.6)
    FAILED = "failed"
    DONE = "done"  # a chat-key job: its distributions are ready
    PENDING = ""   # not run yet


class Availability(StrEnum):
    """What the server knows of a named user when a chat is opened or someone is invited (PROTOCOL.md 7.1)."""

    ONLINE = "online"
    OFFLINE = "offline"  # registered, not logged in
    UNKNOWN = "unknown"  # no such user


class RekeyReason(StrEnum):
    """Why a chat has a new epoch (``chat_epoch.reason``, ``chat_key.reason``, PROTOCOL.md 7.5)."""

    OPEN = "open"
    INVITE = "invite"
    LEAVE = "leave"
    DISCONNECT = "disconnect"
    JOIN = "join"


class InvitationOutcome(StrEnum):
    """Why an invitation closed without a join (``invitation_closed.outcome``, PROTOCOL.md 7.11)."""

    DECLINED = "declined"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class RefusalCode(StrEnum):
    """Why a recipient dropped a sender's message (``chat_refused.code``, ``chat_refusal.code``, PROTOCOL.md 7.9).

    Its one value is also an ``ErrorCode`` (``key_changed``): the refusal reports that error back to the sender."""

    KEY_CHANGED = "key_changed"
