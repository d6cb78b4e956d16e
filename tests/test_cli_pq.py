"""Command-line switches for the post-quantum handshake and the AEAD backend (PROTOCOL.md 4.4)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(args: list[str], **kw):  # type: ignore[no-untyped-def]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def test_server_requiring_post_quantum_admits_only_hybrid_clients(tmp_path: Path) -> None:
    server = _run(["-m", "securechat.server", "--allow-default-passphrase", "--port", "0", "--db", str(tmp_path / "s.db"), "--scrypt-n", "1024",
                   "--export-key", str(tmp_path / "key.json"), "--require-post-quantum",
                   "--aead-backend", "cryptography", "--no-lobby"])
    try:
        found = None
        for _ in range(50):  # log lines (stderr is merged) come before the banner
            line = server.stdout.readline()  # type: ignore[union-attr]
            found = re.search(r"securechat server on [\d.]+:(\d+)\s", line)
            if found or not line:
                break
        assert found, "server did not start"
        port = int(found.group(1))
        common = ["-m", "securechat.client", "--port", str(port), "--keys-dir", str(tmp_path / "keys"),
                  "--server-key", str(tmp_path / "key.json")]
        hybrid = _run([*common, "--post-quantum"], stdin=subprocess.PIPE)
        out, _ = hybrid.communicate("/register alice ed25519 pw-alice\n/login alice pw-alice\n/who\n/quit\n",
                                    timeout=60)
        assert "(x25519+mlkem768)" in out and "logged in as alice" in out and "online: alice" in out, out
        classical = _run(common, stdin=subprocess.PIPE)
        out, _ = classical.communicate("/quit\n", timeout=60)
        assert "could not connect" in out and "handshake_failed" in out and "Traceback" not in out, out
        assert classical.returncode == 1
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=15)
        finally:
            server.kill()
    assert server.returncode == 0
