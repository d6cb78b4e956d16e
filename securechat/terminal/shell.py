"""One user's terminal session: the parts of the terminal client put together.

Owns: wiring the shared ``TerminalState`` to its collaborators (``CommandLine`` with the account and chat commands,
``EventLines``, ``Reconnector``), the prompt (``alice@bob>`` names the chat a typed line goes to), and quitting
(log out if possible, close, stop reconnecting). ``securechat/client.py`` runs it on a terminal
(``terminal/consoles.py``). Must not: contain protocol logic (TcpClient and ClientProtocol do it), read protocol
state without the client's lock (only TcpClient's accessors), or print a string someone else chose without
``display.printable``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..errors import SecureChatError
from ..keystore import KeyStore
from ..net.tcp_client import ChatInfo, TcpClient
from ..protocol import events as ev
from .account_commands import AccountCommands
from .chat_commands import ChatCommands
from .commands import Command, CommandLine, Handler
from .event_lines import EventLines
from .reconnect import RECONNECT_ATTEMPTS, RECONNECT_DELAYS, Connect, Reconnector
from .state import Link, Session, TerminalState
from .texts import HELP


class Shell:
    """One user's terminal session. ``emit`` prints one (already safe) line; ``changed`` asks the terminal to
    redraw the prompt; ``connect`` opens a new TcpClient whose events go to the given callback."""

    def __init__(self, connect: Connect, store: KeyStore, *, emit: Callable[[str], None],
                 ask_password: Callable[[str], str], changed: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.time, reconnect_delays: tuple[float, ...] = RECONNECT_DELAYS,
                 reconnect_attempts: int = RECONNECT_ATTEMPTS) -> None:
        self.state = TerminalState(store, emit=emit, changed=changed, clock=clock)
        self._lines = EventLines(self.state)
        self._reconnector = Reconnector(self.state, connect, self.on_event, delays=reconnect_delays,
                                        attempts=reconnect_attempts)
        self._chats = ChatCommands(self.state)
        own: dict[Command, Handler] = {Command.HELP: self._help, Command.RECONNECT: self._reconnector.reconnect_now,
                                       Command.QUIT: self._quit_command}
        self._commands = CommandLine(self.state, {**AccountCommands(self.state, ask_password).handlers(),
                                                  **self._chats.handlers(), **own}, self._chats.send)
        self._quitting = False

    # --- what the terminal and the tests see of the state -----------------------------------------------------

    @property
    def session(self) -> Session | None:
        return self.state.session

    @session.setter
    def session(self, session: Session | None) -> None:
        with self.state.lock:
            self.state.session = session

    @property
    def client(self) -> TcpClient | None:
        return self.state.client

    @property
    def current(self) -> str | None:
        return self.state.current

    @property
    def status(self) -> Link:
        return self.state.link

    def say(self, text: str) -> None:
        """Print *text* (built from our own words and printable() of anything foreign)."""
        self.state.say(text)

    def label(self, chat_id: str | None, chats: list[ChatInfo] | None = None) -> str:
        return self.state.label(chat_id, chats)

    def prompt(self) -> str:
        state = self.state
        with state.lock:
            client, current, user = state.client, state.current, state.me
        if state.link is Link.RECONNECTING:
            return f"{user or 'securechat'} (reconnecting...)> "
        if client is None or state.link is Link.OFFLINE:
            return f"{user or 'securechat'} (offline: /reconnect)> "
        if user is None:
            return "securechat> "
        return f"{user}@{state.label(current)}> " if current else f"{user}> "

    # --- connections and events -------------------------------------------------------------------------------

    def attach(self, client: TcpClient) -> None:
        """Use *client* (already connected) from now on."""
        with self.state.lock:
            self.state.client = client
            self.state.link = Link.CONNECTED
        self.state.changed()

    def open_connection(self) -> TcpClient:
        """Connect through ``connect``, routing the new client's events here (stale clients are ignored)."""
        return self._reconnector.open_connection()

    def initial_events(self, event: ev.Event) -> None:
        """Events of the first connection (made before the shell existed, generation 0)."""
        self._reconnector.initial_events(event)

    def on_event(self, event: ev.Event) -> None:
        """An event of the current connection (on its reader thread)."""
        if isinstance(event, ev.ConnectionClosed):
            self._reconnector.lost(event)
        else:
            self._lines.show(event)

    def describe(self, event: ev.Event) -> str | None:
        """One line for an event, or None if it needs no line. Every foreign string goes through printable."""
        return self._lines.describe(event)

    # --- input (main thread) ----------------------------------------------------------------------------------

    def handle(self, line: str) -> bool:
        """Run one typed line; returns False to quit. Never raises for anything a user or a server does."""
        return self._commands.handle(line)

    def _help(self, args: list[str]) -> None:
        self.state.say(HELP)

    def _quit_command(self, args: list[str]) -> bool:
        self.quit()
        return False

    def quit(self) -> None:
        """Log out (if logged in and connected) and close; safe to call twice and from Ctrl-C."""
        state = self.state
        with state.lock:
            if self._quitting:
                return
            self._quitting = True
            client = state.client
        self._reconnector.halt()
        if client is None:
            return
        try:
            if state.session is not None and state.link is Link.CONNECTED:
                client.logout()
                state.say("logged out")
        except (SecureChatError, OSError, TimeoutError):
            pass
        finally:
            client.close()
        self._reconnector.join()


__all__ = ["Shell"]
