"""Invitations on the server: nobody becomes a member of a chat without answering (PROTOCOL.md 7.11).

Owns: the open invitations (``Invitation``) and the chats being opened (``Opening``: a ``chat_open`` that waits
for its online invitees' answers before epoch 1 starts), their caps and expiry. An invitation takes no chat slot
and reveals only the inviter and how the chat is keyed; the invitee joins (and takes a slot) only by accepting.
This is what stops one user from filling everyone's chat quota (docs/SECURITY.md, "Consent to join").
``ChatRelay`` owns one; its collaborators are narrow: the ``Outbox`` it sends through, ``Presence`` (who is
online), the ``ChatDirectory``, the limits and the current time. Must not: do crypto, read clocks, touch
sockets, or start epochs: it returns the chats that may start or the member who joined, and ``ChatRelay``
rekeys them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..crypto.aead import CipherSuite
from ..crypto.encoding import RandomBytes
from ..errors import ErrorCode, SecureChatError
from . import messages as m
from .limits import ServerConfig
from .server_chats import ChatDirectory
from .server_outbox import Outbox, Peer
from .server_presence import Presence
from .vocabulary import ChatMode, InvitationOutcome, RekeyReason


@dataclass
class Invitation:
    chat_id: str
    invitee: str
    inviter: str
    mode: ChatMode
    suite: CipherSuite
    expires_at: float


@dataclass
class Opening:
    """A ``chat_open`` waiting for answers: the chat starts when every online invitee answered, or at
    ``deadline`` with those who accepted by then (the others may still accept and join at a later epoch)."""

    chat_id: str
    opener: str
    peer: int
    rid: int | None
    mode: ChatMode
    suite: CipherSuite
    deadline: float
    waiting: set[str] = field(default_factory=set)
    accepted: list[str] = field(default_factory=list)
    declined: list[str] = field(default_factory=list)
    offline: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Answered:
    """What an answer leads to: an opening that may start now, or a member who joined an existing chat
    (rekey with *reason* and *actor*), or nothing more."""

    opening: Opening | None = None
    joined: str = ""
    reason: RekeyReason = RekeyReason.JOIN
    actor: str = ""


class Invitations:
    """Every open invitation and every chat being opened, for one ``ServerProtocol``."""

    def __init__(self, *, outbox: Outbox, presence: Presence, chats: ChatDirectory, config: ServerConfig,
                 random_bytes: RandomBytes, now: Callable[[], float]) -> None:
        self._outbox = outbox
        self._presence = presence
        self._chats = chats
        self.config = config
        self._random_bytes = random_bytes
        self._clock = now
        self.open: dict[tuple[str, str], Invitation] = {}   # (chat id, invitee) -> invitation
        self.openings: dict[str, Opening] = {}              # chat id -> chat_open waiting for answers

    def of_invitee(self, username: str) -> list[Invitation]:
        return [i for (_, invitee), i in self.open.items() if invitee == username]

    def count_by_inviter(self, username: str) -> int:
        return sum(1 for i in self.open.values() if i.inviter == username)

    def invite(self, chat_id: str, invitee: str, inviter: str, mode: ChatMode, suite: CipherSuite) -> None:
        """Record an invitation (within the caps) and push it to the invitee if online; raises SecureChatError."""
        book, cfg = self, self.config
        if (chat_id, invitee) in book.open:
            return  # asked again: the open invitation stands
        mine = [i for i in book.of_invitee(invitee) if i.inviter == inviter]
        if len(mine) >= cfg.max_invitations_per_pair:
            # one user cannot fill another's invitation quota on its own (PROTOCOL.md 7.11)
            raise SecureChatError(f"you already have {len(mine)} open invitations to {invitee}",
                                  ErrorCode.LIMIT_EXCEEDED)
        if len(book.of_invitee(invitee)) >= cfg.max_invitations_per_user:
            raise SecureChatError(f"{invitee} has too many open invitations", ErrorCode.LIMIT_EXCEEDED)
        if book.count_by_inviter(inviter) >= cfg.max_invitations_per_inviter:
            raise SecureChatError("you have too many open invitations", ErrorCode.LIMIT_EXCEEDED)
        invitation = Invitation(chat_id=chat_id, invitee=invitee, inviter=inviter, mode=mode, suite=suite,
                                expires_at=self._clock() + cfg.invitation_seconds)
        book.open[chat_id, invitee] = invitation
        self._push(invitation)

    def _push(self, invitation: Invitation) -> None:
        peer = self._presence.peer_of(invitation.invitee)
        if peer is not None:
            self._outbox.send_to(peer, m.ChatInvitation(
                chat_id=invitation.chat_id, inviter=invitation.inviter, mode=invitation.mode, suite=invitation.suite,
                expires_in=max(0, int(invitation.expires_at - self._clock()))))

    def begin_opening(self, p: Peer, msg: m.ChatOpen, wanted: list[str],
                      status: dict[str, str]) -> Opening | None:
        """PROTOCOL.md 7.11: invite every registered invitee; returns the opening if it may start at once (none of
        the invitees is online to answer)."""
        assert p.username is not None
        opening = Opening(chat_id="c" + self._random_bytes(16).hex(), opener=p.username, peer=p.id,
                          rid=msg.rid, mode=msg.mode, suite=msg.suite,
                          deadline=self._clock() + self.config.open_wait_seconds,
                          unknown=[n for n in wanted if status[n] == "unknown"])
        self.openings[opening.chat_id] = opening
        for name in wanted:
            if status[name] == "unknown":
                continue
            try:
                self.invite(opening.chat_id, name, p.username, msg.mode, msg.suite)
            except SecureChatError:
                opening.declined.append(name)  # over a cap: reported as not joining
                continue
            if status[name] == "online":
                opening.waiting.add(name)
            else:
                opening.offline.append(name)
        return opening if not opening.waiting else None

    def start(self, opening: Opening) -> bool:
        """Create an opened chat with the opener and everyone who accepted in time, and tell the opener; returns
        whether epoch 1 should now be started (``server_relay.rekey(..., "open", opener)``)."""
        if self.openings.pop(opening.chat_id, None) is None:
            return False  # started or cancelled already
        opening.waiting.clear()  # no answer yet: the chat starts without them, their invitations stay open
        p = self._outbox.find(opening.peer)
        if p is None or p.closing or self._presence.peer_of(opening.opener) != opening.peer:
            self.cancel(opening.chat_id)
            return False
        pending = sorted(i.invitee for i in self.open.values() if i.chat_id == opening.chat_id)
        try:
            chat = self._chats.open(opening.opener, opening.accepted, mode=opening.mode, suite=opening.suite,
                                     chat_id=opening.chat_id)
        except SecureChatError as exc:
            self.cancel(opening.chat_id)
            self._outbox.reply_error(p, exc.code, str(exc.args[0]), m.ChatOpen(rid=opening.rid))
            return False
        self._outbox.send(p, m.ChatOpened(rid=opening.rid, chat_id=chat.chat_id, members=tuple(chat.members),
                                     offline=tuple(opening.offline), unknown=tuple(opening.unknown),
                                     declined=tuple(opening.declined), pending=tuple(pending)))
        return True

    def cancel(self, chat_id: str) -> None:
        """Forget a chat's open invitations (its opener left before it started, or it ended)."""
        self.openings.pop(chat_id, None)
        for key in [k for k in self.open if k[0] == chat_id]:
            del self.open[key]

    def answer(self, p: Peer, msg: m.ChatAnswer) -> Answered:
        """PROTOCOL.md 7.11: accept (join now, or at the start of a chat being opened) or decline."""
        assert p.username is not None
        invitation = self.open.pop((msg.chat_id, p.username), None)
        if invitation is None:
            self._outbox.reply_error(p, ErrorCode.UNKNOWN_CHAT, "no open invitation to that chat", msg)
            return Answered()
        opening = self.openings.get(msg.chat_id)
        if msg.accept and not self._chats.has_room(p.username):
            # the chat goes on without us; our slot limit is ours to free (leave a chat), nobody else's to fill
            self._outbox.reply_error(p, ErrorCode.LIMIT_EXCEEDED, f"{p.username} is in too many chats", msg)
            if opening is not None:
                opening.waiting.discard(p.username)
                opening.declined.append(p.username)
                return Answered(opening=opening if not opening.waiting else None)
            self._tell_inviter(invitation, InvitationOutcome.DECLINED)
            return Answered()
        if opening is not None:
            opening.waiting.discard(p.username)
            (opening.accepted if msg.accept else opening.declined).append(p.username)
            self._outbox.send(p, m.ChatAnswered(rid=msg.rid, chat_id=msg.chat_id, accepted=msg.accept))
            return Answered(opening=opening if not opening.waiting else None)
        if not msg.accept:
            self._outbox.send(p, m.ChatAnswered(rid=msg.rid, chat_id=msg.chat_id, accepted=False))
            self._tell_inviter(invitation, InvitationOutcome.DECLINED)
            return Answered()
        try:
            chat = self._chats.get(msg.chat_id)
            if chat is None:
                raise SecureChatError("that chat has ended", ErrorCode.UNKNOWN_CHAT)
            self._chats.add(msg.chat_id, p.username)
        except SecureChatError as exc:
            self._outbox.reply_error(p, exc.code, str(exc.args[0]), msg)
            return Answered()
        self._outbox.send(p, m.ChatAnswered(rid=msg.rid, chat_id=msg.chat_id, accepted=True))
        # PROTOCOL.md 7.10: the actor of "invite" must still be a member; otherwise the joiner is the actor
        if invitation.inviter in chat.members:
            return Answered(joined=p.username, reason=RekeyReason.INVITE, actor=invitation.inviter)
        return Answered(joined=p.username, reason=RekeyReason.JOIN, actor=p.username)

    def _tell_inviter(self, invitation: Invitation, outcome: InvitationOutcome) -> None:
        peer = self._presence.peer_of(invitation.inviter)
        if peer is not None:
            self._outbox.send_to(peer, m.InvitationClosed(
                chat_id=invitation.chat_id, username=invitation.invitee, outcome=outcome))

    def on_login(self, username: str) -> None:
        """Push the invitations that waited for *username* to come online."""
        for invitation in self.of_invitee(username):
            self._push(invitation)

    def on_logout(self, username: str) -> list[Opening]:
        """A chat being opened by *username* is cancelled; an invitee going offline stops being waited for.
        Returns the openings that may now start."""
        ready: list[Opening] = []
        for opening in list(self.openings.values()):
            if opening.opener == username:
                self.cancel(opening.chat_id)
            elif username in opening.waiting:
                opening.waiting.discard(username)
                opening.offline.append(username)  # its invitation stays open: it may accept when back
                if not opening.waiting:
                    ready.append(opening)
        return ready

    def expire(self) -> list[Opening]:
        """Close invitations past their time (telling the inviter); returns the openings whose wait is over."""
        now = self._clock()
        for key, invitation in list(self.open.items()):
            if now >= invitation.expires_at and key[0] not in self.openings:
                del self.open[key]
                self._tell_inviter(invitation, InvitationOutcome.EXPIRED)
        return [o for o in self.openings.values() if now >= o.deadline]
