"""Nothing leaked (docs/THREATS.md 54): a unique canary used as a password and in messages never appears in the
server's logs, its database (and WAL), or the output of a server subprocess."""

from __future__ import annotations

import json
import logging
import os
import time
import uuid

import pytest

from securechat.crypto.signatures import SignatureScheme
from securechat.errors import ErrorCode
from securechat.net.tcp_client import RequestError, TcpClient
from securechat.protocol import events as ev
from securechat.protocol.identity import generate_user_keys
from securechat.store import SqliteRegistry

from tests.live import start_server
from test_faults import ServerProcess  # tests/ is on sys.path (rootdir-relative import)

pytestmark = pytest.mark.tcp  # a live server and a server process (tests/guard.py)


@pytest.fixture(scope="module")
def ckeys():
    return [generate_user_keys(SignatureScheme.ED25519) for _ in range(2)]


def _canary() -> str:
    return "CANARY-" + uuid.uuid4().hex


def _forms(canary: str) -> list[bytes]:
    """Every encoding the canary could be written in."""
    import base64
    raw = canary.encode()
    return [raw, canary.encode("utf-16-le"), raw.hex().encode(), base64.b64encode(raw)[:-4]]


def _exercise(address, pinned, keys, canary: str) -> None:
    """Register and log in with the canary as password, chat with it, fail a login with it, send it raw."""
    clients = []
    try:
        alice = TcpClient(*address, server_key=pinned, timeout=10)
        bob = TcpClient(*address, server_key=pinned, timeout=10)
        clients += [alice, bob]
        alice.register("alice", canary, keys[0])
        bob.register("bob", canary + "-b", keys[1])
        alice.login("alice", canary, keys[0])
        bob.login("bob", canary + "-b", keys[1])
        chat = alice.open_chat(["bob"])
        for i in range(5):
            alice.send(chat.chat_id, f"{canary} message {i}")
        deadline = time.monotonic() + 10
        got = 0
        while got < 5 and time.monotonic() < deadline:
            event = bob.events.get(timeout=10)
            got += isinstance(event, ev.ChatReceived) and canary in event.text
        assert got == 5
        wrong = TcpClient(*address, server_key=pinned, timeout=10)
        clients.append(wrong)
        with pytest.raises(RequestError) as info:
            wrong.login("alice", canary + "-wrong", keys[0])
        assert info.value.code is ErrorCode.AUTH_FAILED
        with pytest.raises(RequestError):
            wrong.register("alice", canary, keys[1])  # name_taken, with the canary as password
    finally:
        for c in clients:
            c.close()


def test_canary_not_in_logs_or_database(tmp_path, caplog, ckeys):
    canary = _canary()
    caplog.set_level(logging.DEBUG, logger="securechat")
    registry = SqliteRegistry(tmp_path / "canary.sqlite")
    server = start_server(registry=registry)
    try:
        key = server.protocol.server_key
        _exercise(server.address, (key.public_der, key.scheme.value), ckeys, canary)
        wal = tmp_path / "canary.sqlite-wal"
        stored = (tmp_path / "canary.sqlite").read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    finally:
        server.stop()
        registry.close()
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records).encode()
    assert len(caplog.records) > 10  # the server did log (metadata)
    for form in _forms(canary):
        assert form not in logged
        assert form not in stored
    for path in tmp_path.iterdir():
        data = path.read_bytes()
        assert all(form not in data for form in _forms(canary)), path


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_canary_not_in_subprocess_output(tmp_path, ckeys, log_format):
    canary = _canary()
    server = ServerProcess(tmp_path, "--log-level", "DEBUG", "--log-format", log_format)
    try:
        _exercise(server.address, server.pinned, ckeys, canary)
    finally:
        server.terminate()
    output = b"".join(server.stdout) + b"".join(server.stderr)
    assert b"shutting down" in output and b"logged in from" in output  # we did capture the server's log
    if log_format == "json":  # every log line is one JSON object (stdout holds the banner, stderr the log)
        logged = b"".join(server.stderr).decode().splitlines()
        assert logged and all(isinstance(json.loads(line), dict) for line in logged)
    for form in _forms(canary):
        assert form not in output
    for path in tmp_path.iterdir():
        data = path.read_bytes()
        assert all(form not in data for form in _forms(canary)), path
