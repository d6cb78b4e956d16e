"""The terminal client as a person meets it: the real ``python -m securechat.client`` in a pseudo-terminal (pexpect)
against a real server on 127.0.0.1 port 0 (fast scrypt), plus a few plain-pipe runs for what a pty cannot carry.

Each test names the problem it pins down (docs/SECURITY.md, "the client"): forged lines from control characters,
lost keys, tracebacks, the wrong chat, jargon, no recovery. Every process, client and server is stopped in a
finally; every wait is bounded by pexpect's timeout.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest

from securechat.crypto.kdf import FAST_SCRYPT
from securechat.keystore import KeyStore, write_server_key_file
from securechat.net.tcp_client import TcpClient
from securechat.net.tcp_server import TcpServer
from securechat.protocol import events as ev
from securechat.protocol.limits import ServerConfig
from securechat.store import MemoryRegistry, new_server_key
from tests.helpers import password_of, user_keys

pytestmark = pytest.mark.tcp  # terminal client and server processes (tests/guard.py)

ROOT = Path(__file__).resolve().parent.parent
WAIT = 20


class Server:
    """A TcpServer that can be stopped and started again on the same port, with the same registry and key."""

    def __init__(self, tmp: Path, lobby: bool = True, **config: float) -> None:
        self.registry, self.key, self.lobby, self.config = MemoryRegistry(), new_server_key(), lobby, config
        self.key_file = tmp / "server-key.json"
        write_server_key_file(self.key_file, self.key.public_der, self.key.scheme.value)
        self.port = 0
        self.srv: TcpServer | None = None
        self.start()

    def start(self) -> None:
        self.srv = TcpServer(server_key=self.key, registry=self.registry, port=self.port,
                             config=ServerConfig(scrypt=FAST_SCRYPT, lobby=self.lobby, **self.config)).start()
        self.port = self.srv.address[1]

    def stop(self) -> None:
        if self.srv is not None:
            self.srv.stop()
            self.srv = None

    @property
    def pinned(self) -> tuple[bytes, str]:
        return self.key.public_der, self.key.scheme.value

    def user(self, name: str, *, login: bool = True, register: bool = True) -> TcpClient:
        """A library client for *name* (cached test keys), registered and logged in."""
        inbox: list[ev.Event] = []
        client = TcpClient("127.0.0.1", self.port, server_key=self.pinned, on_event=inbox.append, timeout=WAIT)
        client.inbox = inbox  # type: ignore[attr-defined]
        if register:
            client.register(name, password_of(name), user_keys(name))
        if login:
            client.login(name, password_of(name), user_keys(name))
        return client


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path)
    try:
        yield srv
    finally:
        srv.stop()


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm-256color",
                PYTHONUNBUFFERED="1")


class Term:
    """``python -m securechat.client`` in a pty, 50x220, as a person would run it."""

    def __init__(self, server: Server, keys: Path, *extra: str) -> None:
        args = ["-m", "securechat.client", "--port", str(server.port), "--keys-dir", str(keys),
                "--server-key", str(server.key_file), *extra]
        self.child = pexpect.spawn(sys.executable, args, cwd=str(ROOT), env=_env(), encoding="utf-8",
                                   codec_errors="replace", timeout=WAIT, dimensions=(50, 220))
        self.log: list[str] = []
        self.expect("type /help for commands")

    def expect(self, pattern: str) -> re.Match[str]:
        try:
            self.child.expect(pattern)
        except (pexpect.TIMEOUT, pexpect.EOF) as exc:
            raise AssertionError(f"no {pattern!r} on the terminal; it showed:\n{self.screen()}") from exc
        self.log.append(self.child.before + self.child.after)
        match = self.child.match
        assert isinstance(match, re.Match)
        return match

    def type(self, line: str) -> None:
        self.child.send(line + "\r")

    def screen(self) -> str:
        return "".join(self.log) + str(self.child.before)

    def close(self) -> str:
        if self.child.isalive():
            self.child.sendcontrol("d")
            try:
                self.child.expect(pexpect.EOF, timeout=10)
            except pexpect.TIMEOUT:
                pass
        self.log.append(str(self.child.before))
        self.child.close(force=True)
        return self.screen()


def _login_term(server: Server, tmp: Path, name: str, *extra: str) -> Term:
    """A pty client for *name*, registered beforehand (cached keys saved in its key folder), logged in."""
    keys = tmp / f"keys-{name}"
    KeyStore(keys).save(name, password_of(name), user_keys(name))
    server.user(name, login=False).close()
    term = Term(server, keys, *extra)
    term.type(f"/login {name} {password_of(name)}")
    term.expect(f"logged in as {name}")
    return term


def _wait(predicate, what: str, timeout: float = WAIT) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# --- finding: a chat member forges a "verified" line (control characters reach the terminal) ------------------


def test_escape_sequences_from_a_peer_are_shown_not_obeyed(server: Server, tmp_path: Path) -> None:
    bob = _login_term(server, tmp_path, "bob", "--accept-invitations")
    mallory = server.user("mallory")
    try:
        opened = mallory.open_chat(["bob"])
        mallory.send(opened.chat_id, "ok\x1b[2K\r[bob] bob: FORGED pay eve\u202eusd")
        shown = bob.expect(r"mallory: ok.*verified\)")
        line = shown.group(0)
        assert "\x1b[2K\r[bob]" not in bob.screen()
        assert "ok\\x1b[2K\\r[bob] bob: FORGED pay eve<U+202E>usd" in line
    finally:
        mallory.close()
        out = bob.close()
    assert "Traceback" not in out


def test_an_invitation_is_asked_and_answered_on_the_terminal(server: Server, tmp_path: Path) -> None:
    """PROTOCOL.md 7.11: a person is asked before joining; /accept with the start of the chat id joins."""
    import threading
    bob = _login_term(server, tmp_path, "bob")
    carol = server.user("carol")
    opened: list[Any] = []
    try:
        opener = threading.Thread(target=lambda: opened.append(carol.open_chat(["bob"])), daemon=True)
        opener.start()
        short = bob.expect(r"carol invites you to a server-key chat (\w+): /accept").group(1)
        assert not opened  # carol's chat waits for bob's answer
        bob.type(f"/accept {short[:4]}")
        bob.expect(r"accepted the invitation to chat " + short)
        opener.join(WAIT)
        assert opened and set(opened[0].members) == {"bob", "carol"}
        carol.send(opened[0].chat_id, "welcome, by consent")
        bob.expect(r"carol: welcome, by consent")
        bob.type("/decline")
        bob.expect(r"which invitation\? /decline CHAT \(open invitations: none\)")
    finally:
        carol.close()
        out = bob.close()
    assert "Traceback" not in out


# --- finding: the prompt shows the chat a reply goes to; /switch confirms; no jargon ----------------------------


def test_prompt_names_the_chat_and_replies_go_there(server: Server, tmp_path: Path) -> None:
    alice = _login_term(server, tmp_path, "alice", "--accept-invitations")
    bob, carol = server.user("bob"), server.user("carol")
    try:
        alice.expect(r"alice>")
        alice.type("/chat alice")
        alice.expect(r"cannot open a chat with only yourself")
        group = carol.open_chat(["alice", "bob"])
        alice.expect(r"now talking in bob,carol")
        alice.expect(r"alice@bob,carol>")
        private = bob.open_chat(["alice"])
        alice.expect(r"/switch bob to talk there")
        alice.type("/switch bob")
        alice.expect(r"now talking in bob \[server-key\]")
        alice.expect(r"alice@bob>")
        alice.type("for your eyes only")
        alice.expect(r"\[bob\] you: for your eyes only .*sent")
        _wait(lambda: any(isinstance(e, ev.ChatReceived) for e in bob.inbox), "bob's message")  # type: ignore[attr-defined]
        got = [e for e in bob.inbox if isinstance(e, ev.ChatReceived)]  # type: ignore[attr-defined]
        assert [(e.chat_id, e.text) for e in got] == [(private.chat_id, "for your eyes only")]
        assert not any(isinstance(e, ev.ChatReceived) for e in carol.inbox)  # type: ignore[attr-defined]
        alice.type("/chats")
        alice.expect(r"\* \d\. bob \[server-key\]")
        alice.type("/leave")
        alice.expect(r"left bob")
        alice.type("/chats")
        alice.expect(r"bob,carol \[server-key\]")
        assert group.chat_id
        alice.type("/switch 99")
        alice.expect(r"no such chat: 99")
    finally:
        bob.close()
        carol.close()
        out = alice.close()
    assert "Traceback" not in out
    assert not re.search(r"\d\. bob \[server-key\]", out.split("left bob")[-1])  # the left chat is hidden


def test_before_login_the_client_says_log_in_first(server: Server, tmp_path: Path) -> None:
    term = Term(server, tmp_path / "keys")
    try:
        term.type("/who")
        term.expect(r"log in first")
        term.type("hello?")
        term.expect(r"log in first: /login NAME")
        term.type("/status")
        term.expect(r"usage: /status NAME")
        term.type("/login")
        term.expect(r"usage: /login NAME \[PASSWORD\]")
        term.type("/login nobody")
        term.expect(r"no keys for nobody in .*register first")
        term.type("/chat --mode")
        term.expect(r"usage: /chat")
    finally:
        out = term.close()
    assert "Traceback" not in out and "list index out of range" not in out
    assert "cannot send who in state" not in out


def test_a_message_the_server_refuses_is_marked_not_delivered(tmp_path: Path) -> None:
    server = Server(tmp_path, lobby=False, messages_per_second=0.001, message_burst=4)  # a tiny request budget
    try:
        alice = _login_term(server, tmp_path, "alice", "--accept-invitations")
        bob = server.user("bob")
        try:
            bob.open_chat(["alice"])
            alice.expect(r"alice@bob>")
            for i in range(8):
                alice.type(f"note {i}")
            alice.expect(r"\[bob\] you: note 0 .*sent")
            refused = alice.expect(r'NOT delivered "note (\d)" to bob: too many attempts')
            assert int(refused.group(1)) > 0
        finally:
            bob.close()
            out = alice.close()
    finally:
        server.stop()
    assert "Traceback" not in out


# --- finding: /register never destroys keys; checks come first; the password is asked twice --------------------


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_register_never_overwrites_and_leaves_nothing_behind(server: Server, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    KeyStore(keys).save("bob", password_of("bob"), user_keys("bob"))
    server.user("bob", login=False).close()
    before = _digest(keys / "bob")
    server.user("carol", login=False).close()  # carol is registered, from another machine: no keys here
    term = Term(server, keys)
    try:
        term.type("/register bob rsa another-password")
        term.expect(r"keys for bob already exist in .*never overwritten")
        term.type("/register Bad!Name ed25519 pw")
        term.expect(r"cannot be a user name")
        term.type("/register carol ed25519 pw-other")
        term.expect(r"that user name is already registered")
        term.type("/register dave ed25519")
        term.expect(r"choose a password for dave:")
        term.type("one")
        term.expect(r"type it again:")
        term.type("two")
        term.expect(r"the two passwords differ: nothing was created")
        term.type("/register dave ed25519")
        term.expect(r"choose a password for dave:")
        term.type("pw-dave")
        term.expect(r"type it again:")
        term.type("pw-dave")
        term.expect(r"registered dave \(ed25519\)")
        term.type("/login bob " + password_of("bob"))
        term.expect(r"logged in as bob")
    finally:
        out = term.close()
    assert _digest(keys / "bob") == before
    assert sorted(p.name for p in keys.iterdir() if p.is_dir()) == ["bob", "dave"]  # no carol, no staging
    assert KeyStore(keys).load("dave", "pw-dave").scheme.value == "ed25519"
    assert "generating" not in out.split("cannot be a user name")[0].split("already exist")[-1]
    assert "Traceback" not in out


# --- finding: tracebacks in ordinary situations ----------------------------------------------------------------


def test_ctrl_c_and_ctrl_d_log_out_cleanly(server: Server, tmp_path: Path) -> None:
    watcher = server.user("watcher")
    try:
        for key, name in (("c", "alice"), ("d", "bob")):
            term = _login_term(server, tmp_path, name)
            _wait(lambda: any(isinstance(e, ev.PresenceChanged) and e.username == name and e.online  # noqa: B023
                              for e in watcher.inbox), f"{name} online")  # type: ignore[attr-defined]
            term.expect(f"{name}>")  # the line editor is waiting (a key typed while a command runs is the tty's)
            term.child.sendcontrol(key)
            term.expect(r"logged out")
            term.child.expect(pexpect.EOF)
            term.child.close()
            assert term.child.exitstatus == 0, term.screen()
            assert "Traceback" not in term.screen()
            _wait(lambda: any(isinstance(e, ev.PresenceChanged) and e.username == name and not e.online  # noqa: B023
                              for e in watcher.inbox), f"{name} offline")  # type: ignore[attr-defined]
    finally:
        watcher.close()


def test_typing_after_the_server_went_away_and_reconnecting_after_a_restart(server: Server, tmp_path: Path) -> None:
    alice = _login_term(server, tmp_path, "alice", "--accept-invitations")
    bob = server.user("bob")
    try:
        bob.open_chat(["alice"])
        alice.expect(r"alice@bob>")
        bob.close()
        server.stop()
        alice.expect(r"connection to the server lost .*reconnecting")
        alice.type("are you there?")
        alice.expect(r"not connected: your message was not sent")
        server.start()
        alice.expect(r"reconnected as alice")
        alice.expect(r"chats that were lost: bob")
        alice.expect(r"alice@lobby>")
        alice.type("back again")
        alice.expect(r"\[lobby\] you: back again")
        carol = server.user("carol")
        alice.expect(r"carol is now online")
        carol.open_chat(["alice"])
        alice.expect(r"/switch carol to talk there")
        carol.close()
    finally:
        out = alice.close()
    assert "Traceback" not in out
    assert "password:" not in out.split("connection to the server lost")[-1]  # logged in again without asking


def _plain(server: Server, keys: Path, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    args = [sys.executable, "-m", "securechat.client", "--port", str(server.port), "--keys-dir", str(keys),
            "--server-key", str(server.key_file)]
    return subprocess.run(args, input=stdin, capture_output=True, cwd=ROOT, env=_env(), timeout=60)


def test_oversized_and_undecodable_input_get_one_plain_line(server: Server, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    KeyStore(keys).save("alice", password_of("alice"), user_keys("alice"))
    server.user("alice", login=False).close()
    bob = server.user("bob")
    try:
        script = (b"/login alice " + password_of("alice").encode() + b"\n/chat bob\n" + b"x" * (70 * 1024)
                  + b"\ncaf\xe9 \xff\xfe pasted\n" + b"esc \x1b[A typed\n" + b"still here\n/quit\n")
        done = _plain(server, keys, script)
    finally:
        bob.close()
    out = done.stdout.decode("utf-8", "replace") + done.stderr.decode("utf-8", "replace")
    assert done.returncode == 0, out
    assert "Traceback" not in out
    assert re.search(r"that message is 71680 bytes; the limit is 65536", out), out
    assert "not valid UTF-8 text" in out and "control characters" in out
    assert re.search(r"\[bob\] you: still here", out), out


@pytest.mark.parametrize("content, says", [
    (None, "does not exist"),
    ("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n", "is a PEM file"),
    ("not json at all", "is not a server key file"),
    ('{"key": "!!", "scheme": "ed25519"}', "is not a server key file"),
])
def test_bad_server_key_files_are_named_in_one_line(tmp_path: Path, content: str | None, says: str) -> None:
    path = tmp_path / "server.key"
    if content is not None:
        path.write_text(content)
    done = subprocess.run([sys.executable, "-m", "securechat.client", "--port", "1", "--server-key", str(path),
                           "--keys-dir", str(tmp_path / "keys")], capture_output=True, text=True, cwd=ROOT,
                          env=_env(), timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_changed_server_key_shows_both_fingerprints_and_how_to_repin(server: Server, tmp_path: Path) -> None:
    from securechat.crypto.encoding import fingerprint
    keys = tmp_path / "keys"
    other = new_server_key()
    KeyStore(keys).pin_server(f"127.0.0.1:{server.port}", other.public_der, other.scheme.value)
    args = [sys.executable, "-m", "securechat.client", "--port", str(server.port), "--keys-dir", str(keys)]
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=60,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert fingerprint(other.public_der) in done.stderr and fingerprint(server.key.public_der) in done.stderr
    assert "--repin" in done.stderr
    again = subprocess.run([*args, "--repin"], input="/quit\n", capture_output=True, text=True, cwd=ROOT,
                           env=_env(), timeout=60)
    assert again.returncode == 0 and fingerprint(server.key.public_der) in again.stdout
    assert KeyStore(keys).pinned_server(f"127.0.0.1:{server.port}") == server.pinned


def test_server_port_in_use_is_one_plain_line(tmp_path: Path) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        done = subprocess.run([sys.executable, "-m", "securechat.server", "--port", str(busy.getsockname()[1]),
                               "--db", str(tmp_path / "s.db"), "--scrypt-n", "1024", "--allow-default-passphrase"],
                              capture_output=True,
                              text=True, cwd=ROOT, env=_env(), timeout=60)
    finally:
        busy.close()
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "is in use" in done.stderr


@pytest.mark.parametrize("module", ["securechat.client", "securechat.server", "securechat.gui", "securechat.admin"])
def test_every_command_has_version(module: str) -> None:
    done = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True, cwd=ROOT,
                          env=_env(), timeout=60)
    assert done.returncode == 0 and re.search(r"\d+\.\d+\.\d+", done.stdout), done.stdout + done.stderr
