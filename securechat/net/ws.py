"""The WebSocket binding of securechat (docs/PROTOCOL.md section 15) as sans-I/O layers over wsproto.

The binding is five small modules; this one names them and re-exports their public API, so that
``from securechat.net import ws`` gives all of it (a constant is read in the module that defines it: a test that
changes one patches it there, e.g. ``ws_handshake.HANDSHAKE_DEADLINE_SECONDS``):

- ws_handshake.py: the opening handshake's policy on the server (path ``/securechat``, subprotocol
  ``securechat.v1``, the Origin rule, size, line and deadline caps, the cap on handshakes under way, the HTTP
  refusals), PROTOCOL.md 15.1-15.2;
- ws_endpoint.py: the frame transport both ends share (one securechat frame per binary message, text refused,
  the message size cap and deadline, ping/pong keepalive, idle timeout, close codes), PROTOCOL.md 15.3-15.6;
- ws_server.py: ``WsServerEndpoint`` (with the relay's fast framing paths) and ``ServerStack`` (TLS beneath it,
  what TcpServer holds per connection); ws_client.py: ``WsClientEndpoint`` (what transport.py drives);
- tls.py: ``TlsLayer``, the standard library's TLS over memory buffers, for ``wss://`` without a proxy.

Nothing here touches a socket, a thread or a clock: bytes in, bytes out, ``now`` passed in. The drivers
(``tcp_server.py``, ``transport.py``) move the bytes.
"""

from __future__ import annotations

from .tls import TlsLayer
from .ws_client import WsClientEndpoint
from .ws_endpoint import (
    CLOSE_GRACE_SECONDS,
    IDLE_TIMEOUT_SECONDS,
    MAX_MESSAGE_BYTES,
    MESSAGE_DEADLINE_SECONDS,
    PING_INTERVAL_SECONDS,
    Closed,
    CloseCode,
    WsState,
    close_code_for,
)
from .ws_handshake import (
    HANDSHAKE_DEADLINE_SECONDS,
    MAX_HEADER_LINES,
    MAX_PENDING_HANDSHAKES,
    MAX_PENDING_HANDSHAKES_PER_ADDRESS,
    MAX_REQUEST_HEAD_BYTES,
    PATH,
    SUBPROTOCOL,
    http_error,
)
from .ws_server import ServerStack, WsServerEndpoint, server_binary_frame

__all__ = [
    "CLOSE_GRACE_SECONDS", "HANDSHAKE_DEADLINE_SECONDS", "IDLE_TIMEOUT_SECONDS", "MAX_HEADER_LINES",
    "MAX_PENDING_HANDSHAKES", "MAX_PENDING_HANDSHAKES_PER_ADDRESS", "MESSAGE_DEADLINE_SECONDS",
    "MAX_MESSAGE_BYTES", "MAX_REQUEST_HEAD_BYTES", "PATH", "PING_INTERVAL_SECONDS", "SUBPROTOCOL", "CloseCode",
    "ServerStack", "server_binary_frame",
    "Closed", "TlsLayer", "WsClientEndpoint", "WsServerEndpoint", "WsState", "close_code_for", "http_error",
]
