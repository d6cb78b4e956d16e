"""Test configuration: make ``securechat`` and ``tests.helpers`` importable however pytest is started; the
``make_server`` fixture of the live-TCP harness (tests/live.py); and the guard of the ``tcp`` marker.

A test that opens a socket (bind/connect), starts a process (a server, the CLI, a Jupyter kernel, nbgrader,
Xvfb, mypy) or forks carries the ``tcp`` marker: ``pytestmark = pytest.mark.tcp`` for a module that is live
throughout, ``@pytest.mark.tcp`` on the live tests of a mixed one. ``pytest -m "not tcp"`` then runs the
in-memory core in seconds. The guard keeps that honest: while an unmarked test (and its fixtures) runs, those
calls are refused and the test fails, naming the call, even if the code under test swallowed the error.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.live import start_server  # noqa: E402  (needs the path above)


class LiveCallInUnmarkedTest(RuntimeError):
    """Raised by the guard: a test without the ``tcp`` marker tried to open a socket or start a process."""


#: (owner, attribute, what) for every call the guard refuses in an unmarked test.
_LIVE_CALLS: tuple[tuple[Any, str, str], ...] = (
    (socket.socket, "bind", "socket.bind"),
    (socket.socket, "connect", "socket.connect"),
    (socket.socket, "connect_ex", "socket.connect_ex"),
    (subprocess.Popen, "__init__", "subprocess.Popen"),
    *((os, name, f"os.{name}") for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp")
      if hasattr(os, name)),
)


@contextmanager
def _refuse_live_calls(item: pytest.Item) -> Iterator[list[str]]:
    """Patch every live call to record itself and raise; yields the list of refused calls."""
    refused: list[str] = []
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in _LIVE_CALLS]

    def refuse(what: str) -> Callable[..., Any]:
        def refused_call(*_args: Any, **_kwargs: Any) -> Any:
            refused.append(what)
            raise LiveCallInUnmarkedTest(f"{item.nodeid} calls {what} but is not marked tcp "
                                         "(add @pytest.mark.tcp; see tests/conftest.py)")
        return refused_call

    for owner, name, what in _LIVE_CALLS:
        setattr(owner, name, refuse(what))
    try:
        yield refused
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def _guarded(item: pytest.Item) -> Iterator[None]:
    if item.get_closest_marker("tcp") is not None:
        return (yield)
    with _refuse_live_calls(item) as refused:
        try:
            return (yield)
        finally:
            if refused:
                pytest.fail(f"{item.nodeid} is not marked tcp but called {', '.join(dict.fromkeys(refused))}: mark "
                            "it @pytest.mark.tcp (or its module: pytestmark = pytest.mark.tcp) so that "
                            "`pytest -m \"not tcp\"` stays the in-memory core", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    """Fixtures of an unmarked test (module-wide live servers included) may not open sockets or processes."""
    return (yield from _guarded(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """The body of an unmarked test may not open sockets or processes."""
    return (yield from _guarded(item))


@pytest.fixture
def make_server() -> Iterator[Callable[..., Any]]:
    """Start live servers (``tests.live.start_server``'s arguments); all are stopped at teardown."""
    started: list[Any] = []

    def make(**kw: Any) -> Any:
        server = start_server(**kw)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
