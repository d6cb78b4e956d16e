"""Readable names for chats in the terminal client: "lobby", "bob", "bob,carol", "bob#1a2b".

Owns: the name a chat gets when we first see it with others in it (it stays the same when they leave), and the
``#`` suffix that tells two active chats with the same name apart. Must not: read protocol state except through
the snapshots (``ChatInfo``) it is given; every name it returns has been through ``display.printable``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..display import printable
from ..net.tcp_client import ChatInfo
from ..protocol.messages import LOBBY_ID
from ..protocol.states import ChatState

ACTIVE = ChatState.ACTIVE.value  # ChatInfo.state is the state's value (a snapshot, safe to read from any thread)


class ChatLabels:
    """The names of chats. ``chats`` takes a fresh snapshot of every chat; ``me`` says who is logged in."""

    def __init__(self, chats: Callable[[], list[ChatInfo]], me: Callable[[], str | None]) -> None:
        self._chats, self._me = chats, me
        self._lock = threading.Lock()
        self._names: dict[str, str] = {}  # chat id -> the other members' names when first seen with others in it

    def label(self, chat_id: str | None, chats: list[ChatInfo] | None = None) -> str:
        """A readable, escaped name for a chat: "lobby", or the other members when we first saw it ("bob",
        "bob,carol"; it stays the same when they leave), with the start of the id when two active chats would
        have the same name."""
        if chat_id is None:
            return "-"
        if chat_id == LOBBY_ID:
            return "lobby"
        if chats is None:
            chats = self._chats()
        name = self._base(chat_id, chats)
        if name is None:
            return printable(chat_id[:8])
        if any(c.chat_id not in (chat_id, LOBBY_ID) and c.state == ACTIVE and self._base(c.chat_id, chats) == name
               for c in chats):
            name += "#" + chat_id[:4]
        return printable(name)

    def _base(self, chat_id: str, chats: list[ChatInfo]) -> str | None:
        with self._lock:
            known = self._names.get(chat_id)
        if known is not None:
            return known
        info = next((c for c in chats if c.chat_id == chat_id), None)
        if info is None:
            return None
        me = self._me()
        others = sorted(m for m in info.members if m != me)
        if not others:
            return "just-you"
        with self._lock:
            self._names[chat_id] = ",".join(others)
        return ",".join(others)


__all__ = ["ACTIVE", "ChatLabels"]
