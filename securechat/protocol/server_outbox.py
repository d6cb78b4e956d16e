"""The server's view of one connection (``Peer``) and everything the server sends (``Outbox``).

Owns: ``Peer`` (one connection: its PeerState, channel, frame decoder and queued frames) and ``Outbox``: frames
in clear before the channel is up, inner frames after it (all those queued for a peer in one round are packed
into as few records as the record limit allows, PROTOCOL.md 5.3), error replies (PROTOCOL.md 9), the server's
events and the trace. The server's parts (``Accounts``, ``ChatRelay``, ``KeylessModes``) send only through it.
Must not: decide what to send or when to close, or touch sockets and clocks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import ErrorCode
from . import events as ev
from . import messages as m
from .channel import RecordLayer
from .codec import FrameDecoder, encode_frame, encode_record_frame, pack_records
from .limits import TokenBucket
from .states import PeerState

Tracer = Callable[[ev.TraceEntry], None]


class Request(Protocol):
    """What an ``error`` reply needs of a request that is not a message (a job): its request id, if any.

    A message's ``rid`` (most messages have one) and ``TYPE`` are read where present."""

    @property
    def rid(self) -> int | None: ...


@dataclass(eq=False)
class Peer:
    id: int
    address: str
    opened_at: float
    state: PeerState = PeerState.AWAIT_HELLO
    decoder: FrameDecoder = field(default_factory=FrameDecoder)
    records: RecordLayer | None = None
    transcript: bytes = b""
    username: str | None = None
    out: bytearray = field(default_factory=bytearray)
    inner: list[bytes] = field(default_factory=list)
    closing: bool = False
    frame_started: float | None = None
    register: m.Register | None = None
    register_nonce: bytes = b""
    bucket: TokenBucket | None = None
    errors: int = 0  # malformed inner frames, and refusals before login, answered so far (server.py's error cap)
    register_budget: TokenBucket | None = None  # PROTOCOL.md 6.1: this connection's register requests
    spoke: bool = False  # a record arrived after the handshake (PROTOCOL.md 10.1: first request deadline)


class Outbox:
    """Queues frames per peer and seals them into records when the driver asks for bytes."""

    def __init__(self, peers: dict[int, Peer], trace: Tracer | None = None,
                 after_error: Callable[[Peer, bool, bool], None] | None = None) -> None:
        self._peers = peers
        self._trace = trace
        self._after_error = after_error  # (peer, fatal, counted): the connection's policy on answered errors
        self._events: deque[ev.ServerEvent] = deque()
        self._dirty: set[int] = set()

    # --- events and trace ---------------------------------------------------------------------------------

    def emit(self, event: ev.ServerEvent) -> None:
        self._events.append(event)

    def next_event(self) -> ev.ServerEvent | None:
        return self._events.popleft() if self._events else None

    @property
    def tracing(self) -> bool:
        return self._trace is not None

    def trace(self, p: Peer, direction: str, layer: str, kind: str, data: bytes) -> None:
        if self._trace is not None:
            self._trace(ev.TraceEntry(direction=direction, peer=p.id, layer=layer, type=kind, size=len(data),
                                      data=data))

    # --- sending ------------------------------------------------------------------------------------------

    def send_clear(self, p: Peer, message: m.Message) -> None:
        data = encode_frame(message)
        self.trace(p, "send", "clear", message.TYPE, data)
        p.out += data
        self._dirty.add(p.id)

    def send(self, p: Peer, message: m.Message) -> None:
        self.queue(p, encode_frame(message), message.TYPE)

    def queue(self, p: Peer, frame: bytes, kind: str) -> None:
        if self._trace is not None:
            self.trace(p, "send", "inner", kind, frame)
        p.inner.append(frame)
        self._dirty.add(p.id)

    def queue_to(self, peer: int, frame: bytes, kind: str) -> None:
        """``queue`` by peer id (the relay's hot path: one call per recipient)."""
        p = self._peers[peer]
        if self._trace is not None:
            self.trace(p, "send", "inner", kind, frame)
        p.inner.append(frame)
        self._dirty.add(peer)

    def send_to(self, peer: int, message: m.Message) -> None:
        self.queue_to(peer, encode_frame(message), message.TYPE)

    def peer(self, peer: int) -> Peer:
        return self._peers[peer]

    def find(self, peer: int) -> Peer | None:
        return self._peers.get(peer)

    def reply_error(self, p: Peer, code: ErrorCode, text: str, request: m.Message | Request | None, *,
                    fatal: bool = False, ref: str | None = None, counted: bool = False) -> None:
        """Answer *request* with an ``error`` (PROTOCOL.md 9); *counted*: already counted against the peer."""
        rid = getattr(request, "rid", None)
        kind = ref or getattr(request, "TYPE", None)
        # PROTOCOL.md 9: the message field holds at most 512 characters; long texts (name lists) are cut.
        text = text if len(text) <= 512 else text[:509] + "..."
        error = m.Error(code=code.value, message=text, rid=rid, ref=kind)
        if p.records is not None:
            self.send(p, error)
        else:
            self.send_clear(p, error)
        self.emit(ev.ErrorSent(peer=p.id, code=code, ref=kind, fatal=fatal))
        if self._after_error is not None:
            self._after_error(p, fatal, counted)

    def mark(self, p: Peer) -> None:
        """Have *p* looked at in the next round even with nothing queued (a closing peer)."""
        self._dirty.add(p.id)

    # --- draining -----------------------------------------------------------------------------------------

    def take_dirty(self) -> set[int]:
        dirty, self._dirty = self._dirty, set()
        return dirty

    def seal(self, p: Peer) -> None:
        """Seal every inner frame queued for *p* into records (PROTOCOL.md 5.3) and append them to its bytes.

        Raises:
            SecureChatError: the record counter is exhausted (PROTOCOL.md 5.2); nothing more can be sealed.
        """
        assert p.records is not None
        for plaintext in pack_records(p.inner):
            record = encode_record_frame(p.records.seal(plaintext))
            if self._trace is not None:
                self.trace(p, "send", "record", "record", record)
            p.out += record
        p.inner.clear()
