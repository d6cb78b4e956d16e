"""One accepted connection of TcpServer and the table of them (docs/STYLE.md section 1.3, PROTOCOL.md 10, 15).

Owns: ``Connection``: a socket, its lock, its outbound backlog and the writer thread started only when a slow
reader leaves one (bounded: past MAX_BACKLOG_BYTES that client alone is disconnected), the graceful close (after
the bytes already queued), and, for a WebSocket connection, its ``ServerStack`` (ws_server.py): what the stack
produced is written and the stack's end becomes the connection's. ``Connections``: every open connection by
peer id, and the ones closed since the I/O thread last looked (it must forget their selector registrations before
it accepts a socket on the same fd). Must not: build or parse messages, or log anything but metadata.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable

from ..errors import ErrorCode
from .ws_endpoint import close_code_for
from .ws_server import ServerStack

log = logging.getLogger("securechat.server")

WRITE_CHUNK_BYTES = 256 * 1024
MAX_BACKLOG_BYTES = 8 * 1024 * 1024  # docs/THREATS.md 16: a reader this far behind is disconnected


class Connections:
    """Every open connection by peer id; the closed ones wait in a list until the I/O thread unregisters them."""

    def __init__(self, wake_io: Callable[[], None]) -> None:
        self.lock = threading.Lock()
        self._open: dict[int, Connection] = {}
        self._closed: list[Connection] = []
        self._wake_io = wake_io

    def add(self, conn: Connection) -> None:
        with self.lock:
            self._open[conn.peer] = conn

    def get(self, peer: int) -> Connection | None:
        """(any thread; a dict read is atomic) The open connection of *peer*, if any."""
        return self._open.get(peer)

    def snapshot(self) -> list[Connection]:
        with self.lock:
            return list(self._open.values())

    def __len__(self) -> int:
        with self.lock:
            return len(self._open)

    def pending_handshakes(self) -> list[str]:
        """The addresses of the WebSocket connections whose opening handshake is still under way."""
        with self.lock:
            return [c.address for c in self._open.values() if c.ws is not None and not c.announced]

    def take_closed(self) -> list[Connection]:
        """(I/O thread) The connections closed since the last call."""
        with self.lock:
            closed, self._closed = self._closed, []
        return closed

    def forget(self, conn: Connection) -> None:
        """(conn.lock held, socket not yet closed) Queued before the close: the I/O thread unregisters the socket
        before it can accept another on this fd."""
        with self.lock:
            self._closed.append(conn)
            self._open.pop(conn.peer, None)

    def wake_io(self) -> None:
        self._wake_io()


class Connection:
    """One accepted socket. Every write and the close happen under ``lock``; the I/O thread alone reads."""

    def __init__(self, peer: int, sock: socket.socket, address: str, table: Connections,
                 ws: ServerStack | None = None) -> None:
        self.peer, self.sock, self.address = peer, sock, address
        self.lock = threading.Lock()
        self._table = table
        self._backlog = bytearray()
        self._wakeup: threading.Condition | None = None
        self.writer: threading.Thread | None = None
        self._closing = False
        self.closed = False
        self.eof_sent = False  # the engine was told the stream ended (only the I/O thread reads or sets it)
        self.ws = ws  # a WebSocket connection (PROTOCOL.md 15): the layer between socket and engine
        self.announced = ws is None  # the engine heard "open" (a WebSocket connection: once its handshake completed)
        self._ws_ended = False  # the engine was told the WebSocket session ended

    # --- writing ----------------------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Try a non-blocking send first; leave the rest to the connection's writer thread."""
        with self.lock:
            if self.closed:
                return
            if self.ws is not None:  # PROTOCOL.md 15.3: each frame as one binary message
                self.ws.send(data)
                data = self.ws.data_to_send()
                if not data:
                    return
            self._send_locked(data)

    def _send_locked(self, data: bytes) -> None:
        if not self._backlog:
            try:
                sent = self.sock.send(data, socket.MSG_DONTWAIT)
            except BlockingIOError:
                sent = 0
            except OSError:
                return
            data = data[sent:]
            if not data:
                return
        if len(self._backlog) + len(data) > MAX_BACKLOG_BYTES:
            log.warning("peer %d: slow reader disconnected (backlog over %d bytes)", self.peer, MAX_BACKLOG_BYTES)
            self._backlog.clear()
            self._close_locked()
            return
        self._backlog += data
        if self._wakeup is None:
            self._wakeup = threading.Condition(self.lock)
            self.writer = threading.Thread(target=self._write_loop, name=f"securechat-write-{self.peer}",
                                           daemon=True)
            self.writer.start()
        self._wakeup.notify()

    def _write_loop(self) -> None:
        wakeup = self._wakeup
        assert wakeup is not None
        while True:
            with self.lock:
                while not self._backlog and not self.closed and not self._closing:
                    wakeup.wait(1.0)
                if self.closed or (self._closing and not self._backlog):
                    self._close_locked()
                    return
                chunk = bytes(self._backlog[:WRITE_CHUNK_BYTES])
            try:
                self.sock.sendall(chunk)  # blocks only this thread; the engine never waits for it
            except OSError:
                with self.lock:
                    self._close_locked()
                return
            with self.lock:
                del self._backlog[:len(chunk)]

    # --- closing ----------------------------------------------------------------------------------------------

    def finish(self, error: ErrorCode | None = None) -> None:
        """Close after the bytes already queued (a final error frame, or bye) are written; a WebSocket connection
        first sends a close frame naming *error* (PROTOCOL.md 15.6)."""
        with self.lock:
            if self.ws is not None and not self.closed:
                self.ws.close(close_code_for(error), error.value if error is not None else "")
                out = self.ws.data_to_send()
                if out:
                    self._send_locked(out)
            self._finish_locked()

    def _finish_locked(self) -> None:
        if self.closed:
            return
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.notify()  # the writer closes once the backlog is written
        else:
            self._close_locked()

    def close(self) -> None:
        """Close now (stopping, or the engine is gone): what is queued is dropped."""
        with self.lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._table.forget(self)
        self.sock.close()
        self._table.wake_io()
        if self._wakeup is not None:
            self._wakeup.notify()

    # --- a WebSocket connection (PROTOCOL.md 15; the layers are ws_server.py) ------------------------------

    def ws_receive(self, data: bytes, now: float) -> tuple[bool, list[tuple[int, bytes]]]:
        """(I/O thread) Bytes read (b"" at end of stream) through the WebSocket layer. Returns (the handshake
        just completed: announce the connection first, the securechat stream to feed the engine after that)."""
        stack = self.ws
        assert stack is not None
        with self.lock:
            if self.closed:
                return False, []
            stack.receive(data, now)
            opened = stack.ws.take_opened()
            return opened, self._ws_progress(opened)

    def ws_timer(self, now: float) -> list[tuple[int, bytes]]:
        """(I/O thread) The handshake deadline, keepalive pings, idle timeout and close grace (a timer never
        completes a handshake); returns what to feed the engine."""
        stack = self.ws
        assert stack is not None
        with self.lock:
            if self.closed:
                return []
            stack.handle_timer(now)
            return self._ws_progress(False)

    def _ws_progress(self, opened: bool) -> list[tuple[int, bytes]]:
        """(lock held) Write what the layer produced and close if it is done."""
        stack = self.ws
        assert stack is not None
        items: list[tuple[int, bytes]] = []
        app = stack.ws.app_data()
        if app:
            items.append((self.peer, app))
        out = stack.data_to_send()
        if out:
            self._send_locked(out)
        if (self.announced or opened) and not stack.opened and not self._ws_ended:
            self._ws_ended = True
            items.append((self.peer, b""))  # the WebSocket session ended: end of stream for the engine
        if stack.finished and not self.closed:
            self._finish_locked()
        return items
