"""The WebSocket frame transport both ends share (docs/PROTOCOL.md 15.3-15.6), sans-I/O over wsproto.

Owns: the binding's message rules and timers: one securechat frame per binary message (the 4-byte length stays
and must match the message), text refused, a message size cap tied to ``codec.MAX_FRAME_BYTES`` and a message
deadline, ping/pong keepalive and an idle timeout, the closing handshake and its grace period, and the close
codes mapped from securechat's error codes (15.6). ``WsEndpoint`` is the base of ``WsServerEndpoint``
(ws_server.py) and ``WsClientEndpoint`` (ws_client.py), which add their side of the opening handshake.
Like the protocol core, nothing here touches a socket, a thread or a clock: bytes in, bytes out, ``now`` passed
in. Must not: parse securechat messages (only the 4-byte frame header) or log contents.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum

from wsproto import ConnectionType, WSConnection
from wsproto.events import BytesMessage, CloseConnection, Event, Message, Ping, Pong, TextMessage
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from ..errors import ErrorCode
from ..protocol.codec import HEADER_BYTES, MAX_FRAME_BYTES

# PROTOCOL.md 15.3: one message is one securechat frame, its 4-byte length included.
MAX_MESSAGE_BYTES = HEADER_BYTES + MAX_FRAME_BYTES
# PROTOCOL.md 15.5: a ping after this much silence keeps proxies (nginx's default read timeout is 60 s) and NATs
# from dropping the connection; nothing at all received for IDLE_TIMEOUT_SECONDS closes it.
PING_INTERVAL_SECONDS = 20.0
IDLE_TIMEOUT_SECONDS = 60.0
# PROTOCOL.md 15.3: a message (all its fragments) must complete within this of its first byte, as a frame must on
# TCP (ServerConfig.frame_deadline_seconds): a trickled message cannot pin its buffer for ever.
MESSAGE_DEADLINE_SECONDS = 30.0
CLOSE_GRACE_SECONDS = 5.0  # after our close frame, the peer has this long to answer before the TCP close


def frame_length(header: bytes | bytearray) -> int:
    """The body length a securechat frame header announces (PROTOCOL.md 3.1: 4 bytes, big-endian)."""
    return int.from_bytes(header[:HEADER_BYTES], "big")


class CloseCode(IntEnum):
    """RFC 6455 section 7.4.1 codes the binding uses (PROTOCOL.md 15.6)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    ABNORMAL = 1006  # never sent: the TCP connection ended without a close frame
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013


# PROTOCOL.md 15.6: the close code for a connection the server ends after an ``error`` frame; the close reason
# is the error code's value, so a client sees the same code whichever layer it reads.
_CLOSE_FOR_ERROR = {
    ErrorCode.FRAME_TOO_LARGE: CloseCode.MESSAGE_TOO_BIG,
    ErrorCode.SERVER_BUSY: CloseCode.TRY_AGAIN_LATER,
    ErrorCode.INTERNAL_ERROR: CloseCode.INTERNAL_ERROR,
}


def close_code_for(error: ErrorCode | None) -> CloseCode:
    """The WebSocket close code for a connection ended by *error* (None: a normal end, e.g. after ``bye``)."""
    if error is None:
        return CloseCode.NORMAL
    return _CLOSE_FOR_ERROR.get(error, CloseCode.POLICY_VIOLATION)


class WsState(Enum):
    HANDSHAKE = "handshake"  # the opening handshake is under way
    OPEN = "open"            # binary messages flow
    CLOSING = "closing"      # a close frame was sent or received; nothing more reaches the core
    CLOSED = "closed"        # the TCP connection should now be closed (after data_to_send is written)


@dataclass(frozen=True)
class Closed:
    """Why the WebSocket session ended: the close code and reason sent or received (1006: none)."""

    code: int
    reason: str
    by_peer: bool


class FrameSplitter:
    """Cuts a securechat byte stream into whole frames (4-byte big-endian length + body), PROTOCOL.md 3.1."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def split(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        if not buffer and len(data) >= HEADER_BYTES and frame_length(data) + HEADER_BYTES == len(data):
            return [data]  # the common case: exactly one frame
        buffer += data
        frames: list[bytes] = []
        offset = 0
        while len(buffer) - offset >= HEADER_BYTES:
            end = offset + HEADER_BYTES + frame_length(buffer[offset:offset + HEADER_BYTES])
            if end > len(buffer):
                break
            frames.append(bytes(buffer[offset:end]))
            offset = end
        del buffer[:offset]
        return frames


class WsEndpoint:
    """What both ends share: messages in (one frame each, binary only, capped) and out, ping/pong, close.

    A subclass adds its side of the opening handshake through four hooks: ``_receive_handshake`` (bytes while
    HANDSHAKE), ``_handshake_timer``, ``_handshake_failed`` (wsproto refused the handshake) and ``_other``
    (handshake events: a Request, an AcceptConnection, a rejection).
    """

    def __init__(self, kind: ConnectionType, now: float) -> None:
        self._ws = WSConnection(kind)
        self.state = WsState.HANDSHAKE
        self.closed: Closed | None = None
        self._out = bytearray()
        self._app = bytearray()
        self._message = bytearray()
        self._splitter = FrameSplitter()
        self._last_received = now
        self._last_ping = now
        self._close_sent_at: float | None = None
        self._message_started: float | None = None  # when the message being received began (PROTOCOL.md 15.3)

    # --- driver API -----------------------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Bytes for the TCP connection (handshake, messages, pongs, close frames), then empty."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def app_data(self) -> bytes:
        """The securechat byte stream received since the last call (whole frames, in order)."""
        data = bytes(self._app)
        self._app.clear()
        return data

    def send(self, stream: bytes) -> None:
        """Send securechat bytes: each whole frame in *stream* travels as one binary message (PROTOCOL.md 15.3)."""
        if self.state is not WsState.OPEN:
            return
        out = self._out
        encode = self._encode
        for frame in self._splitter.split(stream):
            out += encode(frame)

    def close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake (or give up on the handshake); the driver closes TCP once CLOSED."""
        if self.state is WsState.OPEN:
            try:
                self._out += self._ws.send(CloseConnection(code=code, reason=reason))
            except LocalProtocolError:
                pass
            self.closed = self.closed or Closed(code, reason, by_peer=False)
            self.state = WsState.CLOSING
            self._close_sent_at = None  # the next timer tick starts the grace period
        elif self.state is WsState.HANDSHAKE:
            self.closed = self.closed or Closed(code, reason, by_peer=False)
            self.state = WsState.CLOSED

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed bytes from TCP; ``b""`` is end of stream."""
        if self.state is WsState.CLOSED:
            return
        if not data:
            self.closed = self.closed or Closed(CloseCode.ABNORMAL, "connection ended", by_peer=True)
            self.state = WsState.CLOSED
            return
        self._last_received = now
        if self.state is not WsState.HANDSHAKE:
            self._receive_frames(data)
            return
        try:
            self._receive_handshake(data, now)
        except RemoteProtocolError as exc:  # wsproto (h11) refused the opening handshake
            self._handshake_failed(exc)
            return
        self._pump()

    def handle_timer(self, now: float) -> None:
        """Deadlines and keepalive (PROTOCOL.md 15.2, 15.5): call about once a second."""
        if self.state is WsState.HANDSHAKE:
            self._handshake_timer(now)
        elif self.state is WsState.OPEN:
            if self._message_started is not None and now - self._message_started > MESSAGE_DEADLINE_SECONDS:
                self._message.clear()
                self.close(CloseCode.POLICY_VIOLATION, "message not completed in time")
            elif now - self._last_received > IDLE_TIMEOUT_SECONDS:
                self.close(CloseCode.POLICY_VIOLATION, "idle timeout")
            elif now - max(self._last_received, self._last_ping) > PING_INTERVAL_SECONDS:
                self._last_ping = now
                self._out += self._ws.send(Ping(payload=b"keepalive"))
        elif self.state is WsState.CLOSING:
            if self._close_sent_at is None:
                self._close_sent_at = now
            elif now - self._close_sent_at > CLOSE_GRACE_SECONDS:
                self.state = WsState.CLOSED

    # --- hooks for the two ends ----------------------------------------------------------------------------

    def _encode(self, frame: bytes) -> bytes:
        return self._ws.send(Message(data=frame))

    def _receive_frames(self, data: bytes) -> None:
        self._ws.receive_data(data)
        self._pump()

    def _receive_handshake(self, data: bytes, now: float) -> None:
        self._ws.receive_data(data)

    def _handshake_timer(self, now: float) -> None:
        pass

    def _handshake_failed(self, exc: RemoteProtocolError) -> None:
        self.closed = Closed(CloseCode.PROTOCOL_ERROR, str(exc), by_peer=True)
        self.state = WsState.CLOSED

    def _other(self, event: Event) -> None:
        pass

    # --- internals ------------------------------------------------------------------------------------------

    def _opened(self) -> None:
        self.state = WsState.OPEN

    def _pump(self) -> None:
        try:
            for event in self._ws.events():
                if self.state is WsState.CLOSED:
                    return
                self._event(event)
        except RemoteProtocolError as exc:
            self._handshake_failed(exc)

    def _event(self, event: Event) -> None:
        if isinstance(event, BytesMessage):
            self._bytes(event)
        elif isinstance(event, TextMessage):
            self.close(CloseCode.UNSUPPORTED_DATA, "text messages are not accepted: binary only")
        elif isinstance(event, Ping):
            if self.state is WsState.OPEN:
                self._out += self._ws.send(event.response())
        elif isinstance(event, Pong):
            pass  # it already counted as received data
        elif isinstance(event, CloseConnection):
            if self.state is WsState.OPEN:
                self.closed = Closed(event.code, event.reason or "", by_peer=True)
                try:
                    self._out += self._ws.send(event.response())
                except LocalProtocolError:
                    pass
            # A close we started is now answered (or the peer's close answered): both sides are done.
            self.state = WsState.CLOSED
        else:
            self._other(event)

    def _bytes(self, event: BytesMessage) -> None:
        if self.state is not WsState.OPEN:
            return
        message = self._message
        data = event.data
        if not message and event.message_finished:
            if len(data) > MAX_MESSAGE_BYTES:
                self._too_big()
                return
            self._frame(bytes(data))
            return
        if not message:
            self._message_started = self._last_received
        message += data
        if len(message) > MAX_MESSAGE_BYTES:
            message.clear()
            self._too_big()
            return
        if event.message_finished:
            whole = bytes(message)
            message.clear()
            self._message_started = None
            self._frame(whole)

    def _too_big(self) -> None:
        self.close(CloseCode.MESSAGE_TOO_BIG, f"message over {MAX_MESSAGE_BYTES} bytes")

    def _frame(self, message: bytes) -> None:
        # PROTOCOL.md 15.3: exactly one securechat frame per message, its length prefix equal to the rest.
        if len(message) < HEADER_BYTES or frame_length(message) != len(message) - HEADER_BYTES:
            self.close(CloseCode.PROTOCOL_ERROR, "a message must hold exactly one securechat frame")
            return
        self._app += message
