"""The WebSocket binding of securechat (docs/PROTOCOL.md section 15) as sans-I/O layers over wsproto.

Owns: ``WsServerEndpoint`` and ``WsClientEndpoint``, which turn the bytes of one TCP connection into the
securechat byte stream and back, with the binding's policy: the opening handshake (path ``/securechat``,
subprotocol ``securechat.v1``, the Origin rule, a size and line cap, a deadline), one securechat frame per
binary message (the 4-byte length stays and must match the message), text messages refused, a message size
cap tied to ``codec.MAX_FRAME_BYTES``, ping/pong keepalive and an idle timeout, and close codes mapped from
the securechat error codes (PROTOCOL.md 15.6). ``TlsLayer`` is the standard library's TLS as a sans-I/O layer
(``ssl.MemoryBIO``), for ``wss://`` without a proxy.

Like the protocol core, nothing here touches a socket, a thread or a clock: bytes in, bytes out, ``now`` passed
in. wsproto runs the opening handshake (with h11), control frames, text, fragments and every malformed frame;
the server's relay hot path (whole unfragmented binary frames in, binary frames out) is framed here, byte for
byte as wsproto would, because wsproto's general per-frame code cost more than the relay's own work
(docs/PERFORMANCE.md, "WebSocket against TCP"; tests/test_ws.py checks both paths agree). The drivers (``tcp_server.py``, ``transport.py``) move the bytes. Must not: parse securechat messages (only
the 4-byte frame header, to keep one frame per message) or log contents.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from enum import Enum, IntEnum

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from ..errors import ErrorCode
from ..protocol.codec import HEADER_BYTES, MAX_FRAME_BYTES

PATH = "/securechat"
SUBPROTOCOL = "securechat.v1"
# PROTOCOL.md 15.2: the request head (request line and headers) is capped in bytes and in lines, and must be
# complete within the deadline; a stalled or flooding handshake is answered 431/408 and closed.
MAX_REQUEST_HEAD_BYTES = 8 * 1024
MAX_HEADER_LINES = 48
HANDSHAKE_DEADLINE_SECONDS = 10.0
# PROTOCOL.md 15.2: opening handshakes under way at once (the server's connection caps apply from the upgrade on).
MAX_PENDING_HANDSHAKES = 256
MAX_PENDING_HANDSHAKES_PER_ADDRESS = 64
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
_LENGTH_OF = int.from_bytes


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


_REASONS = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 408: "Request Timeout",
            426: "Upgrade Required", 431: "Request Header Fields Too Large", 503: "Service Unavailable"}


def http_error(status: int, text: str, extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A short plain-text HTTP/1.1 answer that closes the connection (never echoes the request)."""
    body = (text + "\n").encode("ascii")
    lines = [f"HTTP/1.1 {status} {_REASONS[status]}", "Connection: close", "Content-Type: text/plain",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in extra)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


class _FrameSplitter:
    """Cuts a securechat byte stream into whole frames (4-byte big-endian length + body), PROTOCOL.md 3.1."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def split(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        if not buffer and len(data) >= HEADER_BYTES and _LENGTH_OF(data[:HEADER_BYTES], "big") + HEADER_BYTES \
                == len(data):
            return [data]  # the common case: exactly one frame
        buffer += data
        frames: list[bytes] = []
        offset = 0
        while len(buffer) - offset >= HEADER_BYTES:
            end = offset + HEADER_BYTES + _LENGTH_OF(buffer[offset:offset + HEADER_BYTES], "big")
            if end > len(buffer):
                break
            frames.append(bytes(buffer[offset:end]))
            offset = end
        del buffer[:offset]
        return frames


class _Endpoint:
    """What both ends share: messages in (one frame each, binary only, capped) and out, ping/pong, close."""

    def __init__(self, kind: ConnectionType, now: float) -> None:
        self._ws = WSConnection(kind)
        self.state = WsState.HANDSHAKE
        self.closed: Closed | None = None
        self._out = bytearray()
        self._app = bytearray()
        self._message = bytearray()
        self._splitter = _FrameSplitter()
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

    def _encode(self, frame: bytes) -> bytes:
        return self._ws.send(Message(data=frame))

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

    def _receive_frames(self, data: bytes) -> None:
        self._ws.receive_data(data)
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

    # --- internals ------------------------------------------------------------------------------------------

    def _receive_handshake(self, data: bytes, now: float) -> None:
        self._ws.receive_data(data)

    def _handshake_timer(self, now: float) -> None:
        pass

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

    def _handshake_failed(self, exc: RemoteProtocolError) -> None:
        self.closed = Closed(CloseCode.PROTOCOL_ERROR, str(exc), by_peer=True)
        self.state = WsState.CLOSED

    def _event(self, event: object) -> None:
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

    def _other(self, event: object) -> None:
        pass

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
        if len(message) < HEADER_BYTES or _LENGTH_OF(message[:HEADER_BYTES], "big") != len(message) - HEADER_BYTES:
            self.close(CloseCode.PROTOCOL_ERROR, "a message must hold exactly one securechat frame")
            return
        self._app += message


def server_binary_frame(payload: bytes) -> bytes:
    """One unfragmented, unmasked binary frame (RFC 6455 5.2), byte for byte what wsproto's server writes.

    The relay's hot path: the engine thread frames every record it sends, and wsproto's general encoder costs
    several times this (docs/PERFORMANCE.md, WebSocket). Control frames, masking and parsing stay wsproto's.
    """
    n = len(payload)
    if n < 126:
        return bytes((0x82, n)) + payload
    if n < 1 << 16:
        return b"\x82\x7e" + n.to_bytes(2, "big") + payload
    return b"\x82\x7f" + n.to_bytes(8, "big") + payload


_FAST_FIRST_BYTE = 0x82  # FIN, no RSV bits, opcode 2 (binary)


class WsServerEndpoint(_Endpoint):
    """The server end of one WebSocket connection.

    Args:
        now: when the TCP connection was accepted (the handshake deadline runs from here).
        allowed_origins: browser origins allowed to connect (``https://chat.example.org``); requests without an
            Origin header (non-browser clients) are always allowed (PROTOCOL.md 15.2).
    """

    def __init__(self, now: float, *, allowed_origins: frozenset[str] = frozenset()) -> None:
        super().__init__(ConnectionType.SERVER, now)
        self._allowed_origins = allowed_origins
        self._opened_at = now
        self._head = bytearray()
        self.status: int | None = None  # the HTTP status answered (101, or why it was refused)
        self._inbuf = bytearray()   # the start of a frame not yet complete (fast path, below)
        self._fragmented = False    # a fragmented message is under way in wsproto
        self._wsproto_owns = False  # wsproto holds a partial frame: every later byte goes to it
        self.just_opened = False  # True once, after the handshake completed: the driver tells the core

    def _encode(self, frame: bytes) -> bytes:
        return server_binary_frame(frame)  # only while OPEN (send checks), as wsproto would

    def _receive_frames(self, data: bytes) -> None:
        """The relay's inbound hot path. Frames are cut out here by their headers; the common frame (a whole,
        masked, unfragmented binary message with a minimally encoded length, no RSV bit) is unmasked and taken
        directly, byte for byte what wsproto would yield; every other frame (control frames, text, fragments,
        anything malformed) goes to wsproto whole, in order, so wsproto never holds a partial frame and applies
        all of RFC 6455's checks to them. A data frame announcing more than MAX_MESSAGE_BYTES is refused from its
        header (1009), before any payload is buffered (PROTOCOL.md 15.3)."""
        if self.state is not WsState.OPEN or self._wsproto_owns:
            if self._inbuf:
                data, self._inbuf = bytes(self._inbuf) + data, bytearray()
            super()._receive_frames(data)
            return
        buf = self._inbuf
        buf += data
        offset, size = 0, len(buf)
        while size - offset >= 2 and self.state is WsState.OPEN:
            first, second = buf[offset], buf[offset + 1]
            length, head = second & 0x7F, 2
            if length == 126:
                if size - offset < 4:
                    break
                length, head = int.from_bytes(buf[offset + 2:offset + 4], "big"), 4
                minimal = length >= 126
            elif length == 127:
                if size - offset < 10:
                    break
                length, head = int.from_bytes(buf[offset + 2:offset + 10], "big"), 10
                minimal = length >= 1 << 16 and length < 1 << 63
            else:
                minimal = True
            opcode = first & 0x0F
            regular = second & 0x80 and not first & 0x70 and (opcode in (0, 1, 2) or (opcode in (8, 9, 10) and
                                                                                        first & 0x80 and length < 126))
            if not regular or not minimal:  # wsproto refuses it from its header: hand over what there is
                self._wsproto_owns = True
                rest = bytes(buf[offset:])
                del buf[:]
                super()._receive_frames(rest)
                return
            if opcode in (0, 1, 2) and length > MAX_MESSAGE_BYTES:
                del buf[:]
                self._too_big()
                return
            end = offset + head + 4 + length
            if end > size:
                break
            if first == _FAST_FIRST_BYTE and not self._fragmented:
                key = bytes(buf[offset + head:offset + head + 4])
                payload = int.from_bytes(buf[offset + head + 4:end], "big") ^ int.from_bytes(
                    (key * (length // 4 + 1))[:length], "big")
                self._frame(payload.to_bytes(length, "big"))
            else:
                if opcode in (1, 2):
                    self._fragmented = not first & 0x80
                elif opcode == 0 and first & 0x80:
                    self._fragmented = False
                super()._receive_frames(bytes(buf[offset:end]))
            offset = end
        if self.state is not WsState.OPEN:
            del buf[:]
            return
        del buf[:offset]
        # PROTOCOL.md 15.3: the message deadline also covers a frame still arriving here
        if buf and self._message_started is None:
            self._message_started = self._last_received
        elif not buf and not self._message:
            self._message_started = None

    def take_opened(self) -> bool:
        """True exactly once, when the opening handshake has just completed."""
        opened, self.just_opened = self.just_opened, False
        return opened

    def _refuse(self, status: int, text: str, extra: tuple[tuple[str, str], ...] = ()) -> None:
        self._out += http_error(status, text, extra)
        self.status = status
        self.closed = Closed(CloseCode.POLICY_VIOLATION, f"http {status}: {text}", by_peer=False)
        self.state = WsState.CLOSED

    def _handshake_timer(self, now: float) -> None:
        if now - self._opened_at > HANDSHAKE_DEADLINE_SECONDS:
            self._refuse(408, "opening handshake not completed in time")

    def _receive_handshake(self, data: bytes, now: float) -> None:
        if self._head is None:  # pragma: no cover - state says HANDSHAKE only while the head is collected
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        head = self._head if end < 0 else self._head[:end]
        if (end < 0 and len(head) > MAX_REQUEST_HEAD_BYTES) or end > MAX_REQUEST_HEAD_BYTES:
            self._refuse(431, "request head too large")
            return
        if head.count(b"\n") > MAX_HEADER_LINES:
            self._refuse(431, "too many header lines")
            return
        if end < 0:
            return
        problem = self._check_head(bytes(head))
        if problem is not None:
            self._refuse(*problem)
            return
        whole = bytes(self._head)
        self._head.clear()
        self._ws.receive_data(whole)

    def _check_head(self, head: bytes) -> tuple[int, str] | tuple[int, str, tuple[tuple[str, str], ...]] | None:
        """The binding's checks before wsproto's own (PROTOCOL.md 15.2, in this order)."""
        try:
            text = head.decode("ascii")
        except UnicodeDecodeError:
            return 400, "request head is not ASCII"
        lines = text.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or parts[2] not in ("HTTP/1.1",):
            return 400, "not an HTTP/1.1 request"
        headers: dict[str, list[str]] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                return 400, "malformed header line"
            headers.setdefault(name.lower(), []).append(value.strip())
        upgrade = ",".join(headers.get("upgrade", [])).lower()
        if parts[0] != "GET" or "websocket" not in [t.strip() for t in upgrade.split(",")]:
            return 426, "this port speaks WebSocket only: GET /securechat with Upgrade: websocket", (
                ("Upgrade", "websocket"), ("Sec-WebSocket-Protocol", SUBPROTOCOL))
        if parts[1].split("?", 1)[0] != PATH:
            return 404, f"the securechat endpoint is {PATH}"
        origins = headers.get("origin", [])
        if len(origins) > 1 or (origins and origins[0] not in self._allowed_origins):
            return 403, "origin not allowed"
        offered = [t.strip() for v in headers.get("sec-websocket-protocol", []) for t in v.split(",")]
        if SUBPROTOCOL not in offered:
            return 400, f"subprotocol {SUBPROTOCOL} required (Sec-WebSocket-Protocol)"
        return None

    def _handshake_failed(self, exc: RemoteProtocolError) -> None:
        hint = exc.event_hint
        if isinstance(hint, RejectConnection) and hint.status_code == 426:  # a WebSocket version we do not speak
            self._refuse(426, "WebSocket version 13 required", (("Sec-WebSocket-Version", "13"),))
            return
        self._refuse(400, "bad WebSocket opening handshake")

    def _other(self, event: object) -> None:
        if isinstance(event, Request) and self.state is WsState.HANDSHAKE:
            # extensions are never accepted: permessage-deflate would reopen compression side channels
            self._out += self._ws.send(AcceptConnection(subprotocol=SUBPROTOCOL))
            self.status = 101
            self._opened()
            self.just_opened = True


class WsClientEndpoint(_Endpoint):
    """The client end: sends the opening request at construction (``data_to_send``)."""

    def __init__(self, host: str, now: float, *, path: str = PATH, origin: str | None = None) -> None:
        super().__init__(ConnectionType.CLIENT, now)
        headers = [(b"Origin", origin.encode("ascii"))] if origin else []
        self._out += self._ws.send(Request(host=host, target=path, subprotocols=[SUBPROTOCOL],
                                           extra_headers=headers))
        self.refused: str | None = None  # why the server refused the handshake, if it did

    def _other(self, event: object) -> None:
        if isinstance(event, AcceptConnection) and self.state is WsState.HANDSHAKE:
            if event.subprotocol != SUBPROTOCOL:
                self.refused = f"the server did not select the subprotocol {SUBPROTOCOL}"
                self._opened()
                self.close(CloseCode.PROTOCOL_ERROR, "subprotocol not selected")
                return
            self._opened()
        elif isinstance(event, RejectConnection):
            self.refused = f"the server refused the WebSocket handshake (HTTP {event.status_code})"
            self.closed = Closed(CloseCode.POLICY_VIOLATION, self.refused, by_peer=True)
            if not event.has_body:
                self.state = WsState.CLOSED
        elif isinstance(event, RejectData) and event.body_finished:
            self.state = WsState.CLOSED

    def _handshake_failed(self, exc: RemoteProtocolError) -> None:
        self.refused = f"bad WebSocket handshake answer: {exc}"
        super()._handshake_failed(exc)


class TlsLayer:
    """TLS over memory buffers (``ssl.SSLObject``): raw bytes in/out, plaintext in/out; no socket."""

    def __init__(self, context: ssl.SSLContext, *, server_side: bool, server_hostname: str | None = None) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=server_side,
                                     server_hostname=server_hostname)
        self.handshake_done = False
        self.failed: str | None = None
        self._pending = bytearray()  # plaintext to send once the handshake is done
        self._handshake()

    def _handshake(self) -> None:
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            return
        except ssl.SSLError as exc:
            self.failed = f"TLS handshake failed: {exc.reason or exc}"
            return
        self.handshake_done = True
        if self._pending:
            pending = bytes(self._pending)
            self._pending.clear()
            self.send(pending)

    def receive(self, data: bytes) -> bytes:
        """Feed raw bytes; returns the plaintext they completed (may be empty). ``failed`` says if TLS broke."""
        if self.failed is not None:
            return b""
        if not data:
            self._incoming.write_eof()
        else:
            self._incoming.write(data)
        if not self.handshake_done:
            self._handshake()
            if not self.handshake_done:
                return b""
        plain = bytearray()
        while True:
            try:
                chunk = self._tls.read(256 * 1024)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                break
            except ssl.SSLError as exc:
                self.failed = f"TLS error: {exc.reason or exc}"
                break
            if not chunk:
                break
            plain += chunk
        return bytes(plain)

    def send(self, plain: bytes) -> None:
        if not self.handshake_done:
            self._pending += plain
            return
        view = memoryview(plain)
        while view:
            written = self._tls.write(view)
            view = view[written:]

    def data_to_send(self) -> bytes:
        return self._outgoing.read()


class ServerStack:
    """What the server driver holds per WebSocket connection: optional TLS beneath a ``WsServerEndpoint``."""

    def __init__(self, now: float, *, tls: ssl.SSLContext | None = None,
                 allowed_origins: frozenset[str] = frozenset()) -> None:
        self.ws = WsServerEndpoint(now, allowed_origins=allowed_origins)
        self._tls = TlsLayer(tls, server_side=True) if tls is not None else None
        if self._tls is not None:
            self.ws.data_to_send()  # nothing yet; the WS layer speaks once TLS carries it

    @property
    def finished(self) -> bool:
        """The TCP connection should be closed once ``data_to_send`` is written."""
        return self.ws.state is WsState.CLOSED

    @property
    def opened(self) -> bool:
        return self.ws.state is WsState.OPEN

    def receive(self, data: bytes, now: float) -> None:
        if self._tls is not None:
            plain = self._tls.receive(data)
            if self._tls.failed is not None:
                self.ws.close(CloseCode.PROTOCOL_ERROR, self._tls.failed)
                self.ws.receive_data(b"", now)
                return
            if data and not plain:
                return
            data = plain
        self.ws.receive_data(data, now)

    def send(self, stream: bytes) -> None:
        self.ws.send(stream)

    def close(self, code: int, reason: str = "") -> None:
        self.ws.close(code, reason)

    def handle_timer(self, now: float) -> None:
        self.ws.handle_timer(now)

    def data_to_send(self) -> bytes:
        out = self.ws.data_to_send()
        if self._tls is None:
            return out
        if out:
            self._tls.send(out)
        return self._tls.data_to_send()


__all__ = [
    "CLOSE_GRACE_SECONDS", "HANDSHAKE_DEADLINE_SECONDS", "IDLE_TIMEOUT_SECONDS", "MAX_HEADER_LINES",
    "MAX_PENDING_HANDSHAKES", "MAX_PENDING_HANDSHAKES_PER_ADDRESS", "MESSAGE_DEADLINE_SECONDS",
    "MAX_MESSAGE_BYTES", "MAX_REQUEST_HEAD_BYTES", "PATH", "PING_INTERVAL_SECONDS", "SUBPROTOCOL", "CloseCode",
    "ServerStack", "server_binary_frame",
    "Closed", "TlsLayer", "WsClientEndpoint", "WsServerEndpoint", "WsState", "close_code_for", "http_error",
]
