"""TcpServer: the threaded socket driver around one ServerProtocol (docs/STYLE.md section 8).

Owns: wiring the server's threads together and their lifecycle. ONE I/O thread accepts and reads every socket
through a selector and moves the bytes of each round into the engine's queue as one item (server_io.py); ONE
engine thread owns the ServerProtocol, so it needs no lock, opens and seals every record and fans out
(server_engine.py); two worker pools run the slow jobs (scrypt logins and registrations, fairly by address;
chat key wraps) so no lock is ever held during slow crypto and one login never freezes the relay
(server_jobs.py); a writer thread per connection is started only when a slow reader leaves a backlog, which is
bounded: past it that client alone is disconnected (connection.py). The threads hand the engine typed items
(engine_queue.py). With ``ws_port`` the same ServerProtocol also serves WebSocket clients (PROTOCOL.md 15,
ws.py). Must not: build or parse messages, or log anything but metadata (PROTOCOL.md 11).
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from types import TracebackType

from ..protocol import events as ev
from ..protocol.jobs import ServerKey
from ..protocol.limits import ServerConfig
from ..protocol.registry import Registry
from ..protocol.server import ServerProtocol
from .engine_queue import JobDone, Stop, inbound_queue
from .server_engine import Engine
from .server_io import IoLoop, listen
from .server_jobs import JobPools

log = logging.getLogger("securechat.server")


class TcpServer:
    """A securechat server on a TCP port. ``start()`` returns once it listens; ``stop()`` ends every thread.

    Args:
        ws_port: also accept WebSocket clients there (PROTOCOL.md 15; 0 picks a free port), fed to the SAME
            ServerProtocol; tls: serve that port as ``wss://`` (TLS in memory, tls.py); ws_origins: browser
            Origins allowed (requests without Origin are always allowed, PROTOCOL.md 15.2).
    """

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
        self.protocol = ServerProtocol(server_key=server_key, registry=registry, config=config, trace=trace,
                                       relay_events=relay_events)
        self._host, self._port = host, port
        self._ws_port, self._tls, self._ws_origins = ws_port, tls, ws_origins
        self._inbound = inbound_queue()
        self._stopping = threading.Event()
        self._pools = JobPools(password_workers, lambda job: self._inbound.put(JobDone(job)))
        self._on_event = on_event
        self._io: IoLoop | None = None
        self._threads: list[threading.Thread] = []
        self.address: tuple[str, int] = (host, port)
        self.ws_address: tuple[str, int] | None = None

    def start(self) -> TcpServer:
        listener = listen(self._host, self._port)
        self.address = listener.getsockname()[:2]
        ws_listener = None
        if self._ws_port is not None:
            try:
                ws_listener = listen(self._host, self._ws_port)
            except OSError:
                listener.close()
                raise
            self.ws_address = ws_listener.getsockname()[:2]
        io = self._io = IoLoop(listener, ws_listener, inbound=self._inbound, stopping=self._stopping, tls=self._tls,
                               ws_origins=self._ws_origins)
        engine = Engine(self.protocol, self._inbound, io.connections, self._pools, self._on_event)
        for target, name in ((io.loop, "io"), (engine.loop, "engine")):
            thread = threading.Thread(target=target, name=f"securechat-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._pools.start()
        self._threads += self._pools.threads
        log.info("listening on %s:%d", *self.address)
        if self.ws_address is not None:
            log.info("WebSocket%s endpoint on %s:%d", " (TLS)" if self._tls else "", *self.ws_address)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and every connection, then join every thread this server started."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._pools.stop()  # queued password work is dropped
        io = self._io
        if io is not None:
            io.wake()
            conns = io.connections.snapshot()
            for conn in conns:
                conn.close()
        self._inbound.put(Stop())
        for thread in self._threads:
            thread.join(timeout)
        if io is not None:
            late = [conn for conn in io.connections.snapshot() if conn not in conns]  # accepted while stopping
            for conn in late:
                conn.close()
            for conn in conns + late:
                if conn.writer is not None:
                    conn.writer.join(timeout)
        self._pools.shut_down_key_pool()
        if io is not None:
            io.close()
        log.info("stopped")

    def __enter__(self) -> TcpServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    @property
    def connection_count(self) -> int:
        return 0 if self._io is None else len(self._io.connections)
