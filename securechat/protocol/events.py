"""What applications see: past-tense frozen dataclasses carrying verified plaintext (docs/STYLE.md section 3).

Owns: the client events (``Event``) and the server's metadata events (``ServerEvent``) that drivers log or show.
Must not: carry passwords or keys; server events never carry message contents (PROTOCOL.md 11), only sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..crypto.certificates import Certificate
from ..errors import ErrorCode
from .vocabulary import InvitationOutcome, KeyExchange


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of every client event. ``rid`` is the request id a reply answers, if any."""


@dataclass(frozen=True, kw_only=True)
class HandshakeCompleted(Event):
    server_fingerprint: str
    server_key: bytes
    server_scheme: str
    first_use: bool  # True if no server key was pinned: the driver should pin it (trust on first use)
    key_exchange: str = KeyExchange.X25519  # or X25519_MLKEM768 (PROTOCOL.md 4.4)


@dataclass(frozen=True, kw_only=True)
class RegistrationSucceeded(Event):
    rid: int | None
    username: str
    certificate: Certificate


@dataclass(frozen=True, kw_only=True)
class LoggedIn(Event):
    rid: int | None
    username: str
    online: tuple[str, ...]
    certificate: Certificate


@dataclass(frozen=True, kw_only=True)
class RequestFailed(Event):
    """The server answered a request with an error (PROTOCOL.md 9). Covers failed logins and registrations."""

    rid: int | None
    code: ErrorCode | str  # a code this client does not know stays its string (PROTOCOL.md 9)
    message: str
    ref: str | None


@dataclass(frozen=True, kw_only=True)
class PresenceChanged(Event):
    username: str
    online: bool


@dataclass(frozen=True, kw_only=True)
class WhoListed(Event):
    rid: int | None
    online: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class StatusReported(Event):
    rid: int | None
    username: str
    online: bool


@dataclass(frozen=True, kw_only=True)
class ChatOpened(Event):
    """Our chat started with ``members`` (us and those who accepted); ``unknown`` names do not exist,
    ``declined`` said no or did not answer in time, ``pending`` (offline ones among them: ``offline``) may still
    accept later (PROTOCOL.md 7.11)."""

    rid: int | None
    chat_id: str
    members: tuple[str, ...]
    offline: tuple[str, ...]
    unknown: tuple[str, ...]
    declined: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class InvitationReceived(Event):
    """*inviter* invites us to *chat_id* (PROTOCOL.md 7.11). Nothing happens until we answer with
    ``answer_invitation`` (a client built with ``auto_accept_invitations=True`` has already accepted)."""

    chat_id: str
    inviter: str
    mode: str
    suite: str
    expires_in: int
    accepted: bool = False  # True when the client's policy accepted it already


@dataclass(frozen=True, kw_only=True)
class InvitationAnswered(Event):
    rid: int | None
    chat_id: str
    accepted: bool


@dataclass(frozen=True, kw_only=True)
class MessageRefused(Event):
    """*recipient* did not accept our message *seq* in *chat_id* (PROTOCOL.md 7.9): with ``key_changed``, it has
    not accepted our new keys; it should compare safety numbers with us and /trust them."""

    chat_id: str
    epoch: int
    recipient: str
    seq: int
    code: str


@dataclass(frozen=True, kw_only=True)
class InvitationClosed(Event):
    """An invitation we sent was declined, expired or cancelled: *username* did not join."""

    chat_id: str
    username: str
    outcome: InvitationOutcome


@dataclass(frozen=True, kw_only=True)
class ChatInvited(Event):
    rid: int | None
    chat_id: str
    username: str


@dataclass(frozen=True, kw_only=True)
class ChatKeyed(Event):
    """A verified key distribution was installed: the chat is now at ``epoch`` with ``members``."""

    chat_id: str
    epoch: int
    members: tuple[str, ...]
    reason: str
    actor: str
    joined: tuple[str, ...]
    left: tuple[str, ...]
    suite: str
    mode: str


@dataclass(frozen=True, kw_only=True)
class ChatLeft(Event):
    rid: int | None
    chat_id: str


@dataclass(frozen=True, kw_only=True)
class ChatReceived(Event):
    """A chat message whose signature verified against the sender's certificate and which decrypted."""

    chat_id: str
    epoch: int
    sender: str
    seq: int
    text: str
    signature_scheme: str
    gap: int  # messages from this sender skipped since the last one (docs/THREATS.md 43); 0 normally


@dataclass(frozen=True, kw_only=True)
class MessageRejected(Event):
    """An incoming chat message or key distribution failed an end-to-end check and was dropped."""

    chat_id: str
    sender: str
    code: ErrorCode
    reason: str


@dataclass(frozen=True, kw_only=True)
class PeerMisbehaved(Event):
    """WARNING: *sender* sent a validly signed message that breaks the protocol (PROTOCOL.md 7.7), so the
    fault is provably the sender's, not the network's or the server's:

    * ``unreadable_message``: a hybrid message whose key, wrapped for us, does not match the key the sender
      committed to (or does not decrypt): the sender gave different members different keys, or left us out.
    * ``equivocation``: the sender's hash chain shows that the message we accepted at ``seq`` is not the one
      the sender went on from, so other members were shown a different message at that position.
    """

    chat_id: str
    sender: str
    seq: int
    code: ErrorCode
    reason: str


@dataclass(frozen=True, kw_only=True)
class PeerKeyPinned(Event):
    """First sight of *username*'s identity: its fingerprint is now pinned (the driver should save it)."""

    username: str
    fingerprint: str


@dataclass(frozen=True, kw_only=True)
class PeerKeyChanged(Event):
    """WARNING: the server certified keys for *username* that differ from the pinned ones (docs/THREATS.md 46).
    Nothing is encrypted to them or accepted from them until the user compares fingerprints out of band and
    calls ``accept_key_change``."""

    username: str
    pinned: str
    seen: str
    code: ErrorCode = ErrorCode.KEY_CHANGED


@dataclass(frozen=True, kw_only=True)
class ChatAborted(Event):
    """A contributory key agreement failed a check: this epoch has no key, rather than a split group."""

    chat_id: str
    epoch: int
    code: ErrorCode
    reason: str


@dataclass(frozen=True, kw_only=True)
class CertificateRenewed(Event):
    """PROTOCOL.md 6.6: the server issued a new certificate for our same keys (the driver should save it)."""

    rid: int | None
    certificate: Certificate


@dataclass(frozen=True, kw_only=True)
class RoundTimedOut(Event):
    """The server gave up waiting for the key agreement of *epoch* (PROTOCOL.md 7.6): *missing* never
    confirmed (offline, or their client stalled). The chat has no key for that epoch until they take part, or
    until the membership changes (leave and open the chat again without them)."""

    chat_id: str
    epoch: int
    missing: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class LoggedOut(Event):
    rid: int | None


@dataclass(frozen=True, kw_only=True)
class ConnectionClosed(Event):
    """The connection ended. ``code`` is None for a clean end of stream after bye."""

    code: ErrorCode | str | None
    message: str


# --- server metadata events (for logs and the GUI's server window) -----------------------------------------

@dataclass(frozen=True, kw_only=True)
class ServerEvent:
    peer: int


@dataclass(frozen=True, kw_only=True)
class CertificateRenewedFor(ServerEvent):
    """PROTOCOL.md 6.6: *username*'s certificate was renewed until *not_after*."""

    username: str
    not_after: int


@dataclass(frozen=True, kw_only=True)
class RoundTimeoutSent(ServerEvent):
    """PROTOCOL.md 7.6: the server told the online members that an epoch's agreement timed out."""

    chat_id: str
    epoch: int
    missing: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class PeerConnected(ServerEvent):
    address: str


@dataclass(frozen=True, kw_only=True)
class PeerHandshakeCompleted(ServerEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class UserRegistered(ServerEvent):
    username: str
    signature_scheme: str


@dataclass(frozen=True, kw_only=True)
class UserLoggedIn(ServerEvent):
    username: str


@dataclass(frozen=True, kw_only=True)
class UserLoggedOut(ServerEvent):
    username: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class ChatRekeyed(ServerEvent):
    chat_id: str
    epoch: int
    members: tuple[str, ...]
    reason: str


@dataclass(frozen=True, kw_only=True)
class MessageRelayed(ServerEvent):
    chat_id: str
    sender: str
    size: int
    recipients: int


@dataclass(frozen=True, kw_only=True)
class ErrorSent(ServerEvent):
    code: ErrorCode
    ref: str | None
    fatal: bool


@dataclass(frozen=True, kw_only=True)
class PeerClosed(ServerEvent):
    reason: str


@dataclass(frozen=True, kw_only=True)
class TraceEntry:
    """One frame as a tracer sees it (docs/STYLE.md section 8): ``layer`` is "clear", "record" or "inner".

    ``data`` is the frame as it crossed the wire for "clear" and "record", and the inner plaintext frame for
    "inner" (which a notebook may show but a server log must never write).
    """

    direction: str  # "send" or "receive", from the point of view of the protocol object that traces
    peer: int | None
    layer: str
    type: str
    size: int
    data: bytes
