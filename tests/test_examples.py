"""examples/plain_sockets.py, the one-screen driver over plain sockets, runs a login and a chat end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "plain_sockets.py"

pytestmark = pytest.mark.tcp  # real sockets and a child process (tests/conftest.py)


def test_plain_sockets_example_logs_in_and_chats() -> None:
    result = subprocess.run([sys.executable, str(EXAMPLE)], cwd=ROOT, env={"PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "bob read from alice: 'hello bob, over plain sockets' (signature ed25519 verified)" in result.stdout
    assert "keyed for alice, bob" in result.stdout


def test_plain_sockets_example_stays_small() -> None:
    """A driver a student reads in one sitting: the protocol object does the work, not the driver."""
    source = EXAMPLE.read_text()
    assert len(source.splitlines()) <= 130
    assert "import threading" not in source and "securechat.net.tcp_client" not in source
