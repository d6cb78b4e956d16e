"""TcpServer's I/O thread: one selector loop that accepts and reads every socket (docs/STYLE.md section 1.3).

Owns: the listening sockets (TCP and, if asked, WebSocket), the selector, and the socket pair that wakes it;
accepting (a WebSocket connection is announced to the engine only once its opening handshake completed, and
handshakes under way are capped, PROTOCOL.md 15.2), reading (a WebSocket connection's bytes go through its
layer first, connection.py), the WebSocket timers, and forgetting the sockets other threads closed. The bytes of
each round go to the engine as ONE ``Reads`` item, in the order they were read (docs/PERF-NOTES.md: a
selectors loop gave the lowest p99; one reader thread per connection contending for the GIL gave the class
session its tail). Must not: build or parse messages, or log anything but metadata (PROTOCOL.md 11).
"""

from __future__ import annotations

import itertools
import logging
import queue
import selectors
import socket
import ssl
import threading
import time

from .connection import Connection, Connections
from .engine_queue import Inbound, Opened, Reads
from .ws_handshake import Refusal, may_start_handshake
from .ws_server import ServerStack

log = logging.getLogger("securechat.server")

LISTEN_BACKLOG = 512           # socketserver's 5 stalls a burst of connects (docs/PERF-NOTES.md)
READ_SIZE_BYTES = 256 * 1024
ACCEPTS_PER_ROUND = 64
TIMER_SECONDS = 0.5
_BUSY = Refusal(503, "too many WebSocket handshakes under way")


def listen(host: str, port: int) -> socket.socket:
    """A non-blocking listening socket on (*host*, *port*); port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(LISTEN_BACKLOG)
    listener.setblocking(False)
    return listener


class IoLoop:
    """Run ``loop`` on one thread until *stopping* is set; ``close`` after that thread has ended.

    Args:
        listener: the TCP listener; ws_listener: the WebSocket listener, if any (PROTOCOL.md 15).
        tls: serve the WebSocket port as ``wss://``; ws_origins: the browser Origins allowed there.
    """

    def __init__(self, listener: socket.socket, ws_listener: socket.socket | None, *, inbound: queue.Queue[Inbound],
                 stopping: threading.Event, tls: ssl.SSLContext | None, ws_origins: frozenset[str]) -> None:
        self._listener, self._ws_listener = listener, ws_listener
        self._inbound = inbound
        self._stopping = stopping
        self._tls, self._ws_origins = tls, ws_origins
        self._ids = itertools.count(1)
        self._wake = socket.socketpair()  # wakes the loop out of select
        for end in self._wake:
            end.setblocking(False)
        self.connections = Connections(self.wake)
        self._selector = selectors.DefaultSelector()
        for sock in (listener, self._wake[0], *([ws_listener] if ws_listener is not None else [])):
            self._selector.register(sock, selectors.EVENT_READ, None)

    def wake(self) -> None:
        """Any thread: make the loop look again now (a socket was closed, or stopping)."""
        try:
            self._wake[1].send(b"\0")
        except OSError:  # buffer full (already awake) or closed (stopping)
            pass

    def close(self) -> None:
        """After the loop's thread has ended: close the listeners, the selector and the wake-up pair."""
        self._listener.close()
        if self._ws_listener is not None:
            self._ws_listener.close()
        self._selector.close()
        for end in self._wake:
            end.close()

    def loop(self) -> None:
        """Accept and read every socket; each round's reads go to the engine as ONE queue item, in order."""
        selector, listener, ws_listener, wake = self._selector, self._listener, self._ws_listener, self._wake[0]
        next_tick = time.monotonic() + TIMER_SECONDS
        while not self._stopping.is_set():
            try:
                ready = selector.select(TIMER_SECONDS)
            except OSError:  # pragma: no cover - a selector error would be a bug; keep serving
                log.exception("select failed")
                continue
            reads: list[tuple[int, bytes]] = []  # (peer, bytes); b"" is end of stream, as receive_data takes it
            for key, _ in ready:
                if isinstance(key.data, Connection):
                    self._read(key.data, reads)
                elif key.fileobj is wake:
                    try:
                        while wake.recv(4096):
                            pass
                    except OSError:
                        pass
                elif key.fileobj is listener:
                    self._accept(listener, reads, ws=False)
                elif ws_listener is not None and key.fileobj is ws_listener:
                    self._accept(ws_listener, reads, ws=True)
            if ws_listener is not None and time.monotonic() >= next_tick:
                next_tick = time.monotonic() + TIMER_SECONDS
                self._ws_timers(reads)
            self._reap_closed(reads)
            if reads:
                self._inbound.put(Reads(reads))  # blocks while the engine is behind: TCP backpressure
        for key in list(selector.get_map().values()):  # stopping: stop() closes the sockets; only forget them
            if isinstance(key.data, Connection):
                selector.unregister(key.fileobj)

    def _read(self, conn: Connection, reads: list[tuple[int, bytes]]) -> None:
        if conn.eof_sent:
            return
        try:
            data = conn.sock.recv(READ_SIZE_BYTES, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if conn.ws is not None:
            opened, items = conn.ws_receive(data, time.time())
            if opened:  # outside conn.lock: the queue may block until the engine, which takes conn.lock, catches up
                self._announce(conn, reads)
            reads.extend(items)
            if not data:
                self._unregister(conn, reads)
        elif not data:
            self._unregister(conn, reads)
        else:
            reads.append((conn.peer, data))

    def _accept(self, listener: socket.socket, reads: list[tuple[int, bytes]], *, ws: bool) -> None:
        for _ in range(ACCEPTS_PER_ROUND):  # a burst of connects: take what is waiting, then serve reads again
            if self._stopping.is_set():
                return
            try:
                sock, addr = listener.accept()
            except OSError:  # BlockingIOError: nobody else waiting; anything else: the listener is closing
                return
            sock.setblocking(True)  # writer threads use blocking sendall; the I/O thread reads with MSG_DONTWAIT
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer, address = next(self._ids), str(addr[0])
            stack = None
            if ws:  # the engine hears "open" once the opening handshake completed (_read)
                if not may_start_handshake(self.connections.pending_handshakes(), address):
                    log.warning("WebSocket handshakes: too many under way (from %s): refused", address)
                    try:
                        sock.send(_BUSY.response(), socket.MSG_DONTWAIT)
                    except OSError:
                        pass
                    sock.close()
                    continue
                stack = ServerStack(time.time(), tls=self._tls, allowed_origins=self._ws_origins)
            conn = Connection(peer, sock, address, self.connections, ws=stack)
            self._reap_closed(reads)  # a closed socket's fd may be this one's: forget the old registration first
            # Registered before the engine hears of it: from "open" on, the engine may close it at any time.
            self._selector.register(sock, selectors.EVENT_READ, conn)
            self.connections.add(conn)
            if conn.announced:
                self._announce(conn, reads)

    def _announce(self, conn: Connection, reads: list[tuple[int, bytes]]) -> None:
        conn.announced = True
        if reads:  # keep the engine's order: what was read before this connect goes first
            self._inbound.put(Reads(list(reads)))
            reads.clear()
        self._inbound.put(Opened(conn.peer, conn.address))

    def _ws_timers(self, reads: list[tuple[int, bytes]]) -> None:
        """Handshake deadline, keepalive pings, idle timeout and close grace of every WebSocket connection."""
        now = time.time()
        for conn in self.connections.snapshot():
            if conn.ws is not None:
                reads.extend(conn.ws_timer(now))

    def _unregister(self, conn: Connection, reads: list[tuple[int, bytes]]) -> None:
        """Forget *conn* in the selector (a closed socket is found by identity); its end of stream goes to
        *reads* once, after anything read from it before."""
        try:
            self._selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        if not conn.eof_sent:
            conn.eof_sent = True
            reads.append((conn.peer, b""))

    def _reap_closed(self, reads: list[tuple[int, bytes]]) -> None:
        """Unregister the sockets other threads closed (a per-connection reader would have seen an error)."""
        for conn in self.connections.take_closed():
            self._unregister(conn, reads)
