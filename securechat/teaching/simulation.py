"""An in-memory network that drives the real protocol objects step by step (docs/STYLE.md section 8).

Owns: ``Simulation``, which wires one ``ServerProtocol`` and any number of ``ClientProtocol`` objects together
through a queue of frames in flight, with a seeded random source and a virtual clock so a run can be replayed
exactly. Every chunk crossing the "wire" is recorded in ``trace`` (who, to whom, type, size, bytes, and what the
simulation knows is inside the records); ``eavesdropper_view`` shows what a passive observer sees and
``intercept`` lets an active attacker drop, delay, duplicate, reorder, modify, reflect or inject frames.
Slow server jobs run inline. Must not: open sockets or threads.

The wire's types (``Frame``, ``WireRecord``, ``SERVER``, ``HELD``) live in ``teaching/wire.py`` and Mallory's
interceptor factories (``drop``, ``delay``, ``duplicate``, ``replay``, ``reorder``, ``modify``, ``flip_bit``,
``tamper``, ``reflect``, ``inject_frame``, ``capture``, ``chain``) in ``teaching/mallory.py``; both are
re-exported here, so ``from securechat.simulation import Simulation, SERVER, tamper`` keeps working.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar, overload

from ..crypto.kdf import FAST_SCRYPT
from ..crypto.signatures import SignatureScheme
from ..protocol import events as ev
from ..protocol import messages as m
from ..protocol.client import ClientProtocol
from ..protocol.codec import decode_message, encode_frame
from ..protocol.identity import UserKeys, generate_user_keys
from ..protocol.limits import ServerConfig
from ..protocol.server import ServerProtocol
from ..store import MemoryRegistry, new_server_key
from .mallory import (capture, chain, delay, drop, duplicate, flip_bit, inject_frame, modify, reflect, reorder,
                      replay, tamper)
from .wire import HELD, SERVER, Frame, Interceptor, WireRecord, clear_fields, due, frame_types

E = TypeVar("E", bound=ev.Event)


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
        self.held: list[Frame] = []  # delayed by Mallory, released when the clock reaches deliver_at
        self.trace: list[WireRecord] = []
        self._index = 0
        self._cursors: dict[str, int] = {}  # per trace list: entries already assigned to a chunk

    def random_bytes(self, n: int) -> bytes:
        """The simulation's seeded random source (deterministic, never constant)."""
        return self.rng.randbytes(n)

    # --- building a scenario --------------------------------------------------------------------------------

    def add_client(self, name: str, *, pin_server_key: bool = True,
                   client_class: type[ClientProtocol] = ClientProtocol) -> ClientProtocol:
        """Connect a new client called *name* (a connection label, not yet a username).

        *client_class* lets a notebook plug in a deliberately modified client (an attacker's tool).
        """
        trace: list[ev.TraceEntry] = []
        pinned = (self.server_key.public_der, self.server_key.scheme.value) if pin_server_key else None
        client = client_class(server_key=pinned, random_bytes=self.random_bytes, trace=trace.append)
        peer = len(self._peer_ids) + 1
        self.clients[name], self.events[name], self.client_trace[name] = client, [], trace
        self._peer_ids[name], self._names[peer] = peer, name
        self.server.connection_made(peer, f"10.0.0.{peer % 250 + 1}", self.now)
        client.connect()
        self.flush()
        return client

    def client(self, name: str) -> ClientProtocol:
        return self.clients[name]

    def peer_id(self, name: str) -> int:
        """The server's peer id for the connection called *name*."""
        return self._peer_ids[name]

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
                self._put(name, SERVER, data, self._sent_inner(name, self.client_trace[name], None))
            self._collect(name)
        for peer, data in self.server.data_to_send():
            self._put(SERVER, self._names[peer], data, self._sent_inner(SERVER, self.server_trace, peer))
        self._cursors[SERVER] = len(self.server_trace)
        for peer in self.server.peers_to_close():
            name = self._names[peer]
            self._put(SERVER, name, b"")  # the server closed: the client sees end of stream
        while (event := self.server.next_event()) is not None:
            self.server_events.append(event)

    def _sent_inner(self, key: str, trace: list[ev.TraceEntry], peer: int | None) -> tuple[str, ...]:
        """Types of the inner frames traced as sent since the last chunk: what this chunk's records carry."""
        start = self._cursors.get(key, 0)
        if peer is None:
            self._cursors[key] = len(trace)
        return tuple(e.type for e in trace[start:] if e.direction == "send" and e.layer == "inner"
                     and (peer is None or e.peer == peer))

    def _collect(self, name: str) -> None:
        client = self.clients[name]
        while (event := client.next_event()) is not None:
            self.events[name].append(event)

    def _put(self, source: str, target: str, data: bytes, inner: tuple[str, ...] = ()) -> None:
        self._index += 1
        self.in_flight.append(Frame(source=source, target=target, data=data, sent_at=self.now, index=self._index,
                                    inner=inner))

    def step(self) -> list[WireRecord]:
        """Deliver the next chunk in flight (through ``intercept`` if set); returns what was delivered.

        A chunk Mallory delayed is delivered once the clock reaches its time, or as soon as nothing else is in
        flight (the clock then jumps forward); it does not pass through ``intercept`` a second time.
        """
        if self.held and (not self.in_flight or due(self.held[0]) <= self.now):
            frame = self.held.pop(0)
            self.now = max(self.now, frame.deliver_at or self.now)
            delivered = [self._deliver(replace(frame, deliver_at=None), frame.note or "delayed")]
        elif self.in_flight:
            delivered = self._intercepted(self.in_flight.popleft())
        else:
            return []
        self.now += self.tick
        self.flush()
        return delivered

    def _intercepted(self, frame: Frame) -> list[WireRecord]:
        outcome = list(self.intercept(frame) or []) if self.intercept else [frame]
        if not outcome:
            self.trace.append(self._record(frame, "dropped"))
        delivered: list[WireRecord] = []
        for item in outcome:
            if item.deliver_at is not None and item.deliver_at > self.now:
                self.trace.append(self._record(item, "held"))
                if item.deliver_at != HELD:
                    self.held.append(item)
                    self.held.sort(key=lambda f: (due(f), f.index))
                continue
            if item == frame:
                action = frame.note or "delivered"  # chunks Mallory put on the wire herself keep her note
            else:
                action = item.note or ("modified" if item.index == frame.index else "injected")
            delivered.append(self._deliver(replace(item, deliver_at=None), action))
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
                          data=frame.data, types=frame_types(frame.data), action=action, inner=frame.inner)

    def run_until_idle(self, max_steps: int = 100_000) -> int:
        """Step until nothing is in flight or delayed; returns the number of steps. Bounded so a loop cannot hang."""
        self.flush()
        for count in range(max_steps):
            if not self.in_flight and not self.held:
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
        self.in_flight.append(Frame(source=source, target=target, data=data, sent_at=self.now, index=self._index,
                                    note="injected"))

    def server_push(self, name: str, message: m.Message) -> None:
        """A compromised server (or an insider with its keys) sends *message* to *name* inside its channel.

        For attacks the wire attacker cannot mount: the bytes are sealed with the server's own record layer,
        so only the end-to-end checks of the client stand between the message and the user.
        """
        peer = self.server.peers[self._peer_ids[name]]
        if peer.records is None:
            raise RuntimeError(f"{name} has no channel yet")
        record = encode_frame(m.Record(data=peer.records.seal(encode_frame(message))))
        self._index += 1
        self.in_flight.append(Frame(source=SERVER, target=name, data=record, sent_at=self.now, index=self._index,
                                    inner=(message.TYPE,), note="pushed"))

    # --- looking at it ----------------------------------------------------------------------------------------

    @overload
    def events_of(self, name: str, kind: None = None) -> list[ev.Event]: ...

    @overload
    def events_of(self, name: str, kind: type[E]) -> list[E]: ...

    def events_of(self, name: str, kind: type[ev.Event] | None = None) -> list[Any]:
        """The events *name*'s client produced so far, in order (only those of *kind*, if given)."""
        self._collect(name)
        return [e for e in self.events[name] if kind is None or isinstance(e, kind)]

    def last_event(self, name: str, kind: type[E]) -> E:
        """The latest event of *kind* of *name*'s client (``LookupError`` if there is none)."""
        found = self.events_of(name, kind)
        if not found:
            raise LookupError(f"{name} has no {kind.__name__} event")
        return found[-1]

    def messages_of(self, name: str, direction: str = "send", kind: str | None = None) -> list[m.Message]:
        """The inner (plaintext) messages *name*'s client sent or received, decoded: the endpoint's view."""
        out: list[m.Message] = []
        for entry in self.client_trace[name]:
            if entry.layer != "inner" or entry.direction != direction:
                continue
            body = entry.data if entry.data[:1] == b"{" else entry.data[4:]
            message = decode_message(body)
            if kind is None or message.TYPE == kind:
                out.append(message)
        return out

    def eavesdropper_view(self) -> list[dict[str, Any]]:
        """What Eve on the wire sees: for each chunk, who, how big, when, and which frame types are in clear.

        After the handshake every frame is a ``record`` whose ``data`` is ciphertext: Eve learns sizes and
        timing, not types or contents (PROTOCOL.md 11). ``clear_fields`` lists the JSON fields she can read.
        A chunk Mallory held back is listed once, when it finally crossed the wire.
        """
        return [
            {"index": r.index, "time": round(r.time, 6), "from": r.source, "to": r.target, "bytes": len(r.data),
             "visible_types": r.types, "clear_fields": clear_fields(r.data), "prefix_hex": r.data[:24].hex()}
            for r in self.trace if r.action != "held"
        ]


__all__ = [
    "HELD", "SERVER", "Frame", "Interceptor", "Simulation", "WireRecord",
    "capture", "chain", "delay", "drop", "duplicate", "flip_bit", "inject_frame", "modify", "reflect", "reorder",
    "replay", "tamper",
]
