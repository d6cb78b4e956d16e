"""The client end of the WebSocket binding (docs/PROTOCOL.md 15.1-15.2), sans-I/O over wsproto.

Owns: ``WsClientEndpoint``: the opening request (path, subprotocol ``securechat.v1``, an optional Origin) and the
reading of the server's answer (101 with the subprotocol selected, or a refusal and why), then the frame
transport of ws_endpoint.py. transport.py moves its bytes. Must not: parse securechat messages or log contents.
"""

from __future__ import annotations

from wsproto import ConnectionType
from wsproto.events import AcceptConnection, Event, RejectConnection, RejectData, Request
from wsproto.utilities import RemoteProtocolError

from .ws_endpoint import Closed, CloseCode, WsEndpoint, WsState
from .ws_handshake import PATH, SUBPROTOCOL


class WsClientEndpoint(WsEndpoint):
    """The client end: sends the opening request at construction (``data_to_send``)."""

    def __init__(self, host: str, now: float, *, path: str = PATH, origin: str | None = None) -> None:
        super().__init__(ConnectionType.CLIENT, now)
        headers = [(b"Origin", origin.encode("ascii"))] if origin else []
        self._out += self._ws.send(Request(host=host, target=path, subprotocols=[SUBPROTOCOL],
                                           extra_headers=headers))
        self.refused: str | None = None  # why the server refused the handshake, if it did

    def _other(self, event: Event) -> None:
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
