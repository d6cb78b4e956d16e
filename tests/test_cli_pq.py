"""Command-line switches for the post-quantum handshake and the AEAD backend (PROTOCOL.md 4.4)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.live import banner_port, run_python, server_args, stop_process

pytestmark = pytest.mark.tcp  # a server process and client processes


def test_server_requiring_post_quantum_admits_only_hybrid_clients(tmp_path: Path) -> None:
    server = run_python(server_args(tmp_path, "--require-post-quantum", "--aead-backend", "cryptography",
                                    "--no-lobby"), stderr=subprocess.STDOUT)
    try:
        port = banner_port(server)  # log lines (stderr is merged) come before the banner
        common = ["-m", "securechat.client", "--port", str(port), "--keys-dir", str(tmp_path / "keys"),
                  "--server-key", str(tmp_path / "key.json")]
        hybrid = run_python([*common, "--post-quantum"], stdin=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = hybrid.communicate("/register alice ed25519 pw-alice\n/login alice pw-alice\n/who\n/quit\n",
                                    timeout=60)
        assert "(x25519+mlkem768)" in out and "logged in as alice" in out and "online: alice" in out, out
        classical = run_python(common, stdin=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = classical.communicate("/quit\n", timeout=60)
        assert "could not connect" in out and "handshake_failed" in out and "Traceback" not in out, out
        assert classical.returncode == 1
    finally:
        stop_process(server)
    assert server.returncode == 0
