"""The guard of the ``tcp`` marker: ``pytest -m "not tcp"`` must run only the in-memory core.

A test that opens a socket (bind/connect), starts a process (a server, the terminal client, a Jupyter kernel,
nbgrader, Xvfb, openssl, mypy) or forks carries the ``tcp`` marker: ``pytestmark = pytest.mark.tcp`` for a module
that is live throughout, ``@pytest.mark.tcp`` on the live tests of a mixed one. While an unmarked test and its
fixtures run, those calls are refused (``LiveCallInUnmarkedTest``) and the test fails naming the call, even if
the code under test swallowed the error. tests/conftest.py installs the two hooks below.
"""

from __future__ import annotations

import _posixsubprocess
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest


class LiveCallInUnmarkedTest(RuntimeError):
    """Raised by the guard: a test without the ``tcp`` marker tried to open a socket or start a process."""


#: (owner, attribute, what) for every call the guard refuses in an unmarked test.
_LIVE_CALLS: tuple[tuple[Any, str, str], ...] = (
    (socket.socket, "bind", "socket.bind"),
    (socket.socket, "connect", "socket.connect"),
    (socket.socket, "connect_ex", "socket.connect_ex"),
    (subprocess.Popen, "__init__", "subprocess.Popen"),
    (_posixsubprocess, "fork_exec", "fork_exec"),  # what multiprocessing's spawn uses, past subprocess
    *((os, name, f"os.{name}") for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp")
      if hasattr(os, name)),
)


@contextmanager
def refuse_live_calls(nodeid: str) -> Iterator[list[str]]:
    """Patch every live call to record itself and raise; yields the list of refused calls."""
    refused: list[str] = []
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in _LIVE_CALLS]

    def refuse(what: str) -> Callable[..., Any]:
        def refused_call(*_args: Any, **_kwargs: Any) -> Any:
            refused.append(what)
            raise LiveCallInUnmarkedTest(f"{nodeid} calls {what} but is not marked tcp "
                                         "(add @pytest.mark.tcp; see tests/guard.py)")
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
    with refuse_live_calls(item.nodeid) as refused:
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
