"""Chat membership messages (docs/PROTOCOL.md 7.1, 7.5, 7.9 refusal notices, 7.11 invitations).

Split out of ``messages.py`` for size; ``messages.py`` re-exports every class here and lists it in
``MESSAGE_CLASSES``. Must not: serialise, check state or do crypto.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..crypto.aead import CipherSuite
from .fields import Boolean, Choice, Integer, ListOf, Name
from .message_base import CHAT_ID, MAX_CHAT_MEMBERS, RID, Message, f
from .vocabulary import ChatMode, InvitationOutcome, RefusalCode


@dataclass(frozen=True, kw_only=True)
class ChatOpen(Message):
    TYPE: ClassVar[str] = "chat_open"
    rid: int | None = f(RID, None)
    members: tuple[str, ...] = f(ListOf(Name(), MAX_CHAT_MEMBERS - 1, unique=True))
    mode: ChatMode = f(Choice.of(ChatMode), ChatMode.SERVER_KEY)
    suite: CipherSuite = f(Choice.of(CipherSuite), CipherSuite.AES_256_GCM)


@dataclass(frozen=True, kw_only=True)
class ChatOpened(Message):
    TYPE: ClassVar[str] = "chat_opened"
    rid: int | None = f(RID, None)
    chat_id: str = f(CHAT_ID)
    members: tuple[str, ...] = f(ListOf(Name(), MAX_CHAT_MEMBERS))
    offline: tuple[str, ...] = f(ListOf(Name(), MAX_CHAT_MEMBERS))
    unknown: tuple[str, ...] = f(ListOf(Name(), MAX_CHAT_MEMBERS))
    # PROTOCOL.md 7.11: invitees who declined or did not answer in time (not members), and those whose
    # invitation is still open (offline ones: they may accept when they log in)
    declined: tuple[str, ...] = f(ListOf(Name(), MAX_CHAT_MEMBERS), ())
    pending: tuple[str, ...] = f(ListOf(Name(), MAX_CHAT_MEMBERS), ())


@dataclass(frozen=True, kw_only=True)
class ChatInvite(Message):
    TYPE: ClassVar[str] = "chat_invite"
    rid: int | None = f(RID, None)
    chat_id: str = f(CHAT_ID)
    username: str = f(Name())


@dataclass(frozen=True, kw_only=True)
class ChatInvited(Message):
    TYPE: ClassVar[str] = "chat_invited"
    rid: int | None = f(RID, None)
    chat_id: str = f(CHAT_ID)
    username: str = f(Name())


# --- invitations: nobody becomes a member without answering (PROTOCOL.md 7.11) -------------------------------

@dataclass(frozen=True, kw_only=True)
class ChatInvitation(Message):
    """An invitation to a chat, pushed to the invitee: who asks and how the chat is keyed, nothing more."""

    TYPE: ClassVar[str] = "chat_invitation"
    chat_id: str = f(CHAT_ID)
    inviter: str = f(Name())
    mode: ChatMode = f(Choice.of(ChatMode))
    suite: CipherSuite = f(Choice.of(CipherSuite))
    expires_in: int = f(Integer(0, 86_400))  # seconds the server keeps the invitation open


@dataclass(frozen=True, kw_only=True)
class ChatAnswer(Message):
    """The invitee's answer: accept (join at the next epoch) or decline."""

    TYPE: ClassVar[str] = "chat_answer"
    rid: int | None = f(RID, None)
    chat_id: str = f(CHAT_ID)
    accept: bool = f(Boolean())


@dataclass(frozen=True, kw_only=True)
class ChatAnswered(Message):
    TYPE: ClassVar[str] = "chat_answered"
    rid: int | None = f(RID, None)
    chat_id: str = f(CHAT_ID)
    accepted: bool = f(Boolean())


@dataclass(frozen=True, kw_only=True)
class InvitationClosed(Message):
    """To the inviter: an invitation was declined or expired (it never learns more than that)."""

    TYPE: ClassVar[str] = "invitation_closed"
    chat_id: str = f(CHAT_ID)
    username: str = f(Name())
    outcome: InvitationOutcome = f(Choice.of(InvitationOutcome))


# --- refusal notices: a recipient tells a sender it did not accept its messages (PROTOCOL.md 7.9) ---------------

@dataclass(frozen=True, kw_only=True)
class ChatRefused(Message):
    """Recipient -> server: I dropped *sender*'s message *seq* in *chat_id* (its changed key is not accepted)."""

    TYPE: ClassVar[str] = "chat_refused"
    chat_id: str = f(CHAT_ID)
    epoch: int = f(Integer(1))
    sender: str = f(Name())
    seq: int = f(Integer(1, 2**32 - 1))
    code: RefusalCode = f(Choice.of(RefusalCode))


@dataclass(frozen=True, kw_only=True)
class ChatRefusal(Message):
    """Server -> sender: *recipient* did not accept your message *seq* in *chat_id*, and why."""

    TYPE: ClassVar[str] = "chat_refusal"
    chat_id: str = f(CHAT_ID)
    epoch: int = f(Integer(1))
    recipient: str = f(Name())
    seq: int = f(Integer(1, 2**32 - 1))
    code: RefusalCode = f(Choice.of(RefusalCode))


@dataclass(frozen=True, kw_only=True)
class ChatLeave(Message):
    TYPE: ClassVar[str] = "chat_leave"
    rid: int | None = f(RID, None)
    chat_id: str = f(CHAT_ID)


@dataclass(frozen=True, kw_only=True)
class ChatLeft(Message):
    TYPE: ClassVar[str] = "chat_left"
    rid: int | None = f(RID, None)
    chat_id: str = f(CHAT_ID)
