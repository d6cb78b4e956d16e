"""The chat modes from the user's side: run_modes_demo.py, and scripted CLI processes over real sockets.

A server process and two ``securechat.client`` processes on 127.0.0.1 (port 0, low scrypt cost): bob waits,
alice opens a contributory chat with him, they exchange a message, and ``/fingerprint`` shows the same safety
number on both sides; the peer pins land in ``known_peers.json``. Every process is stopped in a finally.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.tcp  # other processes and real sockets (tests/conftest.py)

ROOT = Path(__file__).resolve().parent.parent
WAIT = 20.0


def _run(args: list[str], stderr=subprocess.STDOUT, **kw):  # type: ignore[no-untyped-def]
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=stderr, text=True, **kw)


class Cli:
    """A client process with a reader thread, so a script can wait for a line before typing the next one."""

    def __init__(self, args: list[str]) -> None:
        self.proc = _run(args, stdin=subprocess.PIPE)
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

    def wait_for(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
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
        if self.proc.poll() is None:
            try:
                self.type("/quit")
                self.proc.stdin.close()  # type: ignore[union-attr]
                self.proc.wait(timeout=15)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        while not self.lines.empty():
            self.seen.append(self.lines.get_nowait())
        return "\n".join(self.seen)


def test_run_modes_demo_exits_zero():
    proc = _run(["run_modes_demo.py"])
    try:
        out, _ = proc.communicate(timeout=300)  # stops a hang; how fast it ran is not asserted
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    for line in ("commit", "reveal", "HKDF", "confirm", "envelopes it cannot open", "INSECURE",
                 "last member to reveal", "XOR of the shares", "fresh key", "lobby", "safety number",
                 "what the server can see", "demo is over"):
        assert line in out, line


def test_cli_contributory_chat_and_matching_fingerprints(tmp_path):
    log = (tmp_path / "server.log").open("w")
    server = _run(["-m", "securechat.server", "--allow-default-passphrase", "--port", "0", "--db", str(tmp_path / "s.db"),
                   "--export-key", str(tmp_path / "key.json"), "--scrypt-n", "1024"], stderr=log)
    clients: list[Cli] = []
    try:
        line = server.stdout.readline()  # type: ignore[union-attr]
        port = int(re.search(r":(\d+)\s", line).group(1))  # type: ignore[union-attr]
        common = ["-m", "securechat.client", "--port", str(port), "--keys-dir", str(tmp_path / "keys"),
                  "--server-key", str(tmp_path / "key.json")]
        bob = Cli(common)
        clients.append(bob)
        bob.type("/register bob ed25519 pw-bob", "/login bob pw-bob")
        bob.wait_for(r"logged in as bob")
        alice = Cli(common)
        clients.append(alice)
        alice.type("/register alice ed25519 pw-alice", "/login alice pw-alice", "/help")
        alice.wait_for(r"logged in as alice")
        alice.wait_for(r"/fingerprint NAME")
        alice.type("/chat --mode contributory bob")
        # PROTOCOL.md 7.11: bob is asked, and joins only by accepting
        invited = bob.wait_for(r"alice invites you to a contributory chat (\w+): /accept").group(1)
        bob.type(f"/accept {invited}")
        alice.wait_for(r"chat \w+ \[contributory, aes-256-gcm\] with alice, bob")
        bob.wait_for(r"\[contributory, aes-256-gcm\] epoch 1: members alice, bob .*key agreed by every member")
        alice.type("hello over a key the server never saw")
        bob.wait_for(r"alice: hello over a key the server never saw .*verified")
        bob.type("/fingerprint alice")
        alice.type("/fingerprint bob", "/chats", "/lobby")
        theirs = bob.wait_for(r"safety number with alice: (.+)$").group(1)
        ours = alice.wait_for(r"safety number with bob: (.+)$").group(1)
        assert theirs == ours and "alice" in ours and "bob" in ours
        alice.wait_for(r"\[contributory\] epoch 1")
        alice.wait_for(r"current chat: the lobby")
        alice.type("/chat --mode contributory-xor bob")
        alice.wait_for(r"INSECURE \(XOR of shares, no commitments\): the last member to reveal chooses the key")
        invited = bob.wait_for(r"alice invites you to a contributory-xor chat (\w+): /accept").group(1)
        bob.type(f"/accept {invited[:4]}")  # a prefix of the chat id is enough
        bob.wait_for(r"INSECURE \(XOR of shares, no commitments\)")
        alice.wait_for(r"first sight of bob: fingerprint")
        pins = json.loads((tmp_path / "keys" / "alice" / "known_peers.json").read_text())
        assert pins["bob"] in ours
    finally:
        outputs = [c.stop() for c in clients]
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=15)
        finally:
            server.kill()
            server.stdout.close()  # type: ignore[union-attr]
            log.close()
    assert server.returncode == 0
    assert all("Traceback" not in out for out in outputs), outputs
    print("\n\n".join(outputs))


def test_server_cli_lobby_flag_maps_to_the_config():
    from securechat.server import build_parser
    assert build_parser().parse_args([]).lobby is True
    assert build_parser().parse_args(["--no-lobby"]).lobby is False
