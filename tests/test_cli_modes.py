"""The chat modes from the user's side: run_modes_demo.py, and scripted CLI processes over real sockets.

A server process and two ``securechat.client`` processes on 127.0.0.1 (port 0, low scrypt cost): bob waits,
alice opens a contributory chat with him, they exchange a message, and ``/fingerprint`` shows the same safety
number on both sides; the peer pins land in ``known_peers.json``. Every process is stopped in a finally.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.live import Cli, banner_port, run_python, server_args, stop_process

pytestmark = pytest.mark.tcp  # other processes and real sockets (tests/guard.py)


def test_run_modes_demo_exits_zero():
    proc = run_python(["run_modes_demo.py"], stderr=subprocess.STDOUT)
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
    server = run_python(server_args(tmp_path), stderr=log)
    clients: list[Cli] = []
    try:
        port = banner_port(server)
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
        try:
            stop_process(server)
        finally:
            server.stdout.close()  # type: ignore[union-attr]
            log.close()
    assert server.returncode == 0
    assert all("Traceback" not in out for out in outputs), outputs
    print("\n\n".join(outputs))


def test_server_cli_lobby_flag_maps_to_the_config():
    from securechat.server import build_parser
    assert build_parser().parse_args([]).lobby is True
    assert build_parser().parse_args(["--no-lobby"]).lobby is False
