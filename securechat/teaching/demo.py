"""Scaffolding shared by run_demo.py and run_modes_demo.py: a loopback server with a throwaway registry.

Owns: the demos' lowered scrypt cost and ``demo_server``. Must not: narrate (the scripts do) or be used by a
real deployment (``securechat.server`` is that).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..crypto.kdf import ScryptParams
from ..net.tcp_client import TcpClient
from ..net.tcp_server import TcpServer
from ..protocol.jobs import ServerKey
from ..protocol.limits import ServerConfig
from ..store import SqliteRegistry

# The demos lower scrypt from OWASP's N=2^17 to 2^14 so a few registrations and logins take a moment, not
# seconds; the server's default stays 2^17 (README, "crypto choices").
DEMO_SCRYPT = ScryptParams(n=2**14, r=8, p=1)


COST_LINE = (f"  passwords: scrypt N=2^{DEMO_SCRYPT.n.bit_length() - 1} for the demo "
             "(the server's default is OWASP's 2^17)")


@dataclass
class Demo:
    """A running demo server; ``clients`` registered here are closed when the demo ends."""

    server: TcpServer
    server_key: ServerKey
    clients: list[TcpClient] = field(default_factory=list)

    @property
    def pinned(self) -> tuple[bytes, str]:
        return self.server_key.public_der, self.server_key.scheme.value


@contextmanager
def demo_server(*, lobby: bool = False) -> Iterator[Demo]:
    """A TcpServer on 127.0.0.1, a free port, with a SQLite registry in a temporary folder. On exit every client
    in ``Demo.clients`` is closed, then the server is stopped and the registry closed."""
    with tempfile.TemporaryDirectory() as tmp:
        registry = SqliteRegistry(Path(tmp) / "demo.db")
        server_key = registry.load_or_create_server_key("demo-passphrase")
        server = TcpServer(server_key=server_key, registry=registry,
                           config=ServerConfig(scrypt=DEMO_SCRYPT, lobby=lobby)).start()
        demo = Demo(server=server, server_key=server_key)
        try:
            yield demo
        finally:
            for client in demo.clients:
                client.close()
            server.stop()
            registry.close()
