"""What a client window needs from the launcher that hosts it, as a ``Protocol`` (``app.App`` is the one host).

Owns: the narrow interface between the windows and the launcher: the Tk root, the server's address and pinned key,
the key store, and the thread boundary (``post`` runs a function on the Tk thread; ``run`` runs blocking work on a
worker and posts its result back). The windows import this, not ``app``, so the launcher can import the windows.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol, TypeVar, TypeVarTuple

from ..keystore import KeyStore

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class Host(Protocol):
    root: tk.Tk
    address: tuple[str, int]
    url: str | None  # a remote server's URL (tcp://, ws://, wss://; PROTOCOL.md 15), None for host and port
    pinned: tuple[bytes, str] | None  # the server key to expect (DER, scheme), None on first use
    keystore: KeyStore

    def post(self, fn: Callable[[*Ts], None], *args: *Ts) -> None:
        """Thread-safe: run ``fn(*args)`` on the Tk thread soon."""

    def pool(self, name: str) -> ThreadPoolExecutor:
        """A one-thread worker for one window's blocking calls (in order)."""

    def run(self, executor: ThreadPoolExecutor, work: Callable[[], T], done: Callable[[T], None],
            failed: Callable[[BaseException], None]) -> Future[T]:
        """Run blocking *work* on *executor*; *done* or *failed* is then posted to the Tk thread."""
