"""Invitations on the server: nobody becomes a member of a chat without answering (PROTOCOL.md 7.11).

Owns: the open invitations (``Invitation``) and the chats being opened (``Opening``: a ``chat_open`` that waits
for its online invitees' answers before epoch 1 starts), their caps and expiry. An invitation takes no chat slot
and reveals only the inviter and how the chat is keyed; the invitee joins (and takes a slot) only by accepting.
This is what stops one user from filling everyone's chat quota (docs/SECURITY.md, "Consent to join").
Must not: do crypto, read clocks (``now`` comes from ``ServerProtocol``), touch sockets, or start epochs: it
returns the chats that may start or the member who joined, and ``server_relay`` rekeys them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import ErrorCode, SecureChatError
from . import messages as m

if TYPE_CHECKING:
    from .server import Peer, ServerProtocol


@dataclass
class Invitation:
    chat_id: str
    invitee: str
    inviter: str
    mode: str
    suite: str
    expires_at: float


@dataclass
class Opening:
    """A ``chat_open`` waiting for answers: the chat starts when every online invitee answered, or at
    ``deadline`` with those who accepted by then (the others may still accept and join at a later epoch)."""

    chat_id: str
    opener: str
    peer: int
    rid: int | None
    mode: str
    suite: str
    deadline: float
    waiting: set[str] = field(default_factory=set)
    accepted: list[str] = field(default_factory=list)
    declined: list[str] = field(default_factory=list)
    offline: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)


class Invitations:
    """Every open invitation and every chat being opened, for one ``ServerProtocol``."""

    def __init__(self) -> None:
        self.open: dict[tuple[str, str], Invitation] = {}   # (chat id, invitee) -> invitation
        self.openings: dict[str, Opening] = {}              # chat id -> chat_open waiting for answers

    def of_invitee(self, username: str) -> list[Invitation]:
        return [i for (_, invitee), i in self.open.items() if invitee == username]

    def count_by_inviter(self, username: str) -> int:
        return sum(1 for i in self.open.values() if i.inviter == username)


def invite(server: ServerProtocol, chat_id: str, invitee: str, inviter: str, mode: str, suite: str) -> None:
    """Record an invitation (within the caps) and push it to the invitee if online; raises SecureChatError."""
    book, cfg = server.invitations, server.config
    if (chat_id, invitee) in book.open:
        return  # asked again: the open invitation stands
    mine = [i for i in book.of_invitee(invitee) if i.inviter == inviter]
    if len(mine) >= cfg.max_invitations_per_pair:
        # one user cannot fill another's invitation quota on its own (PROTOCOL.md 7.11)
        raise SecureChatError(f"you already have {len(mine)} open invitations to {invitee}", ErrorCode.LIMIT_EXCEEDED)
    if len(book.of_invitee(invitee)) >= cfg.max_invitations_per_user:
        raise SecureChatError(f"{invitee} has too many open invitations", ErrorCode.LIMIT_EXCEEDED)
    if book.count_by_inviter(inviter) >= cfg.max_invitations_per_inviter:
        raise SecureChatError("you have too many open invitations", ErrorCode.LIMIT_EXCEEDED)
    invitation = Invitation(chat_id=chat_id, invitee=invitee, inviter=inviter, mode=mode, suite=suite,
                            expires_at=server.now + cfg.invitation_seconds)
    book.open[chat_id, invitee] = invitation
    _push(server, invitation)


def _push(server: ServerProtocol, invitation: Invitation) -> None:
    peer = server.online.get(invitation.invitee)
    if peer is not None:
        server._send(server.peers[peer], m.ChatInvitation(  # noqa: SLF001
            chat_id=invitation.chat_id, inviter=invitation.inviter, mode=invitation.mode, suite=invitation.suite,
            expires_in=max(0, int(invitation.expires_at - server.now))))


def begin_opening(server: ServerProtocol, p: Peer, msg: m.ChatOpen, wanted: list[str],
                  status: dict[str, str]) -> Opening | None:
    """PROTOCOL.md 7.11: invite every registered invitee; returns the opening if it may start at once (none of
    the invitees is online to answer)."""
    assert p.username is not None
    opening = Opening(chat_id="c" + server._random_bytes(16).hex(), opener=p.username, peer=p.id,  # noqa: SLF001
                      rid=msg.rid, mode=msg.mode, suite=msg.suite, deadline=server.now + server.config.open_wait_seconds,
                      unknown=[n for n in wanted if status[n] == "unknown"])
    server.invitations.openings[opening.chat_id] = opening
    for name in wanted:
        if status[name] == "unknown":
            continue
        try:
            invite(server, opening.chat_id, name, p.username, msg.mode, msg.suite)
        except SecureChatError:
            opening.declined.append(name)  # over a cap: reported as not joining
            continue
        if status[name] == "online":
            opening.waiting.add(name)
        else:
            opening.offline.append(name)
    return opening if not opening.waiting else None


def start(server: ServerProtocol, opening: Opening) -> bool:
    """Create an opened chat with the opener and everyone who accepted in time, and tell the opener; returns
    whether epoch 1 should now be started (``server_relay.rekey(..., "open", opener)``)."""
    if server.invitations.openings.pop(opening.chat_id, None) is None:
        return False  # started or cancelled already
    opening.waiting.clear()  # no answer yet: the chat starts without them, their invitations stay open
    p = server.peers.get(opening.peer)
    if p is None or p.closing or server.online.get(opening.opener) != opening.peer:
        cancel(server, opening.chat_id)
        return False
    pending = sorted(i.invitee for i in server.invitations.open.values() if i.chat_id == opening.chat_id)
    try:
        chat = server.chats.open(opening.opener, opening.accepted, mode=opening.mode, suite=opening.suite,
                                 chat_id=opening.chat_id)
    except SecureChatError as exc:
        cancel(server, opening.chat_id)
        server._reply_error(p, exc.code, str(exc.args[0]), m.ChatOpen(rid=opening.rid))  # noqa: SLF001
        return False
    server._send(p, m.ChatOpened(rid=opening.rid, chat_id=chat.chat_id, members=tuple(chat.members),  # noqa: SLF001
                                 offline=tuple(opening.offline), unknown=tuple(opening.unknown),
                                 declined=tuple(opening.declined), pending=tuple(pending)))
    return True


def cancel(server: ServerProtocol, chat_id: str) -> None:
    """Forget a chat's open invitations (its opener left before it started, or it ended)."""
    server.invitations.openings.pop(chat_id, None)
    for key in [k for k in server.invitations.open if k[0] == chat_id]:
        del server.invitations.open[key]


@dataclass(frozen=True)
class Answered:
    """What an answer leads to: an opening that may start now, or a member who joined an existing chat
    (rekey with *reason* and *actor*), or nothing more."""

    opening: Opening | None = None
    joined: str = ""
    reason: str = ""
    actor: str = ""


def answer(server: ServerProtocol, p: Peer, msg: m.ChatAnswer) -> Answered:
    """PROTOCOL.md 7.11: accept (join now, or at the start of a chat being opened) or decline."""
    assert p.username is not None
    invitation = server.invitations.open.pop((msg.chat_id, p.username), None)
    if invitation is None:
        server._reply_error(p, ErrorCode.UNKNOWN_CHAT, "no open invitation to that chat", msg)  # noqa: SLF001
        return Answered()
    opening = server.invitations.openings.get(msg.chat_id)
    if msg.accept and not server.chats.has_room(p.username):
        # the chat goes on without us; our slot limit is ours to free (leave a chat), nobody else's to fill
        server._reply_error(p, ErrorCode.LIMIT_EXCEEDED, f"{p.username} is in too many chats", msg)  # noqa: SLF001
        if opening is not None:
            opening.waiting.discard(p.username)
            opening.declined.append(p.username)
            return Answered(opening=opening if not opening.waiting else None)
        _tell_inviter(server, invitation, "declined")
        return Answered()
    if opening is not None:
        opening.waiting.discard(p.username)
        (opening.accepted if msg.accept else opening.declined).append(p.username)
        server._send(p, m.ChatAnswered(rid=msg.rid, chat_id=msg.chat_id, accepted=msg.accept))  # noqa: SLF001
        return Answered(opening=opening if not opening.waiting else None)
    if not msg.accept:
        server._send(p, m.ChatAnswered(rid=msg.rid, chat_id=msg.chat_id, accepted=False))  # noqa: SLF001
        _tell_inviter(server, invitation, "declined")
        return Answered()
    try:
        chat = server.chats.get(msg.chat_id)
        if chat is None:
            raise SecureChatError("that chat has ended", ErrorCode.UNKNOWN_CHAT)
        server.chats.add(msg.chat_id, p.username)
    except SecureChatError as exc:
        server._reply_error(p, exc.code, str(exc.args[0]), msg)  # noqa: SLF001
        return Answered()
    server._send(p, m.ChatAnswered(rid=msg.rid, chat_id=msg.chat_id, accepted=True))  # noqa: SLF001
    # PROTOCOL.md 7.10: the actor of "invite" must still be a member; otherwise the joiner is the actor
    if invitation.inviter in chat.members:
        return Answered(joined=p.username, reason="invite", actor=invitation.inviter)
    return Answered(joined=p.username, reason="join", actor=p.username)


def _tell_inviter(server: ServerProtocol, invitation: Invitation, outcome: str) -> None:
    peer = server.online.get(invitation.inviter)
    if peer is not None:
        server._send(server.peers[peer], m.InvitationClosed(  # noqa: SLF001
            chat_id=invitation.chat_id, username=invitation.invitee, outcome=outcome))


def on_login(server: ServerProtocol, username: str) -> None:
    """Push the invitations that waited for *username* to come online."""
    for invitation in server.invitations.of_invitee(username):
        _push(server, invitation)


def on_logout(server: ServerProtocol, username: str) -> list[Opening]:
    """A chat being opened by *username* is cancelled; an invitee going offline stops being waited for.
    Returns the openings that may now start."""
    ready: list[Opening] = []
    for opening in list(server.invitations.openings.values()):
        if opening.opener == username:
            cancel(server, opening.chat_id)
        elif username in opening.waiting:
            opening.waiting.discard(username)
            opening.offline.append(username)  # its invitation stays open: it may accept when back
            if not opening.waiting:
                ready.append(opening)
    return ready


def expire(server: ServerProtocol) -> list[Opening]:
    """Close invitations past their time (telling the inviter); returns the openings whose wait is over."""
    now = server.now
    for key, invitation in list(server.invitations.open.items()):
        if now >= invitation.expires_at and key[0] not in server.invitations.openings:
            del server.invitations.open[key]
            _tell_inviter(server, invitation, "expired")
    return [o for o in server.invitations.openings.values() if now >= o.deadline]
