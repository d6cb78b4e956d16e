"""The server's side of the keyless chat modes: signed epochs, the blind relay of rounds, mailboxes.

Owns (PROTOCOL.md 7.6-7.7): announcing each epoch's membership with a server signature (no key is made),
relaying commitments and confirmations to the other members and each key-share envelope to its recipient
only, and keeping frames for members who are not online yet (delivered when they log in). ``ChatRelay`` owns
one and calls it; its collaborators are narrow: the ``Outbox`` it sends through, ``Presence`` (who is online)
and the ``ChatDirectory`` it reads. Must not: see a share or a key — it relays wrapped envelopes it cannot open.
"""

from __future__ import annotations

from collections.abc import Callable

from ..crypto.encoding import RandomBytes
from ..crypto.signatures import sign
from ..errors import ErrorCode, SecureChatError
from . import events as ev
from . import messages as m
from .codec import encode_frame
from .constructions import chat_epoch_signed_bytes
from .jobs import ServerKey
from .limits import ServerConfig
from .vocabulary import CONTRIBUTORY_MODES, RekeyReason
from .server_chats import ChatDirectory, ServerChat
from .server_outbox import Outbox, Peer
from .server_presence import Presence

MAX_MAILBOX_FRAMES = 512  # per offline member; older frames are dropped (that member's round then stalls)
CONTRIBUTORY = CONTRIBUTORY_MODES


class KeylessModes:
    """Signed epochs, the blind relay of the contributory rounds, and the mailboxes of offline members."""

    def __init__(self, *, outbox: Outbox, presence: Presence, chats: ChatDirectory, config: ServerConfig,
                 server_key: ServerKey, random_bytes: RandomBytes, now: Callable[[], float]) -> None:
        self._outbox = outbox
        self._presence = presence
        self._chats = chats
        self._server_key = server_key
        self._random_bytes = random_bytes
        self._clock = now
        self.config = config
        self.open_rounds: set[str] = set()  # contributory chats whose current round has not finished (7.6)
        self.mailboxes: dict[str, list[tuple[str, int, bytes, str]]] = {}  # offline contributory members

    def announce_epoch(self, chat: ServerChat, reason: RekeyReason, actor: str) -> None:
        """Sign and send the membership of the chat's new epoch to every member (kept for offline ones)."""
        message = m.ChatEpoch(chat_id=chat.chat_id, epoch=chat.epoch, mode=chat.mode, suite=chat.suite,
                              reason=reason, actor=actor, members=tuple(chat.members), signature=b"")
        signature = sign(self._server_key.scheme, self._server_key.private_key, chat_epoch_signed_bytes(
            chat_id=chat.chat_id, epoch=chat.epoch, mode=chat.mode, suite=chat.suite, reason=reason, actor=actor,
            members=tuple(chat.members)), random_bytes=self._random_bytes)
        announcement = encode_frame(m.ChatEpoch(**{**message.__dict__, "signature": signature}))
        chat.announcement = announcement
        if chat.mode in CONTRIBUTORY:  # PROTOCOL.md 7.6: the round of this epoch starts now
            chat.round_started, chat.committed, chat.confirmed = self._clock(), set(), set()
            self.open_rounds.add(chat.chat_id)
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
        chat.committed.add(p.username or "")
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
        chat.confirmed.add(p.username or "")
        if set(chat.members) <= chat.confirmed:
            self.open_rounds.discard(chat.chat_id)  # everyone confirmed: the round is over
        frame = encode_frame(m.KeyConfirmed(chat_id=msg.chat_id, epoch=msg.epoch, sender=p.username or "",
                                            mac=msg.mac))
        for member in chat.members:
            if member != p.username:
                self.deliver(chat, member, frame, "key_confirmed")

    def check_rounds(self, now: float) -> None:
        """PROTOCOL.md 7.6: a round not finished ``round_timeout_seconds`` after its epoch began is reported once
        to the online members (``round_timeout``) with the members it waits for; the chat stays as it is
        (a late member can still finish the round), but nobody waits in silence."""
        timeout = self.config.round_timeout_seconds
        for chat_id in list(self.open_rounds):
            chat = self._chats.get(chat_id)
            if chat is None or chat.mode not in CONTRIBUTORY or chat.round_started is None:
                self.open_rounds.discard(chat_id)
                continue
            if now - chat.round_started < timeout:
                continue
            self.open_rounds.discard(chat_id)
            # The members the round waits for: those that never committed, or, once all have, never confirmed.
            missing = tuple(name for name in chat.members if name not in chat.committed)
            missing = missing or tuple(name for name in chat.members if name not in chat.confirmed)
            if not missing:
                continue
            frame = encode_frame(m.RoundTimeout(chat_id=chat_id, epoch=chat.epoch, missing=missing))
            for member in chat.members:
                peer = self._presence.peer_of(member)
                if peer is not None:
                    self._outbox.queue_to(peer, frame, "round_timeout")
            self._outbox.emit(ev.RoundTimeoutSent(peer=-1, chat_id=chat_id, epoch=chat.epoch, missing=missing))
