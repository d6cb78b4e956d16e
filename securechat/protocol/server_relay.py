"""Chats on the server: open, invite, leave, relay, and each epoch's keys or signed membership (PROTOCOL.md 7).

Owns: the handlers of ``chat_open``, ``chat_invite``, ``chat_leave`` and ``chat_send``, starting a new epoch on
every membership change, and releasing server-key distributions in epoch order. These are parts of
``ServerProtocol`` split out for size: they use its internals on purpose. Must not: read a message's
contents (it relays ciphertext it cannot open in every mode but server-key) or touch sockets and clocks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..crypto.encoding import b64e
from ..errors import ErrorCode, SecureChatError
from . import events as ev
from . import messages as m
from . import server_invitations, server_modes
from .codec import frame
from .jobs import ChatKeyJob
from .limits import TokenBucket
from .lab import LabVariant, lab_has

if TYPE_CHECKING:
    from .server import Peer, ServerProtocol
    from .server_chats import ServerChat


def availability_of(server: ServerProtocol, name: str) -> str:
    if name in server.online:
        return "online"
    return "offline" if server.registry.get_user(name) is not None else "unknown"


def on_chat_open(server: ServerProtocol, p: Peer, msg: m.ChatOpen) -> None:
    """PROTOCOL.md 7.1 and 7.11: invite the named users; the chat starts when they have answered."""
    assert p.username is not None
    wanted = [n for n in msg.members if n != p.username]
    status = {n: availability_of(server, n) for n in wanted}
    if not any(status[n] != "unknown" for n in wanted):
        missing = ", ".join(wanted) or "nobody"
        server._reply_error(p, ErrorCode.USER_OFFLINE, f"nobody to invite ({missing} not registered)", msg)
        return
    if len(server.chats.chats_of(p.username)) >= server.config.max_chats_per_user:
        server._reply_error(p, ErrorCode.LIMIT_EXCEEDED, f"{p.username} is in too many chats", msg)
        return
    opening = server_invitations.begin_opening(server, p, msg, wanted, status)
    if opening is not None:
        start_openings(server, [opening])


def start_openings(server: ServerProtocol, openings: list[server_invitations.Opening]) -> None:
    """Start epoch 1 of each chat whose invitees answered (or whose wait ended), PROTOCOL.md 7.11."""
    for opening in openings:
        if server_invitations.start(server, opening):
            rekey(server, opening.chat_id, "open", opening.opener)


def on_chat_answer(server: ServerProtocol, p: Peer, msg: m.ChatAnswer) -> None:
    answered = server_invitations.answer(server, p, msg)
    if answered.opening is not None:
        start_openings(server, [answered.opening])
    elif answered.joined:
        rekey(server, msg.chat_id, answered.reason, answered.actor)


def on_chat_invite(server: ServerProtocol, p: Peer, msg: m.ChatInvite) -> None:
    """PROTOCOL.md 7.11: an invitation the invitee answers; it joins (a new epoch) only by accepting."""
    assert p.username is not None
    if msg.chat_id == m.LOBBY_ID:
        server._reply_error(p, ErrorCode.UNEXPECTED_MESSAGE, "the lobby has every online user already", msg)
        return
    availability = availability_of(server, msg.username)
    try:
        chat = server.chats.check_member(msg.chat_id, p.username)
        if not membership_change_allowed(server, chat):
            raise SecureChatError("too many invitations into this chat, retry shortly", ErrorCode.RATE_LIMITED)
        if availability == "unknown":
            raise SecureChatError(f"{msg.username} is not registered", ErrorCode.UNKNOWN_USER)
        if msg.username in chat.members:
            raise SecureChatError(f"{msg.username} is already a member", ErrorCode.ALREADY_MEMBER)
        server_invitations.invite(server, msg.chat_id, msg.username, p.username, chat.mode, chat.suite)
    except SecureChatError as exc:
        server._reply_error(p, exc.code, str(exc.args[0]), msg)
        return
    server._send(p, m.ChatInvited(rid=msg.rid, chat_id=msg.chat_id, username=msg.username))


def on_chat_leave(server: ServerProtocol, p: Peer, msg: m.ChatLeave) -> None:
    assert p.username is not None
    if msg.chat_id == m.LOBBY_ID:
        server._reply_error(p, ErrorCode.UNEXPECTED_MESSAGE, "one leaves the lobby by logging out", msg)
        return
    try:
        remaining = server.chats.remove(msg.chat_id, p.username)
    except SecureChatError as exc:
        server._reply_error(p, exc.code, str(exc.args[0]), msg)
        return
    server._send(p, m.ChatLeft(rid=msg.rid, chat_id=msg.chat_id))
    chat = server.chats.get(msg.chat_id)
    if chat is not None and lab_has(server.config.lab, LabVariant.NO_REKEY_ON_LEAVE):
        chat.epoch -= 1  # LAB ONLY (PROTOCOL.md 15.1): undo the new epoch, so the leaver's key stays in use
    elif remaining:
        rekey(server, msg.chat_id, "leave", p.username)


# The same compact UTF-8 JSON as codec.encode_message, with one encoder built once instead of per call.
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def chat_message_frame(msg: m.ChatSend, sender: str) -> bytes:
    """The relayed chat_message frame, byte-identical to ``encode_frame(m.ChatMessage(...))``.

    The relay hot path: every field of *msg* was validated when it was decoded, and
    *sender* is the authenticated username, so the frame is built straight from them in ChatMessage's field
    order, without a second dataclass -> per-field kinds -> dict round.
    """
    out = {"type": m.ChatMessage.TYPE, "chat_id": msg.chat_id, "epoch": msg.epoch, "sender": sender,
           "seq": msg.seq, "ciphertext": b64e(msg.ciphertext), "signature": b64e(msg.signature)}
    if msg.wrap_recipients is not None:
        out["wrap_recipients"] = list(msg.wrap_recipients)
    if msg.wraps is not None:
        out["wraps"] = [b64e(w) for w in msg.wraps]
    if msg.key_commitment is not None:
        out["key_commitment"] = b64e(msg.key_commitment)
    if msg.prev_hash is not None:
        out["prev_hash"] = b64e(msg.prev_hash)
    return frame(_JSON(out).encode("utf-8"))


def on_chat_send(server: ServerProtocol, p: Peer, msg: m.ChatSend) -> None:
    """PROTOCOL.md 7.3: relay to every other current member, labelled with the authenticated sender."""
    assert p.username is not None
    try:
        chat = server.chats.check_member(msg.chat_id, p.username)
    except SecureChatError as exc:
        server._reply_error(p, exc.code, str(exc.args[0]), msg)
        return
    if msg.epoch != chat.epoch:
        server._reply_error(p, ErrorCode.STALE_EPOCH, f"chat is at epoch {chat.epoch}", msg)
        return
    hybrid_fields = (msg.wraps, msg.wrap_recipients, msg.key_commitment, msg.prev_hash)
    if (chat.mode == "hybrid") != all(x is not None for x in hybrid_fields) or (
            chat.mode != "hybrid" and any(x is not None for x in hybrid_fields)):
        # PROTOCOL.md 7.7: per-message wraps, commitment and chain hash in hybrid chats, and only there
        server._reply_error(p, ErrorCode.BAD_FIELD, f"wraps do not fit a {chat.mode} chat", msg)
        return
    relayed = chat_message_frame(msg, p.username)
    recipients = 0
    online, peers, sender = server.online, server.peers, p.username
    for member in chat.members:
        peer = online.get(member)
        if peer is not None and member != sender:
            server._queue(peers[peer], relayed, "chat_message")
            recipients += 1
    if server._relay_events:
        server._events.append(ev.MessageRelayed(peer=p.id, chat_id=msg.chat_id, sender=p.username,
                                              size=len(msg.ciphertext), recipients=recipients))


def on_round(server: ServerProtocol, p: Peer, msg: m.Message, handler: Callable[..., None]) -> None:
    try:
        handler(server, p, msg)
    except SecureChatError as exc:
        server._reply_error(p, exc.code, str(exc.args[0]), msg)


def rekey(server: ServerProtocol, chat_id: str, reason: str, actor: str) -> None:
    """Every membership change starts a new epoch with a fresh key (PROTOCOL.md 7.5, docs/THREATS.md 38-40).

    PROTOCOL.md 7.2 "bounded rekey": a chat has at most one key job at a time. Changes that arrive while it
    runs are merged: when it ends, one job makes the key of the newest epoch, for the members of that epoch,
    and a distribution overtaken by a later change is never sent. At most ``max_key_jobs`` run at once; other
    chats wait in arrival order, each at most once.
    """
    chat = server.chats.get(chat_id)
    if chat is None:
        return
    server._events.append(ev.ChatRekeyed(peer=server.online.get(actor, -1), chat_id=chat_id, epoch=chat.epoch,
                                       members=tuple(chat.members), reason=reason))
    if chat.mode in m.KEYLESS_MODES:
        server_modes.announce_epoch(server, chat, reason, actor)  # no key: only signed membership
        return
    chat.rekey = (reason, actor)  # the newest change names the distribution that covers all merged ones
    if not chat.key_job and chat_id not in server.key_waiting:
        _start_or_wait(server, chat)


def _start_or_wait(server: ServerProtocol, chat: ServerChat) -> None:
    if server.key_jobs >= server.config.max_key_jobs:
        server.key_waiting[chat.chat_id] = None
        return
    assert chat.rekey is not None
    (reason, actor), chat.rekey = chat.rekey, None
    chat.key_job = True
    server.key_jobs += 1
    server._jobs.append(ChatKeyJob(
        peer=-1, chat_id=chat.chat_id, epoch=chat.epoch, mode=chat.mode, suite=chat.suite, reason=reason,
        actor=actor, members=tuple(chat.members),
        encryption_keys=tuple(server._encryption_keys[n] for n in chat.members), ca=server.server_key,
        random_bytes=server._random_bytes,
    ))


def distribute(server: ServerProtocol, job: ChatKeyJob) -> None:
    """Send a finished distribution if its epoch is still the chat's; then start the merged rekey, if the chat
    changed meanwhile, and any chat waiting for a key job slot."""
    server.key_jobs -= 1
    chat = server.chats.get(job.chat_id)
    if chat is not None:
        chat.key_job = False
        if job.epoch == chat.epoch:
            for member, message in job.messages.items():
                peer = server.online.get(member)
                if member in chat.members and peer is not None:
                    server._send(server.peers[peer], message)
        if chat.rekey is not None:
            _start_or_wait(server, chat)
    while server.key_waiting and server.key_jobs < server.config.max_key_jobs:
        chat_id = next(iter(server.key_waiting))
        del server.key_waiting[chat_id]
        waiting = server.chats.get(chat_id)
        if waiting is not None and waiting.rekey is not None and not waiting.key_job:
            _start_or_wait(server, waiting)


def membership_change_allowed(server: ServerProtocol, chat: ServerChat) -> bool:
    """PROTOCOL.md 7.5: invitations into one chat are rate limited (each costs a rekey of every member)."""
    if chat.changes is None:
        chat.changes = TokenBucket(server.config.invites_per_chat_per_second, server.config.invite_burst_per_chat,
                                   server._now)
    return chat.changes.take(server._now)
