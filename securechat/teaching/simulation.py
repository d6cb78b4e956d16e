"""An in-memory network that drives the real protocol objects step by step (docs/STYLE.md section 8).

Owns: ``Simulation``, which wires one ``ServerProtocol`` and any number of ``ClientProtocol`` objects together
through a queue of frames in flight, with a seeded random source and a virtual clock so a run can be replayed
exactly. Every chunk crossing the "wire" is recorded in ``trace`` (who, to whom, type, size, bytes, and what the
simulation knows is inside the records); ``eavesdropper_view`` shows what a passive observer sees and
``intercept`` lets an active attacker drop, delay, duplicate, reorder, modify, reflect or inject frames: the
Mallory helpers at the end of this module build such interceptors (``drop``, ``delay``, ``duplicate``,
``replay``, ``reorder``, ``modify``, ``flip_bit``, ``reflect``, ``inject_frame``, ``capture``, ``chain``).
Slow server jobs run inline. Must not: open sockets or threads.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from ..crypto.kdf import FAST_SCRYPT
from ..crypto.signatures import SignatureScheme
from ..errors import SecureChatError
from ..protocol import events as ev
from ..protocol import messages as m
from ..protocol.client import ClientProtocol
from ..protocol.codec import FrameDecoder, decode_message, encode_frame, parse_json
from ..protocol.codec import frame as length_prefixed
from ..protocol.identity import UserKeys, generate_user_keys
from ..protocol.limits import ServerConfig
from ..protocol.server import ServerProtocol
from ..store import MemoryRegistry, new_server_key

SERVER = "server"
HELD = math.inf  # Frame.deliver_at for a frame Mallory keeps (``reorder`` releases it itself)


@dataclass(frozen=True)
class Frame:
    """Bytes in flight on the simulated wire, as one chunk written by *source* for *target*.

    ``inner`` is what the simulation knows travels inside the chunk's records (Eve does not); ``note`` says how
    Mallory made or changed the chunk; ``deliver_at`` holds it back until the virtual clock reaches that time.
    """

    source: str
    target: str
    data: bytes
    sent_at: float
    index: int
    inner: tuple[str, ...] = ()
    note: str = ""
    deliver_at: float | None = None


@dataclass
class WireRecord:
    """One entry of the simulation's trace: a chunk as it was delivered (after any interception)."""

    index: int
    time: float
    source: str
    target: str
    data: bytes
    types: tuple[str, ...]
    action: str = "delivered"  # or "dropped", "held", "modified", "injected", "replayed", "reordered", ...
    inner: tuple[str, ...] = ()  # inner frame types (the simulation's god view, not Eve's)

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def label(self) -> str:
        """A short name for a diagram: inner types for records, the clear type otherwise."""
        if not self.data:
            return "end of stream"
        if self.inner:
            return "record[" + ", ".join(self.inner) + "]"
        return ", ".join(self.types) or "?"


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
        if self.held and (not self.in_flight or self.held[0].deliver_at <= self.now):  # type: ignore[operator]
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
                    self.held.sort(key=lambda f: (f.deliver_at, f.index))
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
                          data=frame.data, types=_frame_types(frame.data), action=action, inner=frame.inner)

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

    def events_of(self, name: str, kind: type[Any] | None = None) -> list[Any]:
        self._collect(name)
        return [e for e in self.events[name] if kind is None or isinstance(e, kind)]

    def last_event(self, name: str, kind: type[Any]) -> Any:
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
             "visible_types": r.types, "clear_fields": _clear_fields(r.data), "prefix_hex": r.data[:24].hex()}
            for r in self.trace if r.action != "held"
        ]


def _frame_bodies(data: bytes) -> list[bytes] | None:
    decoder = FrameDecoder(max_frame_bytes=1 << 30)
    bodies: list[bytes] = []
    try:
        decoder.feed(data)
        while (body := decoder.next_frame()) is not None:
            bodies.append(body)
    except SecureChatError:
        return None
    return bodies


def _frame_types(data: bytes) -> tuple[str, ...]:
    """The ``type`` of each clear frame in a chunk, as Eve would parse it."""
    bodies = _frame_bodies(data)
    if bodies is None:
        return ("?",)
    types: list[str] = []
    for body in bodies:
        try:
            types.append(str(parse_json(body)["type"]))
        except SecureChatError:
            types.append("?")
    return tuple(types)


def _clear_fields(data: bytes) -> tuple[str, ...]:
    """Every JSON field name Eve can read in a chunk (a record shows only ``type`` and ``data``)."""
    names: list[str] = []
    for body in _frame_bodies(data) or []:
        try:
            names.extend(k for k in parse_json(body) if k not in names)
        except SecureChatError:
            continue
    return tuple(names)


# --- Mallory: interceptor factories ------------------------------------------------------------------------------


class _Attack:
    """Base of the Mallory helpers: acts on the *nth* .. *nth+count-1* chunks that match the filters.

    Filters: *source*/*target* names, *carrying* (an inner message type, using the simulation's knowledge of
    what a record carries, or a clear type) and *when* (any predicate). ``count=None`` acts on every match.
    """

    def __init__(self, *, source: str | None = None, target: str | None = None, carrying: str | None = None,
                 when: Callable[[Frame], bool] | None = None, nth: int = 1, count: int | None = 1) -> None:
        self.source, self.target, self.carrying, self.when = source, target, carrying, when
        self.nth, self.count = nth, count
        self.seen = 0  # matching chunks so far
        self.hits: list[Frame] = []  # the chunks acted on, as they arrived

    def matches(self, frame: Frame) -> bool:
        if not frame.data or (self.source is not None and frame.source != self.source):
            return False
        if self.target is not None and frame.target != self.target:
            return False
        if self.carrying is not None and self.carrying not in frame.inner + _frame_types(frame.data):
            return False
        return self.when is None or self.when(frame)

    def __call__(self, frame: Frame) -> list[Frame]:
        if not self.matches(frame):
            return self.other(frame)
        self.seen += 1
        last = None if self.count is None else self.nth + self.count - 1
        if self.seen < self.nth or (last is not None and self.seen > last):
            return self.other(frame)
        self.hits.append(frame)
        return self.act(frame)

    def act(self, frame: Frame) -> list[Frame]:
        raise NotImplementedError

    def other(self, frame: Frame) -> list[Frame]:
        return [frame]


class _Fn(_Attack):
    def __init__(self, act: Callable[[Frame], list[Frame]], **match: Any) -> None:
        super().__init__(**match)
        self._act = act

    def act(self, frame: Frame) -> list[Frame]:
        return self._act(frame)


def drop(**match: Any) -> Interceptor:
    """Mallory deletes the matching chunk: the receiver never sees it."""
    return _Fn(lambda f: [], **match)


def delay(seconds: float, **match: Any) -> Interceptor:
    """Mallory holds the matching chunk for *seconds* of virtual time; later chunks overtake it."""
    return _Fn(lambda f: [replace(f, deliver_at=f.sent_at + seconds, note="delayed")], **match)


def duplicate(copies: int = 1, **match: Any) -> Interceptor:
    """Mallory delivers the matching chunk, then *copies* identical copies right after it (a replay)."""
    return _Fn(lambda f: [f] + [replace(f, note="replayed")] * copies, **match)


def replay(after: float, **match: Any) -> Interceptor:
    """Mallory delivers the matching chunk, and a recorded copy again *after* virtual seconds."""
    return _Fn(lambda f: [f, replace(f, note="replayed", deliver_at=f.sent_at + after)], **match)


def modify(change: Callable[[bytes], bytes], **match: Any) -> Interceptor:
    """Mallory rewrites the matching chunk's bytes with *change*."""
    return _Fn(lambda f: [replace(f, data=change(f.data), note="modified")], **match)


def flip_bit(offset: int, *, source: str | None = None, target: str | None = None,
             when: Callable[[Frame], bool] | None = None, bit: int = 0, **match: Any) -> Interceptor:
    """An interceptor that flips one bit of the first matching chunk at *offset* (from its end if negative)."""

    def change(data: bytes) -> bytes:
        out = bytearray(data)
        out[offset] ^= 1 << bit
        return bytes(out)

    return _Fn(lambda f: [replace(f, data=change(f.data))], source=source, target=target, when=when, **match)


def tamper(offset: int = -1, *, bit: int = 0, **match: Any) -> Interceptor:
    """Mallory flips one bit of the ciphertext (the tag, for a negative *offset*) of the chunk's first record.

    She parses the clear framing and base64 herself, so the receiver's record layer, not its JSON parser, is
    what meets the change (docs/THREATS.md 32). Chunks without a record pass unchanged.
    """

    def change(data: bytes) -> bytes:
        bodies = _frame_bodies(data) or []
        for i, body in enumerate(bodies):
            message = decode_message(body)
            if isinstance(message, m.Record):
                sealed = bytearray(message.data)
                sealed[offset] ^= 1 << bit
                bodies[i] = encode_frame(m.Record(data=bytes(sealed)))[4:]
                return b"".join(length_prefixed(b) for b in bodies)
        return data

    return _Fn(lambda f: [replace(f, data=change(f.data), note="modified")], **match)


def reflect(**match: Any) -> Interceptor:
    """Mallory sends the matching chunk back to the party that wrote it, as if the other side had."""
    return _Fn(lambda f: [replace(f, source=f.target, target=f.source, note="reflected")], **match)


def inject_frame(data: bytes | Callable[[Frame], bytes], *, before: bool = False, **match: Any) -> Interceptor:
    """Mallory adds a chunk of her own (to the same receiver) just after (or *before*) the matching chunk."""

    def act(f: Frame) -> list[Frame]:
        extra = replace(f, data=data(f) if callable(data) else data, inner=(), note="injected")
        return [extra, f] if before else [f, extra]

    return _Fn(act, **match)


def capture(into: list[Frame], **match: Any) -> Interceptor:
    """Passive Mallory: copy every matching chunk into *into* (for a later ``Simulation.inject``)."""
    def keep(frame: Frame) -> list[Frame]:
        into.append(frame)
        return [frame]

    return _Fn(keep, **{"count": None, **match})


class _Reorder(_Attack):
    """Holds the matching chunk, then delivers it just after the next chunk on the same (source, target) path."""

    def __init__(self, **match: Any) -> None:
        super().__init__(**match)
        self._held: Frame | None = None

    def act(self, frame: Frame) -> list[Frame]:
        if self._held is not None:
            return self._release(frame)
        self._held = frame
        return [replace(frame, deliver_at=HELD, note="held")]

    def other(self, frame: Frame) -> list[Frame]:
        held = self._held
        if held is not None and (frame.source, frame.target) == (held.source, held.target) and frame.data:
            return self._release(frame)
        return [frame]

    def _release(self, frame: Frame) -> list[Frame]:
        held, self._held = self._held, None
        assert held is not None
        return [frame, replace(held, note="reordered", deliver_at=None)]


def reorder(**match: Any) -> Interceptor:
    """Mallory swaps the matching chunk with the next one on the same path (frames k and k+1, docs/THREATS.md 31)."""
    return _Reorder(**match)


def chain(*interceptors: Interceptor) -> Interceptor:
    """Apply several interceptors in turn: each output chunk of one goes through the next."""

    def intercept(frame: Frame) -> list[Frame]:
        frames = [frame]
        for interceptor in interceptors:
            frames = [out for f in frames
                      for out in ([f] if f.deliver_at is not None else list(interceptor(f) or []))]
        return frames

    return intercept


__all__ = [
    "HELD", "SERVER", "Frame", "Interceptor", "Simulation", "WireRecord",
    "capture", "chain", "delay", "drop", "duplicate", "flip_bit", "inject_frame", "modify", "reflect", "reorder",
    "replay", "tamper",
]
