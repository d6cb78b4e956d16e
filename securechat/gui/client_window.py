"""A client window: register / login, connection state, online users, chat tabs and the "wire" pane.

Owns: widgets, and handing blocking calls (connect, key generation, register, login, chat commands) to a
worker thread whose results come back through ``App.post``; the connection indicator; reconnecting with bounded
backoff after a dropped connection (the password stays in this window's memory for the session only, never on
disk) and saying which chats survived; unread markers on tabs; the safety-number dialog. Every string someone
else chose goes through ``display.printable``; every error through ``display.explain``. Must not: contain
protocol logic; ``TcpClient``, ``ClientProtocol`` and ``KeyStore`` do the work.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk
from tkinter.scrolledtext import ScrolledText
from typing import Any

from ..crypto.signatures import SCHEMES as SCHEME_TABLE
from ..crypto.signatures import SignatureScheme
from ..display import explain, printable
from ..keystore import KeyStoreError
from ..errors import ErrorCode, SecureChatError
from ..net.tcp_client import TcpClient
from ..protocol import events as ev
from ..protocol.messages import CHAT_MODES, LOBBY_ID
from ..protocol.vocabulary import CONTRIBUTORY_MODES
from .chat_tab import ChatTab
from .trust_dialog import TrustDialog

# Every scheme a user may pick for an identity key, from the one table in crypto/signatures.py.
SCHEMES: tuple[tuple[str, SignatureScheme], ...] = tuple(
    (params.name, scheme) for scheme, params in SCHEME_TABLE.items() if params.user_selectable)
MAX_WIRE_LINES = 300
WIRE_PREVIEW_CHARS = 72
# Reconnection (bounded backoff): seconds before attempt 1, 2, ...; the last value repeats.
RECONNECT_DELAYS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
SURVIVAL_WAIT_MS = 1500  # after logging in again, how long chats have to show they are still ours
STATES = {  # connection state -> (indicator text, colour)
    "connecting": ("connecting ...", "#8a6d00"),
    "connected": ("connected (not logged in)", "#1f5fa8"),
    "online": ("online", "#1a7f37"),
    "disconnected": ("DISCONNECTED", "#b00020"),
    "reconnecting": ("reconnecting ...", "#8a6d00"),
    "closed": ("closed", "#555555"),
}


def wire_line(entry: ev.TraceEntry) -> str:
    """A record frame as it crossed the network: direction, size and its first bytes (base64 ciphertext)."""
    arrow = "\N{RIGHTWARDS ARROW} sent" if entry.direction == "send" else "\N{LEFTWARDS ARROW} recv"
    body = entry.data if entry.data[:1] == b"{" else entry.data[4:]  # sent frames carry their length prefix
    preview = printable(body[:WIRE_PREVIEW_CHARS].decode("ascii", "replace"))
    return f"{arrow} {entry.size:6d} B  {preview}..."


def describe_error(exc: BaseException) -> str:
    """One plain line for a failure of a command (never a traceback)."""
    if isinstance(exc, KeyStoreError):  # already a plain sentence saying what to do
        return printable(str(exc))
    if isinstance(exc, SecureChatError):
        return explain(exc.code, str(exc.args[0]) if exc.args else "")
    if isinstance(exc, TimeoutError):
        return explain(ErrorCode.CONNECTION_LOST, "the server did not answer in time")
    if isinstance(exc, OSError):
        return explain(ErrorCode.CONNECTION_LOST, exc.strerror or type(exc).__name__)
    return explain(ErrorCode.INTERNAL_ERROR, type(exc).__name__)


class ClientWindow:
    def __init__(self, app: Any, name: str, geometry: str) -> None:
        self.app, self.default_name = app, name
        self.client: TcpClient | None = None
        self.username: str | None = None
        self.scheme_name = ""
        self.keys: Any = None
        self.online: set[str] = set()
        self.tabs: dict[str, ChatTab] = {}
        self.state = "connecting"
        self.attempt = 0               # reconnection attempts since the connection dropped
        self._password: str | None = None  # held in memory for this session only, to log in again
        self._generation = 0           # events of an older connection are ignored
        self._closing = False
        self._retry: str | None = None
        self._recovering: set[str] | None = None  # chat ids that had a key when the connection dropped
        self._survived: set[str] = set()
        self.trust: TrustDialog | None = None
        self._others: list[str] = []  # the online list's names, in display order
        self._early_presence: dict[str, bool] = {}  # presence seen before the login reply was handled
        self.worker = app.pool(name)
        self.win = tk.Toplevel(app.root)
        self.win.title(f"securechat — {name}")
        self.win.geometry(geometry)
        self.win.protocol("WM_DELETE_WINDOW", self.shutdown)
        self._build(name)
        self._connect()

    # --- layout ---------------------------------------------------------------------------------------------

    def _build(self, name: str) -> None:
        form = ttk.Frame(self.win, padding=(4, 2))
        form.pack(fill="x")
        ttk.Label(form, text="user").pack(side="left")
        self.username_entry = ttk.Entry(form, width=12)
        self.username_entry.insert(0, name)
        self.username_entry.pack(side="left", padx=2)
        ttk.Label(form, text="password").pack(side="left")
        self.password_entry = ttk.Entry(form, width=12, show="*")
        self.password_entry.pack(side="left", padx=2)
        self.state_label = tk.Label(form, text="", anchor="e", font=("TkDefaultFont", 9, "bold"))
        self.state_label.pack(side="right")
        row = ttk.Frame(self.win, padding=(4, 0))
        row.pack(fill="x")
        ttk.Label(row, text="key").pack(side="left")
        self.scheme_var = tk.StringVar(value=SCHEMES[0][0])
        self.scheme_choice = ttk.Combobox(row, textvariable=self.scheme_var, values=[label for label, _ in SCHEMES],
                                          state="readonly", width=20)
        self.scheme_choice.pack(side="left", padx=2)
        self.register_button = ttk.Button(row, text="Register", command=self.register, width=8)
        self.register_button.pack(side="left")
        self.login_button = ttk.Button(row, text="Log in", command=self.login, width=6)
        self.login_button.pack(side="left", padx=2)
        self.trust_button = ttk.Button(row, text="Safety numbers", command=self.open_trust, state="disabled")
        self.trust_button.pack(side="left")
        # errors are wrapped to the window's width, never cut (the <Configure> binding follows resizes)
        self.status = ttk.Label(self.win, text="", padding=(4, 0), foreground="#1f5fa8", wraplength=600,
                                justify="left")
        self.status.pack(fill="x")
        self.status.bind("<Configure>", lambda e: self.status.configure(wraplength=max(200, e.width - 8)))
        # an invitation waits for the user's answer (PROTOCOL.md 7.11): nobody is put in a chat without consent
        self.invite_bar = tk.Frame(self.win, background="#fff4c2", padx=4, pady=2)
        self.invite_label = tk.Label(self.invite_bar, text="", background="#fff4c2", anchor="w", justify="left",
                                     wraplength=360)
        self.invite_label.pack(side="left", fill="x", expand=True)
        self.decline_button = ttk.Button(self.invite_bar, text="Decline", width=8,
                                         command=lambda: self.answer_invitation(False))
        self.decline_button.pack(side="right")
        self.accept_button = ttk.Button(self.invite_bar, text="Accept", width=7,
                                        command=lambda: self.answer_invitation(True))
        self.accept_button.pack(side="right", padx=2)
        self._invitations: list[ev.InvitationReceived] = []
        body = ttk.PanedWindow(self.win, orient="horizontal")
        body.pack(fill="both", expand=True, padx=4, pady=2)
        left = ttk.Frame(body)
        ttk.Label(left, text="online").pack(anchor="w")
        self.users = tk.Listbox(left, selectmode="multiple", width=12, height=4, exportselection=False)
        self.users.pack(fill="both", expand=True)
        self.mode_var = tk.StringVar(value=CHAT_MODES[0])
        self.mode_choice = ttk.Combobox(left, textvariable=self.mode_var, values=CHAT_MODES, state="readonly",
                                        width=14)
        self.mode_choice.pack(fill="x", pady=(2, 0))
        self.open_button = ttk.Button(left, text="Open chat", command=self.open_chat, state="disabled")
        self.open_button.pack(fill="x", pady=(2, 0))
        body.add(left, weight=0)
        self.notebook = ttk.Notebook(body)
        self.notebook.bind("<<NotebookTabChanged>>", lambda _e: self._clear_unread())
        body.add(self.notebook, weight=1)
        ttk.Label(self.win, text="wire: record frames as they cross (AES-GCM ciphertext, base64)",
                  padding=(4, 0), font=("TkDefaultFont", 8)).pack(anchor="w")
        self.wire = ScrolledText(self.win, height=3, wrap="none", font=("TkFixedFont", 8), foreground="#5b3a8c")
        self.wire.pack(fill="x", padx=4, pady=(0, 4))
        self.wire.configure(state="disabled")
        self._set_state("connecting")

    # --- connection -----------------------------------------------------------------------------------------

    def _next_generation(self) -> int:
        """Tk thread: from now on only the connection made with the returned number is listened to."""
        self._generation += 1
        return self._generation

    def _new_client(self, generation: int) -> TcpClient:
        """Blocking (worker thread): a fresh connection whose events are tagged with *generation*."""
        host, port = self.app.address
        return TcpClient(host, port, url=self.app.url, server_key=self.app.pinned, auto_accept_invitations=False,
                         on_event=lambda e: self.app.post(self._on_network, generation, e),
                         trace=lambda t: self._from_wire(generation, t))

    def _connect(self) -> None:
        self._set_state("connecting")
        self._busy("connecting ...")
        generation = self._next_generation()
        self.app.run(self.worker, lambda: self._new_client(generation), self._connected, self._connect_failed)

    def _set_state(self, state: str, detail: str = "") -> None:
        self.state = state
        text, colour = STATES[state]
        if state == "online" and self.username:
            text = f"online as {printable(self.username)}"
        self.state_label.configure(text=f"\N{BLACK CIRCLE} {text}{(' ' + detail) if detail else ''}",
                                   foreground=colour)
        usable = state == "online"
        self.open_button.configure(state="normal" if usable else "disabled")
        self.trust_button.configure(state="normal" if usable else "disabled")
        for tab in self.tabs.values():
            tab.set_connected(usable)

    def _connected(self, client: TcpClient) -> None:
        if self._closing:
            client.close()
            return
        self.client = client
        hs = client.handshake
        assert hs is not None
        if hs.first_use:
            host, port = self.app.address
            self.app.keystore.pin_server(f"{host}:{port}", hs.server_key, hs.server_scheme)
        self._set_state("connected")
        self._say(f"connected; server key {printable(hs.server_fingerprint[:23])}... verified"
                  f"{' (first use: pinned)' if hs.first_use else ''}")

    def _connect_failed(self, exc: BaseException) -> None:
        if self._password is not None and self.username:
            self._reconnect_later(describe_error(exc))  # we were logged in: keep trying, bounded backoff
            return
        self._set_state("disconnected")
        self._say(f"! could not connect: {describe_error(exc)}", error=True)

    def _dropped(self, event: ev.ConnectionClosed) -> None:
        """The connection ended without our asking: disable sending, then log in again if we were online."""
        if self.state == "reconnecting":
            return
        for tab in self.tabs.values():
            tab.set_connected(False)
        reason = explain(event.code or ErrorCode.CONNECTION_LOST, event.message)
        if self._password is None or not self.username or self.keys is None:
            self._set_state("disconnected")
            self._say(f"! connection closed: {reason}", error=True)
            return
        self._recovering = {cid for cid, tab in self.tabs.items() if tab.active and tab.epoch > 0}
        self._survived = set()  # filled by the new connection's ChatKeyed events, which may beat its login reply
        self._reconnect_later(reason)

    def _reconnect_later(self, reason: str) -> None:
        if self._closing:
            return
        delay = RECONNECT_DELAYS[min(self.attempt, len(RECONNECT_DELAYS) - 1)]
        self.attempt += 1
        self._set_state("reconnecting", f"(attempt {self.attempt} in {delay:g} s)")
        self._say(f"! connection lost: {reason}. Reconnecting in {delay:g} s; what you type is kept and "
                  f"can be sent once the connection is back.", error=True)
        self._retry = self.win.after(int(delay * 1000), self._reconnect)

    def _reconnect(self) -> None:
        self._retry = None
        if self._closing or self._password is None or self.username is None:
            return
        name, password, keys, store = self.username, self._password, self.keys, self.app.keystore
        generation = self._next_generation()  # the old connection's last events are ignored from here on
        old, self.client = self.client, None
        if old is not None:
            old.close()
        self._set_state("reconnecting", f"(attempt {self.attempt})")

        def work() -> tuple[TcpClient, ev.LoggedIn]:
            client = self._new_client(generation)
            try:
                client.load_pins(store.load_pins(name))
                return client, client.login(name, password, keys)
            except BaseException:
                client.close()
                raise
        self.app.run(self.worker, work, self._reconnected, lambda exc: self._reconnect_later(describe_error(exc)))

    def _reconnected(self, result: tuple[TcpClient, ev.LoggedIn]) -> None:
        client, logged = result
        if self._closing:
            client.close()
            return
        self.client, self.attempt = client, 0
        self._take_online(logged.online)
        self._show_users()
        self._set_state("online")
        self._say("reconnected and logged in again; checking which chats are still open ...")
        self.win.after(SURVIVAL_WAIT_MS, self._report_survivors)

    def _report_survivors(self) -> None:
        recovering, self._recovering = self._recovering or set(), None
        survived = sorted(c for c in recovering if c in self._survived)
        lost = sorted(c for c in recovering if c not in self._survived)
        for chat_id in lost:
            self.tabs[chat_id].lost()
        names = {cid: self.tabs[cid].label for cid in recovering}
        kept = ", ".join(names[c] for c in survived) or "none"
        gone = ", ".join(names[c] for c in lost) or "none"
        self._say(f"reconnected as {printable(self.username or '')}. Chats still open: {kept}. "
                  f"Lost (the server removed you when the connection dropped): {gone}.", error=bool(lost))

    # --- thread boundary: network callbacks only post ----------------------------------------------------

    def _from_wire(self, generation: int, entry: ev.TraceEntry) -> None:
        if entry.layer == "record":
            self.app.post(self._on_wire, generation, entry)

    def _on_wire(self, generation: int, entry: ev.TraceEntry) -> None:
        if generation == self._generation:
            self.on_wire(entry)

    def _on_network(self, generation: int, event: ev.Event) -> None:
        if generation == self._generation:  # a replaced connection's late events are not ours any more
            self.on_event(event)

    def _call(self, busy: str, work: Callable[[], Any], done: Callable[[Any], None]) -> None:
        self._busy(busy)
        self.app.run(self.worker, work, done, self._failed)

    # --- results (Tk thread) --------------------------------------------------------------------------------

    def _busy(self, text: str) -> None:
        self.status.configure(text=f"\N{HOURGLASS} {text}", foreground="#1f5fa8")

    def _say(self, text: str, error: bool = False) -> None:
        self.status.configure(text=text, foreground="#b00020" if error else "#1f5fa8")

    def _failed(self, exc: BaseException) -> None:
        self._say(f"! {describe_error(exc)}", error=True)

    def on_wire(self, entry: ev.TraceEntry) -> None:
        self.wire.configure(state="normal")
        self.wire.insert("end", wire_line(entry) + "\n")
        if int(self.wire.index("end-1c").split(".")[0]) > MAX_WIRE_LINES:
            self.wire.delete("1.0", "2.0")
        self.wire.see("end")
        self.wire.configure(state="disabled")

    def on_event(self, event: ev.Event) -> None:
        match event:
            case ev.InvitationReceived() if not event.accepted:
                self._invitations = [i for i in self._invitations if i.chat_id != event.chat_id][-15:] + [event]
                self._show_invitation()
            case ev.PresenceChanged():
                (self.online.add if event.online else self.online.discard)(event.username)
                if self.state != "online":
                    # may beat the login reply through the queue: applied again on top of its list
                    self._early_presence[event.username] = event.online
                self._show_users()
            case ev.ChatKeyed():
                tab = self._tab(event.chat_id)
                tab.keyed(event)
                if self._recovering is not None:
                    self._survived.add(event.chat_id)
                tab.label = "lobby" if event.chat_id == LOBBY_ID else f"{event.mode} {printable(event.chat_id[:6])}"
                self._label(tab)
            case ev.ChatReceived():
                tab = self._tab(event.chat_id)
                tab.received(event)
                self._mark_unread(tab)
            case ev.MessageRejected() if event.chat_id in self.tabs:
                self.tabs[event.chat_id].rejected(event)
            case ev.MessageRejected():
                # no tab is made for a chat id only a rejection names (a server could name any number of them)
                where = f" in chat {printable(event.chat_id[:8])}" if event.chat_id else ""
                self._say(f"! REJECTED from {printable(event.sender)}{where}: {explain(event.code, event.reason)}",
                          error=True)
            case ev.PeerMisbehaved() if event.chat_id in self.tabs:
                self.tabs[event.chat_id].misbehaved(event)
            case ev.MessageRefused():
                who = printable(event.recipient)
                self._say(f"! {who} did not accept your messages in chat {printable(event.chat_id[:8])}: {who} has "
                          f"not accepted your new keys yet; compare safety numbers with {who} out of band", error=True)
            case ev.ChatAborted():
                if event.chat_id in self.tabs:
                    self.tabs[event.chat_id].aborted(event)
                self._say(f"! key agreement aborted in chat {printable(event.chat_id[:8])}: "
                          f"{explain(event.code, event.reason)}", error=True)
            case ev.PeerKeyPinned():
                self._save_pins()
                if self.trust is not None:
                    self.trust.refresh()
            case ev.PeerKeyChanged():
                self._say(f"\N{WARNING SIGN} WARNING: the keys of {printable(event.username)} CHANGED — compare "
                          f"safety numbers out of band (button \"Safety numbers\")", error=True)
                for tab in self.tabs.values():
                    if event.username in tab.members:
                        tab.key_changed(event)
                self.open_trust(event.username)
            case ev.RequestFailed() if event.rid is None or event.ref == "chat_send":
                self._say(f"! {explain(event.code, event.message)}", error=True)
            case ev.ConnectionClosed() if event.code is None:
                self._set_state("closed")
                self._say("logged out")
            case ev.ConnectionClosed():
                self._dropped(event)

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
            # keys are staged and move into the key folder only once the server accepted the name: a refused
            # registration never touches an existing identity and leaves nothing behind (docs/SECURITY.md 7.4)
            staged = store.stage(name, password, scheme, progress=lambda s: self.app.post(self._busy, s + " ..."))
            self.app.post(self._busy, "registering (proof of possession of both keys) ...")
            try:
                result = client.register(name, password, staged.keys)
            except BaseException:
                store.discard(staged)
                raise
            store.commit(staged)
            return result
        self._call(f"generating keys for {printable(name)} ...", work, self._registered)

    def _registered(self, result: ev.RegistrationSucceeded) -> None:
        self._say(f"registered {printable(result.username)}: certificate serial {result.certificate.serial}; "
                  f"now log in")

    def login(self) -> None:
        form = self._form()
        if form is None:
            return
        name, password = form
        client, store = self.client, self.app.keystore
        assert client is not None

        def work() -> tuple[Any, ev.LoggedIn, str]:
            keys = store.load(name, password)
            client.load_pins(store.load_pins(name))  # peers pinned in earlier sessions (known_peers.json)
            self.app.post(self._busy, "logging in (scrypt on the server, signature over the transcript) ...")
            return keys, client.login(name, password, keys), password
        self._call("unlocking keys ...", work, self._logged_in)

    def _logged_in(self, result: tuple[Any, ev.LoggedIn, str]) -> None:
        self.keys, logged, self._password = result
        self.password_entry.delete(0, "end")  # kept in memory (to log in again after a drop), not on screen
        self.username, self.scheme_name = logged.username, self.keys.scheme.value
        self._take_online(logged.online)
        self._show_users()
        self.register_button.configure(state="disabled")
        self.login_button.configure(state="disabled")
        self.win.title(f"securechat — {printable(logged.username)} ({self.scheme_name})")
        self._set_state("online")
        self._say(f"logged in as {printable(logged.username)} ({self.scheme_name})")

    def _take_online(self, listed: tuple[str, ...]) -> None:
        """The login reply's list, then any presence change that was handled before it (newer than the list)."""
        self.online = set(listed)
        for name, online in self._early_presence.items():
            (self.online.add if online else self.online.discard)(name)
        self._early_presence = {}

    def _save_pins(self) -> None:
        if self.client is not None and self.username:
            self.app.keystore.save_pins(self.username, self.client.pins)

    def _show_users(self) -> None:
        others = sorted(self.online - {self.username or ""})
        self.users.delete(0, "end")
        for name in others:
            self.users.insert("end", printable(name))
        self._others = others
        for tab in self.tabs.values():
            tab.invite_name.configure(values=[printable(n) for n in others])

    def select_users(self, names: list[str]) -> None:
        """Select *names* in the online list (for scripts and tests, as a click would)."""
        self.users.selection_clear(0, "end")
        for i, name in enumerate(self._others):
            if name in names:
                self.users.selection_set(i)

    def open_chat(self) -> None:
        others = self._others
        members = [others[i] for i in self.users.curselection() if i < len(others)]  # type: ignore[no-untyped-call]
        client = self.client
        if not members or client is None:
            self._say("select one or more online users first", error=True)
            return
        mode = self.mode_var.get()
        rounds = " (commit, reveal, confirm rounds)" if mode in CONTRIBUTORY_MODES else ""
        self._call(f"opening a {mode} chat with {', '.join(printable(n) for n in members)}{rounds} ...",
                   lambda: (mode, client.open_chat(members, mode=mode)), self._opened)

    def _opened(self, result: tuple[str, ev.ChatOpened]) -> None:
        mode, opened = result
        tab = self._tab(opened.chat_id)
        tab.set_mode(mode)
        self.notebook.select(tab)  # type: ignore[no-untyped-call]
        for name in opened.offline:
            tab.system(f"{printable(name)} is offline: not added")
        for name in opened.unknown:
            tab.system(f"{printable(name)} is not a registered user: not added")
        self._say(f"{mode} chat {printable(opened.chat_id[:8])} with "
                  f"{', '.join(printable(n) for n in opened.members)}")

    def send(self, chat_id: str, text: str) -> None:
        client = self.client
        tab = self._tab(chat_id)
        if client is None or self.state != "online":
            self._say("not connected: your text is kept; send it when the connection is back", error=True)
            return
        me, scheme = self.username or "?", self.scheme_name

        def done(_r: object) -> None:
            tab.sent(me, text, scheme)
            tab.sent_ok(text)
        self.app.run(self.worker, lambda: client.send(chat_id, text), done, self._failed)

    def invite(self, chat_id: str, name: str) -> None:
        client = self.client
        if not name or client is None:
            self._say("choose someone to invite", error=True)
            return
        self._call(f"inviting {printable(name)} ...", lambda: client.invite(chat_id, name),
                   lambda _r: self._say(f"invited {printable(name)}: the chat is rekeyed"))

    def leave(self, chat_id: str) -> None:
        client = self.client
        if client is None:
            return
        self._call("leaving ...", lambda: client.leave(chat_id), lambda _r: self._left(chat_id))

    def _left(self, chat_id: str) -> None:
        self._tab(chat_id).left()
        self._say(f"left chat {printable(chat_id[:8])}")

    # --- tabs: labels and unread markers --------------------------------------------------------------------

    def _tab(self, chat_id: str) -> ChatTab:
        tab = self.tabs.get(chat_id)
        if tab is None:
            tab = ChatTab(self.notebook, chat_id, on_send=self.send, on_invite=self.invite, on_leave=self.leave)
            if chat_id == LOBBY_ID:
                tab.label = "lobby"
            self.tabs[chat_id] = tab
            self.notebook.add(tab, text=tab.label)
            tab.set_connected(self.state == "online")
            self._show_users()
        return tab

    def _selected_tab(self) -> ChatTab | None:
        try:
            current = self.notebook.select()  # type: ignore[no-untyped-call]
        except tk.TclError:
            return None
        return next((t for t in self.tabs.values() if str(t) == str(current)), None)

    def _label(self, tab: ChatTab) -> None:
        text = f"\N{BLACK CIRCLE} {tab.label} ({tab.unread})" if tab.unread else tab.label
        self.notebook.tab(tab, text=text)  # type: ignore[no-untyped-call]

    def _mark_unread(self, tab: ChatTab) -> None:
        """A message in a tab the user is not looking at: the tab shows a dot and the count."""
        if self._selected_tab() is tab:
            return
        tab.unread += 1
        self._label(tab)

    def _clear_unread(self) -> None:
        tab = self._selected_tab()
        if tab is not None and tab.unread:
            tab.unread = 0
            self._label(tab)

    # --- invitations ---------------------------------------------------------------------------------------

    def _show_invitation(self) -> None:
        if not self._invitations:
            self.invite_bar.pack_forget()
            return
        first = self._invitations[0]
        more = f" (+{len(self._invitations) - 1} more)" if len(self._invitations) > 1 else ""
        self.invite_label.configure(text=f"{printable(first.inviter)} invites you to a {printable(first.mode)} chat "
                                         f"{printable(first.chat_id[:8])}{more}")
        if not self.invite_bar.winfo_ismapped():
            self.invite_bar.pack(fill="x", padx=4, after=self.status)

    def answer_invitation(self, accept: bool) -> None:
        """Answer the first pending invitation (the Accept / Decline buttons)."""
        client = self.client
        if not self._invitations or client is None:
            return
        invitation = self._invitations.pop(0)
        self._show_invitation()
        verb = "joining" if accept else "declining"
        self._call(f"{verb} chat {printable(invitation.chat_id[:8])} ...",
                   lambda: client.answer_invitation(invitation.chat_id, accept),
                   lambda _r: self._say(f"{'accepted' if accept else 'declined'} the invitation of "
                                        f"{printable(invitation.inviter)}"))

    # --- the safety-number dialog ---------------------------------------------------------------------------

    def open_trust(self, name: str | None = None) -> None:
        client = self.client
        if client is None or self.state != "online":
            self._say("log in first to compare safety numbers", error=True)
            return
        if self.trust is None:
            self.trust = TrustDialog(self.win, client, accept=self._accept_key, close=self._close_trust)
        else:
            self.trust.client = client
            self.trust.refresh()
        if name is not None:
            self.trust.select(name)

    def _close_trust(self) -> None:
        if self.trust is not None:
            self.trust.destroy()
            self.trust = None

    def _accept_key(self, name: str, fingerprint: str) -> None:
        client = self.client
        if client is None:
            return

        def failed(exc: BaseException) -> None:
            if self.trust is not None:
                self.trust.failed(f"NOT trusted: {describe_error(exc)}")

        def done(_r: object) -> None:
            self._save_pins()
            if self.trust is not None:
                self.trust.accepted(name)
            self._say(f"you now trust the new key of {printable(name)}")
        self.app.run(self.worker, lambda: client.accept_key_change(name, fingerprint), done, failed)

    def shutdown(self) -> None:
        self._closing = True
        self._password = None
        if self._retry is not None:
            try:
                self.win.after_cancel(self._retry)
            except tk.TclError:
                pass
        client, self.client = self.client, None
        if client is not None:
            client.close()
        self._close_trust()
        try:
            self.win.destroy()
        except tk.TclError:
            pass
