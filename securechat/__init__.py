"""securechat: a secure group chat for cryptography and network-security courses.

The public API, importable from the package itself (as h11 does in ``h11/__init__.py``)::

    from securechat import ClientProtocol, ServerProtocol     # the sans-I/O core (docs/STYLE.md 1)
    from securechat import TcpClient, TcpServer               # the socket drivers
    from securechat import Simulation                         # the in-memory network of the notebooks
    from securechat import SecureChatError, ErrorCode, ...    # the errors (docs/PROTOCOL.md 9)

Names are imported on first use, so ``import securechat`` loads no socket, thread or crypto module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_PUBLIC = {
    "ClientProtocol": "securechat.protocol.client",
    "ServerProtocol": "securechat.protocol.server",
    "TcpClient": "securechat.net.tcp_client",
    "TcpServer": "securechat.net.tcp_server",
    "Simulation": "securechat.teaching.simulation",
    "ErrorCode": "securechat.errors",
    "SecureChatError": "securechat.errors",
    "ProtocolError": "securechat.errors",
    "LocalProtocolError": "securechat.errors",
    "RemoteProtocolError": "securechat.errors",
    "SecurityError": "securechat.errors",
    "AuthenticationError": "securechat.errors",
    "IntegrityError": "securechat.errors",
}

__all__ = ["__version__", *_PUBLIC]

if TYPE_CHECKING:
    from .errors import (
        AuthenticationError, ErrorCode, IntegrityError, LocalProtocolError, ProtocolError, RemoteProtocolError,
        SecureChatError, SecurityError,
    )
    from .net.tcp_client import TcpClient
    from .net.tcp_server import TcpServer
    from .protocol.client import ClientProtocol
    from .protocol.server import ServerProtocol
    from .teaching.simulation import Simulation


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'securechat' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
