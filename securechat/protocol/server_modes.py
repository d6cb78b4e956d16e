"""The server's side of the keyless chat modes: signed epochs, the blind relay of rounds, mailboxes, the lobby.

Owns (PROTOCOL.md 7.6-7.8): announcing each epoch's membership with a server signature (no key is made),
relaying commitments and confirmations to the other members and each key-share envelope to its recipient
only, keeping frames for members who are not online yet (delivered when they log in), and the lobby every
online user is in. Must not: see a share or a key — it relays wrapped envelopes it cannot open.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..crypto.signatures import sign
from ..errors import ErrorCode, SecureChatError
from . import events as ev
from . import messages as m
from .codec import encode_frame
from .constructions import chat_epoch_signed_bytes
from .messages import MAX_CHAT_MEMBERS
from .server_chats import ServerChat

if TYPE_CHECKING:
    from .server import Peer, ServerProtocol

MAX_MAILBOX_FRAMES = 512  # per offline member; older frames are dropped (that member's round then stalls)
CONTRIBUTORY = ("contributory", "contributory-xor")


def announce_epoch(server: ServerProtocol, chat: ServerChat, reason: str, actor: str) -> None:
    """Sign and send the membership of the chat's new epoch to every member (kept for offline ones)."""
    message = m.ChatEpoch(chat_id=chat.chat_id, epoch=chat.epoch, mode=chat.mode, suite=chat.suite, reason=reason,
                          actor=actor, members=tuple(chat.members), signature=b"")
    signature = sign(server.server_key.scheme, server.server_key.private_key, chat_epoch_signed_bytes(
        chat_id=chat.chat_id, epoch=chat.epoch, mode=chat.mode, suite=chat.suite, reason=reason, actor=actor,
        members=tuple(chat.members)), random_bytes=server._random_bytes)  # noqa: SLF001
    announcement = encode_frame(m.ChatEpoch(**{**message.__dict__, "signature": signature}))
    chat.announcement = announcement
    if chat.mode in CONTRIBUTORY:  # PROTOCOL.md 7.6: the round of this epoch starts now
        chat.round_started, chat.committed, chat.confirmed = server._now, set(), set()  # noqa: SLF001
        server.open_rounds.add(chat.chat_id)
    for member in chat.members:
        deliver(server, chat, member, announcement, "chat_epoch", mailbox=False)


def deliver(server: ServerProtocol, chat: ServerChat, member: str, frame: bytes, kind: str, *,
            mailbox: bool = True) -> None:
    """To *member* now if online, else into its mailbox (contributory chats only, PROTOCOL.md 7.6)."""
    peer = server.online.get(member)
    if peer is not None:
        server._queue(server.peers[peer], frame, kind)  # noqa: SLF001
    elif mailbox and chat.mode in CONTRIBUTORY:
        box = server.mailboxes.setdefault(member, [])
        box.append((chat.chat_id, chat.epoch, frame, kind))
        del box[:-MAX_MAILBOX_FRAMES]


def on_login(server: ServerProtocol, p: Peer, username: str) -> None:
    """Bring a member who was offline up to date: current epochs first, then the envelopes kept for it."""
    for chat_id in sorted(server.chats.chats_of(username)):
        chat = server.chats.get(chat_id)
        if chat is not None and chat.announcement:
            server._queue(p, chat.announcement, "chat_epoch")  # noqa: SLF001
    for chat_id, epoch, frame, kind in server.mailboxes.pop(username, []):
        chat = server.chats.get(chat_id)
        if chat is not None and chat.epoch == epoch:
            server._queue(p, frame, kind)  # noqa: SLF001
    if server.config.lobby:
        join_lobby(server, username)


def join_lobby(server: ServerProtocol, username: str) -> None:
    chat = server.chats.get(m.LOBBY_ID)
    try:
        if chat is None:
            chat = server.chats.open(username, [], mode="hybrid", suite="aes-256-gcm", chat_id=m.LOBBY_ID)
        else:
            server.chats.add(m.LOBBY_ID, username)
    except SecureChatError:
        # PROTOCOL.md 7.8: a full lobby (256 members) admits nobody more; chats still work. Said, not silent.
        peer = server.online.get(username)
        if peer is not None:
            server._reply_error(server.peers[peer], ErrorCode.LIMIT_EXCEEDED,  # noqa: SLF001
                                f"the lobby is full ({MAX_CHAT_MEMBERS} members): you are not in it; chats work",
                                None, ref="lobby")
        return
    from . import server_relay  # imported here: server_relay imports this module

    server_relay.rekey(server, m.LOBBY_ID, "join", username)


def check_round(server: ServerProtocol, p: Peer, msg: m.Message) -> ServerChat:
    """A round message must come from a member of a contributory chat, for its current epoch."""
    assert p.username is not None
    chat = server.chats.check_member(getattr(msg, "chat_id"), p.username)
    if chat.mode not in CONTRIBUTORY:
        raise SecureChatError(f"{msg.TYPE} belongs to contributory chats", ErrorCode.UNEXPECTED_MESSAGE)
    if getattr(msg, "epoch") != chat.epoch:
        raise SecureChatError(f"chat is at epoch {chat.epoch}", ErrorCode.STALE_EPOCH)
    return chat


def on_share_commit(server: ServerProtocol, p: Peer, msg: m.ShareCommit) -> None:
    chat = check_round(server, p, msg)
    chat.committed.add(p.username or "")
    frame = encode_frame(m.ShareCommitted(chat_id=msg.chat_id, epoch=msg.epoch, sender=p.username or "",
                                          commitment=msg.commitment, signature=msg.signature))
    for member in chat.members:
        if member != p.username:
            deliver(server, chat, member, frame, "share_committed")


def on_key_share(server: ServerProtocol, p: Peer, msg: m.KeyShare) -> None:
    """The blind relay: an envelope goes to its recipient and nobody else; the server cannot open it."""
    chat = check_round(server, p, msg)
    if msg.recipient not in chat.members or msg.recipient == p.username:
        raise SecureChatError(f"{msg.recipient} is not another member of the chat", ErrorCode.NOT_MEMBER)
    frame = encode_frame(m.KeyShareDelivery(
        chat_id=msg.chat_id, epoch=msg.epoch, sender=p.username or "", recipient=msg.recipient,
        wrapped_share=msg.wrapped_share, nonce=msg.nonce, timestamp=msg.timestamp, signature=msg.signature))
    deliver(server, chat, msg.recipient, frame, "key_share_delivery")


def on_key_confirm(server: ServerProtocol, p: Peer, msg: m.KeyConfirm) -> None:
    chat = check_round(server, p, msg)
    chat.confirmed.add(p.username or "")
    if set(chat.members) <= chat.confirmed:
        server.open_rounds.discard(chat.chat_id)  # everyone confirmed: the round is over
    frame = encode_frame(m.KeyConfirmed(chat_id=msg.chat_id, epoch=msg.epoch, sender=p.username or "",
                                        mac=msg.mac))
    for member in chat.members:
        if member != p.username:
            deliver(server, chat, member, frame, "key_confirmed")


def check_rounds(server: ServerProtocol, now: float) -> None:
    """PROTOCOL.md 7.6: a round not finished ``round_timeout_seconds`` after its epoch began is reported once
    to the online members (``round_timeout``) with the members it waits for; the chat stays as it is
    (a late member can still finish the round), but nobody waits in silence."""
    timeout = server.config.round_timeout_seconds
    for chat_id in list(server.open_rounds):
        chat = server.chats.get(chat_id)
        if chat is None or chat.mode not in CONTRIBUTORY or chat.round_started is None:
            server.open_rounds.discard(chat_id)
            continue
        if now - chat.round_started < timeout:
            continue
        server.open_rounds.discard(chat_id)
        # The members the round waits for: those that never committed, or, once all have, never confirmed.
        missing = tuple(name for name in chat.members if name not in chat.committed)
        missing = missing or tuple(name for name in chat.members if name not in chat.confirmed)
        if not missing:
            continue
        frame = encode_frame(m.RoundTimeout(chat_id=chat_id, epoch=chat.epoch, missing=missing))
        for member in chat.members:
            peer = server.online.get(member)
            if peer is not None:
                server._queue(server.peers[peer], frame, "round_timeout")  # noqa: SLF001
        server._events.append(ev.RoundTimeoutSent(peer=-1, chat_id=chat_id, epoch=chat.epoch,  # noqa: SLF001
                                                  missing=missing))
