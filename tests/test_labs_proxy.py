"""The interception proxy (securechat.labs.proxy) and the client key log (securechat.labs.keylog), on real
sockets on 127.0.0.1 port 0: it decrypts with a key log and cannot without, and each tampering hook causes the
error PROTOCOL.md 5.2 and 16.3 document. Every server, proxy and client is stopped in a finally."""

from __future__ import annotations

import contextlib
import os
import re
import queue
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from securechat.errors import LocalProtocolError
from securechat.labs.keylog import KeyLogWriter, read_keylog
from securechat.labs.proxy import InterceptionProxy, Rule, main as proxy_main
from securechat.net.tcp_client import ConnectionClosedError, TcpClient
from securechat.net.tcp_server import TcpServer
from securechat.protocol import events as ev
from tests.helpers import user_keys
from tests.live import start_server

WAIT = 10.0


class Lines:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        with self._lock:
            self.lines.append(line)

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.lines)


@dataclass
class Setup:
    server: TcpServer
    proxy: InterceptionProxy
    shown: Lines


@contextmanager
def proxied(keylog: Path | None = None) -> Iterator[Setup]:
    server = start_server()
    shown = Lines()
    proxy = InterceptionProxy(server.address, keylog=keylog, show=shown).start()
    try:
        yield Setup(server, proxy, shown)
    finally:
        proxy.stop()
        server.stop()


def connect(setup: Setup, name: str, *, via_proxy: bool, keylog: KeyLogWriter | None = None,
            inbox: queue.Queue[ev.Event] | None = None) -> TcpClient:
    key = setup.server.protocol.server_key
    address = setup.proxy.address if via_proxy else setup.server.address
    client = TcpClient(*address, server_key=(key.public_der, key.scheme.value), keylog=keylog,
                       on_event=None if inbox is None else inbox.put)
    client.register(name, "pw-" + name, user_keys(name))
    client.login(name, "pw-" + name, user_keys(name))
    return client


def expect(inbox: queue.Queue[ev.Event], kind: type, predicate=lambda e: True):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            event = inbox.get(timeout=0.1)
        except queue.Empty:
            continue
        if isinstance(event, kind) and predicate(event):
            return event
    raise AssertionError(f"no {kind.__name__}")


# --- key log ------------------------------------------------------------------------------------------------


def test_keylog_file_is_created_owner_only_and_refuses_a_readable_one(tmp_path):
    path = tmp_path / "keys.log"
    writer = KeyLogWriter(path)
    try:
        writer(b"\x01" * 32, b"\x02" * 32, b"\x03" * 32)
    finally:
        writer.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert read_keylog(path)[b"\x01" * 32].server_to_client == b"\x03" * 32
    readable = tmp_path / "shared.log"
    readable.write_text("")
    readable.chmod(0o644)
    with pytest.raises(ValueError, match="only you can read"):
        KeyLogWriter(readable)
    link = tmp_path / "link.log"
    link.symlink_to(path)
    with pytest.raises(ValueError, match="cannot open key log"):  # a symlink planted where the log goes
        KeyLogWriter(link)


@pytest.mark.tcp
def test_no_keylog_is_written_unless_asked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with proxied() as setup:
        client = connect(setup, "alice", via_proxy=True)
        client.close()
    assert list(tmp_path.iterdir()) == []


# --- showing frames -----------------------------------------------------------------------------------------


def _session(setup: Setup, keylog: KeyLogWriter | None) -> str:
    client = connect(setup, "alice", via_proxy=True, keylog=keylog)
    try:
        assert client.who() == ("alice",)
    finally:
        client.close()
    return setup.shown.text()


@pytest.mark.tcp
def test_proxy_decrypts_the_inner_frames_with_the_client_key_log(tmp_path):
    path = tmp_path / "keys.log"
    writer = KeyLogWriter(path)
    try:
        with proxied(keylog=path) as setup:
            text = _session(setup, writer)
    finally:
        writer.close()
    assert "c2s client_hello" in text and "key_exchange=x25519" in text
    assert "s2c server_hello" in text and "(fingerprint " in text
    assert "c2s record #0" in text
    assert re.search(r"c2s   inner register rid=\d+ username=alice", text)
    assert re.search(r"c2s   inner login rid=\d+ username=alice password=<redacted, 8 chars>", text)
    assert "pw-alice" not in text  # the password itself is never shown
    assert "s2c   inner login_ok" in text and re.search(r"s2c   inner who_result rid=\d+ online=\[\"alice\"\]", text)


@pytest.mark.tcp
def test_proxy_without_the_key_log_shows_only_ciphertext(tmp_path):
    with proxied(keylog=tmp_path / "absent.log") as setup:
        text = _session(setup, None)
    assert "c2s client_hello" in text and "c2s record #0" in text and "s2c record #0" in text
    assert "inner" not in text and "username=alice" not in text and "login_ok" not in text


@pytest.mark.tcp
def test_a_key_log_of_another_connection_does_not_open_this_one(tmp_path):
    path = tmp_path / "keys.log"
    writer = KeyLogWriter(path)
    writer(os.urandom(32), os.urandom(32), os.urandom(32))  # someone else's connection
    writer.close()
    with proxied(keylog=path) as setup:
        text = _session(setup, None)
    assert "inner" not in text


# --- tampering ----------------------------------------------------------------------------------------------


def _tamper(action: str, direction: str) -> tuple[ev.ConnectionClosed | None, list[str]]:
    """alice (through the proxy) and bob (direct) share a chat; the rule hits the next record of *direction*.

    Returns alice's ConnectionClosed (None if still open) and the texts bob received after the rule was armed.
    """
    alice_in: queue.Queue[ev.Event] = queue.Queue()
    bob_in: queue.Queue[ev.Event] = queue.Queue()
    with proxied() as setup:
        alice = connect(setup, "alice", via_proxy=True, inbox=alice_in)
        bob = connect(setup, "bob", via_proxy=False, inbox=bob_in)
        try:
            chat = alice.open_chat(["bob"]).chat_id
            alice.wait_for_key(chat, 1)
            bob.wait_for_key(chat, 1)
            alice.send(chat, "settle")  # everything alice sent so far has passed the proxy once bob has this
            expect(bob_in, ev.ChatReceived, lambda e: e.text == "settle")
            bob.send(chat, "settle too")
            expect(alice_in, ev.ChatReceived, lambda e: e.text == "settle too")
            index = setup.proxy.records_seen(direction)
            setup.proxy.add_rule(Rule(direction, index, action, 0.3))
            sender = alice if direction == "c2s" else bob
            sender.send(chat, "one")
            deadline = time.monotonic() + WAIT  # "two" must travel in a record of its own, after "one"'s
            while setup.proxy.records_seen(direction) <= index and time.monotonic() < deadline:
                time.sleep(0.01)
            with contextlib.suppress(LocalProtocolError):  # a flipped "one" may have closed alice already
                sender.send(chat, "two")
            received = []
            if action == "delay":
                inbox = alice_in if direction == "s2c" else bob_in
                received.append(expect(inbox, ev.ChatReceived).text)
                received.append(expect(inbox, ev.ChatReceived).text)
            else:
                expect(alice_in, ev.ConnectionClosed)
            time.sleep(0.1)
            while not bob_in.empty():
                event = bob_in.get()
                if isinstance(event, ev.ChatReceived):
                    received.append(event.text)
            return alice.closed, received
        finally:
            alice.close()
            bob.close()


@pytest.mark.tcp
@pytest.mark.parametrize("action", ["flip", "drop", "replay", "reorder"])
def test_tampering_with_a_client_record_makes_the_server_close_with_bad_record(action):
    closed, received = _tamper(action, "c2s")
    assert closed is not None and closed.code == "bad_record"  # the server's error, inside a record (5.2)
    # only what came intact and in order before the tampered record was relayed (replay: "one" once)
    assert received == {"flip": [], "drop": [], "replay": ["one"], "reorder": []}[action]


@pytest.mark.tcp
@pytest.mark.parametrize("action", ["flip", "replay", "reorder", "drop"])
def test_tampering_with_a_server_record_makes_the_client_close_with_bad_record(action):
    closed, _ = _tamper(action, "s2c")
    assert closed is not None and closed.code == "bad_record"  # the client's own check (5.2)


@pytest.mark.tcp
def test_a_delayed_record_arrives_and_nothing_breaks():
    closed, received = _tamper("delay", "c2s")
    assert closed is None and received == ["one", "two"]


def test_proxy_cli_refuses_bad_rules(capsys):
    assert proxy_main(["--listen", "0", "--to", "127.0.0.1:1", "--flip", "sideways:1"]) == 2
    assert "--flip takes DIR:N" in capsys.readouterr().err


def test_describe_fields_shortens_unless_full_and_always_redacts_and_escapes():
    from securechat.labs.proxy import describe_fields

    frame = {"type": "login", "username": "bob\x1b[2J", "password": "hunter2", "signature": "A" * 100}
    short, full = describe_fields(frame), describe_fields(frame, full=True)
    assert "signature=" + "A" * 48 + "...(100 chars)" in short and "signature=" + "A" * 100 in full
    assert "hunter2" not in short + full and "password=<redacted, 7 chars>" in full
    assert "\x1b" not in short and "bob\\x1b[2J" in short  # the escape is shown, not acted on


def test_proxy_commands_arm_rules_for_the_next_record():
    proxy = InterceptionProxy(("127.0.0.1", 1))
    assert proxy.command("flip c2s next") == "armed: flip c2s record #0"
    assert proxy.command("delay s2c 4 2.5") == "armed: delay s2c record #4"
    assert proxy.command("explode c2s 1").startswith("commands:")
    assert [r.action for r in proxy.rules] == ["flip", "delay"]


@pytest.mark.tcp
def test_proxy_command_relays_and_takes_commands_on_standard_input():
    import subprocess
    import sys

    server = start_server()
    proc = subprocess.Popen([sys.executable, "-m", "securechat.labs.proxy", "--listen", "0", "--to",
                             f"{server.address[0]}:{server.address[1]}"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None and proc.stdin is not None
        first = proc.stdout.readline()
        match = re.match(r"proxy on 127\.0\.0\.1:(\d+) -> ", first)
        assert match, first
        proc.stdout.readline()  # the list of commands
        proc.stdin.write("flip c2s next\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "armed: flip c2s record #0"
        key = server.protocol.server_key
        client = TcpClient("127.0.0.1", int(match.group(1)), server_key=(key.public_der, key.scheme.value))
        try:
            with pytest.raises(Exception):  # the flipped first record ends the connection (bad_record)
                client.register("alice", "pw-alice", user_keys("alice"))
            assert client.closed is not None and client.closed.code == "bad_record"
        finally:
            client.close()
        lines = [proc.stdout.readline() for _ in range(4)]
        assert any("c2s client_hello" in line for line in lines)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        server.stop()


# --- no-replay-window: a replayed record is a repeated command ----------------------------------------------


def _replay_chat_open(lab: object) -> tuple[list[str], ev.ConnectionClosed | None]:
    """The proxy replays alice's chat_open record; returns the chats bob was put in and alice's close, if any."""
    from securechat.labs import attacks
    from securechat.protocol.lab import LAB_ACKNOWLEDGEMENT, LabMode, parse_variants

    mode = LabMode(parse_variants([str(lab)]), "server", LAB_ACKNOWLEDGEMENT) if lab else None
    alice_in: queue.Queue[ev.Event] = queue.Queue()
    bob_in: queue.Queue[ev.Event] = queue.Queue()
    server = start_server(lab=mode)
    shown = Lines()
    proxy = InterceptionProxy(server.address, show=shown).start()
    setup = Setup(server, proxy, shown)
    alice = connect(setup, "alice", via_proxy=True, inbox=alice_in)
    bob = connect(setup, "bob", via_proxy=False, inbox=bob_in)
    try:
        attacks.replay_next_record(proxy, "c2s")
        with contextlib.suppress(ConnectionClosedError):  # the default server may close before it answers
            alice.open_chat(["bob"])
        if mode is None:  # alice is cut off at the copy, before (or just after) her chat forms: at most one
            expect(alice_in, ev.ConnectionClosed)
            time.sleep(0.3)
            chats = set()
            while not bob_in.empty():
                event = bob_in.get_nowait()
                if isinstance(event, ev.ChatKeyed):
                    chats.add(event.chat_id)
        else:
            chats = {expect(bob_in, ev.ChatKeyed).chat_id}
            chats.add(expect(bob_in, ev.ChatKeyed, lambda e: e.chat_id not in chats).chat_id)
        return sorted(chats), alice.closed
    finally:
        alice.close()
        bob.close()
        proxy.stop()
        server.stop()


@pytest.mark.tcp
def test_no_replay_window_lets_a_replayed_record_repeat_a_command():
    chats, closed = _replay_chat_open("no-replay-window")
    assert len(chats) == 2 and closed is None  # one chat_open sent, two chats opened


@pytest.mark.tcp
def test_a_replayed_record_is_refused_by_the_default_server():
    chats, closed = _replay_chat_open(None)
    assert len(chats) <= 1 and closed is not None and closed.code == "bad_record"


@pytest.mark.tcp
def test_client_cli_keylog_option_writes_one_owner_only_line(tmp_path):
    import subprocess
    import sys

    server = start_server()
    log = tmp_path / "keys.log"
    try:
        result = subprocess.run([sys.executable, "-m", "securechat.client", "--host", "127.0.0.1", "--port",
                                 str(server.address[1]), "--keys-dir", str(tmp_path / "keys"), "--keylog", str(log)],
                                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    finally:
        server.stop()
    assert "LAB TOOL: writing this connection's record keys to" in result.stdout, result.stdout + result.stderr
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o600
    assert len(read_keylog(log)) == 1 and log.read_text().startswith("SECURECHAT_CHANNEL ")
