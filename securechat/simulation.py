"""An in-memory network that drives the real protocol objects step by step (STYLE.md section 8).

Owns: ``Simulation``, which wires one ``ServerProtocol`` and any number of ``ClientProtocol`` objects together
through a queue of frames in flight, with a seeded random source and a virtual clock so a run can be replayed
exactly. Every frame crossing the "wire" is recorded in ``trace`` (who, to whom, layer, type, size, bytes);
``eavesdropper_view`` shows what a passive observer sees and ``intercept`` lets an active attacker drop,
modify, duplicate, reorder or inject frames. Slow server jobs run inline. Must not: open sockets or threads.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from .crypto.kdf import FAST_SCRYPT
from .protocol import events as ev
from .protocol.client import ClientProtocol
from .protocol.identity import UserKeys, generate_user_keys
from .protocol.limits import ServerConfig
from .protocol.server import ServerProtocol
from .store import MemoryRegistry, new_server_key
from .crypto.signatures import SignatureScheme

SERVER = "server"


@dataclass(frozen=True)
class Frame:
    """Bytes in flight on the simulated wire, as one chunk written by *source* for *target*."""

    source: str
    target: str
    data: bytes
    sent_at: float
    index: int


@dataclass
class WireRecord:
    """One entry of the simulation's trace: a chunk as it was delivered (after any interception)."""

    index: int
    time: float
    source: str
    target: str
    data: bytes
    types: tuple[str, ...]
    action: str = "delivered"  # or "dropped", "modified", "injected", "duplicated"


Interceptor = Callable[[Frame], Iterable[Frame] | None]


@dataclass
class Simulation:
    """One server and named clients on an in-memory wire.

    Example::

        sim = Simulation(seed=1)
        sim.register_and_login("alice", "pw-a", SignatureScheme.RSA_PSS_SHA256)
    """

    seed: int = 1
    config: ServerConfig = field(default_factory=lambda: ServerConfig(scrypt=FAST_SCRYPT))
    intercept: Interceptor | None = None
    now: float = 1_700_000_000.0
    tick: float = 0.001  # virtual seconds that pass per delivered frame

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.registry = MemoryRegistry()
        self.server_key = new_server_key(random_bytes=self.random_bytes)
        self.server_events: list[ev.ServerEvent] = []
        self.server_trace: list[ev.TraceEntry] = []
        self.server = ServerProtocol(server_key=self.server_key, registry=self.registry, config=self.config,
                                     random_bytes=self.random_bytes, trace=self.server_trace.append)
        self.clients: dict[str, ClientProtocol] = {}
        self.events: dict[str, list[ev.Event]] = {}
        self.client_trace: dict[str, list[ev.TraceEntry]] = {}
        self.keys: dict[str, UserKeys] = {}
        self._peer_ids: dict[str, int] = {}
        self._names: dict[int, str] = {}
        self.in_flight: deque[Frame] = deque()
        self.trace: list[WireRecord] = []
        self._index = 0

    def random_bytes(self, n: int) -> bytes:
        """The simulation's seeded random source (deterministic, never constant)."""
        return self.rng.randbytes(n)

    # --- building a scenario --------------------------------------------------------------------------------

    def add_client(self, name: str, *, pin_server_key: bool = True) -> ClientProtocol:
        """Connect a new client called *name* (a connection label, not yet a username)."""
        trace: list[ev.TraceEntry] = []
        pinned = (self.server_key.public_der, self.server_key.scheme.value) if pin_server_key else None
        client = ClientProtocol(server_key=pinned, random_bytes=self.random_bytes, trace=trace.append)
        peer = len(self._peer_ids) + 1
        self.clients[name], self.events[name], self.client_trace[name] = client, [], trace
        self._peer_ids[name], self._names[peer] = peer, name
        self.server.connection_made(peer, f"10.0.0.{peer % 250 + 1}", self.now)
        client.connect()
        self.flush()
        return client

    def client(self, name: str) -> ClientProtocol:
        return self.clients[name]

    def user_keys(self, name: str, scheme: SignatureScheme = SignatureScheme.RSA_PSS_SHA256) -> UserKeys:
        if name not in self.keys:
            self.keys[name] = generate_user_keys(scheme, random_bytes=self.random_bytes)
        return self.keys[name]

    def register_and_login(self, name: str, password: str,
                           scheme: SignatureScheme = SignatureScheme.RSA_PSS_SHA256) -> ClientProtocol:
        """Connect, register and log in *name*; returns its client protocol, ONLINE."""
        keys = self.user_keys(name, scheme)
        client = self.add_client(name)
        self.run_until_idle()
        client.register(name, password, keys)
        self.flush()
        self.run_until_idle()
        client.login(name, password, keys)
        self.flush()
        self.run_until_idle()
        return client

    # --- moving bytes ----------------------------------------------------------------------------------------

    def flush(self) -> None:
        """Collect bytes every protocol object wants to send and put them on the wire."""
        while (job := self.server.next_job()) is not None:
            job.run()
            self.server.job_done(job, self.now)
        for name, client in self.clients.items():
            data = client.data_to_send()
            if data:
                self._put(name, SERVER, data)
            self._collect(name)
        for peer, data in self.server.data_to_send():
            self._put(SERVER, self._names[peer], data)
        for peer in self.server.peers_to_close():
            name = self._names[peer]
            self._put(SERVER, name, b"")  # the server closed: the client sees end of stream
        while (event := self.server.next_event()) is not None:
            self.server_events.append(event)

    def _collect(self, name: str) -> None:
        client = self.clients[name]
        while (event := client.next_event()) is not None:
            self.events[name].append(event)

    def _put(self, source: str, target: str, data: bytes) -> None:
        self._index += 1
        self.in_flight.append(Frame(source=source, target=target, data=data, sent_at=self.now, index=self._index))

    def step(self) -> list[WireRecord]:
        """Deliver the next chunk in flight (through ``intercept`` if set); returns what was delivered."""
        if not self.in_flight:
            return []
        frame = self.in_flight.popleft()
        delivered: list[WireRecord] = []
        outcome = list(self.intercept(frame) or []) if self.intercept else [frame]
        if not outcome:
            self.trace.append(self._record(frame, "dropped"))
        for item in outcome:
            action = "delivered" if item == frame else ("modified" if item.index == frame.index else "injected")
            delivered.append(self._deliver(item, action))
        self.now += self.tick
        self.flush()
        return delivered

    def _deliver(self, frame: Frame, action: str) -> WireRecord:
        record = self._record(frame, action)
        self.trace.append(record)
        if frame.target == SERVER:
            self.server.receive_data(self._peer_ids[frame.source], frame.data, self.now)
        else:
            self.clients[frame.target].receive_data(frame.data, self.now)
        return record

    def _record(self, frame: Frame, action: str) -> WireRecord:
        return WireRecord(index=frame.index, time=self.now, source=frame.source, target=frame.target,
                          data=frame.data, types=_frame_types(frame.data), action=action)

    def run_until_idle(self, max_steps: int = 100_000) -> int:
        """Step until nothing is in flight; returns the number of steps. Bounded so a loop cannot hang."""
        self.flush()
        for count in range(max_steps):
            if not self.in_flight:
                return count
            self.step()
        raise RuntimeError(f"simulation still busy after {max_steps} steps")

    def advance(self, seconds: float) -> None:
        """Move the virtual clock and let the server enforce its deadlines."""
        self.now += seconds
        self.server.handle_timer(self.now)
        self.flush()

    def disconnect(self, name: str) -> None:
        """The client's connection drops (no logout)."""
        self.server.connection_lost(self._peer_ids[name], self.now)
        self.clients[name].receive_data(b"", self.now)
        self.flush()

    def inject(self, source: str, target: str, data: bytes) -> None:
        """Mallory puts *data* on the wire as if *source* had written it."""
        self._index += 1
        self.in_flight.append(Frame(source=source, target=target, data=data, sent_at=self.now, index=self._index))

    # --- looking at it ----------------------------------------------------------------------------------------

    def events_of(self, name: str, kind: type[Any] | None = None) -> list[Any]:
        self._collect(name)
        return [e for e in self.events[name] if kind is None or isinstance(e, kind)]

    def last_event(self, name: str, kind: type[Any]) -> Any:
        found = self.events_of(name, kind)
        if not found:
            raise LookupError(f"{name} has no {kind.__name__} event")
        return found[-1]

    def eavesdropper_view(self) -> list[dict[str, Any]]:
        """What Eve on the wire sees: for each chunk, who, how big, when, and which frame types are in clear.

        After the handshake every frame is a ``record`` whose ``data`` is ciphertext: Eve learns sizes and
        timing, not types or contents (PROTOCOL.md 11).
        """
        return [
            {"index": r.index, "time": round(r.time, 6), "from": r.source, "to": r.target, "bytes": len(r.data),
             "visible_types": r.types, "prefix_hex": r.data[:24].hex()}
            for r in self.trace
        ]


def _frame_types(data: bytes) -> tuple[str, ...]:
    """The ``type`` of each clear frame in a chunk, as Eve would parse it."""
    from .protocol.codec import FrameDecoder, parse_json
    from .errors import SecureChatError

    decoder = FrameDecoder(max_frame_bytes=1 << 30)
    types: list[str] = []
    try:
        decoder.feed(data)
        while (body := decoder.next_frame()) is not None:
            types.append(str(parse_json(body)["type"]))
    except SecureChatError:
        types.append("?")
    return tuple(types)


def flip_bit(offset: int, *, source: str | None = None, target: str | None = None,
             when: Callable[[Frame], bool] | None = None) -> Interceptor:
    """An interceptor that flips one bit of the first matching chunk at *offset* (from its end if negative)."""
    state = {"done": False}

    def intercept(frame: Frame) -> list[Frame]:
        matches = (source is None or frame.source == source) and (target is None or frame.target == target)
        if state["done"] or not matches or not frame.data or (when is not None and not when(frame)):
            return [frame]
        state["done"] = True
        data = bytearray(frame.data)
        data[offset] ^= 0x01
        return [replace(frame, data=bytes(data))]

    return intercept
