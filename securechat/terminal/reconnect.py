"""The terminal client after a lost connection: reconnecting with bounded backoff and logging in again.

Owns: which connection's events count (each connection has a generation; a replaced one's late events are
ignored), the background thread that connects again (waits ``RECONNECT_DELAYS``, the last one repeated, at most
``RECONNECT_ATTEMPTS`` times), logging in again with the password held in memory for this session only, and the
report of which chats survived. Must not: ask for a password, retry a login the server refused (that cannot get
better by waiting), or print a string someone else chose without ``display.printable``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..display import explain, printable
from ..errors import ErrorCode, SecureChatError
from ..keystore import PinFileError
from ..net.tcp_client import ChatInfo, RequestError, TcpClient
from ..protocol import events as ev
from ..protocol.messages import LOBBY_ID
from .labels import ACTIVE
from .state import Link, TerminalState
from .texts import reason

# Bounded backoff: waits between reconnection attempts, the last one repeated until the cap.
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
RECONNECT_ATTEMPTS = 12
SETTLE_SECONDS = 1.5  # after a new login, how long to wait for the server's chat keys before the survivor list

Connect = Callable[[Callable[[ev.Event], None]], TcpClient]


class ReconnectRefused(Exception):
    """Reconnecting cannot succeed by retrying (e.g. the login is refused): stop and say why."""


class Reconnector:
    """Opens connections through *connect* and routes the current one's events to *deliver*."""

    def __init__(self, state: TerminalState, connect: Connect, deliver: Callable[[ev.Event], None], *,
                 delays: tuple[float, ...] = RECONNECT_DELAYS, attempts: int = RECONNECT_ATTEMPTS) -> None:
        self._state, self._connect, self._deliver = state, connect, deliver
        self._delays, self._attempts = delays, attempts
        self._generation = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # --- which connection's events count ----------------------------------------------------------------------

    def open_connection(self) -> TcpClient:
        """Connect through ``connect``, routing the new client's events here (stale clients are ignored)."""
        with self._state.lock:
            self._generation += 1
            generation = self._generation
        return self._connect(lambda event: self._from_client(event, generation))

    def initial_events(self, event: ev.Event) -> None:
        """Events of the first connection (made before the terminal session existed, generation 0)."""
        self._from_client(event, 0)

    def _from_client(self, event: ev.Event, generation: int) -> None:
        if generation == self._generation:
            self._deliver(event)

    # --- losing the connection and getting it back ------------------------------------------------------------

    def lost(self, event: ev.ConnectionClosed) -> None:
        """The connection closed: unless we are quitting (halted), say so and start reconnecting in the background."""
        state = self._state
        with state.lock:
            if self._stop.is_set() or state.link is not Link.CONNECTED:
                return
            state.link = Link.RECONNECTING
            previous = self._active_before()
            thread = threading.Thread(target=self._loop, args=(previous,), name="securechat-reconnect", daemon=True)
            self._thread = thread
        code = event.code or ErrorCode.CONNECTION_LOST
        why = printable(event.message) if code == ErrorCode.CONNECTION_LOST else explain(code, event.message)
        state.say(f"* {state.stamp()} connection to the server lost ({why}); reconnecting (what you type now "
                  "is not sent)")
        state.changed()
        thread.start()

    def _loop(self, previous: list[ChatInfo]) -> None:
        state = self._state
        labels = {c.chat_id: state.label(c.chat_id, previous) for c in previous}
        for attempt in range(1, self._attempts + 1):
            delay = self._delays[min(attempt - 1, len(self._delays) - 1)]
            if self._stop.wait(delay):
                return
            failure = self._attempt()
            if failure is None:
                self._report_survivors(previous, labels)
                return
            if isinstance(failure, ReconnectRefused):
                state.say(f"! {failure}")
                break
            if attempt in (1, 3) or attempt % 5 == 0:
                state.say(f"  ... still reconnecting (attempt {attempt} of {self._attempts}): {reason(failure)}")
        with state.lock:
            state.link = Link.OFFLINE
            self._thread = None
        state.say("! could not reconnect; type /reconnect to try again, or /quit")
        state.changed()

    def _active_before(self) -> list[ChatInfo]:
        """The active chats of the connection being replaced (to tell later which survived)."""
        with self._state.lock:
            return [c for c in self._state.chats_safely() if c.state == ACTIVE]

    def _attempt(self) -> BaseException | None:
        """One connection and login: None when it worked, else why not (ReconnectRefused: stop trying)."""
        try:
            self._once()
        except (ReconnectRefused, SecureChatError, OSError, TimeoutError) as exc:
            return exc
        return None

    def _once(self) -> None:
        state = self._state
        client = self.open_connection()
        session = state.session
        if session is not None:
            try:
                client.load_pins(state.store.load_pins(session.username))
                client.login(session.username, session.password, session.keys)
            except PinFileError as exc:
                client.close()
                raise ReconnectRefused(str(exc.args[0])) from None
            except RequestError as exc:
                client.close()
                if exc.code is ErrorCode.AUTH_FAILED:
                    raise ReconnectRefused("the server no longer accepts your login (was it reset?): "
                                           "/login again or /register") from None
                raise
            except BaseException:
                client.close()
                raise
        with state.lock:
            state.client = client
            state.link = Link.CONNECTED
            self._thread = None
        state.changed()

    def _report_survivors(self, previous: list[ChatInfo], labels: dict[str, str]) -> None:
        state = self._state
        client = state.client
        who = f" as {state.me}" if state.me is not None else ""
        if client is None:
            return
        ids = {c.chat_id for c in previous}
        deadline = time.monotonic() + SETTLE_SECONDS
        while time.monotonic() < deadline and not ids <= {c.chat_id for c in client.chat_list()}:
            time.sleep(0.1)
        now = {c.chat_id for c in client.chat_list() if c.state == ACTIVE}
        survived = [labels[c] for c in labels if c in now]
        lost = [labels[c] for c in labels if c not in now]
        state.say(f"* {state.stamp()} reconnected{who}")
        if survived:
            state.say(f"  chats that survived: {', '.join(survived)}")
        if lost:
            state.say(f"  chats that were lost: {', '.join(lost)} (the server ends your membership when the "
                      "connection drops: /chat NAME opens a new one)")
        with state.lock:
            if state.current is not None and state.current not in now:
                state.current = LOBBY_ID if LOBBY_ID in now else None
        state.changed()

    def reconnect_now(self, args: list[str]) -> None:
        """/reconnect: one attempt now, in the foreground (after reconnecting gave up)."""
        state = self._state
        if state.link is Link.CONNECTED:
            state.say("already connected")
            return
        if state.link is Link.RECONNECTING:
            state.say("already reconnecting; wait a moment")
            return
        previous = self._active_before()
        labels = {c.chat_id: state.label(c.chat_id, previous) for c in previous}
        failure = self._attempt()
        if failure is None:
            self._report_survivors(previous, labels)
        elif isinstance(failure, ReconnectRefused):
            state.say(f"! {failure}")
        else:
            state.say(f"! still cannot reach the server: {reason(failure)}")

    def halt(self) -> None:
        """Stop reconnecting for good (we are quitting): a waiting attempt does not start, a lost connection is
        not reconnected."""
        self._stop.set()

    def join(self) -> None:
        """Wait (bounded) for the background thread to end, unless we are that thread."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(2.0)


__all__ = ["RECONNECT_ATTEMPTS", "RECONNECT_DELAYS", "ReconnectRefused", "Reconnector", "SETTLE_SECONDS"]
