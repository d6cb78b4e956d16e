"""Scaffolding shared by run_demo.py and run_modes_demo.py: a loopback server with a throwaway registry.

Owns: the demos' lowered scrypt cost and ``demo_server``. Must not: narrate (the scripts do) or be used by a
real deployment (``securechat.server`` is that).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .crypto.kdf import ScryptParams
from .net.tcp_server import TcpServer
from .protocol.jobs import ServerKey
from .protocol.limits import ServerConfig
from .store import SqliteRegistry

# The demos lower scrypt from OWASP's N=2^17 to 2^14 so a few registrations and logins take a moment, not
# seconds; the server's default stays 2^17 (README, "crypto choices").
DEMO_SCRYPT = ScryptParams(n=2**14, r=8, p=1)


@contextmanager
def demo_server(*, lobby: bool = False) -> Iterator[tuple[TcpServer, ServerKey]]:
    """A TcpServer on 127.0.0.1, a free port, with a SQLite registry in a temporary folder; stopped on exit."""
    with tempfile.TemporaryDirectory() as tmp:
        registry = SqliteRegistry(Path(tmp) / "demo.db")
        server_key = registry.load_or_create_server_key("demo-passphrase")
        server = TcpServer(server_key=server_key, registry=registry,
                           config=ServerConfig(scrypt=DEMO_SCRYPT, lobby=lobby)).start()
        try:
            yield server, server_key
        finally:
            server.stop()
            registry.close()
