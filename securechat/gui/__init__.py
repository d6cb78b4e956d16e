"""``python -m securechat.gui``: a tkinter desktop launcher: a server window and N client windows.

Owns: widgets only. Every window is a thin driver over ``TcpServer``/``TcpClient``/``KeyStore``: no protocol
logic here. Tk is not thread-safe, so network callbacks and worker-thread results reach the widgets only
through ``App.post`` (a ``queue.Queue`` drained by ``root.after``). ``App`` and ``launch`` are imported on first
use, so ``securechat.gui.render`` (the words the windows show, pure text) loads without tkinter.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["App", "launch"]

if TYPE_CHECKING:
    from .app import App, launch


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'securechat.gui' has no attribute {name!r}")
    return getattr(importlib.import_module("securechat.gui.app"), name)
