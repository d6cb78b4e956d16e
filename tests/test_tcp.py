"""Integration over real sockets on 127.0.0.1 (port 0): TcpServer, TcpClient, the CLI and run_demo.py.

Every server, client, thread and subprocess started here is stopped in a finally or a fixture teardown.
"""

from __future__ import annotations

import queue
import subprocess
import threading
import time

import pytest

from securechat.crypto.kdf import FAST_SCRYPT
from securechat.crypto.signatures import SignatureScheme
from securechat.errors import ErrorCode
from securechat.keystore import KeyStore, read_server_key_file
from securechat.net.tcp_client import ConnectionClosedError, RequestError, TcpClient
from securechat.net.tcp_server import TcpServer
from securechat.protocol import events as ev
from securechat.protocol.identity import generate_user_keys
from securechat.protocol.limits import ServerConfig
from securechat.store import MemoryRegistry, SqliteRegistry, new_server_key
from tests.live import User, banner_port, run_python, server_args, stop_process

pytestmark = pytest.mark.tcp  # live servers, clients and processes (tests/guard.py)

WAIT = 10.0


@pytest.fixture(scope="module")
def keys():
    return {
        "alice": generate_user_keys(SignatureScheme.RSA_PSS_SHA256),
        "bob": generate_user_keys(SignatureScheme.DSA_SHA256),
        "carol": generate_user_keys(SignatureScheme.RSA_PSS_SHA256),
    }


@pytest.fixture
def server(make_server):
    return make_server()


def test_three_users_chat_over_tcp(server, keys):
    alice = User(server, "alice", keys["alice"]).join()
    bob = User(server, "bob", keys["bob"]).join()
    carol = User(server, "carol", keys["carol"]).join()
    try:
        assert alice.client.who() == ("alice", "bob", "carol")
        opened = alice.client.open_chat(["bob", "dave"])
        assert opened.members == ("alice", "bob") and opened.unknown == ("dave",)
        bob.client.wait_for_key(opened.chat_id, 1)
        alice.client.send(opened.chat_id, "hello :smile:")
        got = bob.expect(ev.ChatReceived)
        assert (got.sender, got.text, got.signature_scheme) == ("alice", "hello :smile:", "rsa-pss-sha256")
        bob.client.send(opened.chat_id, "hi")
        assert alice.expect(ev.ChatReceived).signature_scheme == "dsa-2048-sha256"
        alice.client.invite(opened.chat_id, "carol")
        assert carol.expect(ev.ChatKeyed).epoch == 2
        carol.client.leave(opened.chat_id)
        keyed = alice.expect(ev.ChatKeyed, lambda e: e.epoch == 3)
        assert keyed.left == ("carol",)
        bob.client.logout()
        alice.expect(ev.PresenceChanged, lambda e: e.username == "bob" and not e.online)
        assert alice.client.who() == ("alice", "carol")
    finally:
        for user in (alice, bob, carol):
            user.client.close()


def test_errors_over_tcp_keep_the_server_serving(server, keys):
    alice = User(server, "alice", keys["alice"]).join()
    other = User(server, "bob", keys["bob"])
    try:
        with pytest.raises(RequestError) as failure:
            other.client.login("bob", "wrong", keys["bob"])
        assert failure.value.code is ErrorCode.AUTH_FAILED
        with pytest.raises(RequestError) as failure:
            alice.client.status("nobody")
        assert failure.value.code is ErrorCode.UNKNOWN_USER
        assert alice.client.who() == ("alice",)
    finally:
        alice.client.close()
        other.client.close()


def test_pinned_key_mismatch_fails_the_handshake(server):
    wrong = new_server_key()
    with pytest.raises(ConnectionClosedError):
        TcpClient(*server.address, server_key=(wrong.public_der, wrong.scheme.value), timeout=5)
    deadline = time.monotonic() + WAIT
    while server.connection_count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.connection_count == 0


def test_trust_on_first_use_reports_the_fingerprint(server):
    client = TcpClient(*server.address, server_key=None)
    try:
        assert client.handshake is not None and client.handshake.first_use
        assert client.handshake.server_key == server.protocol.server_key.public_der
    finally:
        client.close()


def test_server_stop_joins_its_threads(keys):
    before = threading.active_count()
    srv = TcpServer(server_key=new_server_key(), registry=MemoryRegistry(),
                    config=ServerConfig(scrypt=FAST_SCRYPT)).start()
    user = User(srv, "alice", keys["alice"]).join()
    user.client.close()
    srv.stop()
    deadline = time.monotonic() + WAIT
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before


def test_sqlite_registry_survives_restart(tmp_path, keys):
    path = tmp_path / "reg.db"
    registry = SqliteRegistry(path)
    key = registry.load_or_create_server_key("pass")
    srv = TcpServer(server_key=key, registry=registry, config=ServerConfig(scrypt=FAST_SCRYPT)).start()
    try:
        User(srv, "alice", keys["alice"]).join().client.close()
    finally:
        srv.stop()
        registry.close()
    registry = SqliteRegistry(path)
    key2 = registry.load_or_create_server_key("pass")
    assert key2.public_der == key.public_der
    srv = TcpServer(server_key=key2, registry=registry, config=ServerConfig(scrypt=FAST_SCRYPT)).start()
    try:
        user = User(srv, "alice", keys["alice"])
        assert user.client.login("alice", "pw-alice", keys["alice"]).username == "alice"
        user.client.close()
    finally:
        srv.stop()
        registry.close()


def test_run_demo_exits_zero():
    proc = run_python(["run_demo.py"])
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    for step in ("registered", "verified", "epoch 2", "epoch 3", "carol received nothing", "offline"):
        assert step in out
    assert "Hi bob!" in out  # printed as what bob decrypted, never as wire bytes
    assert "demo is over" in out


def test_server_and_cli_client_processes(tmp_path):
    """The console entry points: a server process, two scripted CLI clients, then Ctrl-C (SIGINT)."""
    server = run_python(server_args(tmp_path))
    try:
        port = banner_port(server)
        assert read_server_key_file(tmp_path / "key.json")[1] == "ed25519"
        common = ["-m", "securechat.client", "--port", str(port), "--keys-dir", str(tmp_path / "keys"),
                  "--server-key", str(tmp_path / "key.json")]
        bob = run_python(common, stdin=subprocess.PIPE)
        bob.stdin.write("/register bob dsa pw-bob\n/login bob pw-bob\n")  # type: ignore[union-attr]
        bob.stdin.flush()  # type: ignore[union-attr]
        alice_script = ("/register alice rsa pw-alice\n/login alice pw-alice\n/who\n/chat bob\n"
                        "hello from the cli\n/chats\n/quit\n")
        deadline = time.monotonic() + 30
        ready = False
        while not ready and time.monotonic() < deadline:  # wait until bob is logged in
            ready = (tmp_path / "keys" / "bob" / "identity.json").exists()
            time.sleep(0.2)
        time.sleep(1.0)
        alice = run_python(common, stdin=subprocess.PIPE)
        alice.stdin.write(alice_script)  # type: ignore[union-attr]
        alice.stdin.close()  # type: ignore[union-attr]
        # PROTOCOL.md 7.11: bob joins only by accepting; "/accept" with one open invitation takes it
        deadline = time.monotonic() + 60
        while alice.poll() is None and time.monotonic() < deadline:
            bob.stdin.write("/accept\n")  # type: ignore[union-attr]
            bob.stdin.flush()  # type: ignore[union-attr]
            time.sleep(0.5)
        alice.wait(timeout=60)
        out, err = alice.stdout.read(), alice.stderr.read()  # type: ignore[union-attr]
        assert "logged in as alice" in out, out + err
        assert "chat " in out and "bob" in out
        bob_out, _ = bob.communicate("/quit\n", timeout=30)
        assert "alice: hello from the cli" in bob_out and "rsa-pss-sha256 verified" in bob_out
        keystore = KeyStore(tmp_path / "keys")
        assert keystore.load("alice", "pw-alice").scheme is SignatureScheme.RSA_PSS_SHA256
        opened = subprocess.run(["openssl", "pkey", "-in", str(tmp_path / "keys" / "bob" / "signing.key.pem"),
                                 "-passin", "pass:pw-bob", "-noout", "-text"], capture_output=True, text=True)
        assert opened.returncode == 0 and "Q:" in opened.stdout  # DSA domain parameter q
    finally:
        stop_process(server)
    assert server.returncode == 0


def test_modes_over_tcp_wait_for_the_agreed_key_and_detect_a_changed_pin(server, keys, tmp_path):
    """Over sockets: open_chat returns only once a contributory key is agreed; a pin that does not
    match the certified key raises PeerKeyChanged, /trust (accept_key_change) re-pins it; pins persist."""
    store = KeyStore(tmp_path / "keys")
    store.save_pins("alice", {"bob": "0000:0000:0000:0000:0000:0000:0000:0000"})
    key = server.protocol.server_key
    inbox: queue.Queue[ev.Event] = queue.Queue()
    alice = User(server, "alice", keys["alice"])
    alice.client.close()
    alice.client = TcpClient(*server.address, server_key=(key.public_der, key.scheme.value), on_event=inbox.put,
                             pins=store.load_pins("alice"))
    alice.inbox = inbox
    alice.join()
    bob = User(server, "bob", keys["bob"]).join()
    carol = User(server, "carol", keys["carol"]).join()
    try:
        opened = carol.client.open_chat(["bob"], mode="contributory")
        assert carol.client.keyed_epoch(opened.chat_id) == 1 and carol.client.chat_mode(opened.chat_id) == "contributory"
        carol.client.send(opened.chat_id, "agreed")
        assert bob.expect(ev.ChatReceived, lambda e: e.chat_id == opened.chat_id).text == "agreed"
        alice.client.open_chat(["bob"])  # server-key: alice fetches bob's certificate, which differs from the pin
        changed = alice.expect(ev.PeerKeyChanged, lambda e: e.username == "bob")
        assert changed.pinned.startswith("0000")
        alice.client.accept_key_change("bob", changed.seen)
        pinned = alice.expect(ev.PeerKeyPinned, lambda e: e.username == "bob")
        assert pinned.fingerprint == changed.seen
        store.save_pins("alice", alice.client.pins)
        assert store.load_pins("alice")["bob"] == changed.seen
        hybrid = alice.client.open_chat(["bob"], mode="hybrid")
        bob.client.wait_for_key(hybrid.chat_id, 1)
        alice.client.send(hybrid.chat_id, "per-message key")
        assert bob.expect(ev.ChatReceived, lambda e: e.chat_id == hybrid.chat_id).text == "per-message key"
        assert alice.client.safety_number("bob") == bob.client.safety_number("alice")
    finally:
        for user in (alice, bob, carol):
            user.client.close()


def test_wait_for_returns_the_matching_event_and_times_out(server, keys):
    alice = User(server, "alice", keys["alice"]).join()
    bob = User(server, "bob", keys["bob"]).join()
    try:
        online = alice.client.wait_for(ev.PresenceChanged, lambda e: e.username == "bob")
        assert online.online is True
        with pytest.raises(TimeoutError):
            alice.client.wait_for(ev.ChatReceived, timeout=0.3)
    finally:
        alice.client.close()
        bob.client.close()
