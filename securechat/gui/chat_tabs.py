"""The chat tabs of a client window: one ``ChatTab`` per chat, made the first time the chat is seen.

Owns: the notebook, the tab of each chat id, each tab's label with its unread marker ("● server-key 1a2b3c (2)"
while the user looks at another tab), which tab is shown, and passing the connection state and the invitable names
to every tab. Must not: talk to the client: the tabs' buttons call the window.

typeshed leaves ``ttk.Notebook.select``/``tab``/``index`` unannotated (mypy --strict refuses calling them), so the
two Tk commands they wrap, ``pathName select ?tab?`` and ``pathName tab tab -text TEXT`` (Tk's ttk::notebook
manual), are called through ``Misc.tk.call``, which is annotated.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

from .chat_tab import ChatTab


class ChatTabs:
    def __init__(self, parent: tk.Misc, *, on_send: Callable[[str, str], None], on_invite: Callable[[str, str], None],
                 on_leave: Callable[[str], None]) -> None:
        self.notebook = ttk.Notebook(parent)
        self.notebook.bind("<<NotebookTabChanged>>", lambda _e: self._seen())
        self.tabs: dict[str, ChatTab] = {}
        self._unread: dict[str, int] = {}
        self._on_send, self._on_invite, self._on_leave = on_send, on_invite, on_leave
        self._connected = False
        self._invitees: list[str] = []

    def tab(self, chat_id: str) -> ChatTab:
        """The tab of *chat_id*, made (and added to the notebook) if it has none yet."""
        tab = self.tabs.get(chat_id)
        if tab is None:
            tab = ChatTab(self.notebook, chat_id, on_send=self._on_send, on_invite=self._on_invite,
                          on_leave=self._on_leave)
            self.tabs[chat_id] = tab
            self.notebook.add(tab, text=tab.label)
            tab.set_connected(self._connected)
            tab.set_invitees(self._invitees)
        return tab

    def show(self, tab: ChatTab) -> None:
        """Bring *tab* to the front (as a click on it would)."""
        self.notebook.tk.call(self.notebook, "select", tab)

    def current(self) -> ChatTab | None:
        """The tab in front; None if there is none (or the window is gone)."""
        try:
            path = str(self.notebook.tk.call(self.notebook, "select"))
        except tk.TclError:
            return None
        return next((tab for tab in self.tabs.values() if str(tab) == path), None)

    def relabel(self, tab: ChatTab, label: str) -> None:
        tab.label = label
        self._show_label(tab)

    def unread(self, tab: ChatTab) -> int:
        return self._unread.get(tab.chat_id, 0)

    def mark_unread(self, tab: ChatTab) -> None:
        """A message in a tab the user is not looking at: the tab shows a dot and the count."""
        if self.current() is tab:
            return
        self._unread[tab.chat_id] = self.unread(tab) + 1
        self._show_label(tab)

    def set_connected(self, connected: bool) -> None:
        self._connected = connected
        for tab in self.tabs.values():
            tab.set_connected(connected)

    def set_invitees(self, names: list[str]) -> None:
        self._invitees = list(names)
        for tab in self.tabs.values():
            tab.set_invitees(self._invitees)

    def _seen(self) -> None:
        tab = self.current()
        if tab is not None and self._unread.pop(tab.chat_id, 0):
            self._show_label(tab)

    def _show_label(self, tab: ChatTab) -> None:
        count = self.unread(tab)
        text = f"\N{BLACK CIRCLE} {tab.label} ({count})" if count else tab.label
        self.notebook.tk.call(self.notebook, "tab", tab, "-text", text)
