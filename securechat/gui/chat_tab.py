"""One chat tab of a client window: members, messages with their verification mark, send / invite / leave.

Owns: showing verified events (``ChatKeyed``, ``ChatReceived``, ``MessageRejected``) as lines, every string
someone else chose (text, names, chat ids, reasons, codes) through ``display.printable``; whether Send is
usable (not while disconnected: the typed text stays in the entry). Must not: verify, decrypt or sign anything:
the events it shows were checked by ``ClientProtocol``.
"""

from __future__ import annotations

import time
import tkinter as tk
from collections.abc import Callable
from tkinter import ttk
from tkinter.scrolledtext import ScrolledText

from ..display import printable
from ..emoji import render
from ..protocol import events as ev
from ..protocol.vocabulary import ChatMode

VERIFIED = "\N{HEAVY CHECK MARK} signature verified"
XOR_WARNING = "INSECURE (XOR of shares, no commitments): the last member to reveal chooses the key"
KEY_NOTES: dict[str, str] = {
    ChatMode.SERVER_KEY: "new key verified",
    ChatMode.CONTRIBUTORY: "key agreed by every member and confirmed (the server cannot read)",
    ChatMode.CONTRIBUTORY_XOR: "XOR key agreed (INSECURE variant)",
    ChatMode.HYBRID: "membership verified; a fresh key per message",
}
MAX_LINES = 2000


class ChatTab(ttk.Frame):
    def __init__(self, notebook: ttk.Notebook, chat_id: str, *, on_send: Callable[[str, str], None],
                 on_invite: Callable[[str, str], None], on_leave: Callable[[str], None]) -> None:
        super().__init__(notebook, padding=4)
        self.chat_id, self.epoch, self.active, self.connected = chat_id, 0, True, True
        self.members: tuple[str, ...] = ()
        self.mode = ""
        self.unread = 0
        self.label = f"chat {printable(chat_id[:6])}"
        self.header = ttk.Label(self, text=f"chat {printable(chat_id[:8])}: waiting for the key ...", wraplength=600)
        self.header.pack(anchor="w", fill="x")
        self.header.bind("<Configure>", lambda e: self.header.configure(wraplength=max(200, e.width - 8)))
        self.view = ScrolledText(self, height=10, wrap="word", font=("TkDefaultFont", 10))
        self.view.pack(fill="both", expand=True, pady=2)
        self.view.tag_configure("time", foreground="#888888")
        self.view.tag_configure("sender", font=("TkDefaultFont", 10, "bold"))
        self.view.tag_configure("verified", foreground="#1a7f37")
        self.view.tag_configure("system", foreground="#555555", font=("TkDefaultFont", 9, "italic"))
        self.view.tag_configure("warning", foreground="#ffffff", background="#c62828",
                                font=("TkDefaultFont", 10, "bold"))
        self.view.configure(state="disabled")
        row = ttk.Frame(self)
        row.pack(fill="x", pady=(2, 0))
        self.entry = ttk.Entry(row)
        self.entry.pack(side="left", fill="x", expand=True)
        self.send_button = ttk.Button(row, text="Send", command=self._send)
        self.entry.bind("<Return>", lambda _e: self.send_button.invoke())
        self.send_button.pack(side="left", padx=(4, 0))
        row2 = ttk.Frame(self)
        row2.pack(fill="x", pady=(2, 0))
        ttk.Label(row2, text="invite:").pack(side="left")
        self.invite_name = ttk.Combobox(row2, width=10)
        self.invite_name.pack(side="left", padx=2)
        self.invite_button = ttk.Button(row2, text="Invite", command=lambda: on_invite(
            self.chat_id, self.invite_name.get().strip()))
        self.invite_button.pack(side="left")
        self.leave_button = ttk.Button(row2, text="Leave chat", command=lambda: on_leave(self.chat_id))
        self.leave_button.pack(side="right")
        self._on_send = on_send

    def _send(self) -> None:
        """The text stays in the entry until the client took it (``sent_ok``): nothing typed is lost."""
        text = self.entry.get().strip()
        if text and self.active and self.connected:
            self._on_send(self.chat_id, text)

    def sent_ok(self, text: str) -> None:
        if self.entry.get().strip() == text:
            self.entry.delete(0, "end")

    def set_connected(self, connected: bool) -> None:
        """Disconnected: Send, Invite and Leave are disabled; the entry stays editable and keeps its text."""
        self.connected = connected
        self._set_active(self.active)

    def lost(self) -> None:
        """The chat did not survive a reconnection (the server removed us when the connection dropped)."""
        self._line(("this chat was lost when the connection dropped (the server removed you from it); "
                    "open a new chat to continue", "warning"))
        self._set_active(False)

    def _line(self, *parts: tuple[str, str]) -> None:
        self.view.configure(state="normal")
        self.view.insert("end", time.strftime("%H:%M:%S "), "time")
        for text, tag in parts:
            self.view.insert("end", text, tag)
        self.view.insert("end", "\n")
        if int(self.view.index("end-1c").split(".")[0]) > MAX_LINES:
            self.view.delete("1.0", "2.0")
        self.view.see("end")
        self.view.configure(state="disabled")

    def system(self, text: str) -> None:
        self._line((text, "system"))

    def set_mode(self, mode: str) -> None:
        """The mode chosen when opening (shown before the first key arrives)."""
        if not self.mode:
            self.mode = mode
            if self.epoch == 0:
                self.header.configure(text=f"chat {printable(self.chat_id[:8])} · mode {mode}: waiting for the key ...")

    def keyed(self, event: ev.ChatKeyed) -> None:
        first = not self.mode or self.epoch == 0
        self.epoch, self.members, self.active, self.mode = event.epoch, event.members, True, event.mode
        self._set_active(True)
        members = ", ".join(printable(n) for n in event.members)
        self.header.configure(text=f"chat {printable(self.chat_id[:8])} · mode {event.mode} · epoch {event.epoch} · "
                                   f"{event.suite} · members: {members}")
        change = f"; joined {', '.join(printable(n) for n in event.joined)}" if event.joined else ""
        change += f"; left {', '.join(printable(n) for n in event.left)}" if event.left else ""
        self.system(f"rekeyed: epoch {event.epoch}, members {members} "
                    f"({event.reason} by {printable(event.actor)}{change}); "
                    f"{KEY_NOTES.get(event.mode, 'new key verified')}")
        if first and event.mode == ChatMode.CONTRIBUTORY_XOR:
            self._line((f"\N{WARNING SIGN} {XOR_WARNING}", "warning"))

    def received(self, event: ev.ChatReceived) -> None:
        gap = f"  ({event.gap} missing before it)" if event.gap else ""
        self._line((f"{printable(event.sender)}: ", "sender"), (printable(render(event.text)) + "  ", ""),
                   (f"{VERIFIED} ({event.signature_scheme}){gap}", "verified"))

    def sent(self, me: str, text: str, scheme: str) -> None:
        self._line((f"{printable(me)} (you): ", "sender"), (printable(render(text)) + "  ", ""),
                   (f"signed with {scheme}, sent", "system"))

    def rejected(self, event: ev.MessageRejected) -> None:
        self._line((f"\N{WARNING SIGN} REJECTED message from {printable(event.sender)}: {printable(event.code)} "
                    f"({printable(event.reason)}) — not shown", "warning"))

    def misbehaved(self, event: ev.PeerMisbehaved) -> None:
        self._line((f"\N{WARNING SIGN} WARNING: {printable(event.sender)} MISBEHAVED at message {event.seq}: "
                    f"{printable(event.code)} ({printable(event.reason)})", "warning"))

    def aborted(self, event: ev.ChatAborted) -> None:
        self._line((f"\N{WARNING SIGN} KEY AGREEMENT ABORTED (epoch {event.epoch}): {printable(event.code)} "
                    f"({printable(event.reason)}) — this epoch has no key", "warning"))

    def key_changed(self, event: ev.PeerKeyChanged) -> None:
        self._line((f"\N{WARNING SIGN} WARNING: the keys of {printable(event.username)} CHANGED (pinned "
                    f"{printable(event.pinned)}, now {printable(event.seen)}). Nothing is sent to or accepted from "
                    f"them until you compare safety numbers (button \"Safety numbers\").", "warning"))

    def left(self) -> None:
        self.system("you left this chat; its next key will not be sent to you")
        self._set_active(False)

    def _set_active(self, active: bool) -> None:
        self.active = active
        self.entry.configure(state="normal" if active else "disabled")
        usable = "normal" if active and self.connected else "disabled"
        for widget in (self.send_button, self.invite_button, self.leave_button):
            widget.configure(state=usable)

    def text(self) -> str:
        return self.view.get("1.0", "end-1c")
