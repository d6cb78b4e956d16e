"""What one terminal session knows: the connection it uses, who is logged in, which chat is current.

Owns: the one lock over that state (the input thread and the client's reader thread both reach it), the lock that
keeps printed lines whole, the link to the server (``Link``), the password held in memory for this process only
(``Session``, to log in again after a reconnection), the chats already announced and the latest sends (to name a
message the server refused). Must not: print a string someone else chose without ``display.printable`` (callers
build the lines), or read protocol state except through TcpClient's locked accessors.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from ..keystore import KeyStore
from ..net.tcp_client import ChatInfo, ConnectionClosedError, TcpClient
from ..protocol.identity import UserKeys
from .labels import ACTIVE, ChatLabels

SENDS_KEPT = 256  # only the latest sends can still be refused: older ones are forgotten


class Link(StrEnum):
    """The terminal's connection to the server, as the prompt shows it."""

    OFFLINE = "offline"            # never connected, or reconnecting gave up: /reconnect
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"  # the connection was lost; a background thread is trying again


@dataclass
class Session:
    """Who we are logged in as, held in memory only for this process, to log in again after a reconnection."""

    username: str
    password: str
    keys: UserKeys


class UsageError(Exception):
    """A command was typed with missing or wrong arguments: its usage line is printed."""


class TerminalState:
    """The state every part of the terminal client shares. ``emit`` prints one (already safe) line; ``changed``
    asks the terminal to redraw the prompt; ``clock`` gives the time shown in front of messages."""

    def __init__(self, store: KeyStore, *, emit: Callable[[str], None], changed: Callable[[], None],
                 clock: Callable[[], float]) -> None:
        self.store = store
        self.lock = threading.RLock()
        self._print_lock = threading.Lock()
        self._emit, self._changed, self._clock = emit, changed, clock
        self.client: TcpClient | None = None
        self.link = Link.OFFLINE
        self.session: Session | None = None
        self.current: str | None = None  # the chat a typed line goes to
        self.labels = ChatLabels(self.chats, lambda: self.me)
        self._sent: dict[int, tuple[str, str]] = {}  # rid of a chat_send -> (chat id, what was typed)
        self._announced: set[str] = set()            # chat ids we printed a "new chat" line for

    # --- output -----------------------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        """Print *text* (built from our own words and printable() of anything foreign)."""
        with self._print_lock:
            self._emit(text)

    def changed(self) -> None:
        """The prompt may show something else now (the current chat, the link): redraw it."""
        self._changed()

    def stamp(self) -> str:
        return time.strftime("%H:%M", time.localtime(self._clock()))

    def label(self, chat_id: str | None, chats: list[ChatInfo] | None = None) -> str:
        return self.labels.label(chat_id, chats)

    # --- who, where, through which connection -----------------------------------------------------------------

    @property
    def me(self) -> str | None:
        session = self.session
        return session.username if session is not None else None

    def online_client(self) -> TcpClient:
        """The client to send through, or ConnectionClosedError (printed as "not connected")."""
        client = self.client
        if client is None or self.link is not Link.CONNECTED:
            raise ConnectionClosedError("not connected")
        return client

    def chats(self) -> list[ChatInfo]:
        client = self.client
        return client.chat_list() if client is not None else []

    def chats_safely(self) -> list[ChatInfo]:
        try:
            return self.chats()
        except Exception:  # noqa: BLE001 - a dead client's snapshot is best effort
            return []

    def active_chats(self) -> list[ChatInfo]:
        return [c for c in self.chats() if c.state == ACTIVE]

    def make_current(self, chat_id: str | None) -> None:
        with self.lock:
            self.current = chat_id

    def save_pins(self) -> None:
        """Write the pinned peer fingerprints of the logged-in user (PROTOCOL.md 7.9) to the key directory."""
        client = self.client
        username = client.username if client is not None else None  # set before login() returns to us
        if client is not None and username:
            self.store.save_pins(username, client.pins)

    # --- what we printed and sent ------------------------------------------------------------------------------

    def announce(self, chat_id: str) -> bool:
        """Mark *chat_id* as announced; True the first time."""
        with self.lock:
            new = chat_id not in self._announced
            self._announced.add(chat_id)
            return new

    def remember_send(self, rid: int, chat_id: str, text: str) -> None:
        with self.lock:
            self._sent[rid] = (chat_id, text)
            if len(self._sent) > SENDS_KEPT:
                self._sent.pop(next(iter(self._sent)))

    def take_send(self, rid: int | None) -> tuple[str, str] | None:
        """The (chat id, text) of the send the server refused by *rid*, forgotten from now on."""
        if rid is None:
            return None
        with self.lock:
            return self._sent.pop(rid, None)


__all__ = ["Link", "SENDS_KEPT", "Session", "TerminalState", "UsageError"]
