"""Test configuration: make ``securechat`` and ``tests.helpers`` importable however pytest is started; the
``make_server`` fixture of the live-TCP harness (tests/live.py); and the guard of the ``tcp`` marker
(tests/guard.py: an unmarked test that opens a socket or starts a process fails)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.guard import pytest_runtest_call, pytest_runtest_setup  # noqa: E402, F401  (the guard's hooks)
from tests.live import start_server  # noqa: E402

pytest_plugins = ["pytester"]  # tests/test_guard.py runs the guard in a pytest of its own


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
