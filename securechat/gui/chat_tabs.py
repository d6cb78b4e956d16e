"""The chat tabs of a client window: one ``ChatTab`` per chat, made the first time the chat is seen.

Owns: the notebook, the tab of each chat id, routing a chat's events to its tab, each tab's label with its unread
marker ("● server-key 1a2b3c (2)" while the user looks at another tab), which tab is shown, passing the connection
state and the invitable names to every tab, and after a reconnection which chats are still ours (a chat survived
if the new connection keyed it). Must not: talk to the client: the tabs' buttons call the window.

typeshed leaves ``ttk.Notebook.select``/``tab``/``index`` unannotated (mypy --strict refuses calling them), so the
two Tk commands they wrap, ``pathName select ?tab?`` and ``pathName tab tab -text TEXT`` (Tk's ttk::notebook
manual), are called through ``Misc.tk.call``, which is annotated.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

from ..protocol import events as ev
from . import render
from .chat_tab import ChatTab

# the events a tab shows (MessageRejected, PeerMisbehaved and ChatAborted only in a chat that has a tab: no tab is
# made for a chat id that only such an event names, since a server could name any number of them)
ChatEvent = ev.ChatKeyed | ev.ChatReceived | ev.MessageRejected | ev.PeerMisbehaved | ev.ChatAborted | ev.PeerKeyChanged


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
        self._recovering: set[str] | None = None  # chat ids that had a key when the connection dropped
        self._survived: set[str] = set()

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

    def on_event(self, event: ChatEvent) -> bool:
        """Show *event* in its tab; False if no tab shows it."""
        match event:
            case ev.ChatKeyed():
                tab = self.tab(event.chat_id)
                tab.keyed(event)
                if self._recovering is not None:
                    self._survived.add(event.chat_id)
                self.relabel(tab, render.tab_label(event.chat_id, event.mode))
            case ev.ChatReceived():
                tab = self.tab(event.chat_id)
                tab.received(event)
                self.mark_unread(tab)
            case ev.PeerKeyChanged():
                shown = [tab for tab in self.tabs.values() if event.username in tab.members]
                for tab in shown:
                    tab.key_changed(event)
                return bool(shown)
            case _ if event.chat_id not in self.tabs:
                return False
            case ev.MessageRejected():
                self.tabs[event.chat_id].rejected(event)
            case ev.PeerMisbehaved():
                self.tabs[event.chat_id].misbehaved(event)
            case ev.ChatAborted():
                self.tabs[event.chat_id].aborted(event)
        return True

    def connection_dropped(self) -> None:
        """Remember which chats had a key; the new connection's ChatKeyed events (which may beat its login reply)
        say which are still ours."""
        self.set_connected(False)
        self._recovering = {cid for cid, tab in self.tabs.items() if tab.active and tab.epoch > 0}
        self._survived = set()

    def survivors(self) -> tuple[list[str], list[str]]:
        """After logging in again: the labels of the chats still open and of those lost (now marked lost)."""
        recovering, self._recovering = self._recovering or set(), None
        lost = sorted(c for c in recovering if c not in self._survived)
        for chat_id in lost:
            self.tabs[chat_id].lost()
        return [self.tabs[c].label for c in sorted(recovering - set(lost))], [self.tabs[c].label for c in lost]

    def select(self, tab: ChatTab) -> None:
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
