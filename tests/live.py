"""The one live-TCP harness: real TcpServers on 127.0.0.1 port 0 and pinned TcpClients, for every test that
runs over sockets (the integration tests and the adversarial scripts alike).

``start_server`` builds a server with a throwaway server key, an in-memory registry and the fast scrypt cost
unless told otherwise; the ``make_server`` fixture (tests/conftest.py) stops every server it started. Every wait
is bounded (``wait_until``). ``User`` is a TcpClient with an event inbox. ``run_python``, ``server_args``,
``banner_port``, ``stop_process`` and ``Cli`` start and stop the server and the terminal client as processes, as
a user would. Tests using it carry the ``tcp`` marker (tests/guard.py fails an unmarked test that opens a socket
or starts a process), so ``pytest -m "not tcp"`` runs only the in-memory core.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from securechat.crypto.kdf import FAST_SCRYPT
from securechat.net.tcp_client import TcpClient
from securechat.net.tcp_server import TcpServer
from securechat.protocol import events as ev
from securechat.protocol.identity import UserKeys
from securechat.protocol.limits import ServerConfig
from securechat.store import MemoryRegistry, new_server_key

ROOT = Path(__file__).resolve().parent.parent
IO_TIMEOUT = 5.0
WAIT = 10.0  # for an event a live test expects
CLI_WAIT = 20.0  # for a line a terminal client prints


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


class User:
    """A TcpClient pinning *server*'s key whose events land in ``inbox``; ``join`` registers and logs in *name*
    with the password ``pw-<name>``. Extra keywords go to TcpClient (``lab=``, ``trace=``...).

    ``expect`` drops the events it passes over, unless *keep_skipped*: then they wait in ``seen`` and a later
    ``expect`` looks at them first (for events whose order between two senders is not fixed)."""

    def __init__(self, server: TcpServer, name: str, keys: UserKeys, *, keep_skipped: bool = False,
                 **client_kw: Any) -> None:
        self.inbox: queue.Queue[ev.Event] = queue.Queue()
        self.seen: list[ev.Event] = []
        self.name, self.keys, self.keep_skipped = name, keys, keep_skipped
        client_kw.setdefault("server_key", pinned(server))
        self.client = TcpClient(*server.address, on_event=self.inbox.put, **client_kw)

    def join(self) -> User:
        self.client.register(self.name, "pw-" + self.name, self.keys)
        self.client.login(self.name, "pw-" + self.name, self.keys)
        return self

    def expect(self, kind: type[Any], predicate: Callable[[Any], bool] = lambda e: True,
               timeout: float = WAIT) -> Any:
        """The next event of *kind* matching *predicate* within *timeout* (see the class for skipped events)."""
        for event in self.seen:
            if isinstance(event, kind) and predicate(event):
                self.seen.remove(event)
                return event
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self.inbox.get(timeout=0.1)
            except queue.Empty:
                continue
            if isinstance(event, kind) and predicate(event):
                return event
            if self.keep_skipped:
                self.seen.append(event)
        raise AssertionError(f"{self.name}: no {kind.__name__}; skipped {[type(e).__name__ for e in self.seen]}")


# --- processes: the server and the terminal client as a user starts them -------------------------------------


def run_python(args: list[str], *, stderr: int | IO[Any] = subprocess.PIPE, **kw: Any) -> subprocess.Popen[str]:
    """``python ARGS`` from the repository root, text pipes, unbuffered (the caller stops it)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr,
                            text=True, **kw)


def server_args(tmp: Path, *extra: str) -> list[str]:
    """``-m securechat.server`` on port 0 with a database and an exported key (``key.json``) in *tmp*, the
    default passphrase allowed and a low scrypt cost."""
    return ["-m", "securechat.server", "--allow-default-passphrase", "--port", "0", "--db", str(tmp / "s.db"),
            "--export-key", str(tmp / "key.json"), "--scrypt-n", "1024", *extra]


def banner_port(server: subprocess.Popen[str], lines: int = 50) -> int:
    """The port of ``securechat server on HOST:PORT`` (log lines before the banner are skipped)."""
    assert server.stdout is not None
    for _ in range(lines):
        line = server.stdout.readline()
        if (found := re.search(r"securechat server on [\d.]+:(\d+)\s", line)) is not None:
            return int(found.group(1))
        if not line:
            break
    raise AssertionError("the server process printed no banner")


def stop_process(proc: subprocess.Popen[str], timeout: float = 15.0) -> int:
    """Ctrl-C (SIGINT), as a user stops the server; killed if it has not exited within *timeout*. Its exit code."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=timeout)
    finally:
        proc.kill()


class Cli:
    """A terminal client process with a reader thread, so a script can wait for a line before typing the next."""

    def __init__(self, args: list[str]) -> None:
        self.proc = run_python(args, stderr=subprocess.STDOUT, stdin=subprocess.PIPE)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def type(self, *lines: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("".join(line + "\n" for line in lines))
        self.proc.stdin.flush()

    def wait_for(self, pattern: str, timeout: float = CLI_WAIT) -> re.Match[str]:
        for line in self.seen:  # already printed?
            if (found := re.search(pattern, line)) is not None:
                return found
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            if (found := re.search(pattern, line)) is not None:
                return found
        raise AssertionError(f"no line matching {pattern!r}; output:\n" + "\n".join(self.seen))

    def stop(self) -> str:
        """``/quit``, then kill if it does not exit; returns everything it printed."""
        if self.proc.poll() is None:
            try:
                self.type("/quit")
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout=15)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        while not self.lines.empty():
            self.seen.append(self.lines.get_nowait())
        return "\n".join(self.seen)
