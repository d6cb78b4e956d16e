"""The client's chat traffic: the chat commands and the chat messages the server relays (PROTOCOL.md 7).

Owns: the commands that open, join, leave and write to chats; invitations to us (PROTOCOL.md 7.11); the chats we
are leaving; refusal notices sent (7.9); and, for each chat push from the server, the glue between the
``ChatBook`` (which verifies keys, epochs and messages end to end) and the connection: certificates to fetch
first (7.4), messages to hold until they arrive, round messages of the keyless modes to send (``modes.py``).
The ``ChatBook`` exists from login on (``start``). Must not: verify or decrypt anything itself (``ChatBook``
and ``modes`` do), or trust what the server says about a chat without their checks.
"""

from __future__ import annotations

from ..errors import ErrorCode, LocalProtocolError
from . import events as ev
from . import messages as m
from . import modes
from ..crypto.aead import CipherSuite
from .chats import ChatBook, ClientChat
from .client_certificates import CertificateFetches
from .client_link import ClientLink, local_username
from .fields import member_of
from .vocabulary import ChatMode, RefusalCode

MAX_REFUSAL_NOTICES = 256  # PROTOCOL.md 7.9: one per (chat, epoch, sender) and session, at most this many
MAX_OPEN_INVITATIONS = 64  # PROTOCOL.md 7.11: the server keeps at most 32 per user; more is a lying server


class ClientChats:
    """The chat side of one logged-in connection."""

    def __init__(self, link: ClientLink, fetches: CertificateFetches, *, auto_accept_invitations: bool) -> None:
        self._link = link
        self._fetches = fetches
        self.book: ChatBook | None = None
        # PROTOCOL.md 7.11: the server adds nobody without an answer. A program may accept every invitation
        # (its policy); the terminal client and the GUI set False and ask the user.
        self.auto_accept_invitations = auto_accept_invitations
        self.invitations: dict[str, ev.InvitationReceived] = {}  # open invitations to us, by chat id
        self.leaving: dict[int, str] = {}  # rid of a chat_leave in flight -> its chat
        self._refusals_sent: set[tuple[str, int, str]] = set()  # (chat, epoch, sender) told already (7.9)

    def start(self, book: ChatBook) -> None:
        """Logged in: the chat book of this session."""
        self.book = book

    # --- commands -----------------------------------------------------------------------------------------

    def open_chat(self, members: list[str] | tuple[str, ...], *, mode: ChatMode | str, suite: CipherSuite | str) -> int:
        names = tuple(dict.fromkeys(local_username(n) for n in members if n))
        return self._link.request(m.ChatOpen(rid=self._link.next_rid, members=names, mode=member_of(ChatMode, "mode", mode),
                                                  suite=member_of(CipherSuite, "suite", suite)))

    def invite(self, chat_id: str, username: str) -> int:
        self.chat_for(chat_id, "chat_invite")
        # PROTOCOL.md 3.2: ChatInvite normalises the name, or refuses it with LocalProtocolError (nothing sent)
        return self._link.request(m.ChatInvite(rid=self._link.next_rid, chat_id=chat_id, username=username))

    def answer_invitation(self, chat_id: str, accept: bool) -> int:
        self._link.check("chat_answer")
        if chat_id not in self.invitations:
            raise LocalProtocolError(f"no open invitation to chat {chat_id}", ErrorCode.UNKNOWN_CHAT)
        del self.invitations[chat_id]
        return self._link.request(m.ChatAnswer(rid=self._link.next_rid, chat_id=chat_id, accept=accept))

    def leave(self, chat_id: str) -> int:
        chat = self.chat_for(chat_id, "chat_leave")
        rid = self._link.request(m.ChatLeave(rid=self._link.next_rid, chat_id=chat_id))
        chat.leave()  # no more round messages for a chat we leave
        self.leaving[rid] = chat_id  # an error names the request, not the chat: remember which one
        return rid

    def send_chat(self, chat_id: str, text: str) -> int:
        self._link.check("chat_send")
        assert self.book is not None
        if not modes.can_send(self.book, chat_id):
            raise LocalProtocolError("the members have not all confirmed this epoch's key yet", ErrorCode.STALE_EPOCH)
        return self._link.request(self.book.seal(chat_id, text, self._link.next_rid))

    def chat_for(self, chat_id: str, kind: str) -> ClientChat:
        """The chat a command of *kind* is about, if the connection and the chat both allow it now."""
        self._link.check(kind)
        chat = self.book.chats.get(chat_id) if self.book else None
        if chat is None:
            raise LocalProtocolError(f"no chat {chat_id}", ErrorCode.UNKNOWN_CHAT)
        chat.check(kind)
        return chat

    # --- what the server pushes -----------------------------------------------------------------------------

    def on_chat_invitation(self, msg: m.ChatInvitation) -> None:
        event = ev.InvitationReceived(chat_id=msg.chat_id, inviter=msg.inviter, mode=msg.mode, suite=msg.suite,
                                      expires_in=msg.expires_in, accepted=self.auto_accept_invitations)
        self.invitations[msg.chat_id] = event
        del_oldest = len(self.invitations) - MAX_OPEN_INVITATIONS
        for stale in list(self.invitations)[:max(0, del_oldest)]:
            del self.invitations[stale]  # the server caps them too; a lying server cannot grow this
        self._link.emit(event)
        if self.auto_accept_invitations:
            self.answer_invitation(msg.chat_id, True)

    def request_failed(self, rid: int | None) -> None:
        """An error answered request *rid*: a chat_leave refused leaves the chat as it was (PROTOCOL.md 7.5)."""
        chat_id = self.leaving.pop(rid, None) if rid is not None else None
        chat = self.book.chats.get(chat_id) if self.book and chat_id else None
        if chat is not None:
            chat.leave_refused()

    def on_chat_message(self, msg: m.ChatMessage) -> None:
        assert self.book is not None
        if msg.sender == self.book.username:
            # our own message reflected back (we never receive our own): refused before any certificate fetch
            self._link.emit(ev.MessageRejected(chat_id=msg.chat_id, sender=msg.sender, code=ErrorCode.NOT_MEMBER,
                                               reason="a message under our own name"))
            return
        chat = self.book.chats.get(msg.chat_id)
        member = chat is not None and msg.sender in chat.members
        if member and msg.sender in self.book.refused:
            self._refuse(msg)  # PROTOCOL.md 7.9: its changed key is not accepted: no fetch, no hold
            return
        if member and self.book.missing_certificates(msg):
            # PROTOCOL.md 7.4: fetch the sender's certificate once, hold its messages until it arrives.
            self._fetches.fetch((msg.sender,))
            self.book.hold(msg)
            return
        # not a member of the chat's current epoch (or no such chat): judged now, nothing fetched or held
        self._link.emit_all(self.book.receive(msg))

    def on_certificates(self, msg: m.Certificates) -> None:
        assert self.book is not None
        asked = self._fetches.answered(msg.rid)
        # PROTOCOL.md 6.3: only an answer to our own request, and only for the names asked, is looked at; a
        # server cannot push certificates nobody asked for into the pin store (which the driver persists).
        certificates = tuple(c for c in msg.certificates if c.username in asked)
        unknown = tuple(n for n in msg.unknown if n in asked)
        self._link.emit_all(self.book.add_certificates(certificates, self._link.now))
        for held, snapshot in self.book.release(unknown + tuple(c.username for c in certificates)):
            if held.sender in self.book.refused:
                self._refuse(held)
            else:
                self._link.emit_all(self.book.receive(held, snapshot))
        self._apply(modes.advance_all(self.book, self._link.now))

    def _refuse(self, msg: m.ChatMessage) -> None:
        """Drop a message whose sender's changed key we have not accepted, and tell the sender once per chat and
        epoch (PROTOCOL.md 7.9, refusal notices), so it learns why its messages go unread."""
        self._link.emit(ev.MessageRejected(
            chat_id=msg.chat_id, sender=msg.sender, code=ErrorCode.KEY_CHANGED,
            reason=f"{msg.sender}'s keys changed and you have not accepted the new ones (/fingerprint)"))
        notice = (msg.chat_id, msg.epoch, msg.sender)
        if notice in self._refusals_sent or len(self._refusals_sent) >= MAX_REFUSAL_NOTICES:
            return
        self._refusals_sent.add(notice)
        self._link.send(m.ChatRefused(chat_id=msg.chat_id, epoch=msg.epoch, sender=msg.sender, seq=msg.seq,
                                      code=RefusalCode.KEY_CHANGED))

    def on_chat_key(self, msg: m.ChatKey) -> None:
        assert self.book is not None
        event = self.book.install_key(msg)
        self._link.emit(event)
        missing = self.book.uncertified(msg.members) if isinstance(event, ev.ChatKeyed) else ()
        # PROTOCOL.md 7.4: fetch members' certificates now, so their first messages need not wait.
        self._fetches.fetch(missing)

    def on_chat_epoch(self, msg: m.ChatEpoch) -> None:
        assert self.book is not None
        step = modes.install_epoch(self.book, msg, self._link.now)
        chat = self.book.chats.get(msg.chat_id)
        if chat is not None and msg.epoch == chat.epoch:
            self._fetches.fetch(self.book.uncertified(msg.members))
        self._apply(step)

    def on_round(self, msg: m.ShareCommitted | m.KeyShareDelivery | m.KeyConfirmed) -> None:
        assert self.book is not None
        self._apply(modes.on_round(self.book, msg, self._link.now))

    def on_round_timeout(self, msg: m.RoundTimeout) -> None:
        """PROTOCOL.md 7.6: reported only for a chat we are in, at its current epoch (anything else is stale)."""
        assert self.book is not None
        chat = self.book.chats.get(msg.chat_id)
        if chat is not None and chat.epoch == msg.epoch:
            self._link.emit(ev.RoundTimedOut(chat_id=msg.chat_id, epoch=msg.epoch, missing=msg.missing))

    def on_chat_left(self, msg: m.ChatLeft) -> None:
        assert self.book is not None
        if msg.rid is not None:
            self.leaving.pop(msg.rid, None)
        chat = self.book.chats.get(msg.chat_id)
        if chat is not None:
            chat.left()  # PROTOCOL.md 7.5: the key of a chat we left is forgotten
        self._link.emit(ev.ChatLeft(rid=msg.rid, chat_id=msg.chat_id))

    def _apply(self, step: modes.Step) -> None:
        """Deliver a keyless-mode step: its events to the application, its round messages to the server."""
        self._link.emit_all(step.events)
        for message in step.send:
            self._link.send(message)

