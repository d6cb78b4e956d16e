"""TcpClient: a blocking client library over one ClientProtocol, with a reader thread (docs/STYLE.md section 8).

Owns: the socket, the reader thread, and matching replies to requests by ``rid``. Commands either return at
once (``send``) or wait for the server's answer with a timeout (``login``, ``who``...), raising
``RequestError`` on an error reply. Every event is passed to ``on_event``, which is how the CLI and the GUI see
pushes (presence, chat keys, messages), and put on ``events``, a *bounded* queue for drivers that poll
(``wait_for``, the demos): when nobody reads it, the oldest events are dropped (``dropped_events`` counts them),
so memory stays bounded however long the session and however chatty the peers. Protocol state belongs to the
reader thread: other threads read it only through the locked accessors below (``username``, ``chat_list``...).
Must not: make protocol decisions; it only moves bytes and waits.
"""

from __future__ import annotations

import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

from ..errors import ErrorCode, SecureChatError
from ..protocol import events as ev
from ..protocol.client import ClientProtocol
from ..protocol.vocabulary import ChatMode, KeyExchange
from ..protocol.identity import UserKeys
from ..protocol.lab import LabMode
from .transport import Transport, parse_url, tcp_url

E = TypeVar("E", bound=ev.Event)
READ_SIZE_BYTES = 256 * 1024
DEFAULT_TIMEOUT_SECONDS = 30.0  # a login at the OWASP scrypt cost behind a queue can take a few seconds
# How many unread events ``events`` keeps: plenty for a poller between two reads, small enough that a session
# nobody polls (the CLI and GUI use on_event) holds a few hundred events at most, never the whole session.
EVENT_QUEUE_LIMIT = 1024
EVENT_QUEUE_LIMIT_WITH_CALLBACK = 64


@dataclass(frozen=True)
class ChatInfo:
    """A snapshot of one chat, taken under the client's lock (safe to read from any thread)."""

    chat_id: str
    mode: ChatMode
    suite: str
    epoch: int
    members: tuple[str, ...]
    state: str


class RequestError(SecureChatError):
    """The server answered a request with an ``error`` (its code and text are kept)."""

    def __init__(self, failure: ev.RequestFailed) -> None:
        try:
            code = ErrorCode(failure.code)
        except ValueError:
            code = ErrorCode.INTERNAL_ERROR
        super().__init__(failure.message, code)
        self.failure = failure


class ConnectionClosedError(SecureChatError):
    code = ErrorCode.CONNECTION_LOST


class ChatAbortedError(SecureChatError):
    """A contributory key agreement for the chat being waited on aborted (its code is kept)."""

    def __init__(self, aborted: ev.ChatAborted) -> None:
        try:
            code = ErrorCode(aborted.code)
        except ValueError:
            code = ErrorCode.INTERNAL_ERROR
        super().__init__(f"key agreement of chat {aborted.chat_id[:8]} epoch {aborted.epoch} aborted: "
                         f"{aborted.code} ({aborted.reason})", code)
        self.aborted = aborted


class TcpClient:
    """One connection to a securechat server.

    Args:
        server_key: pinned (SPKI DER, scheme) of the server, or None to trust on first use.
        on_event: called from the reader thread with every event (keep it quick; hand off to a queue).
        trace: called with every frame at every layer (the GUI's wire pane, the demo's excerpts).
        url: where to connect instead of *host*/*port*: ``tcp://HOST:PORT``, ``ws://HOST:PORT/securechat`` or
            ``wss://...`` (PROTOCOL.md 15); *tls* is the context for ``wss://`` (default: the system's CAs).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 5050,
        *,
        url: str | None = None,
        tls: ssl.SSLContext | None = None,
        server_key: tuple[bytes, str] | None = None,
        on_event: Callable[[ev.Event], None] | None = None,
        trace: Callable[[ev.TraceEntry], None] | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        pins: dict[str, str] | None = None,
        key_exchange: str = KeyExchange.X25519,
        lab: LabMode | None = None,
        keylog: Callable[[bytes, bytes, bytes], None] | None = None,
        auto_accept_invitations: bool = True,
        clock: Callable[[], float] = time.time,
        event_queue_limit: int | None = None,
    ) -> None:
        # pins: peers' identity fingerprints (username -> fingerprint), shared with the protocol, which adds
        # to it on first sight (PeerKeyPinned); the driver persists it (KeyStore.save_pins).
        # key_exchange: KeyExchange.X25519 (default) or X25519_MLKEM768, the post-quantum hybrid (PROTOCOL.md 4.4)
        # lab: an explicit LabMode (PROTOCOL.md 16), never on by default; keylog: securechat.labs.keylog
        # auto_accept_invitations: this program's policy for invitations (PROTOCOL.md 7.11); the terminal client
        # and the GUI pass False and ask the user (answer_invitation)
        self.protocol = ClientProtocol(server_key=server_key, trace=trace, pins=pins, key_exchange=key_exchange,
                                       lab=lab, keylog=keylog, auto_accept_invitations=auto_accept_invitations)
        # clock: the wall clock handed to the protocol (certificate validity, envelope timestamps); injectable
        # so tests can run a client whose clock is minutes off the server's (PROTOCOL.md 6.3).
        self._clock = clock
        limit = event_queue_limit or (EVENT_QUEUE_LIMIT if on_event is None else EVENT_QUEUE_LIMIT_WITH_CALLBACK)
        self.events: queue.Queue[ev.Event] = queue.Queue(maxsize=limit)
        self.dropped_events = 0
        self._on_event = on_event
        self._timeout = timeout
        self._lock = threading.Lock()
        self._replies: dict[int, ev.Event] = {}
        self._waiting: set[int] = set()  # rids a caller waits for; other replies are not kept
        self._cond = threading.Condition()
        self.handshake: ev.HandshakeCompleted | None = None
        self.closed: ev.ConnectionClosed | None = None
        self._keyed: dict[str, int] = {}  # chat id -> highest epoch a ChatKeyed reported (the key is usable)
        self._aborted: dict[str, ev.ChatAborted] = {}  # chat id -> the last ChatAborted for it
        self.endpoint = parse_url(url if url is not None else tcp_url(host, port))
        self._transport = Transport(self.endpoint, timeout=timeout, tls=tls)
        self._reader = threading.Thread(target=self._read_loop, name="securechat-client-read", daemon=True)
        with self._lock:
            self.protocol.connect()
            self._transport.send(self.protocol.data_to_send())
        self._reader.start()
        self._wait(lambda: self.handshake is not None, "handshake")

    @property
    def transport(self) -> Transport:
        """The connection under the protocol: TCP, or WebSocket (PROTOCOL.md 15); ``transport.sock`` is the socket."""
        return self._transport

    @property
    def _sock(self) -> socket.socket:  # the name older tests and scripts used for the raw socket
        return self._transport.sock

    # --- commands -------------------------------------------------------------------------------------------

    def register(self, username: str, password: str, keys: UserKeys) -> ev.RegistrationSucceeded:
        return self._call(lambda p: p.register(username, password, keys), ev.RegistrationSucceeded)

    def login(self, username: str, password: str, keys: UserKeys) -> ev.LoggedIn:
        return self._call(lambda p: p.login(username, password, keys), ev.LoggedIn)

    def renew_certificate(self) -> ev.CertificateRenewed:
        """PROTOCOL.md 6.6: a new certificate for the same keys (in its last 30 days); raises RequestError."""
        return self._call(lambda p: p.renew_certificate(), ev.CertificateRenewed)

    def who(self) -> tuple[str, ...]:
        return self._call(lambda p: p.who(), ev.WhoListed).online

    def status(self, username: str) -> bool:
        return self._call(lambda p: p.status(username), ev.StatusReported).online

    def open_chat(self, members: list[str] | tuple[str, ...], *, mode: str = ChatMode.SERVER_KEY,
                  suite: str = "aes-256-gcm", wait_for_key: bool = True) -> ev.ChatOpened:
        """Open a chat and wait until it is usable: for contributory modes only after the commit, reveal and
        confirmation rounds (a ChatKeyed for it); raises ChatAbortedError if the agreement aborts. With
        ``wait_for_key=False`` it returns on the server's ``chat_opened`` (the caller waits for the key)."""
        opened = self._call(lambda p: p.open_chat(members, mode=mode, suite=suite), ev.ChatOpened)
        if wait_for_key:
            self.wait_for_key(opened.chat_id, 1)
        return opened

    def accept_key_change(self, username: str, fingerprint: str) -> None:
        """The user compared the OFFERED key's safety number out of band: pin exactly *fingerprint*
        (PROTOCOL.md 7.9). Raises LocalProtocolError, pinning nothing, if the server's key differs."""
        def command(p: ClientProtocol) -> int:
            p.accept_key_change(username, fingerprint)
            return 0  # no reply to wait for: PeerKeyPinned is queued at once
        self._command(command)

    def safety_number(self, username: str, *, offered: bool = False) -> str:
        with self._lock:
            return self.protocol.safety_number(username, offered=offered)

    def pending_key_changes(self) -> dict[str, tuple[str, str]]:
        """name -> (pinned fingerprint, offered fingerprint) for every change waiting for a decision."""
        with self._lock:
            return self.protocol.pending_key_changes()

    @property
    def pins(self) -> dict[str, str]:
        """A copy of the pinned peer fingerprints (to persist)."""
        with self._lock:
            return dict(self.protocol.pins)

    def load_pins(self, pins: dict[str, str]) -> None:
        """Replace the pinned fingerprints in place (before login: the protocol's chat book shares the dict)."""
        with self._lock:
            self.protocol.pins.clear()
            self.protocol.pins.update(pins)

    def chat_mode(self, chat_id: str) -> ChatMode | None:
        with self._lock:
            chat = self.protocol.chats.get(chat_id)
            return None if chat is None else chat.mode

    def invite(self, chat_id: str, username: str) -> ev.ChatInvited:
        return self._call(lambda p: p.invite(chat_id, username), ev.ChatInvited)

    def answer_invitation(self, chat_id: str, accept: bool) -> ev.InvitationAnswered:
        """Accept or decline an invitation received as an InvitationReceived event (PROTOCOL.md 7.11)."""
        return self._call(lambda p: p.answer_invitation(chat_id, accept), ev.InvitationAnswered)

    def leave(self, chat_id: str) -> ev.ChatLeft:
        return self._call(lambda p: p.leave(chat_id), ev.ChatLeft)

    def send(self, chat_id: str, text: str) -> int:
        """Encrypt, sign and send; does not wait. Returns the request id: a refusal arrives later as a
        RequestFailed event with that ``rid`` (and ``ref`` "chat_send")."""
        return self._command(lambda p: p.send_chat(chat_id, text))

    def logout(self) -> None:
        try:
            self._call(lambda p: p.logout(), ev.LoggedOut)
        finally:
            self.close()

    def close(self) -> None:
        """Close the socket and join the reader thread."""
        self._transport.close()
        if self._reader.is_alive() and threading.current_thread() is not self._reader:
            self._reader.join(5.0)

    def __enter__(self) -> TcpClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def chat_epoch(self, chat_id: str) -> int:
        with self._lock:
            chat = self.protocol.chats.get(chat_id)
            return 0 if chat is None else chat.epoch

    def wait_for(self, kind: type[E], predicate: Callable[[E], bool] | None = None,
                 timeout: float | None = None) -> E:
        """Take events from ``events`` until one of type *kind* matching *predicate* arrives; return it.

        Events taken on the way are discarded (they were also passed to ``on_event``). Raises TimeoutError.
        """
        deadline = time.monotonic() + (self._timeout if timeout is None else timeout)
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                continue
            if isinstance(event, kind) and (predicate is None or predicate(event)):
                return event
        raise TimeoutError(f"no {kind.__name__} within the timeout")

    def wait_for_key(self, chat_id: str, epoch: int) -> None:
        """Wait until *chat_id* is usable at *epoch* or later: a ChatKeyed for it arrived (server-key: key
        unwrapped; contributory: every member confirmed; hybrid: membership verified). Raises ChatAbortedError
        if a key agreement for that chat at *epoch* or later aborted."""
        def ready() -> bool:
            aborted = self._aborted.get(chat_id)
            if aborted is not None and aborted.epoch >= epoch and self._keyed.get(chat_id, 0) < aborted.epoch:
                raise ChatAbortedError(aborted)
            return self._keyed.get(chat_id, 0) >= epoch
        self._wait(ready, f"key of {chat_id} epoch {epoch}")

    def keyed_epoch(self, chat_id: str) -> int:
        """The highest epoch of *chat_id* reported usable (ChatKeyed), 0 if none."""
        with self._cond:
            return self._keyed.get(chat_id, 0)

    @property
    def username(self) -> str | None:
        """The logged-in user's name (None before login)."""
        with self._lock:
            return self.protocol.username

    @property
    def logged_in(self) -> bool:
        with self._lock:
            return self.protocol.username is not None and not self.protocol.closed

    def identity_fingerprint(self) -> str | None:
        """Our own certificate's identity fingerprint (None before login)."""
        with self._lock:
            cert = self.protocol.certificate
            return None if cert is None else cert.identity_fingerprint()

    def chat_list(self) -> list[ChatInfo]:
        """Snapshots of every chat the protocol knows, in the order it learned them."""
        with self._lock:
            chats = list(self.protocol.chats.values())
            return [ChatInfo(chat_id=c.chat_id, mode=c.mode, suite=c.suite, epoch=c.epoch,
                             members=tuple(c.members), state=c.state.value)
                    for c in chats]

    def chat_info(self, chat_id: str) -> ChatInfo | None:
        return next((c for c in self.chat_list() if c.chat_id == chat_id), None)

    def open_invitations(self) -> list[str]:
        """The chat ids of the invitations to us not answered yet (PROTOCOL.md 7.11), oldest first."""
        with self._lock:
            return list(self.protocol.invitations)

    # --- internals --------------------------------------------------------------------------------------------

    def _command(self, command: Callable[[ClientProtocol], int], *, wait: bool = False) -> int:
        with self._lock:
            rid = command(self.protocol)
            if wait:
                with self._cond:
                    self._waiting.add(rid)
            data = self.protocol.data_to_send()
            if data:
                try:
                    self._transport.send(data)
                except OSError as exc:  # the server went away between two commands
                    raise ConnectionClosedError(f"connection lost while sending ({exc.strerror or exc})") from None
        return rid

    def _call(self, command: Callable[[ClientProtocol], int], expect: type[E]) -> E:
        """Run *command*, wait for its reply (matched by rid) and return it as the *expect* event it must be."""
        rid = self._command(command, wait=True)
        try:
            self._wait(lambda: rid in self._replies, f"reply to request {rid}")
        finally:
            with self._cond:
                self._waiting.discard(rid)
        with self._cond:
            reply = self._replies.pop(rid)
        if isinstance(reply, ev.RequestFailed):
            raise RequestError(reply)
        if not isinstance(reply, expect):  # the protocol pairs each request with one reply type
            raise SecureChatError(f"unexpected reply {type(reply).__name__} to request {rid}")
        return reply

    def _wait(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self._timeout
        with self._cond:
            while not ready():
                if self.closed is not None:
                    raise ConnectionClosedError(f"connection closed while waiting for {what}: "
                                                f"{self.closed.code} {self.closed.message}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no {what} within {self._timeout} s")
                self._cond.wait(min(remaining, 0.5))

    def _read_loop(self) -> None:
        while True:
            data = self._transport.recv()
            with self._lock:
                self.protocol.receive_data(data, self._clock())
                events = list(iter(self.protocol.next_event, None))
                outgoing = self.protocol.data_to_send()
                if outgoing:
                    try:
                        self._transport.send(outgoing)
                    except OSError:
                        pass
            for event in events:
                self._dispatch(event)
            if not data or self.closed is not None:
                return

    def _enqueue(self, event: ev.Event) -> None:
        """Put *event* on ``events``; if it is full (nobody reads it), drop the oldest first."""
        while True:
            try:
                self.events.put_nowait(event)
                return
            except queue.Full:
                try:
                    self.events.get_nowait()
                    self.dropped_events += 1
                except queue.Empty:
                    pass

    def _dispatch(self, event: ev.Event) -> None:
        with self._cond:
            if isinstance(event, ev.HandshakeCompleted):
                self.handshake = event
            elif isinstance(event, ev.ConnectionClosed):
                self.closed = event
            elif isinstance(event, ev.ChatKeyed):
                self._keyed[event.chat_id] = max(self._keyed.get(event.chat_id, 0), event.epoch)
            elif isinstance(event, ev.ChatAborted):
                self._aborted[event.chat_id] = event
            rid = getattr(event, "rid", None)  # a reply carries its request's id (PROTOCOL.md 3.2)
            if isinstance(rid, int) and rid in self._waiting:
                self._replies[rid] = event
            self._cond.notify_all()
        self._enqueue(event)
        if self._on_event is not None:
            self._on_event(event)
