"""A student's client for the capture-the-flag server (securechat.labs.ctf, PROTOCOL.md 16.2).

Owns: ``CtfPlayer``, a real client with a trace of the inner frames it received, for the lab 07 notebook and the
instructor solutions (``securechat.labs.instructor``, not installed with the package). Must not: read the CTF
server's memory (a player sees only what a student's client sees).
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable

from ..crypto.encoding import b64e
from ..crypto.kdf import FAST_SCRYPT
from ..net.tcp_client import TcpClient
from ..protocol import events as ev
from ..protocol import messages as m
from ..protocol.codec import decode_message
from ..protocol.constructions import chat_header, chat_signed_bytes
from ..protocol.identity import UserKeys
from ..protocol.limits import ServerConfig
from ..store import MemoryRegistry, new_server_key
from .attacks import AttackFailed
from .ctf import ARCHIVE_PREFIX, ARCHIVIST, DAN, DISPATCHER, VAULT, order_bytes
from .flags import find_flags

WAIT_SECONDS = 20.0


class CtfPlayer:
    """A student logged in to the CTF: every event on ``inbox``, every received inner frame in ``frames``."""

    def __init__(self, address: tuple[str, int], pinned: tuple[bytes, str], name: str, keys: UserKeys) -> None:
        self.name = name
        self.inbox: queue.Queue[ev.Event] = queue.Queue()
        self.frames: list[ev.TraceEntry] = []
        self.client = TcpClient(*address, server_key=pinned, on_event=self.inbox.put, trace=self._trace)
        self.client.register(name, "pw-" + name, keys)
        self.client.login(name, "pw-" + name, keys)
        self.chats: dict[str, str] = {}  # bot -> chat id, learnt from the bots' first messages
        self.seen: list[ev.ChatReceived] = []

    def _trace(self, entry: ev.TraceEntry) -> None:
        if entry.direction == "receive" and entry.layer == "inner":
            self.frames.append(entry)

    def close(self) -> None:
        self.client.close()

    def wait_text(self, predicate: Callable[[ev.ChatReceived], bool], what: str,
                  timeout: float = WAIT_SECONDS) -> ev.ChatReceived:
        for seen in self.seen:
            if predicate(seen):
                return seen
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self.inbox.get(timeout=0.1)
            except queue.Empty:
                continue
            if isinstance(event, ev.ChatReceived):
                self.seen.append(event)
                self.chats.setdefault(event.sender, event.chat_id)
                if predicate(event):
                    return event
        raise AttackFailed(f"no {what} within {timeout:.0f} s")

    def pump(self, seconds: float) -> None:
        """Move the events that arrive within *seconds* to ``seen``."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                event = self.inbox.get(timeout=min(remaining, 0.05))
            except queue.Empty:
                continue
            if isinstance(event, ev.ChatReceived):
                self.seen.append(event)
                self.chats.setdefault(event.sender, event.chat_id)

    def flag_from(self, bot: str, challenge: str, timeout: float = WAIT_SECONDS) -> str:
        """The *challenge* flag in a message from *bot*."""
        got = self.wait_text(lambda e: e.sender == bot and any(f.startswith(f"flag{{{challenge}-")
                                                               for f in find_flags(e.text)),
                             f"{challenge} flag from {bot}", timeout)
        return next(f for f in find_flags(got.text) if f.startswith(f"flag{{{challenge}-"))
