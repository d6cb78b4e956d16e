"""Test configuration: make ``securechat`` and ``tests.helpers`` importable however pytest is started; the
``make_server`` fixture of the live-TCP harness (tests/live.py); and the ``tcp`` marker, set automatically on
every test module that opens sockets or starts processes, so ``pytest -m "not tcp"`` runs the in-memory core."""

from __future__ import annotations

import ast
import inspect
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.live import start_server  # noqa: E402  (needs the path above)

#: What makes a test "tcp": it drives real sockets (the net drivers, a live server, a kernel, a display) or other
#: processes. Checked against the module's top-level imports (the whole module is live) and the test's own source.
_LIVE_MODULES = ("securechat.net", "securechat.gui", "securechat.demo", "tests.live", "socket", "nbclient",
                 "pexpect", "tkinter", "benchmarks")
_LIVE_CALLS = ("subprocess", "NotebookClient", "run_over_sockets", "_openssl(", "make_server", "TcpServer", "TcpClient")


def _module_is_live(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        if any(name == live or name.startswith(live + ".") for name in names for live in _LIVE_MODULES):
            return True
    return path.parent.name == "adversarial"


def _test_is_live(item: pytest.Item) -> bool:
    function = getattr(item, "function", None)
    try:
        source = inspect.getsource(function) if function is not None else ""
    except (OSError, TypeError):
        source = ""
    return any(call in source for call in _LIVE_CALLS)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    modules: dict[Path, bool] = {}
    for item in items:
        path = Path(str(item.fspath))
        if path not in modules:
            modules[path] = path.suffix == ".py" and _module_is_live(path)
        if modules[path] or _test_is_live(item):
            item.add_marker(pytest.mark.tcp)


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
