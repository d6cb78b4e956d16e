"""What TcpServer's threads hand its engine thread: one typed item each, on one bounded queue.

The I/O thread (server_io.py) puts ``Reads`` (everything one selector round read, in order) and ``Opened`` (a
connection to announce); the job pools (server_jobs.py) put ``JobDone``; ``stop()`` puts ``Stop``. The engine
thread (server_engine.py) takes them in order. Bounded: when the engine is behind, the I/O thread blocks, which
is TCP backpressure, rather than memory growing without bound.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass

from ..protocol.jobs import Job

INBOUND_QUEUE_ITEMS = 20_000


@dataclass(frozen=True)
class Reads:
    reads: list[tuple[int, bytes]]  # (peer, bytes read; b"" for end of stream), in the order they were read


@dataclass(frozen=True)
class Opened:
    peer: int
    address: str


@dataclass(frozen=True)
class JobDone:
    job: Job


@dataclass(frozen=True)
class Stop:
    pass


Inbound = Reads | Opened | JobDone | Stop


def inbound_queue() -> queue.Queue[Inbound]:
    return queue.Queue(INBOUND_QUEUE_ITEMS)
