"""The server's side of the keyless chat modes: signed epochs, the blind relay of rounds, mailboxes.

Owns (PROTOCOL.md 7.6-7.7): announcing each epoch's membership with a server signature (no key is made),
relaying commitments and confirmations to the other members and each key-share envelope to its recipient
only, and keeping frames for members who are not online yet (delivered when they log in). ``ChatRelay`` owns
one and calls it; its collaborators are narrow: the ``Outbox`` it sends through, ``Presence`` (who is online)
and the ``ChatDirectory`` it reads. Must not: see a share or a key — it relays wrapped envelopes it cannot open.
"""

from __future__ import annotations

from ..crypto.encoding import RandomBytes
from ..crypto.signatures import sign
from ..errors import ErrorCode, SecureChatError
from . import messages as m
from .codec import encode_frame
from .constructions import chat_epoch_signed_bytes
from .jobs import ServerKey
from .vocabulary import CONTRIBUTORY_MODES
from .server_chats import ChatDirectory, ServerChat
from .server_outbox import Outbox, Peer
from .server_presence import Presence

MAX_MAILBOX_FRAMES = 512  # per offline member; older frames are dropped (that member's round then stalls)
CONTRIBUTORY = CONTRIBUTORY_MODES


class KeylessModes:
    """Signed epochs, the blind relay of the contributory rounds, and the mailboxes of offline members."""

    def __init__(self, *, outbox: Outbox, presence: Presence, chats: ChatDirectory, server_key: ServerKey,
                 random_bytes: RandomBytes) -> None:
        self._outbox = outbox
        self._presence = presence
        self._chats = chats
        self._server_key = server_key
        self._random_bytes = random_bytes
        self.mailboxes: dict[str, list[tuple[str, int, bytes, str]]] = {}  # offline contributory members

    def announce_epoch(self, chat: ServerChat, reason: str, actor: str) -> None:
        """Sign and send the membership of the chat's new epoch to every member (kept for offline ones)."""
        message = m.ChatEpoch(chat_id=chat.chat_id, epoch=chat.epoch, mode=chat.mode, suite=chat.suite,
                              reason=reason, actor=actor, members=tuple(chat.members), signature=b"")
        signature = sign(self._server_key.scheme, self._server_key.private_key, chat_epoch_signed_bytes(
            chat_id=chat.chat_id, epoch=chat.epoch, mode=chat.mode, suite=chat.suite, reason=reason, actor=actor,
            members=tuple(chat.members)), random_bytes=self._random_bytes)
        announcement = encode_frame(m.ChatEpoch(**{**message.__dict__, "signature": signature}))
        chat.announcement = announcement
        for member in chat.members:
            self.deliver(chat, member, announcement, "chat_epoch", mailbox=False)

    def deliver(self, chat: ServerChat, member: str, frame: bytes, kind: str, *, mailbox: bool = True) -> None:
        """To *member* now if online, else into its mailbox (contributory chats only, PROTOCOL.md 7.6)."""
        peer = self._presence.peer_of(member)
        if peer is not None:
            self._outbox.queue_to(peer, frame, kind)
        elif mailbox and chat.mode in CONTRIBUTORY:
            box = self.mailboxes.setdefault(member, [])
            box.append((chat.chat_id, chat.epoch, frame, kind))
            del box[:-MAX_MAILBOX_FRAMES]

    def on_login(self, p: Peer, username: str) -> None:
        """Bring a member who was offline up to date: current epochs first, then the envelopes kept for it."""
        for chat_id in sorted(self._chats.chats_of(username)):
            chat = self._chats.get(chat_id)
            if chat is not None and chat.announcement:
                self._outbox.queue(p, chat.announcement, "chat_epoch")
        for chat_id, epoch, frame, kind in self.mailboxes.pop(username, []):
            chat = self._chats.get(chat_id)
            if chat is not None and chat.epoch == epoch:
                self._outbox.queue(p, frame, kind)

    def check_round(self, p: Peer, msg: m.Message) -> ServerChat:
        """A round message must come from a member of a contributory chat, for its current epoch."""
        assert p.username is not None
        chat = self._chats.check_member(getattr(msg, "chat_id"), p.username)
        if chat.mode not in CONTRIBUTORY:
            raise SecureChatError(f"{msg.TYPE} belongs to contributory chats", ErrorCode.UNEXPECTED_MESSAGE)
        if getattr(msg, "epoch") != chat.epoch:
            raise SecureChatError(f"chat is at epoch {chat.epoch}", ErrorCode.STALE_EPOCH)
        return chat

    def on_share_commit(self, p: Peer, msg: m.ShareCommit) -> None:
        chat = self.check_round(p, msg)
        frame = encode_frame(m.ShareCommitted(chat_id=msg.chat_id, epoch=msg.epoch, sender=p.username or "",
                                              commitment=msg.commitment, signature=msg.signature))
        for member in chat.members:
            if member != p.username:
                self.deliver(chat, member, frame, "share_committed")

    def on_key_share(self, p: Peer, msg: m.KeyShare) -> None:
        """The blind relay: an envelope goes to its recipient and nobody else; the server cannot open it."""
        chat = self.check_round(p, msg)
        if msg.recipient not in chat.members or msg.recipient == p.username:
            raise SecureChatError(f"{msg.recipient} is not another member of the chat", ErrorCode.NOT_MEMBER)
        frame = encode_frame(m.KeyShareDelivery(
            chat_id=msg.chat_id, epoch=msg.epoch, sender=p.username or "", recipient=msg.recipient,
            wrapped_share=msg.wrapped_share, nonce=msg.nonce, timestamp=msg.timestamp, signature=msg.signature))
        self.deliver(chat, msg.recipient, frame, "key_share_delivery")

    def on_key_confirm(self, p: Peer, msg: m.KeyConfirm) -> None:
        chat = self.check_round(p, msg)
        frame = encode_frame(m.KeyConfirmed(chat_id=msg.chat_id, epoch=msg.epoch, sender=p.username or "",
                                            mac=msg.mac))
        for member in chat.members:
            if member != p.username:
                self.deliver(chat, member, frame, "key_confirmed")
