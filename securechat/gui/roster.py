"""The left column of a client window: who is online, the mode for a new chat, and Open chat.

Owns: the set of online users (the login reply's list, then every presence change, including the ones handled
before the login reply, which are newer than its list), shown sorted and escaped; which of them are selected; the
chosen mode. Must not: open anything itself: Open chat calls the window.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

from ..display import printable
from ..protocol.messages import CHAT_MODES


class Roster:
    def __init__(self, parent: tk.Misc, *, open_chat: Callable[[], None]) -> None:
        self.frame = ttk.Frame(parent)
        ttk.Label(self.frame, text="online").pack(anchor="w")
        self.users = tk.Listbox(self.frame, selectmode="multiple", width=12, height=4, exportselection=False)
        self.users.pack(fill="both", expand=True)
        self.mode_var = tk.StringVar(value=CHAT_MODES[0])
        self.mode_choice = ttk.Combobox(self.frame, textvariable=self.mode_var, values=CHAT_MODES, state="readonly",
                                        width=14)
        self.mode_choice.pack(fill="x", pady=(2, 0))
        self.open_button = ttk.Button(self.frame, text="Open chat", command=open_chat, state="disabled")
        self.open_button.pack(fill="x", pady=(2, 0))
        self.online: set[str] = set()
        self.others: list[str] = []  # the listed names (raw, not escaped), in display order
        self._me = ""
        self._early: dict[str, bool] = {}  # presence seen before the login reply was handled

    def logged_in(self, me: str, listed: tuple[str, ...]) -> None:
        """The login reply's list, then any presence change that was handled before it (newer than the list)."""
        self._me = me
        self.online = set(listed)
        for name, online in self._early.items():
            (self.online.add if online else self.online.discard)(name)
        self._early = {}
        self._show()

    def presence(self, name: str, online: bool, *, logged_in: bool) -> None:
        (self.online.add if online else self.online.discard)(name)
        if not logged_in:  # may beat the login reply through the queue: applied again on top of its list
            self._early[name] = online
        self._show()

    def select(self, names: list[str]) -> None:
        """Select *names* in the list (for scripts and tests, as a click would)."""
        self.users.selection_clear(0, "end")
        for i, name in enumerate(self.others):
            if name in names:
                self.users.selection_set(i)

    def selected(self) -> list[str]:
        return [name for i, name in enumerate(self.others) if self.users.selection_includes(i)]

    def mode(self) -> str:
        return self.mode_var.get()

    def set_usable(self, usable: bool) -> None:
        self.open_button.configure(state="normal" if usable else "disabled")

    def _show(self) -> None:
        self.others = sorted(self.online - {self._me})
        self.users.delete(0, "end")
        for name in self.others:
            self.users.insert("end", printable(name))
