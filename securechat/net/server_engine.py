"""TcpServer's engine thread: the one thread that owns the ServerProtocol (so it needs no lock).

Owns: taking the engine queue's items in rounds (engine_queue.py: reads, connections opened, jobs done), feeding
them to the ServerProtocol, its timer, and after each round one flush: new slow jobs to the pools
(server_jobs.py), every record it sealed to its connection (connection.py), the connections it ended closed
(a WebSocket one with the close code of the error, PROTOCOL.md 15.6), and its events reported. Must not: build
or parse messages, or log anything but metadata (PROTOCOL.md 11).
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable

from ..errors import ErrorCode
from ..protocol import events as ev
from ..protocol.server import ServerProtocol
from .connection import Connections
from .engine_queue import Inbound, JobDone, Opened, Reads, Stop
from .server_jobs import JobPools
from .server_log import EventDescriber

log = logging.getLogger("securechat.server")

TIMER_SECONDS = 0.5
MAX_ROUND_ITEMS = 512


class Engine:
    """Run ``loop`` on one thread until a ``Stop`` item arrives."""

    def __init__(self, protocol: ServerProtocol, inbound: queue.Queue[Inbound], connections: Connections,
                 pools: JobPools, on_event: Callable[[ev.ServerEvent], None] | None) -> None:
        self.protocol = protocol
        self._inbound = inbound
        self._connections = connections
        self._pools = pools
        self._on_event = on_event
        self._describer = EventDescriber()  # only the engine thread reports

    def loop(self) -> None:
        protocol = self.protocol
        next_timer = time.monotonic() + TIMER_SECONDS
        while True:
            try:
                item: Inbound | None = self._inbound.get(timeout=TIMER_SECONDS)
            except queue.Empty:
                item = None
            batch = [item] if item is not None else []
            while len(batch) < MAX_ROUND_ITEMS:  # a round: everything already queued, then one flush
                try:
                    batch.append(self._inbound.get_nowait())
                except queue.Empty:
                    break
            now = time.time()
            for item in batch:
                if isinstance(item, Stop):
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

    def _handle(self, item: Reads | Opened | JobDone, now: float) -> None:
        if isinstance(item, Reads):
            for peer, data in item.reads:
                try:
                    self.protocol.receive_data(peer, data, now)
                except Exception:  # a bug must not cost the other connections read in the same round
                    log.exception("internal error while handling data")
        elif isinstance(item, Opened):
            self.protocol.connection_made(item.peer, item.address, now)
        else:
            self.protocol.job_done(item.job, now)

    def _flush(self) -> None:
        protocol = self.protocol
        while (job := protocol.next_job()) is not None:
            if not self._pools.submit(job):
                return  # the pools are shut down: stopping
        connections = self._connections
        for peer, data in protocol.data_to_send():
            conn = connections.get(peer)
            if conn is not None:
                conn.send(data)
        closing = protocol.peers_to_close()
        events = list(iter(protocol.next_event, None))
        for peer in closing:
            conn = connections.get(peer)
            if conn is not None:
                conn.finish(closing_error(peer, events) if conn.ws is not None else None)
        for event in events:
            self._report(event)

    def _report(self, event: ev.ServerEvent) -> None:
        # PROTOCOL.md 11: metadata only — names, sizes, codes; never contents, passwords or keys.
        # The relay's hot path pays for a line only at DEBUG; every other event keeps the describer's peer map.
        relayed = isinstance(event, ev.MessageRelayed)
        if not relayed or log.isEnabledFor(logging.DEBUG):
            text, fields = self._describer.describe(event)
            log.log(logging.DEBUG if relayed else logging.INFO, "%s", text, extra={"securechat": fields})
        if self._on_event is not None:
            self._on_event(event)


def closing_error(peer: int, events: list[ev.ServerEvent]) -> ErrorCode | None:
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
