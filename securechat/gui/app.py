"""The launcher: builds the Tk root, starts (or points at) a server, opens the windows, pumps the event queue.

Owns: the one ``queue.Queue`` through which every other thread talks to Tk (``post``), the worker pools
(``run``) and the window layout. Must not: decide anything about the protocol.
"""

from __future__ import annotations

import functools
import queue
import shutil
import tempfile
import time
import tkinter as tk
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar, TypeVarTuple

from ..crypto.kdf import ScryptParams
from ..keystore import DEFAULT_ROOT, KeyStore, read_server_key_file
from ..net.tcp_server import TcpServer
from ..net.transport import parse_url
from ..protocol.limits import ServerConfig
from ..store import SqliteRegistry
from .client_window import ClientWindow
from .server_window import ServerWindow

DEMO_SCRYPT_N = 2**14  # the demo's cost (run_demo.py does the same); the server's own default stays 2**17
DEFAULT_NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")
DRAIN_MS = 50
DRAIN_MAX_ITEMS = 500  # per tick, so a flood of frames never starves the Tk loop
SERVER_W, CLIENT_W, CLIENT_H = 560, 660, 520  # preferred sizes on a large screen
MIN_SERVER_W, MIN_CLIENT_W = 340, 480  # below these a window stops being usable
TITLE_BAR, TASKBAR = 30, 40  # what a window manager takes per row and at the screen's bottom edge
T = TypeVar("T")
Ts = TypeVarTuple("Ts")


def tile(clients: int, screen_w: int, screen_h: int) -> tuple[str, list[str]]:
    """Geometries (``WxH+X+Y``) for the server window and *clients* client windows that do not overlap and fit
    on a *screen_w* x *screen_h* screen (1366x768, a common laptop, included): the server window takes the left
    column, the client windows a grid in the rest, as many columns as keep each at least MIN_CLIENT_W wide."""
    height = max(300, screen_h - TASKBAR)
    server_w = max(MIN_SERVER_W, min(SERVER_W, screen_w // 4))
    area_w = max(MIN_CLIENT_W, screen_w - server_w)
    columns = max(1, min(clients, area_w // MIN_CLIENT_W)) if clients else 1
    rows = max(1, -(-clients // columns))
    cell_w = min(CLIENT_W, area_w // columns)
    cell_h = min(CLIENT_H + TITLE_BAR, height // rows)
    server = f"{server_w}x{height - TITLE_BAR}+0+0"
    windows = [f"{cell_w}x{cell_h - TITLE_BAR}+{server_w + (i % columns) * cell_w}+{(i // columns) * cell_h}"
               for i in range(clients)]
    return server, windows


class App:
    """The Tk root, the server (if local) and the windows. Build it with ``launch``. It is the ``host.Host`` of
    every client window."""

    def __init__(self, root: tk.Tk) -> None:
        self.root = root
        self.inbox: queue.Queue[Callable[[], None]] = queue.Queue()
        self.server: TcpServer | None = None
        self.registry: SqliteRegistry | None = None
        self.address: tuple[str, int] = ("127.0.0.1", 0)
        self.url: str | None = None  # a remote server's URL (tcp://, ws://, wss://; PROTOCOL.md 15)
        self.pinned: tuple[bytes, str] | None = None
        self.keystore: KeyStore = KeyStore(DEFAULT_ROOT)
        self.server_window: ServerWindow | None = None
        self.clients: list[ClientWindow] = []
        self.tmp_dir: str | None = None
        self._pools: list[ThreadPoolExecutor] = []
        self._closed = False
        self._after: str | None = self.root.after(DRAIN_MS, self._drain)

    # --- the thread boundary --------------------------------------------------------------------------------

    def post(self, fn: Callable[[*Ts], None], *args: *Ts) -> None:
        """Thread-safe: run ``fn(*args)`` on the Tk thread at the next drain."""
        self.inbox.put(functools.partial(fn, *args))

    def pool(self, name: str) -> ThreadPoolExecutor:
        executor = ThreadPoolExecutor(1, thread_name_prefix=f"securechat-gui-{name}")
        self._pools.append(executor)
        return executor

    def run(self, executor: ThreadPoolExecutor, work: Callable[[], T], done: Callable[[T], None],
            failed: Callable[[BaseException], None]) -> Future[T]:
        """Run blocking *work* off the Tk thread; *done*/*failed* are posted back through the queue."""
        def finished(future: Future[T]) -> None:
            exc = future.exception()
            if exc is not None:
                self.post(failed, exc)
            else:
                self.post(done, future.result())
        future = executor.submit(work)
        future.add_done_callback(finished)
        return future

    def _drain(self) -> None:
        for _ in range(DRAIN_MAX_ITEMS):
            try:
                call = self.inbox.get_nowait()
            except queue.Empty:
                break
            try:
                call()
            except tk.TclError:
                pass  # a window closed while its event was in flight
        if not self._closed:
            self._after = self.root.after(DRAIN_MS, self._drain)

    # --- helpers for tests and scripts ------------------------------------------------------------------------

    def pump(self, seconds: float) -> None:
        """Run the Tk loop for at most *seconds* (bounded: by time and by iteration count)."""
        deadline = time.monotonic() + seconds
        for _ in range(int(seconds * 200) + 1):
            if time.monotonic() >= deadline or self._closed:
                return
            self.root.update()
            time.sleep(0.005)

    def pump_until(self, ready: Callable[[], bool], seconds: float, what: str = "condition") -> None:
        """Pump until ``ready()`` or raise TimeoutError after *seconds*."""
        deadline = time.monotonic() + seconds
        for _ in range(int(seconds * 20) + 1):
            if ready():
                return
            if time.monotonic() >= deadline:
                break
            self.pump(0.05)
        if not ready():
            raise TimeoutError(f"GUI: no {what} within {seconds} s")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for window in self.clients:
            window.shutdown()
        for executor in self._pools:
            executor.shutdown(wait=False, cancel_futures=True)
        if self.server is not None:
            self.server.stop()
        if self.registry is not None:
            self.registry.close()
        try:
            if self._after is not None:
                self.root.after_cancel(self._after)
            self.root.destroy()
        except tk.TclError:
            pass
        if self.tmp_dir is not None:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)


def launch(clients: int = 3, *, host: str | None = None, port: int | None = None, db: str | None = None,
           scrypt_n: int = DEMO_SCRYPT_N, keys_dir: str | None = None, server_key_file: str | None = None,
           names: tuple[str, ...] = DEFAULT_NAMES, url: str | None = None, lobby: bool = False) -> App:
    """Build the root, start a local server (unless *host* or *url*), open the server window and *clients* windows.
    *lobby*: the local server puts every online user in the lobby chat (PROTOCOL.md 7.8)."""
    if url is not None:  # a remote server named by URL; checked before any window opens
        endpoint = parse_url(url)
        host, port = endpoint.host, endpoint.port
    root = tk.Tk()
    root.title("securechat — server")
    app = App(root)
    try:
        if host is None:
            app.tmp_dir = tempfile.mkdtemp(prefix="securechat-gui-")
            app.registry = SqliteRegistry(db or Path(app.tmp_dir) / "registry.db")
            server_key = app.registry.load_or_create_server_key("securechat-gui-demo")
            log = app.server_window = ServerWindow(root)
            app.server = TcpServer(server_key=server_key, registry=app.registry,
                                   config=ServerConfig(scrypt=ScryptParams(n=scrypt_n), lobby=lobby),
                                   on_event=lambda e: app.post(log.on_event, e)).start()
            app.address = (app.server.address[0], int(app.server.address[1]))
            app.pinned = (server_key.public_der, server_key.scheme.value)
            app.keystore = KeyStore(keys_dir or Path(app.tmp_dir) / "keys")
            log.started(app.address, server_key.public_der, server_key.scheme.value, scrypt_n)
        else:
            app.address = (host, port or 5050)
            app.url = str(endpoint) if url is not None else None
            app.keystore = KeyStore(keys_dir or DEFAULT_ROOT)
            app.pinned = read_server_key_file(server_key_file) if server_key_file else \
                app.keystore.pinned_server(f"{host}:{app.address[1]}")
            app.server_window = ServerWindow(root)
            app.server_window.remote(app.address)
        server_geometry, client_geometries = tile(clients, root.winfo_screenwidth(), root.winfo_screenheight())
        root.geometry(server_geometry)
        for i, geometry in enumerate(client_geometries):
            app.clients.append(ClientWindow(app, names[i], geometry))
        root.protocol("WM_DELETE_WINDOW", app.close)
    except BaseException:
        app.close()
        raise
    return app
