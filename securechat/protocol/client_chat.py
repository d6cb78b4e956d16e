"""One chat as this client sees it (PROTOCOL.md 7): ``ClientChat``, and the small pieces every chat check shares.

Owns: a chat's mode and suite (fixed at first sight, PROTOCOL.md 7.10), its ``ChatState``, its current epoch with
its members and key, our and each sender's sequence numbers and (hybrid mode) hash chains, and the key agreement
of its epoch (contributory modes); the move to a new epoch resets all of it in one place (``new_epoch``).
Must not: verify anything (``ChatBook`` checks a chat_key or chat_epoch before a chat enters its epoch).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..crypto import aead
from ..errors import ErrorCode, LocalProtocolError, SecureChatError
from . import events as ev
from .agreement import Agreement
from .constructions import HYBRID_CHAIN_START, sender_key
from .messages import ChatEpoch, ChatKey, ChatMessage
from .states import RECEIVE, SEND, ChatState, next_chat_state
from .vocabulary import ChatMode


@dataclass
class ClientChat:
    """One chat: what it is (mode, suite), where we are in it (state, epoch, members, key) and its counters."""

    chat_id: str
    mode: ChatMode
    suite: str
    epoch: int
    members: tuple[str, ...]
    key: bytes | None  # None while a contributory agreement runs; unused in hybrid mode
    state: ChatState = ChatState.ACTIVE
    sent_seq: int = 0
    last_seq: dict[str, int] = field(default_factory=dict)
    sender_keys: dict[str, bytes] = field(default_factory=dict)
    # hybrid mode (PROTOCOL.md 7.7): the chain hash of our last message, and of each sender's last one
    sent_hash: bytes = HYBRID_CHAIN_START
    last_hash: dict[str, bytes] = field(default_factory=dict)
    # keyless modes (PROTOCOL.md 7.7): the signed chat_epoch that started this epoch, the members before it,
    # and (contributory modes) the key agreement running for it
    announcement: ChatEpoch | None = None
    before: tuple[str, ...] = ()
    agreement: Agreement | None = None

    # --- the chat's state machine (states.CHAT_TRANSITIONS) --------------------------------------------------

    def check(self, kind: str) -> None:
        """Raise LocalProtocolError if a command of *kind* may not be sent in this chat now."""
        next_chat_state(self.state, SEND, kind)

    def leave(self) -> None:
        """Our chat_leave is sent: no more round messages for this chat (PROTOCOL.md 7.5)."""
        self.state = next_chat_state(self.state, SEND, "chat_leave")
        self.agreement = None

    def leave_refused(self) -> None:
        """The server refused our chat_leave: the chat is as it was."""
        if self.state is ChatState.LEAVING:
            self.state = next_chat_state(self.state, RECEIVE, "error")

    def left(self) -> None:
        """The server confirmed we left: forget the key (PROTOCOL.md 7.5)."""
        self.state = next_chat_state(self.state, RECEIVE, "chat_left")
        self.key = b""

    def enter_epoch(self, kind: str, epoch: int, members: tuple[str, ...], key: bytes | None) -> None:
        """A verified chat_key or chat_epoch (*kind*) moves this chat to a new epoch."""
        self.state = next_chat_state(self.state, RECEIVE, kind)
        self.new_epoch(epoch, members, key)

    def new_epoch(self, epoch: int, members: tuple[str, ...], key: bytes | None) -> None:
        """Move to a new epoch: its members and key, every counter and chain from the start.

        New dicts, not cleared ones: a held message's snapshot keeps the previous epoch's (PROTOCOL.md 7.4).
        """
        self.epoch, self.members, self.key = epoch, members, key
        self.sent_seq, self.last_seq, self.sender_keys = 0, {}, {}
        self.sent_hash, self.last_hash = HYBRID_CHAIN_START, {}
        self.announcement, self.agreement = None, None

    def key_for(self, sender: str) -> bytes:
        if self.key is None:
            raise LocalProtocolError("no key for this epoch yet", ErrorCode.STALE_EPOCH)
        if sender not in self.sender_keys:
            self.sender_keys[sender] = sender_key(self.key, chat_id=self.chat_id, epoch=self.epoch, sender=sender)
        return self.sender_keys[sender]

    def abort_epoch(self) -> None:
        """This epoch's key agreement failed: no key, nothing sent or read under an unconfirmed one (7.6)."""
        self.key, self.sender_keys = None, {}


def decrypt_text(key: bytes, msg: ChatMessage, header: bytes, suite: str) -> str | None:
    """The message's text, or None if it does not authenticate or is not UTF-8 (PROTOCOL.md 7.4 step 5)."""
    try:
        return aead.unseal(key, msg.ciphertext, aad=header, nonce=aead.nonce_from_counter(msg.seq),
                           suite=aead.CipherSuite(suite)).decode("utf-8")
    except (SecureChatError, UnicodeDecodeError):
        return None


def keyed_event(msg: ChatKey | ChatEpoch, before: tuple[str, ...]) -> ev.ChatKeyed:
    """The event of a chat's new epoch, keyed (PROTOCOL.md 7.5): who joined and who left since *before*."""
    return ev.ChatKeyed(chat_id=msg.chat_id, epoch=msg.epoch, members=msg.members, reason=msg.reason,
                        actor=msg.actor, joined=tuple(n for n in msg.members if n not in before and before),
                        left=tuple(n for n in before if n not in msg.members), suite=msg.suite, mode=msg.mode)


def rejected(chat_id: str, sender: str, code: ErrorCode | str, reason: str) -> ev.MessageRejected:
    return ev.MessageRejected(chat_id=chat_id, sender=sender, code=ErrorCode(code), reason=reason)
