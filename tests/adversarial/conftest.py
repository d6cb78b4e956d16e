"""Fixtures and the raw-socket attacker for the scripted adversarial conversations (docs/THREATS.md).

Every script drives a LIVE TcpServer on 127.0.0.1 port 0, started through the suite's one live-TCP harness
(tests/live.py; ``make_server`` comes from tests/conftest.py). ``RawConn`` performs the real handshake itself
(with ClientProtocol), then seals ARBITRARY inner bytes with the connection's own RecordLayer, so a script can
send malformed frames at every layer and read back the server's decrypted answers. ``sanity`` runs an honest
conversation (register, log in, who) through a fresh TcpClient; each script calls it before and after.
"""

from __future__ import annotations

import itertools
import json
import socket
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from securechat.crypto.signatures import SignatureScheme
from securechat.errors import ErrorCode
from securechat.net.tcp_client import TcpClient
from securechat.net.tcp_server import TcpServer
from securechat.protocol import events as ev
from securechat.protocol.client import ClientProtocol
from securechat.protocol.codec import encode_unchecked, frame, split_frames
from securechat.protocol.identity import UserKeys, generate_user_keys
from tests.live import IO_TIMEOUT, connect, pinned, start_server, wait_until  # noqa: F401  (wait_until: scripts)

PASSWORD = "correct horse battery staple"
_names = itertools.count(1)

# Figures for docs/SECURITY.md: malformed inputs sent, per catalog category (printed at session end).
SENT: dict[str, int] = {}


def count(category: str, n: int = 1) -> None:
    SENT[category] = SENT.get(category, 0) + n


def fresh_name(prefix: str = "u") -> str:
    return f"{prefix}{next(_names)}"


# Every script registers fresh names from 127.0.0.1 on one module-wide server; the per-address registration
# budget (PROTOCOL.md 6.1) is tested on its own in test_c_auth.py, so these servers raise it.
LOOPBACK_REGISTRATIONS = 100_000.0


@pytest.fixture(scope="session")
def key_pool() -> list[UserKeys]:
    """Key generation (RSA-2048) is slow: a few key sets per session, reused under many usernames."""
    return [generate_user_keys(SignatureScheme.ED25519) for _ in range(3)] + [
        generate_user_keys(SignatureScheme.RSA_PSS_SHA256)]


@pytest.fixture
def keys(key_pool: list[UserKeys]) -> UserKeys:
    return key_pool[0]


@pytest.fixture
def make_server(make_server: Callable[..., TcpServer]) -> Callable[..., TcpServer]:
    """tests/conftest.py's ``make_server``, with loopback registrations unthrottled (the scripts register many)."""
    def make(**config: Any) -> TcpServer:
        config.setdefault("registration_burst_per_address", LOOPBACK_REGISTRATIONS)
        return make_server(**config)

    return make


@pytest.fixture(scope="module")
def server() -> Iterator[TcpServer]:
    """One default-config server per module (scripts that need other limits use ``make_server``)."""
    srv = start_server(registration_burst_per_address=LOOPBACK_REGISTRATIONS)
    yield srv
    srv.stop()


@pytest.fixture
def sane_before_and_after(server: TcpServer, keys: UserKeys) -> Iterator[None]:
    """The sanity conversation before and after a script (a module asks for it with ``usefixtures``)."""
    sanity(server, keys)
    yield
    sanity(server, keys)


def online_client(server: TcpServer, keys: UserKeys, name: str | None = None, **kw: Any) -> TcpClient:
    """A registered, logged-in honest client (the caller closes it)."""
    name = name or fresh_name("h")
    client = connect(server, timeout=IO_TIMEOUT, **kw)
    try:
        client.register(name, PASSWORD, keys)
        client.login(name, PASSWORD, keys)
    except BaseException:
        client.close()
        raise
    return client


def registered_name(server: TcpServer, keys: UserKeys) -> str:
    """Register a fresh user and disconnect: the user exists but is offline."""
    name = fresh_name("off")
    client = connect(server, timeout=IO_TIMEOUT)
    try:
        client.register(name, PASSWORD, keys)
    finally:
        client.close()
    return name


def sanity(server: TcpServer, keys: UserKeys) -> None:
    """The tlsfuzzer sanity conversation: a fresh client registers, logs in, and who() lists it."""
    name = fresh_name("sanity")
    client = online_client(server, keys, name)
    try:
        assert name in client.who()
        client.logout()
    finally:
        client.close()


class RawConn:
    """An attacker's connection: real handshake through ClientProtocol, then arbitrary bytes at every layer."""

    def __init__(self, server: TcpServer, *, handshake: bool = True, server_key: tuple[bytes, str] | None = None):
        self.server = server
        self.sock = socket.create_connection(server.address, timeout=IO_TIMEOUT)
        self.sock.settimeout(IO_TIMEOUT)
        self.cp = ClientProtocol(server_key=server_key or pinned(server))
        self.events: list[ev.Event] = []
        self._later: list[dict[str, Any]] = []  # frames read after the one expect() looked for
        if handshake:
            self.handshake()

    # --- honest steps through ClientProtocol --------------------------------------------------------------

    def _pump(self, until: Callable[[ev.Event], bool], what: str) -> ev.Event:
        deadline = time.monotonic() + IO_TIMEOUT
        while time.monotonic() < deadline:
            out = self.cp.data_to_send()
            if out:
                self.sock.sendall(out)
            for event in iter(self.cp.next_event, None):
                self.events.append(event)
                if until(event):
                    return event
                if isinstance(event, ev.ConnectionClosed):
                    return event
            data = self.sock.recv(1 << 20)
            self.cp.receive_data(data, time.time())
        raise AssertionError(f"no {what} within {IO_TIMEOUT} s")

    def handshake(self) -> ev.Event:
        self.cp.connect()
        return self._pump(lambda e: isinstance(e, ev.HandshakeCompleted), "handshake")

    def register(self, name: str, keys: UserKeys, password: str = PASSWORD) -> ev.Event:
        self.cp.register(name, password, keys)
        return self._pump(lambda e: isinstance(e, (ev.RegistrationSucceeded, ev.RequestFailed)), "registered")

    def login(self, name: str, keys: UserKeys, password: str = PASSWORD) -> ev.Event:
        self.cp.login(name, password, keys)
        return self._pump(lambda e: isinstance(e, (ev.LoggedIn, ev.RequestFailed)), "login")

    def register_and_login(self, name: str, keys: UserKeys) -> None:
        assert isinstance(self.register(name, keys), ev.RegistrationSucceeded)
        assert isinstance(self.login(name, keys), ev.LoggedIn)

    # --- raw sending -------------------------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def seal(self, plaintext: bytes) -> bytes:
        assert self.cp.link.records is not None
        # any size: the attacks seal more than a Record may hold (a 1 MiB password), so not through m.Record
        return encode_unchecked("record", {"data": self.cp.link.records.seal(plaintext)})

    def send_record(self, plaintext: bytes) -> None:
        """One record whose plaintext is exactly *plaintext* (inner framing included or not)."""
        self.sock.sendall(self.seal(plaintext))

    def send_inner(self, body: bytes) -> None:
        """One record carrying one inner frame with body *body* (arbitrary bytes)."""
        self.send_record(frame(body))

    def send_obj(self, obj: Any) -> None:
        self.send_inner(json.dumps(obj, separators=(",", ":")).encode())

    # --- reading -----------------------------------------------------------------------------------------

    def read_frames(self, timeout: float = IO_TIMEOUT) -> tuple[list[dict[str, Any]], bool]:
        """Read until at least one message arrives (then drain briefly) or EOF. Returns (messages, eof)."""
        messages: list[dict[str, Any]] = self._later
        self._later = []
        eof = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            messages.extend(self._decode_buffered())
            if messages and not self._readable(0.05):
                break
            try:
                self.sock.settimeout(max(0.01, min(0.2, deadline - time.monotonic())))
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            except OSError:
                data = b""
            if not data:
                eof = True
                messages.extend(self._decode_buffered())
                break
            self.cp.link.decoder.feed(data)
        self.sock.settimeout(IO_TIMEOUT)
        return messages, eof

    def _readable(self, timeout: float) -> bool:
        import select
        return bool(select.select([self.sock], [], [], timeout)[0])

    def _decode_buffered(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while (body := self.cp.link.decoder.next_frame()) is not None:
            outer = json.loads(body)
            if outer["type"] == "record" and self.cp.link.records is not None:
                plain = self.cp.link.records.open(_b64(outer["data"]))
                out.extend(json.loads(inner) for inner in split_frames(plain))
            else:
                out.append(outer)
        return out

    def expect(self, kind: str, timeout: float = IO_TIMEOUT, **fields: Any) -> dict[str, Any]:
        """Read until a message of *kind* (with *fields*) arrives; other pushes are skipped."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            messages, eof = self.read_frames(max(0.05, deadline - time.monotonic()))
            seen.extend(messages)
            for i, msg in enumerate(messages):
                if msg.get("type") == kind and all(msg.get(k) == v for k, v in fields.items()):
                    self._later = messages[i + 1:] + self._later
                    return msg
            if eof:
                break
        raise AssertionError(f"expected {kind} {fields}, saw {seen}")

    def accept_invitation(self, rid: int = 9000) -> str:
        """Answer the next chat_invitation with accept (PROTOCOL.md 7.11); returns its chat id."""
        invitation = self.expect("chat_invitation")
        self.send_obj({"type": "chat_answer", "rid": rid, "chat_id": invitation["chat_id"], "accept": True})
        self.expect("chat_answered", rid=rid)
        return str(invitation["chat_id"])

    def expect_error(self, code: ErrorCode, *, closed: bool, timeout: float = IO_TIMEOUT) -> dict[str, Any]:
        """The server answers with error{code}; then the connection is closed, or still serves a who."""
        error = self.expect("error", timeout)
        assert error["code"] == code.value, error
        if closed:
            self.expect_closed(timeout)
        else:
            self.assert_alive()
        return error

    def expect_closed(self, timeout: float = IO_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _, eof = self.read_frames(max(0.05, deadline - time.monotonic()))
            if eof:
                return
        raise AssertionError("connection still open")

    def expect_closed_quick(self) -> bool:
        """True if the server has closed this connection (checked for 0.1 s)."""
        _, eof = self.read_frames(0.1)
        return eof

    def assert_alive(self) -> None:
        """The connection still works: a who (logged in) is answered; before login, an unknown status is."""
        rid = 900_000 + next(_names)
        if self.cp.username is not None:
            self.send_obj({"type": "who", "rid": rid})
            self.expect("who_result", rid=rid)
        else:
            # Before login the only harmless request is a register that we abandon: use a bad field instead,
            # which must be answered and keep the connection (PROTOCOL.md 9.2).
            self.send_obj({"type": "login", "rid": rid})
            err = self.expect("error", rid=rid)
            assert err["code"] == ErrorCode.BAD_FIELD.value, err

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _b64(text: str) -> bytes:
    from securechat.crypto.encoding import b64d
    return b64d(text)


@pytest.fixture
def raw(server: TcpServer) -> Iterator[Callable[..., RawConn]]:
    made: list[RawConn] = []

    def connect(srv: TcpServer | None = None, **kw: Any) -> RawConn:
        conn = RawConn(srv or server, **kw)
        made.append(conn)
        return conn

    yield connect
    for conn in made:
        conn.close()


def length_prefix(n: int) -> bytes:
    return struct.pack(">I", n)


def pytest_terminal_summary(terminalreporter: Any) -> None:  # pragma: no cover - reporting only
    if SENT:
        terminalreporter.write_line("adversarial inputs sent per category: " + json.dumps(dict(sorted(SENT.items()))))


def open_with(opener: TcpClient, raws: list[RawConn], others: tuple[str, ...] = (), **kw: Any) -> ev.ChatOpened:
    """*opener* opens a chat with raw connections that accept their invitations (PROTOCOL.md 7.11) and with
    *others* (TcpClients, which accept by themselves)."""
    import threading
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(_try(lambda: opener.open_chat(
        [r.cp.username or "" for r in raws] + list(others), **kw))), daemon=True)
    thread.start()
    for conn in raws:
        conn.accept_invitation()
    thread.join(IO_TIMEOUT * 3)
    assert result, "the chat did not open"
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]  # type: ignore[no-any-return]


def _try(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception as exc:  # handed to the test's thread by open_with
        return exc
