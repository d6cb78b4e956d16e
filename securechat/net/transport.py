"""Client transports: where a client's bytes go, named by a URL (``tcp://``, ``ws://``, ``wss://``).

Owns: ``parse_url`` (URL -> ``Endpoint``) and ``Transport``, a blocking connection that carries the securechat
byte stream either on raw TCP or inside WebSocket binary messages (PROTOCOL.md 15), optionally over TLS. The
WebSocket and TLS work is done by the sans-I/O layers of ``ws_client.py`` and ``tls.py``; this module only moves
their bytes on a standard-library socket. ``send`` may be called from one thread while another blocks in ``recv`` (TcpClient's
reader): the layers are touched under one lock. Must not: make protocol decisions or log contents.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

from .tls import TlsLayer
from .ws_client import WsClientEndpoint
from .ws_endpoint import CloseCode, WsState
from .ws_handshake import PATH

READ_SIZE_BYTES = 256 * 1024


class Scheme(Enum):
    TCP = "tcp"
    WS = "ws"
    WSS = "wss"


DEFAULT_PORTS = {Scheme.WS: 80, Scheme.WSS: 443}


@dataclass(frozen=True)
class Endpoint:
    scheme: Scheme
    host: str
    port: int
    path: str = PATH

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        path = self.path if self.scheme is not Scheme.TCP else ""
        return f"{self.scheme.value}://{host}:{self.port}{path}"


def tcp_url(host: str, port: int) -> str:
    return str(Endpoint(Scheme.TCP, host, port))


def parse_url(url: str) -> Endpoint:
    """``tcp://HOST:PORT``, ``ws://HOST[:PORT]/securechat`` or ``wss://...``; ValueError in plain words."""
    try:
        parts = urlsplit(url)
        scheme = Scheme(parts.scheme.lower())
    except ValueError:
        raise ValueError(f"unsupported URL {url!r}: use tcp://HOST:PORT, ws://HOST:PORT{PATH} or "
                         f"wss://HOST:PORT{PATH}") from None
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    if parts.username or parts.password or parts.fragment:
        raise ValueError(f"{url!r}: user names, passwords and fragments have no place in a securechat URL")
    if scheme is Scheme.TCP:
        if port is None or parts.path not in ("", "/") or parts.query:
            raise ValueError(f"{url!r}: a tcp URL is tcp://HOST:PORT")
        return Endpoint(scheme, parts.hostname, port, "")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Endpoint(scheme, parts.hostname, port if port is not None else DEFAULT_PORTS[scheme], path)


class TransportError(ConnectionError):
    """The transport could not be set up (TLS failed, the WebSocket handshake was refused)."""


class Transport:
    """A blocking connection to *endpoint*. ``recv`` returns securechat bytes, ``b""`` at the end.

    Args:
        tls: the TLS context for ``wss://`` (default: ``ssl.create_default_context()``, which verifies the
            certificate and the host name against the system's CAs).
        origin: an Origin header to send (browsers send one; this client normally does not).
    """

    def __init__(self, endpoint: Endpoint, *, timeout: float, tls: ssl.SSLContext | None = None,
                 origin: str | None = None) -> None:
        self.endpoint = endpoint
        self._lock = threading.Lock()
        self._tls: TlsLayer | None = None
        self._ws: WsClientEndpoint | None = None
        self._early = b""  # securechat bytes that arrived with the end of the handshake
        self._sock = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
        try:
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if endpoint.scheme is Scheme.WSS:
                context = tls if tls is not None else ssl.create_default_context()
                self._tls = TlsLayer(context, server_side=False, server_hostname=endpoint.host)
                self._flush_locked()
                self._handshake(lambda: self._tls is not None and self._tls.handshake_done, "TLS handshake")
            if endpoint.scheme is not Scheme.TCP:
                host = f"{endpoint.host}:{endpoint.port}"
                self._ws = WsClientEndpoint(host, time.time(), path=endpoint.path, origin=origin)
                self._flush_locked()
                self._handshake(lambda: self._ws is not None and self._ws.state is not WsState.HANDSHAKE,
                                "WebSocket handshake")
                if self._ws.state is not WsState.OPEN:
                    raise TransportError(self._ws.refused or "the WebSocket handshake failed")
                self._early = self._ws.app_data()
        except BaseException:
            self._sock.close()
            raise
        self._sock.settimeout(None)

    @property
    def sock(self) -> socket.socket:
        """The underlying TCP socket (fault-injection tests write raw bytes or set SO_LINGER on it)."""
        return self._sock

    @property
    def close_reason(self) -> str | None:
        """The WebSocket close code and reason, once the session ended (None on TCP or while open)."""
        closed = self._ws.closed if self._ws is not None else None
        return None if closed is None else f"WebSocket close {closed.code} {closed.reason}".rstrip()

    def _handshake(self, done: Callable[[], bool], what: str) -> None:
        while not done():
            try:
                raw = self._sock.recv(READ_SIZE_BYTES)
            except TimeoutError:
                raise TransportError(f"{what} timed out") from None
            self._absorb(raw)
            if self._tls is not None and self._tls.failed is not None:
                raise TransportError(self._tls.failed)
            if not raw:
                if done():
                    return
                raise TransportError(f"connection closed during the {what}")

    def _absorb(self, raw: bytes) -> bytes:
        """(lock held or single-threaded) Raw bytes through TLS and WebSocket; the securechat bytes they gave."""
        data = raw
        if self._tls is not None:
            data = self._tls.receive(raw)
            if raw and not data:
                self._flush_locked()  # TLS handshake messages, or a partial record
                return b""
        if self._ws is None:
            return data
        self._ws.receive_data(data, time.time())
        self._flush_locked()  # pongs, close replies
        return self._ws.app_data()

    def _flush_locked(self, data: bytes = b"") -> None:
        out = data
        if self._ws is not None:
            if data:
                self._ws.send(data)
            out = self._ws.data_to_send()
        if self._tls is not None:
            if out:
                self._tls.send(out)
            out = self._tls.data_to_send()
        if out:
            self._sock.sendall(out)

    def send(self, data: bytes) -> None:
        """Send securechat bytes (whole frames: each becomes one WebSocket message)."""
        with self._lock:
            if self._ws is None and self._tls is None:
                self._sock.sendall(data)
            else:
                self._flush_locked(data)

    def recv(self) -> bytes:
        """Block until securechat bytes arrive; ``b""`` when the connection (or the WebSocket session) ended."""
        if self._early:
            early, self._early = self._early, b""
            return early
        while True:
            try:
                raw = self._sock.recv(READ_SIZE_BYTES)
            except OSError:
                raw = b""
            if self._ws is None and self._tls is None:
                return raw
            with self._lock:
                try:
                    data = self._absorb(raw)
                except OSError:
                    data, raw = b"", b""
                ended = not raw or (self._ws is not None and self._ws.state is not WsState.OPEN)
            if data:
                return data  # a close that came with it is seen on the next call
            if ended:
                return b""

    def close(self) -> None:
        """Say goodbye (a WebSocket close frame, best effort), then close the socket; unblocks ``recv``."""
        with self._lock:
            if self._ws is not None and self._ws.state is WsState.OPEN:
                self._ws.close(CloseCode.NORMAL)
                try:
                    self._flush_locked()
                except OSError:
                    pass
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()


__all__ = ["DEFAULT_PORTS", "Endpoint", "Scheme", "Transport", "TransportError", "parse_url", "tcp_url"]
