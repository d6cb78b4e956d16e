"""TcpServer: the threaded socket driver around one ServerProtocol (docs/STYLE.md section 8, docs/PERF-NOTES.md).

Owns: sockets and threads. ONE I/O thread accepts and reads every socket through a selector and moves the bytes
of each round into the engine's queue as one item (docs/PERF-NOTES.md: a selectors loop gave the lowest p99; 300 reader
threads contending for the GIL gave the class session its tail); ONE engine thread owns the ServerProtocol (so
it needs no lock), opens and seals every record and fans out; two
worker pools run the slow jobs (scrypt logins and registrations; chat key wraps) so no lock is ever held
during slow crypto and one login never freezes the relay; a writer thread per connection is started only
when a slow reader leaves a backlog, which is bounded (past it that client alone is disconnected).
Must not: build or parse messages, or log anything but metadata (PROTOCOL.md 11).
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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..errors import ErrorCode
from ..protocol import events as ev
from ..protocol.jobs import ChatKeyJob, FairQueue, Job, ServerKey
from ..protocol.limits import ServerConfig
from ..protocol.vocabulary import JobOutcome
from ..protocol.registry import Registry
from ..protocol.server import ServerProtocol
from .server_log import EventDescriber
from . import ws as websocket
from .ws import ServerStack, close_code_for, http_error

log = logging.getLogger("securechat.server")

LISTEN_BACKLOG = 512           # socketserver's 5 stalls a burst of connects (docs/PERF-NOTES.md)
READ_SIZE_BYTES = 256 * 1024
MAX_BACKLOG_BYTES = 8 * 1024 * 1024  # docs/THREATS.md 16: a reader this far behind is disconnected
INBOUND_QUEUE_ITEMS = 20_000   # readers block (TCP backpressure) rather than grow memory without bound
TIMER_SECONDS = 0.5


@dataclass(eq=False)
class _Conn:
    peer: int
    sock: socket.socket
    address: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    backlog: bytearray = field(default_factory=bytearray)
    wakeup: threading.Condition | None = None
    writer: threading.Thread | None = None
    closing: bool = False
    closed: bool = False
    eof_sent: bool = False  # the engine was told the stream ended (only the I/O thread reads or sets it)
    ws: ServerStack | None = None  # a WebSocket connection (PROTOCOL.md 15): the layer between socket and engine
    announced: bool = True  # the engine heard "open" (a WebSocket connection: once its handshake completed)
    ws_ended: bool = False  # the engine was told the WebSocket session ended


_WS_LISTENER = "ws"  # selector data of the WebSocket listener



# What the I/O thread and the job pools hand the engine thread, one typed item each.
@dataclass(frozen=True)
class _Reads:
    reads: list[tuple[int, bytes]]  # (peer, bytes read; b"" for end of stream), in the order they were read


@dataclass(frozen=True)
class _Opened:
    peer: int
    address: str


@dataclass(frozen=True)
class _JobDone:
    job: Job


@dataclass(frozen=True)
class _Stop:
    pass


_Inbound = _Reads | _Opened | _JobDone | _Stop

class TcpServer:
    """A securechat server on a TCP port. ``start()`` returns once it listens; ``stop()`` ends every thread."""

    def __init__(
        self,
        *,
        server_key: ServerKey,
        registry: Registry,
        host: str = "127.0.0.1",
        port: int = 0,
        config: ServerConfig = ServerConfig(),
        password_workers: int = 2,
        on_event: Callable[[ev.ServerEvent], None] | None = None,
        trace: Callable[[ev.TraceEntry], None] | None = None,
        relay_events: bool = True,
        ws_port: int | None = None,
        tls: ssl.SSLContext | None = None,
        ws_origins: frozenset[str] = frozenset(),
    ) -> None:
        # ws_port: also accept WebSocket clients there (PROTOCOL.md 15; 0 picks a free port), fed to the SAME
        # ServerProtocol; tls: serve that port as wss:// (TLS in memory, ws.TlsLayer); ws_origins: browser Origins
        # allowed (requests without Origin are always allowed, PROTOCOL.md 15.2).
        self.protocol = ServerProtocol(server_key=server_key, registry=registry, config=config, trace=trace,
                                       relay_events=relay_events)
        self._host, self._port = host, port
        self._on_event = on_event
        self._describer = EventDescriber()  # only the engine thread reports
        self._inbound: queue.Queue[_Inbound] = queue.Queue(INBOUND_QUEUE_ITEMS)
        self._conns: dict[int, _Conn] = {}
        self._conns_lock = threading.Lock()
        self._ids = itertools.count(1)
        # PROTOCOL.md 6.2 "fair admission": password jobs wait in one queue per address, served round robin.
        self._password_jobs: FairQueue[Job] = FairQueue()
        self._password_ready = threading.Condition()
        self._password_workers = password_workers
        self._key_pool = ThreadPoolExecutor(1, thread_name_prefix="securechat-wrap")
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._selector: selectors.BaseSelector | None = None
        self._closed_conns: list[_Conn] = []  # closed by the engine or a writer; the I/O thread unregisters them
        self._wake: tuple[socket.socket, socket.socket] | None = None  # wakes the I/O thread out of select
        self.address: tuple[str, int] = (host, port)
        self._ws_port, self._tls, self._ws_origins = ws_port, tls, ws_origins
        self._ws_listener: socket.socket | None = None
        self.ws_address: tuple[str, int] | None = None

    # --- lifecycle ----------------------------------------------------------------------------------------

    def _listen(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self._host, port))
        listener.listen(LISTEN_BACKLOG)
        listener.setblocking(False)
        return listener

    def start(self) -> TcpServer:
        listener = self._listener = self._listen(self._port)
        self.address = listener.getsockname()[:2]
        if self._ws_port is not None:
            try:
                self._ws_listener = self._listen(self._ws_port)
            except OSError:
                listener.close()
                raise
            self.ws_address = self._ws_listener.getsockname()[:2]
        self._wake = socket.socketpair()
        for end in self._wake:
            end.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ, None)
        self._selector.register(self._wake[0], selectors.EVENT_READ, None)
        if self._ws_listener is not None:
            self._selector.register(self._ws_listener, selectors.EVENT_READ, _WS_LISTENER)
        workers = [(self._password_loop, f"scrypt-{i}") for i in range(self._password_workers)]
        for target, name in ((self._io_loop, "io"), (self._engine_loop, "engine"), *workers):
            thread = threading.Thread(target=target, name=f"securechat-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("listening on %s:%d", *self.address)
        if self.ws_address is not None:
            log.info("WebSocket%s endpoint on %s:%d", " (TLS)" if self._tls else "", *self.ws_address)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and every connection, then join every thread this server started."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        with self._password_ready:
            self._password_jobs.clear()  # queued password work is dropped, as cancel_futures did
            self._password_ready.notify_all()
        self._wake_io()
        with self._conns_lock:
            conns = list(self._conns.values())
        for conn in conns:
            self._close_socket(conn)
        self._inbound.put(_Stop())
        for thread in self._threads:
            thread.join(timeout)
        with self._conns_lock:  # accepted by the I/O thread while stop() began
            late = [conn for conn in self._conns.values() if conn not in conns]
        for conn in late:
            self._close_socket(conn)
        conns += late
        for conn in conns:
            if conn.writer is not None:
                conn.writer.join(timeout)
        self._key_pool.shutdown(wait=True, cancel_futures=True)
        if self._listener is not None:
            self._listener.close()
        if self._ws_listener is not None:
            self._ws_listener.close()
        if self._selector is not None:
            self._selector.close()
        if self._wake is not None:
            for end in self._wake:
                end.close()
        log.info("stopped")

    def __enter__(self) -> TcpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def connection_count(self) -> int:
        with self._conns_lock:
            return len(self._conns)

    # --- threads --------------------------------------------------------------------------------------------

    def _io_loop(self) -> None:
        """Accept and read every socket; each round's reads go to the engine as ONE queue item, in order."""
        selector, listener, wake = self._selector, self._listener, self._wake
        assert selector is not None and listener is not None and wake is not None
        next_tick = time.monotonic() + TIMER_SECONDS
        while not self._stopping.is_set():
            try:
                ready = selector.select(TIMER_SECONDS)
            except OSError:  # pragma: no cover - a selector error would be a bug; keep serving
                log.exception("select failed")
                continue
            reads: list[tuple[int, bytes]] = []  # (peer, bytes); b"" is end of stream, as receive_data takes it
            for key, _ in ready:
                if key.fileobj is wake[0]:
                    try:
                        while wake[0].recv(4096):
                            pass
                    except OSError:
                        pass
                elif key.fileobj is listener:
                    self._accept_ready(listener, reads)
                elif key.data is _WS_LISTENER:
                    self._accept_ready(key.fileobj, reads, ws=True)  # type: ignore[arg-type]
                else:
                    conn: _Conn = key.data
                    if conn.eof_sent:
                        continue
                    try:
                        data = conn.sock.recv(READ_SIZE_BYTES, socket.MSG_DONTWAIT)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        data = b""
                    if conn.ws is not None:
                        self._ws_received(conn, data, reads)
                        if not data:
                            self._unregister(conn, reads)
                    elif not data:
                        self._unregister(conn, reads)
                    else:
                        reads.append((conn.peer, data))
            if self._ws_listener is not None and time.monotonic() >= next_tick:
                next_tick = time.monotonic() + TIMER_SECONDS
                self._ws_timers(reads)
            self._reap_closed(reads)
            if reads:
                self._inbound.put(_Reads(reads))  # blocks while the engine is behind: TCP backpressure
        for key in list(selector.get_map().values()):  # stopping: stop() closes the sockets; only forget them
            if isinstance(key.data, _Conn):
                selector.unregister(key.fileobj)

    def _accept_ready(self, listener: socket.socket, reads: list[tuple[int, bytes]], *, ws: bool = False) -> None:
        for _ in range(64):  # a burst of connects: take what is waiting, then serve reads again
            if self._stopping.is_set():
                return
            try:
                sock, addr = listener.accept()
            except OSError:  # BlockingIOError: nobody else waiting; anything else: the listener is closing
                return
            sock.setblocking(True)  # writer threads use blocking sendall; the I/O thread reads with MSG_DONTWAIT
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(peer=next(self._ids), sock=sock, address=str(addr[0]))
            if ws:  # the engine hears "open" once the opening handshake completed (_ws_received)
                if not self._ws_may_start(conn.address):
                    log.warning("WebSocket handshakes: too many under way (from %s): refused", conn.address)
                    try:
                        sock.send(http_error(503, "too many WebSocket handshakes under way"), socket.MSG_DONTWAIT)
                    except OSError:
                        pass
                    sock.close()
                    continue
                conn.ws = ServerStack(time.time(), tls=self._tls, allowed_origins=self._ws_origins)
                conn.announced = False
            self._reap_closed(reads)  # a closed socket's fd may be this one's: forget the old registration first
            assert self._selector is not None
            # Registered before the engine hears of it: from "open" on, the engine may close it at any time.
            self._selector.register(sock, selectors.EVENT_READ, conn)
            with self._conns_lock:
                self._conns[conn.peer] = conn
            if conn.announced:
                self._announce(conn, reads)

    def _announce(self, conn: _Conn, reads: list[tuple[int, bytes]]) -> None:
        conn.announced = True
        if reads:  # keep the engine's order: what was read before this connect goes first
            self._inbound.put(_Reads(list(reads)))
            reads.clear()
        self._inbound.put(_Opened(conn.peer, conn.address))

    # --- WebSocket connections (PROTOCOL.md 15; the layer itself is ws.py) ----------------------------------

    def _ws_may_start(self, address: str) -> bool:
        """PROTOCOL.md 15.2: cap the opening handshakes under way (the engine's connection caps start at the
        upgrade); over the cap the connection gets a 503 at once and is closed."""
        with self._conns_lock:
            pending = [c.address for c in self._conns.values() if c.ws is not None and not c.announced]
        if len(pending) < websocket.MAX_PENDING_HANDSHAKES and \
                pending.count(address) < websocket.MAX_PENDING_HANDSHAKES_PER_ADDRESS:
            return True
        return False

    def _ws_received(self, conn: _Conn, data: bytes, reads: list[tuple[int, bytes]]) -> None:
        """I/O thread: bytes (b"" at end of stream) through the WebSocket layer; the securechat stream to *reads*."""
        stack = conn.ws
        assert stack is not None
        with conn.lock:
            if conn.closed:
                return
            stack.receive(data, time.time())
            opened, items = self._ws_progress(conn)
        if opened:  # outside conn.lock: the queue may block until the engine, which takes conn.lock, catches up
            self._announce(conn, reads)
        reads.extend(items)

    def _ws_timers(self, reads: list[tuple[int, bytes]]) -> None:
        """I/O thread: handshake deadline, keepalive pings, idle timeout and close grace of every WS connection."""
        with self._conns_lock:
            conns = [conn for conn in self._conns.values() if conn.ws is not None]
        now = time.time()
        for conn in conns:
            assert conn.ws is not None
            with conn.lock:
                if conn.closed:
                    continue
                conn.ws.handle_timer(now)
                opened, items = self._ws_progress(conn)
            if opened:  # pragma: no cover - a timer never completes a handshake; kept for symmetry
                self._announce(conn, reads)
            reads.extend(items)

    def _ws_progress(self, conn: _Conn) -> tuple[bool, list[tuple[int, bytes]]]:
        """(conn.lock held) Write what the layer produced and close if it is done. Returns (the handshake just
        completed: announce the connection first, what to feed the engine after that)."""
        stack = conn.ws
        assert stack is not None
        items: list[tuple[int, bytes]] = []
        opened = stack.ws.take_opened()
        app = stack.ws.app_data()
        if app:
            items.append((conn.peer, app))
        out = stack.data_to_send()
        if out:
            self._send_locked(conn, out)
        if (conn.announced or opened) and not stack.opened and not conn.ws_ended:
            conn.ws_ended = True
            items.append((conn.peer, b""))  # the WebSocket session ended: end of stream for the engine
        if stack.finished and not conn.closed:
            conn.closing = True
            if conn.writer is not None and conn.wakeup is not None:
                conn.wakeup.notify()
            else:
                self._close_socket_locked(conn)
        return opened, items

    def _unregister(self, conn: _Conn, reads: list[tuple[int, bytes]]) -> None:
        """Forget *conn* in the selector (a closed socket is found by identity); its end of stream goes to
        *reads* once, after anything read from it before."""
        assert self._selector is not None
        try:
            self._selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        if not conn.eof_sent:
            conn.eof_sent = True
            reads.append((conn.peer, b""))

    def _reap_closed(self, reads: list[tuple[int, bytes]]) -> None:
        """Unregister the sockets other threads closed (the old per-connection reader saw these as an error)."""
        with self._conns_lock:
            closed, self._closed_conns = self._closed_conns, []
        for conn in closed:
            self._unregister(conn, reads)

    def _wake_io(self) -> None:
        if self._wake is None:
            return
        try:
            self._wake[1].send(b"\0")
        except OSError:  # buffer full (already awake) or closed (stopping)
            pass

    def _engine_loop(self) -> None:
        protocol = self.protocol
        next_timer = time.monotonic() + TIMER_SECONDS
        while True:
            try:
                item = self._inbound.get(timeout=TIMER_SECONDS)
            except queue.Empty:
                item = None
            batch = [item] if item is not None else []
            while len(batch) < 512:  # a round: everything already queued, then one flush
                try:
                    batch.append(self._inbound.get_nowait())
                except queue.Empty:
                    break
            now = time.time()
            for item in batch:
                if isinstance(item, _Stop):
                    return
                try:
                    self._handle(item, now)
                except Exception:  # a bug must not take the server down for everyone
                    log.exception("internal error while handling %s", type(item).__name__)
            try:
                if time.monotonic() >= next_timer:
                    protocol.handle_timer(now)
                    next_timer = time.monotonic() + TIMER_SECONDS
                self._flush()
            except Exception:  # the engine must outlive any bug; the relay keeps serving everyone else
                log.exception("internal error in the engine round")

    def _handle(self, item: _Inbound, now: float) -> None:
        if isinstance(item, _Reads):
            for peer, data in item.reads:
                try:
                    self.protocol.receive_data(peer, data, now)
                except Exception:  # a bug must not cost the other connections read in the same round
                    log.exception("internal error while handling data")
        elif isinstance(item, _Opened):
            self.protocol.connection_made(item.peer, item.address, now)
        elif isinstance(item, _JobDone):
            self.protocol.job_done(item.job, now)

    def _flush(self) -> None:
        protocol = self.protocol
        while (job := protocol.next_job()) is not None:
            if not isinstance(job, ChatKeyJob):
                with self._password_ready:
                    self._password_jobs.push(job.address, job)
                    self._password_ready.notify()
                continue
            try:
                self._key_pool.submit(self._run_job, job)
            except RuntimeError:  # pool shut down: stopping
                return
        for peer, data in protocol.data_to_send():
            conn = self._conns.get(peer)
            if conn is not None:
                self._send(conn, data)
        closing = protocol.peers_to_close()
        events = list(iter(protocol.next_event, None))
        for peer in closing:
            conn = self._conns.get(peer)
            if conn is not None:
                self._finish(conn, events)
        for event in events:
            self._report(event)

    def _password_loop(self) -> None:
        """One password worker: the next job round robin across addresses (FairQueue), until stop()."""
        while True:
            with self._password_ready:
                while not self._password_jobs and not self._stopping.is_set():
                    self._password_ready.wait(TIMER_SECONDS)
                if self._stopping.is_set():
                    return
                job = self._password_jobs.pop()
            if job is not None:
                self._run_job(job)

    def _run_job(self, job: Job) -> None:
        try:
            job.run()
        except Exception:
            log.exception("job %s failed", type(job).__name__)
            job.outcome, job.code = JobOutcome.FAILED, ErrorCode.INTERNAL_ERROR
        self._inbound.put(_JobDone(job))

    # --- writing --------------------------------------------------------------------------------------------

    def _send(self, conn: _Conn, data: bytes) -> None:
        """Try a non-blocking send first (docs/PERF-NOTES.md); leave the rest to the connection's writer thread."""
        with conn.lock:
            if conn.closed:
                return
            if conn.ws is not None:  # PROTOCOL.md 15.3: each frame as one binary message
                conn.ws.send(data)
                data = conn.ws.data_to_send()
                if not data:
                    return
            self._send_locked(conn, data)

    def _send_locked(self, conn: _Conn, data: bytes) -> None:
        if not conn.backlog:
            try:
                sent = conn.sock.send(data, socket.MSG_DONTWAIT)
            except BlockingIOError:
                sent = 0
            except OSError:
                return
            data = data[sent:]
            if not data:
                return
        if len(conn.backlog) + len(data) > MAX_BACKLOG_BYTES:
            log.warning("peer %d: slow reader disconnected (backlog over %d bytes)", conn.peer,
                        MAX_BACKLOG_BYTES)
            conn.backlog.clear()
            self._close_socket_locked(conn)
            return
        conn.backlog += data
        self._wake_writer(conn)

    def _wake_writer(self, conn: _Conn) -> None:
        if conn.writer is None:
            conn.wakeup = threading.Condition(conn.lock)
            conn.writer = threading.Thread(target=self._write_loop, args=(conn,),
                                           name=f"securechat-write-{conn.peer}", daemon=True)
            conn.writer.start()
        assert conn.wakeup is not None
        conn.wakeup.notify()

    def _write_loop(self, conn: _Conn) -> None:
        assert conn.wakeup is not None
        while True:
            with conn.lock:
                while not conn.backlog and not conn.closed and not conn.closing:
                    conn.wakeup.wait(1.0)
                if conn.closed or (conn.closing and not conn.backlog):
                    self._close_socket_locked(conn)
                    return
                chunk = bytes(conn.backlog[:READ_SIZE_BYTES])
            try:
                conn.sock.sendall(chunk)  # blocks only this thread; the engine never waits for it
            except OSError:
                with conn.lock:
                    self._close_socket_locked(conn)
                return
            with conn.lock:
                del conn.backlog[:len(chunk)]

    def _finish(self, conn: _Conn, events: list[ev.ServerEvent] | None = None) -> None:
        """Close after the bytes already queued (a final error frame, or bye) are written."""
        with conn.lock:
            if conn.ws is not None and not conn.closed:  # PROTOCOL.md 15.6: a close frame naming the error
                error = _closing_error(conn.peer, events or [])
                conn.ws.close(close_code_for(error), error.value if error is not None else "")
                out = conn.ws.data_to_send()
                if out:
                    self._send_locked(conn, out)
            if conn.closed:
                return
            conn.closing = True
            if conn.writer is not None and conn.wakeup is not None:
                conn.wakeup.notify()
                return
            self._close_socket_locked(conn)

    def _close_socket(self, conn: _Conn) -> None:
        with conn.lock:
            self._close_socket_locked(conn)

    def _close_socket_locked(self, conn: _Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        try:
            conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        with self._conns_lock:
            # Queued before the close: the I/O thread unregisters it before it can accept a socket on this fd.
            self._closed_conns.append(conn)
            self._conns.pop(conn.peer, None)
        conn.sock.close()
        self._wake_io()
        if conn.wakeup is not None:
            conn.wakeup.notify()

    # --- reporting --------------------------------------------------------------------------------------------

    def _report(self, event: ev.ServerEvent) -> None:
        # PROTOCOL.md 11: metadata only — names, sizes, codes; never contents, passwords or keys.
        # The relay's hot path pays for a line only at DEBUG; every other event keeps the describer's peer map.
        relayed = isinstance(event, ev.MessageRelayed)
        if not relayed or log.isEnabledFor(logging.DEBUG):
            text, fields = self._describer.describe(event)
            log.log(logging.DEBUG if relayed else logging.INFO, "%s", text, extra={"securechat": fields})
        if self._on_event is not None:
            self._on_event(event)


def _closing_error(peer: int, events: list[ev.ServerEvent]) -> ErrorCode | None:
    """The error code the engine closed *peer* for (its PeerClosed reason reads "error <code>"), if any."""
    for event in events:
        if isinstance(event, ev.PeerClosed) and event.peer == peer:
            kind, _, code = event.reason.partition(" ")
            if kind == "error":
                try:
                    return ErrorCode(code)
                except ValueError:
                    return None
    return None
