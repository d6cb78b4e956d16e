"""Faults and durability (docs/THREATS.md F51-F53 and the disconnect half of D35).

(a) SIGKILL of a real server subprocess during a burst of registrations, then a restart on the same database;
(b) a failing or read-only store; (c) clients killed mid-handshake, mid-login and mid-message.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from securechat.crypto.certificates import Certificate
from securechat.crypto.signatures import SignatureScheme
from securechat.errors import ErrorCode
from securechat.keystore import read_server_key_file
from securechat.net.tcp_client import RequestError, TcpClient
from securechat.net.tcp_server import TcpServer
from securechat.protocol.client import ClientProtocol
from securechat.protocol.identity import generate_user_keys
from securechat.store import MemoryRegistry, SqliteRegistry
from tests.live import start_server, wait_until

pytestmark = pytest.mark.tcp  # server processes killed and restarted, raw sockets (tests/guard.py)

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "fault-test password"


@pytest.fixture(scope="module")
def fkeys():
    return [generate_user_keys(SignatureScheme.ED25519) for _ in range(2)]


class ServerProcess:
    """``python -m securechat.server`` on 127.0.0.1 port 0; stdout/stderr are collected by threads."""

    def __init__(self, tmp: Path, *extra: str) -> None:
        self.db, self.key_file = tmp / "db.sqlite", tmp / "key.json"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "securechat.server", "--allow-default-passphrase", "--host", "127.0.0.1", "--port", "0", "--db", str(self.db),
             "--export-key", str(self.key_file), "--scrypt-n", "1024", *extra],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.stdout: list[bytes] = []
        self.stderr: list[bytes] = []
        self._lines: queue.Queue[bytes] = queue.Queue()
        self._threads = [threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout, True), daemon=True),
                         threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr, False), daemon=True)]
        for t in self._threads:
            t.start()
        deadline = time.monotonic() + 20
        while True:
            line = self._lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line.startswith(b"securechat server on "):
                host, port = line.split()[3].decode().rsplit(":", 1)
                self.address = (host, int(port))
                break
        self.pinned = read_server_key_file(self.key_file)

    def _pump(self, stream, sink: list[bytes], lines: bool) -> None:
        for line in iter(stream.readline, b""):
            sink.append(line)
            if lines:
                self._lines.put(line)

    def client(self, timeout: float = 10.0) -> TcpClient:
        return TcpClient(*self.address, server_key=self.pinned, timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.wait()

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.wait()

    def wait(self) -> None:
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        for t in self._threads:
            t.join(5)


def test_f51_f52_sigkill_during_registration_burst_then_restart(tmp_path, fkeys):
    server = ServerProcess(tmp_path)
    try:
        key_before = server.key_file.read_bytes()
        acknowledged: list[tuple[str, int]] = []
        lock = threading.Lock()
        stop = threading.Event()

        def burst(worker: int) -> None:
            for i in range(40):
                if stop.is_set():
                    return
                name = f"w{worker}u{i}"
                try:
                    client = server.client(timeout=5)
                except Exception:  # noqa: BLE001 - refused or reset: the server is gone
                    return
                try:
                    client.register(name, PASSWORD, fkeys[worker % 2])
                    with lock:
                        acknowledged.append((name, worker % 2))
                except Exception:  # noqa: BLE001 - the server dies under us: unacknowledged
                    return
                finally:
                    client.close()

        threads = [threading.Thread(target=burst, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(acknowledged) < 12 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.kill()  # SIGKILL mid-burst: registrations are in flight
        stop.set()
        for t in threads:
            t.join(15)
        assert len(acknowledged) >= 12
    finally:
        server.kill()

    # the store is not corrupt and every row is whole
    db = sqlite3.connect(tmp_path / "db.sqlite")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = db.execute("SELECT username, password_record, certificate FROM users").fetchall()
    finally:
        db.close()
    stored = set()
    for username, password_record, cert in rows:
        assert password_record.startswith("scrypt$")
        assert Certificate.from_dict(json.loads(cert)).username == username
        stored.add(username)
    assert {name for name, _ in acknowledged} <= stored

    restarted = ServerProcess(tmp_path)
    try:
        assert restarted.key_file.read_bytes() == key_before  # pinned clients still trust it
        for name, k in acknowledged:
            client = restarted.client()
            try:
                assert client.login(name, PASSWORD, fkeys[k]).username == name
            finally:
                client.close()
        name, k = acknowledged[0]
        client = restarted.client()
        try:
            client.login(name, PASSWORD, fkeys[k])
            assert client.who() == (name,)  # presence was reset: only who logged in since the restart
        finally:
            client.close()
    finally:
        restarted.terminate()


def _in_process(registry, **config) -> TcpServer:
    return start_server(registry=registry, **config)


def _client(server: TcpServer) -> TcpClient:
    key = server.protocol.server_key
    return TcpClient(*server.address, server_key=(key.public_der, key.scheme.value), timeout=10)


@pytest.mark.parametrize("store", ["memory", "sqlite_query_only"])
def test_f53_failing_store_gives_storage_failed_and_affects_nobody(tmp_path, fkeys, store):
    registry = MemoryRegistry() if store == "memory" else SqliteRegistry(tmp_path / "ro.sqlite")
    server = _in_process(registry)
    clients: list[TcpClient] = []
    try:
        alice, bob = _client(server), _client(server)
        clients += [alice, bob]
        alice.register("alice", PASSWORD, fkeys[0])
        bob.register("bob", PASSWORD, fkeys[1])
        alice.login("alice", PASSWORD, fkeys[0])
        bob.login("bob", PASSWORD, fkeys[1])
        chat = alice.open_chat(["bob"])
        if store == "memory":
            registry.fail_writes = True
        else:
            with registry._lock:
                registry._db.execute("PRAGMA query_only=ON")
        newcomer = _client(server)
        clients.append(newcomer)
        with pytest.raises(RequestError) as info:
            newcomer.register("carol", PASSWORD, fkeys[0])
        assert info.value.code is ErrorCode.STORAGE_FAILED
        assert registry.get_user("carol") is None
        assert registry.count_users() == 2
        # existing users and sessions are unaffected, and the newcomer's connection still works
        alice.send(chat.chat_id, "still here")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            event = bob.events.get(timeout=5)
            if getattr(event, "text", None) == "still here":
                break
        else:
            raise AssertionError("bob never got the message")
        assert set(bob.who()) == {"alice", "bob"}
        with pytest.raises(RequestError):
            newcomer.login("carol", PASSWORD, fkeys[0])
        # the store recovers: the same registration now works
        if store == "memory":
            registry.fail_writes = False
        else:
            with registry._lock:
                registry._db.execute("PRAGMA query_only=OFF")
        again = _client(server)
        clients.append(again)
        assert again.register("carol", PASSWORD, fkeys[0]).username == "carol"
    finally:
        for c in clients:
            c.close()
        server.stop()
        if store != "memory":
            registry.close()


def _wait(predicate, timeout: float = 8.0) -> bool:
    return wait_until(predicate, timeout)


def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_clients_killed_mid_handshake_login_and_message_leave_nothing(fkeys):
    server = _in_process(MemoryRegistry())
    observer = None
    try:
        # warm up every lazily started pool thread, then take the baseline
        observer = _client(server)
        observer.register("observer", PASSWORD, fkeys[0])
        observer.login("observer", PASSWORD, fkeys[0])
        warm = _client(server)
        warm.register("victim", PASSWORD, fkeys[1])
        warm.login("victim", PASSWORD, fkeys[1])
        warm.open_chat(["observer"])
        warm.logout()
        assert _wait(lambda: server.connection_count == 1)
        # the password workers start with the server, so they are already in the baseline
        base_threads = threading.active_count()
        base_names = sorted(t.name for t in threading.enumerate())
        base_conns = server.connection_count

        for round_ in range(3):
            # mid-handshake: half a client_hello, and a full one never followed by anything
            half = socket.create_connection(server.address, timeout=5)
            half.sendall(struct.pack(">I", 200) + b'{"type":"client_hello"')
            _reset(half)
            cp = ClientProtocol()
            cp.connect()
            full = socket.create_connection(server.address, timeout=5)
            full.sendall(cp.data_to_send())
            _reset(full)

            # mid-login: the login is sent and the scrypt job is running when the socket dies
            key = server.protocol.server_key
            cp = ClientProtocol(server_key=(key.public_der, key.scheme.value))
            sock = socket.create_connection(server.address, timeout=5)
            cp.connect()
            sock.sendall(cp.data_to_send())
            while cp.state.name != "CONNECTED":
                cp.receive_data(sock.recv(65536), time.time())
            cp.login("victim", PASSWORD, fkeys[1])
            sock.sendall(cp.data_to_send())
            _reset(sock)

            # mid-message: logged in, in a chat, killed inside a record
            victim = _client(server)
            victim.login("victim", PASSWORD, fkeys[1])
            chat = victim.open_chat(["observer"])
            victim.send(chat.chat_id, "first")
            victim.transport.sock.sendall(struct.pack(">I", 4000) + b'{"type":"record","data":"')
            victim.transport.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            victim.close()  # shutdown wakes its reader thread; close with linger 0 resets

            assert _wait(lambda: "victim" not in server.protocol.online)
            assert "victim" not in observer.who()
        assert _wait(lambda: server.connection_count == base_conns)
        assert _wait(lambda: len(server.protocol.peers) == base_conns)
        assert _wait(lambda: threading.active_count() <= base_threads), sorted(set(t.name for t in threading.enumerate()) ^ set(base_names))
        assert server.protocol.pending_password_jobs == 0
        assert not server.protocol.chats.chats_of("victim")  # the victim left every chat when it died
        assert all(server.protocol.chats.get(c).members == ["observer"]
                   for c in server.protocol.chats.chats_of("observer"))
    finally:
        if observer is not None:
            observer.close()
        server.stop()
