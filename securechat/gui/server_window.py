"""The server window: a live log of the server's metadata events (PROTOCOL.md 11: never message contents).

Owns: turning a ``ServerEvent`` into one line. Must not: show anything the server event does not carry (it
carries names, sizes and codes only, so neither can this window).
"""

from __future__ import annotations

import tkinter as tk
from tkinter import ttk
from tkinter.scrolledtext import ScrolledText

from ..crypto.encoding import fingerprint
from ..display import printable
from ..protocol import events as ev
from .widgets import append_line, keep_wrapped

MAX_LOG_LINES = 2000


def describe_server_event(event: ev.ServerEvent) -> str:
    """One line of metadata for a server event."""
    who = f"#{event.peer}"
    match event:
        case ev.PeerConnected():
            return f"{who} connected from {event.address}"
        case ev.PeerHandshakeCompleted():
            return f"{who} handshake done: X25519 + server signature; channel keys derived"
        case ev.UserRegistered():
            return f"{who} registered {event.username} ({event.signature_scheme}); certificate issued"
        case ev.UserLoggedIn():
            return f"{who} {event.username} logged in"
        case ev.UserLoggedOut():
            return f"{who} {event.username} logged out ({event.reason})"
        case ev.ChatRekeyed():
            return (f"chat {event.chat_id[:8]} rekeyed: epoch {event.epoch}, members "
                    f"{', '.join(event.members) or '-'} ({event.reason}); fresh key wrapped per member")
        case ev.MessageRelayed():
            return (f"{who} {event.sender} -> chat {event.chat_id[:8]}: {event.size} bytes of ciphertext "
                    f"relayed to {event.recipients}")
        case ev.ErrorSent():
            return f"{who} error sent: {event.code}{' (fatal)' if event.fatal else ''}"
        case ev.PeerClosed():
            return f"{who} closed ({event.reason})"
    return f"{who} {type(event).__name__}"


class ServerWindow:
    """Lives in the Tk root itself. ``on_event`` is called on the Tk thread (through ``App.post``)."""

    def __init__(self, root: tk.Tk) -> None:
        self.root = root
        self.counts = {"connections": 0, "online": 0, "relayed": 0, "bytes": 0}
        top = ttk.Frame(root, padding=6)
        top.pack(fill="x")
        self.title = ttk.Label(top, text="securechat server", font=("TkDefaultFont", 12, "bold"))
        self.title.pack(anchor="w")
        self.info = ttk.Label(top, text="starting ...", wraplength=320, justify="left")
        self.info.pack(anchor="w", fill="x")
        self.stats = ttk.Label(top, text="", wraplength=320, justify="left")
        self.stats.pack(anchor="w", fill="x", pady=(4, 0))
        for label in (self.info, self.stats):  # wrapped to the window's width, never cut
            keep_wrapped(label, margin=4)
        ttk.Label(root, text="metadata log (names, sizes, codes — never contents)", padding=(6, 0),
                  wraplength=320).pack(anchor="w")
        self.log = ScrolledText(root, height=20, wrap="word", font=("TkFixedFont", 9))
        self.log.pack(fill="both", expand=True, padx=6, pady=6)
        self.log.tag_configure("time", foreground="#777777")
        self.log.tag_configure("chat", foreground="#1f5fa8")
        self.log.tag_configure("error", foreground="#b00020")
        self.log.configure(state="disabled")
        self._show_stats()

    def started(self, address: tuple[str, int], public_der: bytes, scheme: str, scrypt_n: int) -> None:
        self.info.configure(text=f"listening on {address[0]}:{address[1]}\nserver key ({scheme}) "
                                 f"{fingerprint(public_der)}\nregistry: SQLite; scrypt N = {scrypt_n}")
        self.add(f"server started on {address[0]}:{address[1]}")

    def remote(self, address: tuple[str, int]) -> None:
        self.info.configure(text=f"remote server {address[0]}:{address[1]}: its log is on its own machine")

    def on_event(self, event: ev.ServerEvent) -> None:
        if isinstance(event, ev.PeerConnected):
            self.counts["connections"] += 1
        elif isinstance(event, ev.UserLoggedIn):
            self.counts["online"] += 1
        elif isinstance(event, ev.UserLoggedOut):
            self.counts["online"] = max(0, self.counts["online"] - 1)
        elif isinstance(event, ev.MessageRelayed):
            self.counts["relayed"] += 1
            self.counts["bytes"] += event.size
        tag = "error" if isinstance(event, ev.ErrorSent) else \
            "chat" if isinstance(event, (ev.ChatRekeyed, ev.MessageRelayed)) else ""
        self.add(describe_server_event(event), tag)
        self._show_stats()

    def add(self, line: str, tag: str = "") -> None:
        # user names and chat ids are chosen by clients
        append_line(self.log, [(printable(line), tag)], max_lines=MAX_LOG_LINES)

    def text(self) -> str:
        return self.log.get("1.0", "end-1c")

    def _show_stats(self) -> None:
        c = self.counts
        self.stats.configure(text=f"connections {c['connections']} · online {c['online']} · "
                                  f"messages relayed {c['relayed']} ({c['bytes']} ciphertext bytes)")
