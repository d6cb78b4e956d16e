"""The server's chats: members, epochs and each chat's rekey bookkeeping (PROTOCOL.md 7).

Owns: ``ServerChat`` and the ``ChatDirectory`` that applies membership changes one at a time (each one a new
epoch, docs/THREATS.md 50) and enforces per-user chat limits. Must not: do crypto or build frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ErrorCode, SecureChatError
from ..crypto.aead import CipherSuite
from .limits import TokenBucket
from .messages import MAX_CHAT_MEMBERS
from .vocabulary import ChatMode, RekeyReason


@dataclass
class ServerChat:
    chat_id: str
    mode: ChatMode
    suite: CipherSuite
    members: list[str]
    epoch: int = 1
    announcement: bytes = b""                # keyless modes: the signed chat_epoch frame of the current epoch
    round_started: float | None = None       # contributory modes: when the current epoch's round began
    committed: set[str] = field(default_factory=set)  # members whose share_commit for this epoch arrived
    confirmed: set[str] = field(default_factory=set)  # members whose key_confirm for this epoch arrived
    # PROTOCOL.md 7.2 bounded rekey (server-key mode): one key job at a time; changes meanwhile are merged.
    key_job: bool = False                    # a ChatKeyJob for this chat is running
    rekey: tuple[RekeyReason, str] | None = None     # (reason, actor) of the newest change not yet in a key job
    changes: TokenBucket | None = None       # invitations into this chat (PROTOCOL.md 7.5)


class ChatDirectory:
    def __init__(self, max_chats_per_user: int) -> None:
        self._chats: dict[str, ServerChat] = {}
        self._by_user: dict[str, set[str]] = {}
        self._max_per_user = max_chats_per_user

    def __len__(self) -> int:
        return len(self._chats)

    def get(self, chat_id: str) -> ServerChat | None:
        return self._chats.get(chat_id)

    def chats_of(self, username: str) -> set[str]:
        return set(self._by_user.get(username, ()))

    def has_room(self, username: str) -> bool:
        """Whether *username* may be in one more chat (max_chats_per_user)."""
        return len(self._by_user.get(username, ())) < self._max_per_user

    def _check_room(self, username: str) -> None:
        if len(self._by_user.get(username, ())) >= self._max_per_user:
            raise SecureChatError(f"{username} is in too many chats", ErrorCode.LIMIT_EXCEEDED)

    def open(self, creator: str, members: list[str], *, mode: ChatMode, suite: CipherSuite, chat_id: str) -> ServerChat:
        everyone = [creator] + members
        if len(everyone) > MAX_CHAT_MEMBERS:
            raise SecureChatError("too many members", ErrorCode.LIMIT_EXCEEDED)
        for name in everyone:
            self._check_room(name)
        chat = self._chats[chat_id] = ServerChat(chat_id=chat_id, mode=mode, suite=suite, members=everyone)
        for name in everyone:
            self._by_user.setdefault(name, set()).add(chat_id)
        return chat

    def check_member(self, chat_id: str, username: str) -> ServerChat:
        chat = self._chats.get(chat_id)
        if chat is None:
            raise SecureChatError(f"no chat {chat_id}", ErrorCode.UNKNOWN_CHAT)
        if username not in chat.members:
            raise SecureChatError(f"{username} is not a member of {chat_id}", ErrorCode.NOT_MEMBER)
        return chat

    def add(self, chat_id: str, username: str) -> None:
        chat = self._chats[chat_id]
        if username in chat.members:
            raise SecureChatError(f"{username} is already a member", ErrorCode.ALREADY_MEMBER)
        if len(chat.members) >= MAX_CHAT_MEMBERS:
            raise SecureChatError("chat is full", ErrorCode.LIMIT_EXCEEDED)
        self._check_room(username)
        chat.members.append(username)
        chat.epoch += 1
        self._by_user.setdefault(username, set()).add(chat_id)

    def remove(self, chat_id: str, username: str) -> int:
        """Remove *username*; returns how many members remain (a chat with none is deleted)."""
        chat = self.check_member(chat_id, username)
        chat.members.remove(username)
        self._by_user[username].discard(chat_id)
        if not chat.members:
            del self._chats[chat_id]
            return 0
        chat.epoch += 1
        return len(chat.members)

    def leave_all(self, username: str) -> list[str]:
        """Remove *username* from every chat; returns the chats that still have members (to be rekeyed)."""
        remaining = [c for c in sorted(self._by_user.pop(username, set())) if self._remove_quiet(c, username)]
        return remaining

    def _remove_quiet(self, chat_id: str, username: str) -> bool:
        self._by_user.setdefault(username, set())
        left = self.remove(chat_id, username)
        self._by_user.pop(username, None)
        return left > 0
