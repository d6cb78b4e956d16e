"""The server's side of the keyless chat modes: signed epochs, the blind relay of rounds, mailboxes, the lobby.

Owns (PROTOCOL.md 7.6-7.8): announcing each epoch's membership with a server signature (no key is made),
relaying commitments and confirmations to the other members and each key-share envelope to its recipient
only, keeping frames for members who are not online yet (delivered when they log in), and the lobby every
online user is in. Must not: see a share or a key — it relays wrapped envelopes it cannot open.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..crypto.aead import CipherSuite
from ..crypto.signatures import sign
from ..errors import ErrorCode, SecureChatError
from . import messages as m
from .codec import encode_frame
from .constructions import chat_epoch_signed_bytes
from .names import CONTRIBUTORY_MODES, ChatMode
from .server_chats import ServerChat

if TYPE_CHECKING:
    from .server import Peer, ServerProtocol

MAX_MAILBOX_FRAMES = 512  # per offline member; older frames are dropped (that member's round then stalls)
CONTRIBUTORY = CONTRIBUTORY_MODES


def announce_epoch(server: ServerProtocol, chat: ServerChat, reason: str, actor: str) -> None:
    """Sign and send the membership of the chat's new epoch to every member (kept for offline ones)."""
    message = m.ChatEpoch(chat_id=chat.chat_id, epoch=chat.epoch, mode=chat.mode, suite=chat.suite, reason=reason,
                          actor=actor, members=tuple(chat.members), signature=b"")
    signature = sign(server.server_key.scheme, server.server_key.private_key, chat_epoch_signed_bytes(
        chat_id=chat.chat_id, epoch=chat.epoch, mode=chat.mode, suite=chat.suite, reason=reason, actor=actor,
        members=tuple(chat.members)), random_bytes=server._random_bytes)  # noqa: SLF001
    announcement = encode_frame(m.ChatEpoch(**{**message.__dict__, "signature": signature}))
    chat.announcement = announcement
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
            chat = server.chats.open(username, [], mode=ChatMode.HYBRID, suite=CipherSuite.AES_256_GCM, chat_id=m.LOBBY_ID)
        else:
            server.chats.add(m.LOBBY_ID, username)
    except SecureChatError:
        return  # PROTOCOL.md 7.8: a full lobby (256 members) admits nobody more; chats still work
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
    frame = encode_frame(m.KeyConfirmed(chat_id=msg.chat_id, epoch=msg.epoch, sender=p.username or "",
                                        mac=msg.mac))
    for member in chat.members:
        if member != p.username:
            deliver(server, chat, member, frame, "key_confirmed")
