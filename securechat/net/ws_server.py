"""The server end of the WebSocket binding (docs/PROTOCOL.md 15), sans-I/O: what TcpServer holds per connection.

Owns: ``WsServerEndpoint`` (the opening handshake through ws_handshake.py's checks, then the frame transport of
ws_endpoint.py with the relay's fast paths) and ``ServerStack`` (optional TLS, tls.py, beneath it, for ``wss://``
without a proxy). The relay hot path (whole unfragmented binary frames in, binary frames out) is framed here,
byte for byte as wsproto would, because wsproto's general per-frame code cost more than the relay's own work
(docs/PERFORMANCE.md, "WebSocket against TCP"; tests/test_ws.py checks both paths agree); control frames, text,
fragments and every malformed frame stay wsproto's. Must not: parse securechat messages or log contents.
"""

from __future__ import annotations

import ssl

from wsproto import ConnectionType
from wsproto.events import AcceptConnection, Event, Request
from wsproto.utilities import RemoteProtocolError

from .tls import TlsLayer
from .ws_endpoint import MAX_MESSAGE_BYTES, Closed, CloseCode, WsEndpoint, WsState
from .ws_handshake import SUBPROTOCOL, OpeningRequest, Refusal, refusal_for

_FAST_FIRST_BYTE = 0x82  # FIN, no RSV bits, opcode 2 (binary)


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


class WsServerEndpoint(WsEndpoint):
    """The server end of one WebSocket connection.

    Args:
        now: when the TCP connection was accepted (the handshake deadline runs from here).
        allowed_origins: browser origins allowed to connect (``https://chat.example.org``); requests without an
            Origin header (non-browser clients) are always allowed (PROTOCOL.md 15.2).
    """

    def __init__(self, now: float, *, allowed_origins: frozenset[str] = frozenset()) -> None:
        super().__init__(ConnectionType.SERVER, now)
        self._request = OpeningRequest(now, allowed_origins)
        self.status: int | None = None  # the HTTP status answered (101, or why it was refused)
        self._inbuf = bytearray()   # the start of a frame not yet complete (fast path, below)
        self._fragmented = False    # a fragmented message is under way in wsproto
        self._wsproto_owns = False  # wsproto holds a partial frame: every later byte goes to it
        self.just_opened = False  # True once, after the handshake completed: the driver tells the core

    def take_opened(self) -> bool:
        """True exactly once, when the opening handshake has just completed."""
        opened, self.just_opened = self.just_opened, False
        return opened

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

    # --- the opening handshake (PROTOCOL.md 15.2) --------------------------------------------------------------

    def _refuse(self, refusal: Refusal) -> None:
        self._out += refusal.response()
        self.status = refusal.status
        self.closed = Closed(CloseCode.POLICY_VIOLATION, f"http {refusal.status}: {refusal.text}", by_peer=False)
        self.state = WsState.CLOSED

    def _handshake_timer(self, now: float) -> None:
        refusal = self._request.expired(now)
        if refusal is not None:
            self._refuse(refusal)

    def _receive_handshake(self, data: bytes, now: float) -> None:
        outcome = self._request.feed(data)
        if isinstance(outcome, Refusal):
            self._refuse(outcome)
        elif outcome is not None:
            self._ws.receive_data(outcome)

    def _handshake_failed(self, exc: RemoteProtocolError) -> None:
        self._refuse(refusal_for(exc))

    def _other(self, event: Event) -> None:
        if isinstance(event, Request) and self.state is WsState.HANDSHAKE:
            # extensions are never accepted: permessage-deflate would reopen compression side channels
            self._out += self._ws.send(AcceptConnection(subprotocol=SUBPROTOCOL))
            self.status = 101
            self._opened()
            self.just_opened = True


class ServerStack:
    """What the server driver holds per WebSocket connection: optional TLS beneath a ``WsServerEndpoint``."""

    def __init__(self, now: float, *, tls: ssl.SSLContext | None = None,
                 allowed_origins: frozenset[str] = frozenset()) -> None:
        self.ws = WsServerEndpoint(now, allowed_origins=allowed_origins)
        self._tls = TlsLayer(tls, server_side=True) if tls is not None else None

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
