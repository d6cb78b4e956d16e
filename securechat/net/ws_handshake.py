"""The server's side of the WebSocket opening handshake (docs/PROTOCOL.md 15.1, 15.2), sans-I/O.

Owns: the binding's name (path ``/securechat``, subprotocol ``securechat.v1``), the caps on a request head (bytes,
lines, a deadline) and on handshakes under way, the binding's checks in the order PROTOCOL.md 15.2 lists them
(before wsproto's own), and the short plain-text HTTP answers that refuse a request. ``OpeningRequest``
collects one request head and says: more bytes needed, refused (a ``Refusal``), or whole and checked (hand it to
wsproto). Must not: echo the request back, or touch a socket or a clock (``now`` is passed in).
"""

from __future__ import annotations

from dataclasses import dataclass

from wsproto.events import RejectConnection
from wsproto.utilities import RemoteProtocolError

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

_REASONS = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 408: "Request Timeout",
            426: "Upgrade Required", 431: "Request Header Fields Too Large", 503: "Service Unavailable"}


def http_error(status: int, text: str, extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A short plain-text HTTP/1.1 answer that closes the connection (never echoes the request)."""
    body = (text + "\n").encode("ascii")
    lines = [f"HTTP/1.1 {status} {_REASONS[status]}", "Connection: close", "Content-Type: text/plain",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in extra)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


@dataclass(frozen=True)
class Refusal:
    """An opening request the server refuses: the HTTP status, a plain reason, extra headers for the answer."""

    status: int
    text: str
    extra: tuple[tuple[str, str], ...] = ()

    def response(self) -> bytes:
        return http_error(self.status, self.text, self.extra)


def may_start_handshake(pending: list[str], address: str) -> bool:
    """PROTOCOL.md 15.2: another handshake from *address* may start, given the addresses of those under way
    (over either cap the server answers 503 at once and closes)."""
    return len(pending) < MAX_PENDING_HANDSHAKES and pending.count(address) < MAX_PENDING_HANDSHAKES_PER_ADDRESS


def refusal_for(exc: RemoteProtocolError) -> Refusal:
    """The answer to a request wsproto (h11) refused after the binding's checks passed."""
    hint = exc.event_hint
    if isinstance(hint, RejectConnection) and hint.status_code == 426:  # a WebSocket version we do not speak
        return Refusal(426, "WebSocket version 13 required", (("Sec-WebSocket-Version", "13"),))
    return Refusal(400, "bad WebSocket opening handshake")


def check_request_head(head: bytes, allowed_origins: frozenset[str]) -> Refusal | None:
    """The binding's checks of a whole request head (without its blank line), PROTOCOL.md 15.2, in this order."""
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        return Refusal(400, "request head is not ASCII")
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.1",):
        return Refusal(400, "not an HTTP/1.1 request")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            return Refusal(400, "malformed header line")
        headers.setdefault(name.lower(), []).append(value.strip())
    upgrade = ",".join(headers.get("upgrade", [])).lower()
    if parts[0] != "GET" or "websocket" not in [t.strip() for t in upgrade.split(",")]:
        return Refusal(426, "this port speaks WebSocket only: GET /securechat with Upgrade: websocket",
                       (("Upgrade", "websocket"), ("Sec-WebSocket-Protocol", SUBPROTOCOL)))
    if parts[1].split("?", 1)[0] != PATH:
        return Refusal(404, f"the securechat endpoint is {PATH}")
    origins = headers.get("origin", [])
    if len(origins) > 1 or (origins and origins[0] not in allowed_origins):
        return Refusal(403, "origin not allowed")
    offered = [t.strip() for v in headers.get("sec-websocket-protocol", []) for t in v.split(",")]
    if SUBPROTOCOL not in offered:
        return Refusal(400, f"subprotocol {SUBPROTOCOL} required (Sec-WebSocket-Protocol)")
    return None


class OpeningRequest:
    """Collects one opening request on the server: capped in size and lines, due within the deadline.

    Args:
        now: when the TCP connection was accepted (the deadline runs from here).
        allowed_origins: browser origins allowed to connect; requests without Origin are always allowed.
    """

    def __init__(self, now: float, allowed_origins: frozenset[str]) -> None:
        self._started = now
        self._allowed_origins = allowed_origins
        self._head = bytearray()

    def expired(self, now: float) -> Refusal | None:
        """A 408 once the deadline has passed (PROTOCOL.md 15.2), else None."""
        if now - self._started > HANDSHAKE_DEADLINE_SECONDS:
            return Refusal(408, "opening handshake not completed in time")
        return None

    def feed(self, data: bytes) -> bytes | Refusal | None:
        """Add *data*: None while the head is incomplete; a Refusal; or the whole request (with any bytes sent
        after it), checked, for wsproto."""
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        head = self._head if end < 0 else self._head[:end]
        if (end < 0 and len(head) > MAX_REQUEST_HEAD_BYTES) or end > MAX_REQUEST_HEAD_BYTES:
            return Refusal(431, "request head too large")
        if head.count(b"\n") > MAX_HEADER_LINES:
            return Refusal(431, "too many header lines")
        if end < 0:
            return None
        problem = check_request_head(bytes(head), self._allowed_origins)
        if problem is not None:
            return problem
        whole = bytes(self._head)
        self._head.clear()
        return whole
