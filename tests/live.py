"""The one live-TCP harness: real TcpServers on 127.0.0.1 port 0 and pinned TcpClients, for every test that
runs over sockets (the integration tests and the adversarial scripts alike).

``start_server`` builds a server with a throwaway server key, an in-memory registry and the fast scrypt cost
unless told otherwise; the ``make_server`` fixture (tests/conftest.py) stops every server it started. Every wait
is bounded (``wait_until``). Tests using it carry the ``tcp`` marker (tests/conftest.py), so
``pytest -m "not tcp"`` runs only the in-memory core.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from securechat.crypto.kdf import FAST_SCRYPT
from securechat.net.tcp_client import TcpClient
from securechat.net.tcp_server import TcpServer
from securechat.protocol.limits import ServerConfig
from securechat.store import MemoryRegistry, new_server_key

IO_TIMEOUT = 5.0


def start_server(*, registry: Any = None, server_key: Any = None, **config: Any) -> TcpServer:
    """A started TcpServer on 127.0.0.1 port 0 (the caller, or the ``make_server`` fixture, stops it)."""
    config.setdefault("scrypt", FAST_SCRYPT)
    server = TcpServer(server_key=server_key or new_server_key(), registry=registry or MemoryRegistry(),
                       config=ServerConfig(**config))
    return server.start()


def pinned(server: TcpServer) -> tuple[bytes, str]:
    """The server's public key as a client pins it."""
    key = server.protocol.server_key
    return key.public_der, key.scheme.value


def connect(server: TcpServer, **kw: Any) -> TcpClient:
    """A TcpClient to *server* that pins its key (the caller closes it)."""
    kw.setdefault("server_key", pinned(server))
    return TcpClient(*server.address, **kw)


def wait_until(predicate: Callable[[], bool], timeout: float = IO_TIMEOUT, interval: float = 0.05) -> bool:
    """Poll *predicate* until it holds or *timeout* seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
