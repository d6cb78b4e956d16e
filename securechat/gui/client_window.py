"""A client window: register / login, online users, chat tabs and the "wire" pane of ciphertext frames.

Owns: widgets, and handing blocking calls (connect, key generation, register, login, chat commands) to a
worker thread whose results come back through ``App.post``. Must not: contain protocol logic; ``TcpClient``,
``ClientProtocol`` and ``KeyStore`` do the work, and the events they report are shown as they are.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk
from tkinter.scrolledtext import ScrolledText
from typing import Any

from ..crypto.signatures import SignatureScheme
from ..net.tcp_client import TcpClient
from ..protocol import events as ev
from ..protocol.messages import CHAT_MODES, LOBBY_ID
from .chat_tab import ChatTab

SCHEMES = (("RSA-PSS", SignatureScheme.RSA_PSS_SHA256), ("DSA", SignatureScheme.DSA_SHA256))
MAX_WIRE_LINES = 300
WIRE_PREVIEW_CHARS = 72


def wire_line(entry: ev.TraceEntry) -> str:
    """A record frame as it crossed the network: direction, size and its first bytes (base64 ciphertext)."""
    arrow = "\N{RIGHTWARDS ARROW} sent" if entry.direction == "send" else "\N{LEFTWARDS ARROW} recv"
    body = entry.data if entry.data[:1] == b"{" else entry.data[4:]  # sent frames carry their length prefix
    preview = body[:WIRE_PREVIEW_CHARS].decode("ascii", "replace")
    return f"{arrow} {entry.size:6d} B  {preview}..."


class ClientWindow:
    def __init__(self, app: Any, name: str, geometry: str) -> None:
        self.app, self.default_name = app, name
        self.client: TcpClient | None = None
        self.username: str | None = None
        self.scheme_name = ""
        self.keys: Any = None
        self.online: set[str] = set()
        self.tabs: dict[str, ChatTab] = {}
        self.worker = app.pool(name)
        self.win = tk.Toplevel(app.root)
        self.win.title(f"securechat — {name}")
        self.win.geometry(geometry)
        self.win.protocol("WM_DELETE_WINDOW", self.shutdown)
        self._build(name)
        self._busy("connecting ...")
        host, port = app.address
        self.app.run(self.worker, lambda: TcpClient(host, port, server_key=app.pinned, on_event=self._from_network,
                                                    trace=self._from_wire), self._connected, self._failed)

    # --- layout ---------------------------------------------------------------------------------------------

    def _build(self, name: str) -> None:
        form = ttk.Frame(self.win, padding=4)
        form.pack(fill="x")
        ttk.Label(form, text="user").grid(row=0, column=0, sticky="w")
        self.username_entry = ttk.Entry(form, width=12)
        self.username_entry.insert(0, name)
        self.username_entry.grid(row=0, column=1, padx=2)
        ttk.Label(form, text="password").grid(row=0, column=2, sticky="w")
        self.password_entry = ttk.Entry(form, width=12, show="*")
        self.password_entry.grid(row=0, column=3, padx=2)
        self.scheme_var = tk.StringVar(value=SCHEMES[0][0])
        for i, (label, _scheme) in enumerate(SCHEMES):
            ttk.Radiobutton(form, text=label, value=label, variable=self.scheme_var).grid(row=0, column=4 + i)
        self.register_button = ttk.Button(form, text="Register", command=self.register)
        self.register_button.grid(row=0, column=6, padx=2)
        self.login_button = ttk.Button(form, text="Log in", command=self.login)
        self.login_button.grid(row=0, column=7)
        self.status = ttk.Label(self.win, text="", padding=(4, 0), foreground="#1f5fa8")
        self.status.pack(fill="x")
        body = ttk.PanedWindow(self.win, orient="horizontal")
        body.pack(fill="both", expand=True, padx=4, pady=2)
        left = ttk.Frame(body)
        ttk.Label(left, text="online").pack(anchor="w")
        self.users = tk.Listbox(left, selectmode="multiple", width=14, height=8, exportselection=False)
        self.users.pack(fill="both", expand=True)
        ttk.Label(left, text="mode").pack(anchor="w", pady=(2, 0))
        self.mode_var = tk.StringVar(value=CHAT_MODES[0])
        self.mode_choice = ttk.Combobox(left, textvariable=self.mode_var, values=CHAT_MODES, state="readonly",
                                        width=16)
        self.mode_choice.pack(fill="x")
        self.open_button = ttk.Button(left, text="Open chat", command=self.open_chat, state="disabled")
        self.open_button.pack(fill="x", pady=(2, 0))
        body.add(left, weight=0)
        self.notebook = ttk.Notebook(body)
        body.add(self.notebook, weight=1)
        ttk.Label(self.win, text="wire: record frames as they cross (AES-GCM ciphertext, base64)",
                  padding=(4, 0)).pack(anchor="w")
        self.wire = ScrolledText(self.win, height=6, wrap="none", font=("TkFixedFont", 8), foreground="#5b3a8c")
        self.wire.pack(fill="x", padx=4, pady=(0, 4))
        self.wire.configure(state="disabled")

    # --- thread boundary: network callbacks only post ----------------------------------------------------

    def _from_network(self, event: ev.Event) -> None:
        self.app.post(self.on_event, event)

    def _from_wire(self, entry: ev.TraceEntry) -> None:
        if entry.layer == "record":
            self.app.post(self.on_wire, entry)

    def _call(self, busy: str, work: Callable[[], Any], done: Callable[[Any], None]) -> None:
        self._busy(busy)
        self.app.run(self.worker, work, done, self._failed)

    # --- results (Tk thread) --------------------------------------------------------------------------------

    def _busy(self, text: str) -> None:
        self.status.configure(text=f"\N{HOURGLASS} {text}", foreground="#1f5fa8")

    def _say(self, text: str, error: bool = False) -> None:
        self.status.configure(text=text, foreground="#b00020" if error else "#1f5fa8")

    def _failed(self, exc: BaseException) -> None:
        self._say(f"! {exc}", error=True)

    def _connected(self, client: TcpClient) -> None:
        self.client = client
        hs = client.handshake
        assert hs is not None
        if hs.first_use:
            host, port = self.app.address
            self.app.keystore.pin_server(f"{host}:{port}", hs.server_key, hs.server_scheme)
        self._say(f"connected; server key {hs.server_fingerprint[:23]}... verified"
                  f"{' (first use: pinned)' if hs.first_use else ''}")

    def on_wire(self, entry: ev.TraceEntry) -> None:
        self.wire.configure(state="normal")
        self.wire.insert("end", wire_line(entry) + "\n")
        if int(self.wire.index("end-1c").split(".")[0]) > MAX_WIRE_LINES:
            self.wire.delete("1.0", "2.0")
        self.wire.see("end")
        self.wire.configure(state="disabled")

    def on_event(self, event: ev.Event) -> None:
        match event:
            case ev.PresenceChanged():
                (self.online.add if event.online else self.online.discard)(event.username)
                self._show_users()
            case ev.ChatKeyed():
                tab = self._tab(event.chat_id)
                tab.keyed(event)
                label = "lobby" if event.chat_id == LOBBY_ID else f"{event.mode} {event.chat_id[:6]}"
                self.notebook.tab(tab, text=label)  # type: ignore[no-untyped-call]
            case ev.ChatReceived():
                self._tab(event.chat_id).received(event)
            case ev.MessageRejected() if event.chat_id:
                self._tab(event.chat_id).rejected(event)
            case ev.MessageRejected():
                self._say(f"! REJECTED from {event.sender}: {event.code} ({event.reason})", error=True)
            case ev.PeerMisbehaved():
                self._tab(event.chat_id).misbehaved(event)
            case ev.ChatAborted():
                self._tab(event.chat_id).aborted(event)
                self._say(f"! key agreement aborted in chat {event.chat_id[:8]}: {event.code}", error=True)
            case ev.PeerKeyPinned():
                self._save_pins()
            case ev.PeerKeyChanged():
                self._say(f"\N{WARNING SIGN} WARNING: the keys of {event.username} CHANGED — compare safety "
                          f"numbers out of band", error=True)
                for tab in self.tabs.values():
                    if event.username in tab.members:
                        tab.key_changed(event)
            case ev.RequestFailed() if event.rid is None or event.ref == "chat_send":
                self._say(f"! error {event.code}: {event.message}", error=True)
            case ev.ConnectionClosed():
                self._say(f"connection closed: {event.code or 'bye'} {event.message}", error=event.code is not None)
                self.open_button.configure(state="disabled")

    # --- actions ------------------------------------------------------------------------------------------

    def _form(self) -> tuple[str, str] | None:
        name, password = self.username_entry.get().strip(), self.password_entry.get()
        if self.client is None:
            self._say("not connected yet", error=True)
            return None
        if not name or not password:
            self._say("enter a user name and a password", error=True)
            return None
        return name, password

    def register(self) -> None:
        form = self._form()
        if form is None:
            return
        name, password = form
        scheme = dict(SCHEMES)[self.scheme_var.get()]
        client, store = self.client, self.app.keystore
        assert client is not None

        def work() -> Any:
            keys = store.create(name, password, scheme, progress=lambda s: self.app.post(self._busy, s + " ..."))
            self.app.post(self._busy, "registering (proof of possession of both keys) ...")
            return client.register(name, password, keys)
        self._call(f"generating keys for {name} ...", work, self._registered)

    def _registered(self, result: ev.RegistrationSucceeded) -> None:
        self._say(f"registered {result.username}: certificate serial {result.certificate.serial}; now log in")

    def login(self) -> None:
        form = self._form()
        if form is None:
            return
        name, password = form
        client, store = self.client, self.app.keystore
        assert client is not None

        def work() -> tuple[Any, ev.LoggedIn]:
            keys = store.load(name, password)
            client.load_pins(store.load_pins(name))  # peers pinned in earlier sessions (known_peers.json)
            self.app.post(self._busy, "logging in (scrypt on the server, signature over the transcript) ...")
            return keys, client.login(name, password, keys)
        self._call("unlocking keys ...", work, self._logged_in)

    def _logged_in(self, result: tuple[Any, ev.LoggedIn]) -> None:
        self.keys, logged = result
        self.username, self.scheme_name = logged.username, self.keys.scheme.value
        self.online = set(logged.online)
        self._show_users()
        self.open_button.configure(state="normal")
        self.register_button.configure(state="disabled")
        self.login_button.configure(state="disabled")
        self.win.title(f"securechat — {logged.username} ({self.scheme_name})")
        self._say(f"logged in as {logged.username} ({self.scheme_name})")

    def _save_pins(self) -> None:
        if self.client is not None and self.username:
            self.app.keystore.save_pins(self.username, self.client.pins)

    def _show_users(self) -> None:
        others = sorted(self.online - {self.username or ""})
        self.users.delete(0, "end")
        for name in others:
            self.users.insert("end", name)
        for tab in self.tabs.values():
            tab.invite_name.configure(values=others)

    def select_users(self, names: list[str]) -> None:
        """Select *names* in the online list (for scripts and tests, as a click would)."""
        self.users.selection_clear(0, "end")
        for i, name in enumerate(self.users.get(0, "end")):
            if name in names:
                self.users.selection_set(i)

    def open_chat(self) -> None:
        members = [self.users.get(i) for i in self.users.curselection()]  # type: ignore[no-untyped-call]
        client = self.client
        if not members or client is None:
            self._say("select one or more online users first", error=True)
            return
        mode = self.mode_var.get()
        rounds = " (commit, reveal, confirm rounds)" if mode.startswith("contributory") else ""
        self._call(f"opening a {mode} chat with {', '.join(members)}{rounds} ...",
                   lambda: (mode, client.open_chat(members, mode=mode)), self._opened)

    def _opened(self, result: tuple[str, ev.ChatOpened]) -> None:
        mode, opened = result
        tab = self._tab(opened.chat_id)
        tab.set_mode(mode)
        self.notebook.select(tab)  # type: ignore[no-untyped-call]
        for name in opened.offline:
            tab.system(f"{name} is offline: not added")
        for name in opened.unknown:
            tab.system(f"{name} is not a registered user: not added")
        self._say(f"{mode} chat {opened.chat_id[:8]} with {', '.join(opened.members)}")

    def send(self, chat_id: str, text: str) -> None:
        client = self.client
        if client is None:
            return
        me, scheme = self.username or "?", self.scheme_name
        self.app.run(self.worker, lambda: client.send(chat_id, text),
                     lambda _r: self._tab(chat_id).sent(me, text, scheme), self._failed)

    def invite(self, chat_id: str, name: str) -> None:
        client = self.client
        if not name or client is None:
            self._say("choose someone to invite", error=True)
            return
        self._call(f"inviting {name} ...", lambda: client.invite(chat_id, name),
                   lambda _r: self._say(f"invited {name}: the chat is rekeyed"))

    def leave(self, chat_id: str) -> None:
        client = self.client
        if client is None:
            return
        self._call("leaving ...", lambda: client.leave(chat_id), lambda _r: self._left(chat_id))

    def _left(self, chat_id: str) -> None:
        self._tab(chat_id).left()
        self._say(f"left chat {chat_id[:8]}")

    def _tab(self, chat_id: str) -> ChatTab:
        tab = self.tabs.get(chat_id)
        if tab is None:
            tab = ChatTab(self.notebook, chat_id, on_send=self.send, on_invite=self.invite, on_leave=self.leave)
            self.tabs[chat_id] = tab
            self.notebook.add(tab, text="lobby" if chat_id == LOBBY_ID else f"chat {chat_id[:6]}")
            self._show_users()
        return tab

    def shutdown(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.close()
        try:
            self.win.destroy()
        except tk.TclError:
            pass
