"""One chat tab of a client window: its header, the chat's lines, and Send / Invite / Leave.

Owns: the widgets of one chat and whether they are usable (Send not while disconnected: the typed text stays in the
entry until the client took it). The words come from ``render``, which escapes every string someone else chose.
Must not: verify, decrypt or sign anything: the events it shows were checked by ``ClientProtocol``.
"""

from __future__ import annotations

from collections.abc import Callable
from tkinter import ttk
from tkinter.scrolledtext import ScrolledText

from ..display import printable
from ..protocol import events as ev
from . import render
from .render import KEY_NOTES, VERIFIED, XOR_WARNING
from .widgets import append_line, keep_wrapped

__all__ = ["ChatTab", "KEY_NOTES", "MAX_LINES", "VERIFIED", "XOR_WARNING"]  # the words live in render.py

MAX_LINES = 2000


class ChatTab(ttk.Frame):
    def __init__(self, notebook: ttk.Notebook, chat_id: str, *, on_send: Callable[[str, str], None],
                 on_invite: Callable[[str, str], None], on_leave: Callable[[str], None]) -> None:
        super().__init__(notebook, padding=4)
        self.chat_id, self.epoch, self.active, self.connected = chat_id, 0, True, True
        self.members: tuple[str, ...] = ()
        self.mode = ""
        self.label = render.tab_label(chat_id)
        self.header = ttk.Label(self, text=render.waiting_header(chat_id), wraplength=600)
        self.header.pack(anchor="w", fill="x")
        keep_wrapped(self.header)
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

    def set_invitees(self, names: list[str]) -> None:
        """The names offered by the invite box (the online users but us)."""
        self.invite_name.configure(values=[printable(name) for name in names])

    def lost(self) -> None:
        """The chat did not survive a reconnection (the server removed us when the connection dropped)."""
        self._line((render.LOST, "warning"))
        self._set_active(False)

    def _line(self, *parts: tuple[str, str]) -> None:
        append_line(self.view, parts, max_lines=MAX_LINES)

    def system(self, text: str) -> None:
        self._line((text, "system"))

    def set_mode(self, mode: str) -> None:
        """The mode chosen when opening (shown before the first key arrives)."""
        if not self.mode:
            self.mode = mode
            if self.epoch == 0:
                self.header.configure(text=render.waiting_header(self.chat_id, mode))

    def keyed(self, event: ev.ChatKeyed) -> None:
        first = not self.mode or self.epoch == 0
        self.epoch, self.members, self.active, self.mode = event.epoch, event.members, True, event.mode
        self._set_active(True)
        self.header.configure(text=render.keyed_header(event))
        for line in render.keyed_lines(event, first=first):
            self._line(*line)

    def received(self, event: ev.ChatReceived) -> None:
        self._line(*render.received_line(event))

    def sent(self, me: str, text: str, scheme: str) -> None:
        self._line(*render.sent_line(me, text, scheme))

    def rejected(self, event: ev.MessageRejected) -> None:
        self._line(*render.rejected_line(event))

    def misbehaved(self, event: ev.PeerMisbehaved) -> None:
        self._line(*render.misbehaved_line(event))

    def aborted(self, event: ev.ChatAborted) -> None:
        self._line(*render.aborted_line(event))

    def key_changed(self, event: ev.PeerKeyChanged) -> None:
        self._line(*render.key_changed_line(event))

    def left(self) -> None:
        self.system(render.LEFT)
        self._set_active(False)

    def _set_active(self, active: bool) -> None:
        self.active = active
        self.entry.configure(state="normal" if active else "disabled")
        usable = "normal" if active and self.connected else "disabled"
        for widget in (self.send_button, self.invite_button, self.leave_button):
            widget.configure(state=usable)

    def text(self) -> str:
        return self.view.get("1.0", "end-1c")
