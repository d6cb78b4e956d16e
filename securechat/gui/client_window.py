"""A client window: one user's connection, commands and the events that come back.

Owns: the connection (connect, the connection state, reconnecting with bounded backoff after a dropped connection,
with the password held in this window's memory for the session only, never on disk, and saying which chats
survived; which connection's events are current), the commands (register, log in, open, send, invite, leave,
answer an invitation, trust a changed key), each run on a worker thread whose result comes back through
``Host.post``, and routing each event to the part that shows it. Its parts: ``form`` (login_panel.py),
``invitations`` (invitation_bar.py), ``roster`` (roster.py), ``chats`` (chat_tabs.py: also a chat's events),
``safety`` (trust_dialog.py; ``trust`` is its dialog while open) and the wire pane; their words come from render.py,
which escapes everything someone else chose.
Must not: contain protocol logic: ``TcpClient``, ``ClientProtocol`` and ``KeyStore`` do the work.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk
from tkinter.scrolledtext import ScrolledText
from typing import TypeVar

from ..display import explain, printable
from ..errors import ErrorCode
from ..net.tcp_client import TcpClient
from ..protocol import events as ev
from ..protocol.identity import UserKeys
from ..protocol.messages import ChatSend
from . import render
from .chat_tab import ChatTab
from .chat_tabs import ChatTabs
from .host import Host
from .invitation_bar import InvitationBar
from .login_panel import SCHEMES, ConnectionState, LoginPanel
from .render import describe_error, wire_line
from .roster import Roster
from .trust_dialog import SafetyNumbers, TrustDialog
from .widgets import append_line, keep_wrapped

__all__ = ["ClientWindow", "ConnectionState", "RECONNECT_DELAYS", "SCHEMES", "SURVIVAL_WAIT_MS", "describe_error",
           "wire_line"]

T = TypeVar("T")
MAX_WIRE_LINES = 300
# Reconnection (bounded backoff): seconds before attempt 1, 2, ...; the last value repeats.
RECONNECT_DELAYS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
SURVIVAL_WAIT_MS = 1500  # after logging in again, how long chats have to show they are still ours


class ClientWindow:
    def __init__(self, app: Host, name: str, geometry: str) -> None:
        self.app, self.default_name = app, name
        self.client: TcpClient | None = None
        self.username: str | None = None
        self.scheme_name = ""
        self.keys: UserKeys | None = None
        self.state = ConnectionState.CONNECTING
        self.attempt = 0               # reconnection attempts since the connection dropped
        self._password: str | None = None  # held in memory for this session only, to log in again
        self._generation = 0           # events of an older connection are ignored
        self._closing = False
        self._retry: str | None = None
        self.worker = app.pool(name)
        self.win = tk.Toplevel(app.root)
        self.win.title(f"securechat — {name}")
        self.win.geometry(geometry)
        self.win.protocol("WM_DELETE_WINDOW", self.shutdown)
        self.safety = SafetyNumbers(self.win, app, self.worker, client=lambda: self.client, trusted=self._trusted)
        self.form = LoginPanel(self.win, name, register=self.register, login=self.login, trust=self.open_trust)
        # errors are wrapped to the window's width, never cut
        self.status = ttk.Label(self.win, text="", padding=(4, 0), foreground="#1f5fa8", wraplength=600,
                                justify="left")
        self.status.pack(fill="x")
        keep_wrapped(self.status)
        self.invitations = InvitationBar(self.win, after=self.status, answer=self.answer_invitation)
        body = ttk.PanedWindow(self.win, orient="horizontal")
        body.pack(fill="both", expand=True, padx=4, pady=2)
        self.roster = Roster(body, open_chat=self.open_chat)
        body.add(self.roster.frame, weight=0)
        self.chats = ChatTabs(body, on_send=self.send, on_invite=self.invite, on_leave=self.leave)
        body.add(self.chats.notebook, weight=1)
        ttk.Label(self.win, text="wire: record frames as they cross (AES-GCM ciphertext, base64)",
                  padding=(4, 0), font=("TkDefaultFont", 8)).pack(anchor="w")
        self.wire = ScrolledText(self.win, height=3, wrap="none", font=("TkFixedFont", 8), foreground="#5b3a8c")
        self.wire.pack(fill="x", padx=4, pady=(0, 4))
        self.wire.configure(state="disabled")
        self._connect()

    @property
    def tabs(self) -> dict[str, ChatTab]:
        """The chat tabs by chat id."""
        return self.chats.tabs

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
        self._set_state(ConnectionState.CONNECTING)
        self._busy("connecting ...")
        generation = self._next_generation()
        self.app.run(self.worker, lambda: self._new_client(generation), self._connected, self._connect_failed)

    def _set_state(self, state: ConnectionState, detail: str = "") -> None:
        self.state = state
        self.form.show_state(state, username=self.username, detail=detail)
        usable = state is ConnectionState.ONLINE
        self.roster.set_usable(usable)
        self.chats.set_connected(usable)

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
        self._set_state(ConnectionState.CONNECTED)
        self._say(f"connected; server key {printable(hs.server_fingerprint[:23])}... verified"
                  f"{' (first use: pinned)' if hs.first_use else ''}")

    def _connect_failed(self, exc: BaseException) -> None:
        if self._password is not None and self.username:
            self._reconnect_later(describe_error(exc))  # we were logged in: keep trying, bounded backoff
            return
        self._set_state(ConnectionState.DISCONNECTED)
        self._say(f"! could not connect: {describe_error(exc)}", error=True)

    def _dropped(self, event: ev.ConnectionClosed) -> None:
        """The connection ended without our asking: disable sending, then log in again if we were online."""
        if self.state is ConnectionState.RECONNECTING:
            return
        self.chats.connection_dropped()
        reason = explain(event.code or ErrorCode.CONNECTION_LOST, event.message)
        if self._password is None or not self.username or self.keys is None:
            self._set_state(ConnectionState.DISCONNECTED)
            self._say(f"! connection closed: {reason}", error=True)
            return
        self._reconnect_later(reason)

    def _reconnect_later(self, reason: str) -> None:
        if self._closing:
            return
        delay = RECONNECT_DELAYS[min(self.attempt, len(RECONNECT_DELAYS) - 1)]
        self.attempt += 1
        self._set_state(ConnectionState.RECONNECTING, f"(attempt {self.attempt} in {delay:g} s)")
        self._say(f"! connection lost: {reason}. Reconnecting in {delay:g} s; what you type is kept and "
                  f"can be sent once the connection is back.", error=True)
        self._retry = self.win.after(int(delay * 1000), self._reconnect)

    def _reconnect(self) -> None:
        self._retry = None
        if self._closing or self._password is None or self.username is None or self.keys is None:
            return
        name, password, keys, store = self.username, self._password, self.keys, self.app.keystore
        generation = self._next_generation()  # the old connection's last events are ignored from here on
        old, self.client = self.client, None
        if old is not None:
            old.close()
        self._set_state(ConnectionState.RECONNECTING, f"(attempt {self.attempt})")

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
        self._show_online(logged.online)
        self._set_state(ConnectionState.ONLINE)
        self._say("reconnected and logged in again; checking which chats are still open ...")
        self._show_key_changes()
        self.win.after(SURVIVAL_WAIT_MS, self._report_survivors)

    def _report_survivors(self) -> None:
        kept, lost = self.chats.survivors()
        self._say(render.survivors(self.username or "", kept, lost), error=bool(lost))

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

    def _call(self, busy: str, work: Callable[[], T], done: Callable[[T], None]) -> None:
        self._busy(busy)
        self.app.run(self.worker, work, done, self._failed)

    # --- results (Tk thread) --------------------------------------------------------------------------------

    def _busy(self, text: str) -> None:
        self.status.configure(text=f"\N{WHITE CIRCLE WITH UPPER RIGHT QUADRANT} {text}", foreground="#1f5fa8")

    def _say(self, text: str, error: bool = False) -> None:
        self.status.configure(text=text, foreground="#b00020" if error else "#1f5fa8")

    def _failed(self, exc: BaseException) -> None:
        self._say(f"! {describe_error(exc)}", error=True)

    def on_wire(self, entry: ev.TraceEntry) -> None:
        append_line(self.wire, [(wire_line(entry), "")], max_lines=MAX_WIRE_LINES, stamp=False)

    def on_event(self, event: ev.Event) -> None:
        """Route one event to the part of the window that shows it."""
        match event:
            case ev.InvitationReceived() if not event.accepted:
                self.invitations.offer(event)
            case ev.PresenceChanged():
                self.roster.presence(event.username, event.online, logged_in=self.state is ConnectionState.ONLINE)
                self.chats.set_invitees(self.roster.others)
            case ev.ChatKeyed() | ev.ChatReceived() | ev.PeerMisbehaved():
                self.chats.on_event(event)
            case ev.MessageRejected():
                if not self.chats.on_event(event):
                    self._say(render.rejected_elsewhere(event), error=True)
            case ev.ChatAborted():
                self.chats.on_event(event)
                self._say(render.aborted(event), error=True)
            case ev.MessageRefused():
                self._say(render.refused(event), error=True)
            case ev.PeerKeyPinned():
                self._save_pins()
                self.safety.refresh()
            case ev.PeerKeyChanged():
                self._say(render.key_changed(event), error=True)
                self.chats.on_event(event)
                self.open_trust(event.username)
            case ev.RequestFailed() if event.rid is None or event.ref == ChatSend.TYPE:
                self._say(f"! {explain(event.code, event.message)}", error=True)
            case ev.ConnectionClosed() if event.code is None:
                self._set_state(ConnectionState.CLOSED)
                self._say("logged out")
            case ev.ConnectionClosed():
                self._dropped(event)

    # --- actions ------------------------------------------------------------------------------------------

    def _form(self) -> tuple[TcpClient, str, str] | None:
        if self.client is None:
            self._say("not connected yet", error=True)
            return None
        typed = self.form.credentials()
        if typed is None:
            self._say("enter a user name and a password", error=True)
            return None
        return self.client, *typed

    def register(self) -> None:
        form = self._form()
        if form is None:
            return
        client, name, password = form
        scheme, store = self.form.scheme(), self.app.keystore

        def work() -> ev.RegistrationSucceeded:
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
        client, name, password = form
        store = self.app.keystore

        def work() -> tuple[UserKeys, ev.LoggedIn, str]:
            keys = store.load(name, password)
            client.load_pins(store.load_pins(name))  # peers pinned in earlier sessions (known_peers.json)
            self.app.post(self._busy, "logging in (scrypt on the server, signature over the transcript) ...")
            return keys, client.login(name, password, keys), password
        self._call("unlocking keys ...", work, self._logged_in)

    def _logged_in(self, result: tuple[UserKeys, ev.LoggedIn, str]) -> None:
        self.keys, logged, self._password = result
        self.form.logged_in()  # the password is kept in memory (to log in again after a drop), not on screen
        self.username, self.scheme_name = logged.username, self.keys.scheme.value
        self._show_online(logged.online)
        self.win.title(f"securechat — {printable(logged.username)} ({self.scheme_name})")
        self._set_state(ConnectionState.ONLINE)
        self._say(f"logged in as {printable(logged.username)} ({self.scheme_name})")
        self._show_key_changes()

    def _show_online(self, listed: tuple[str, ...]) -> None:
        self.roster.logged_in(self.username or "", listed)
        self.chats.set_invitees(self.roster.others)

    def _save_pins(self) -> None:
        if self.client is not None and self.username:
            self.app.keystore.save_pins(self.username, self.client.pins)

    def select_users(self, names: list[str]) -> None:
        """Select *names* in the online list (for scripts and tests, as a click would)."""
        self.roster.select(names)

    def open_chat(self) -> None:
        members, client = self.roster.selected(), self.client
        if not members or client is None:
            self._say("select one or more online users first", error=True)
            return
        mode = self.roster.mode()
        self._call(render.opening(mode, members), lambda: (mode, client.open_chat(members, mode=mode)), self._opened)

    def _opened(self, result: tuple[str, ev.ChatOpened]) -> None:
        mode, opened = result
        tab = self.chats.tab(opened.chat_id)
        tab.set_mode(mode)
        self.chats.select(tab)
        for note in render.opened_notes(opened):
            tab.system(note)
        self._say(render.opened(mode, opened))

    def send(self, chat_id: str, text: str) -> None:
        client = self.client
        tab = self.chats.tab(chat_id)
        if client is None or self.state is not ConnectionState.ONLINE:
            self._say("not connected: your text is kept; send it when the connection is back", error=True)
            return
        me, scheme = self.username or "?", self.scheme_name

        def done(_rid: int) -> None:
            tab.sent(me, text, scheme)
            tab.sent_ok(text)
        self.app.run(self.worker, lambda: client.send(chat_id, text), done, self._failed)

    def invite(self, chat_id: str, name: str) -> None:
        client = self.client
        if not name or client is None:
            self._say("choose someone to invite", error=True)
            return
        self._call(f"inviting {printable(name)} ...", lambda: client.invite(chat_id, name),
                   lambda _invited: self._say(f"invited {printable(name)}: the chat is rekeyed"))

    def leave(self, chat_id: str) -> None:
        client = self.client
        if client is None:
            return
        self._call("leaving ...", lambda: client.leave(chat_id), lambda _left: self._left(chat_id))

    def _left(self, chat_id: str) -> None:
        self.chats.tab(chat_id).left()
        self._say(f"left chat {render.short_id(chat_id)}")

    def answer_invitation(self, accept: bool) -> None:
        """Answer the first pending invitation (the Accept / Decline buttons)."""
        client = self.client
        if client is None:
            return
        invitation = self.invitations.take()
        if invitation is None:
            return
        verb = "joining" if accept else "declining"
        self._call(f"{verb} chat {render.short_id(invitation.chat_id)} ...",
                   lambda: client.answer_invitation(invitation.chat_id, accept),
                   lambda _answered: self._say(f"{'accepted' if accept else 'declined'} the invitation of "
                                               f"{printable(invitation.inviter)}"))

    # --- the safety-number dialog ---------------------------------------------------------------------------

    @property
    def trust(self) -> TrustDialog | None:
        """The safety-number dialog while it is open."""
        return self.safety.dialog

    def open_trust(self, name: str | None = None) -> None:
        client = self.client
        if client is None or self.state is not ConnectionState.ONLINE:
            self._say("log in first to compare safety numbers", error=True)
            return
        self.safety.open(client, name)

    def _show_key_changes(self) -> None:
        """Just online: a key change the new connection reported before its login reply was handled found the
        window not yet online (``open_trust`` refused it); show it now. An open dialog follows the new connection."""
        client = self.client
        if client is None:
            return
        pending = sorted(client.pending_key_changes())
        if pending or self.trust is not None:
            self.open_trust(pending[0] if pending else None)

    def _trusted(self, name: str) -> None:
        self._save_pins()
        self._say(f"you now trust the new key of {printable(name)}")

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
        self.safety.close()
        try:
            self.win.destroy()
        except tk.TclError:
            pass
