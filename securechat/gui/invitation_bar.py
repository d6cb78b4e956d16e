"""The invitation bar of a client window: "alice invites you to a server-key chat 1a2b3c4d" with Accept / Decline.

Owns: the invitations waiting for this user's answer (PROTOCOL.md 7.11: nobody is put in a chat without consent),
at most MAX_PENDING of them, one per chat, oldest shown first; the bar is visible only while one waits. Must not:
answer anything itself: the buttons call the window, which takes the first invitation and asks the client.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

from ..protocol import events as ev
from . import render
from .widgets import keep_wrapped

MAX_PENDING = 16  # a server (or an inviter) cannot grow this list without bound
BACKGROUND = "#fff4c2"


class InvitationBar:
    def __init__(self, parent: tk.Misc, *, after: tk.Widget, answer: Callable[[bool], None]) -> None:
        self._after = after  # the bar is packed right below this widget when it appears
        self.pending: list[ev.InvitationReceived] = []
        self.frame = tk.Frame(parent, background=BACKGROUND, padx=4, pady=2)
        # the buttons are packed first: a long invitation wraps, it never squeezes Accept or Decline
        self.decline_button = ttk.Button(self.frame, text="Decline", width=8, command=lambda: answer(False))
        self.decline_button.pack(side="right")
        self.accept_button = ttk.Button(self.frame, text="Accept", width=7, command=lambda: answer(True))
        self.accept_button.pack(side="right", padx=2)
        self.label = tk.Label(self.frame, text="", background=BACKGROUND, anchor="w", justify="left",
                              wraplength=300)
        self.label.pack(side="left", fill="x", expand=True)
        keep_wrapped(self.label, margin=4, minimum=120)
        self._timers: list[str] = []  # expiry timers, cancelled with the window (a late one would name a dead widget)
        self.frame.bind("<Destroy>", lambda _event: self._cancel_timers(), add="+")

    def offer(self, invitation: ev.InvitationReceived) -> None:
        """A new invitation (a repeated one for the same chat replaces the older)."""
        others = [i for i in self.pending if i.chat_id != invitation.chat_id]
        self.pending = (others + [invitation])[-MAX_PENDING:]
        # PROTOCOL.md 7.11: the server forgets an unanswered invitation after expires_in seconds and tells only
        # the inviter, so the bar lets it go then too: nobody is offered a chat that no longer waits for them.
        timer = self.frame.after(invitation.expires_in * 1000, lambda: self._expire(invitation))
        self._timers.append(timer)
        self._show()

    def _expire(self, invitation: ev.InvitationReceived) -> None:
        if any(i is invitation for i in self.pending):
            self.pending = [i for i in self.pending if i is not invitation]
            self._show()

    def _cancel_timers(self) -> None:
        for timer in self._timers:
            self.frame.after_cancel(timer)
        self._timers.clear()

    def take(self) -> ev.InvitationReceived | None:
        """The first waiting invitation, removed from the bar (None if none waits)."""
        if not self.pending:
            return None
        first = self.pending.pop(0)
        self._show()
        return first

    def shown(self) -> bool:
        return bool(self.frame.winfo_ismapped())

    def text(self) -> str:
        return str(self.label.cget("text"))

    def _show(self) -> None:
        if not self.pending:
            self.frame.pack_forget()
            return
        self.label.configure(text=render.invitation(self.pending[0], len(self.pending)))
        if not self.frame.winfo_manager():  # not packed yet
            self.frame.pack(fill="x", padx=4, after=self._after)
