"""The client's end of the connection: its state, frames, records, request ids and events (PROTOCOL.md 3, 5, 8.1).

Owns: the client's ``ClientState`` (moved only through the table in ``states.py``), the frame decoder, the record
layer once the handshake has made it, the inner frames queued for the next record (PROTOCOL.md 5.2: all inner
frames queued since the last ``data_to_send`` travel in one record), request ids, the trace and the queue of
events for the application. Every part of ``ClientProtocol`` sends and reports through it: ``request`` (a command
that takes a request id), ``send`` (a reply or a round message inside the channel), ``emit`` (an event).
Must not: decide what a message means, or touch sockets, threads or clocks (``now`` is the time of the input
being handled, set by ``ClientProtocol.receive_data``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from ..errors import ErrorCode, LocalProtocolError, RemoteProtocolError, error_code
from . import events as ev
from . import messages as m
from .channel import RecordLayer
from .codec import MAX_FRAME_BYTES, FrameDecoder, encode_frame, encode_record_frame, pack_records, split_frames
from .fields import Name
from .states import RECEIVE, SEND, ClientState, next_client_state

Tracer = Callable[[ev.TraceEntry], None]


_NAME = Name()


def local_username(raw: str) -> str:
    """A name given to a command, normalised (PROTOCOL.md 3.2); a bad one is the caller's mistake:
    LocalProtocolError (BAD_FIELD), nothing sent. The rule is the message field's own; commands that put a name
    straight into a message leave it to the message's construction (message_base.py)."""
    return _NAME.check("username", raw)


class ClientLink:
    """One connection's sending and receiving half, shared by the parts of ``ClientProtocol``. Not thread-safe."""

    def __init__(self, *, trace: Tracer | None = None) -> None:
        self.state = ClientState.IDLE
        self.decoder = FrameDecoder()
        self.records: RecordLayer | None = None  # None until the handshake completes (PROTOCOL.md 5)
        self.inner: list[bytes] = []  # inner frames waiting for the next record
        self.next_rid = 1
        self.now = 0.0
        self.events: deque[ev.Event] = deque()
        self._out = bytearray()
        self._trace = trace

    @property
    def closed(self) -> bool:
        return self.state is ClientState.CLOSED

    # --- the state machine (states.CLIENT_TRANSITIONS) ----------------------------------------------------

    def check(self, kind: str) -> ClientState:
        """The state after sending *kind*; raises LocalProtocolError, changing nothing, if it may not be sent now."""
        return next_client_state(self.state, SEND, kind)

    def sent(self, kind: str) -> None:
        self.state = next_client_state(self.state, SEND, kind)

    def received(self, kind: str) -> None:
        self.state = next_client_state(self.state, RECEIVE, kind)

    def close(self, code: ErrorCode | str | None, message: str) -> None:
        self.state = ClientState.CLOSED
        self.emit(ev.ConnectionClosed(code=None if code is None else error_code(code), message=message))

    # --- sending --------------------------------------------------------------------------------------------

    def take_rid(self) -> int:
        rid = self.next_rid
        self.next_rid += 1
        return rid

    def request(self, message: m.Message) -> int:
        """Check, encode, then commit a command: if any step fails nothing is sent and the state is unchanged.
        *message* carries ``next_rid``; the rid is used up and returned. *message* checked its fields when it was
        built (a bad name or a lone surrogate in a password is already a LocalProtocolError there)."""
        state = self.check(message.TYPE)
        data = encode_frame(message)
        self.state = state
        rid = self.take_rid()
        self.traced("send", "inner", message.TYPE, data)
        self.inner.append(data)
        return rid

    def send(self, message: m.Message) -> None:
        """Queue *message* inside the channel as it is (a reply, a round message, a certificate request)."""
        data = encode_frame(message)
        self.traced("send", "inner", message.TYPE, data)
        self.inner.append(data)

    def send_clear(self, message: m.Message) -> None:
        """Queue *message* outside the channel (only the handshake travels so, PROTOCOL.md 4)."""
        data = encode_frame(message)
        self.traced("send", "clear", message.TYPE, data)
        self._out += data

    def data_to_send(self) -> bytes:
        """All bytes to write now: inner frames queued since the last call travel in one record."""
        if self.inner and self.records is not None:
            for plaintext in pack_records(self.inner):
                record = encode_record_frame(self.records.seal(plaintext))
                self.traced("send", "record", "record", record)
                self._out += record
            self.inner = []
        out, self._out = bytes(self._out), bytearray()
        return out

    # --- receiving ------------------------------------------------------------------------------------------

    def open_channel(self, records: RecordLayer) -> None:
        """The handshake is done: records from now on, and frames up to the channel's limit (PROTOCOL.md 5.1)."""
        self.records = records
        self.decoder.max_frame_bytes = MAX_FRAME_BYTES

    def open_record(self, sealed: bytes) -> list[bytes]:
        """The inner frame bodies of one received record (raises if it does not authenticate, is out of order
        or is badly framed)."""
        assert self.records is not None
        return split_frames(self.records.open(sealed))

    # --- what the application sees -------------------------------------------------------------------------

    def emit(self, event: ev.Event) -> None:
        self.events.append(event)

    def emit_all(self, events: Iterable[ev.Event]) -> None:
        self.events.extend(events)

    def traced(self, direction: str, layer: str, kind: str, data: bytes) -> None:
        if self._trace is not None:
            self._trace(ev.TraceEntry(direction=direction, peer=None, layer=layer, type=kind, size=len(data),
                                      data=data))
