"""A tiny scenario language, run either in the in-memory Simulation or over real sockets.

Owns: the steps (frozen dataclasses: ``Join``, ``OpenChat``, ``Invite``, ``Leave``, ``Send``, ``Logout``,
``Who``), the two runners ``run_in_simulation`` and ``run_over_sockets``, and ``Outcome``: per user, the ordered
list of what they received, in plain terms, normalised so that one scenario gives EQUAL outcomes on both runners.

A chat is named by a *label* across steps (``OpenChat(..., label="c1")``, then ``Send("bob", "c1", "hi")``); the
runner maps it to the real chat id. Entries of an outcome (chat ids, timings, fingerprints, certificates and
request ids are left out because they legitimately differ between runs)::

    ("registered",)                       ("logged_in", online)            ("logged_out",)
    ("presence", who, online)             ("who", online)                  ("failed", code)
    ("opened", label, members, offline, unknown)                          ("invited", label, who)
    ("keyed", label, epoch, members, reason, actor, joined, left, mode)  ("left", label)
    ("message", label, sender, text, signature scheme)
    ("rejected", label, sender, code)     ("aborted", label, epoch, code)

Handshakes, pins of peer keys (``PeerKeyPinned``: when the certificate reply lands depends on timing),
``status`` replies (the socket runner's barrier) and the final end of stream are not part of an outcome.

The socket runner waits for each step's effects deterministically, with bounded waits: after ``Join`` until every
other online user saw the presence; after ``OpenChat``/``Invite``/``Leave``/``Logout`` until every member of the
new epoch reported its ``ChatKeyed``; after ``Send`` until every other member got that message; then a ``status``
round trip per online user, so everything the server queued for them before is in. User keys are generated once
per process and reused, keyed by (user, scheme). Must not: leave a server, client, socket or thread running.

Example::

    steps = [Join("alice", "pw-a"), Join("bob", "pw-b", SignatureScheme.DSA_SHA256),
             OpenChat("alice", ("bob",), label="c1"), Send("bob", "c1", "hi")]
    assert run_in_simulation(steps) == run_over_sockets(steps)
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..crypto.kdf import FAST_SCRYPT
from ..crypto.signatures import SignatureScheme
from ..errors import SecureChatError
from ..protocol.vocabulary import ChatMode
from ..protocol import events as ev
from ..protocol.identity import UserKeys, generate_user_keys
from ..protocol.limits import ServerConfig

if TYPE_CHECKING:
    from ..net.tcp_client import TcpClient

# --- the language ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Join:
    """*user* connects, registers with *password* and keys of *scheme*, and logs in."""

    user: str
    password: str
    scheme: SignatureScheme = SignatureScheme.RSA_PSS_SHA256


@dataclass(frozen=True)
class OpenChat:
    """*user* opens a chat with *members* (besides themselves); later steps call it *label*."""

    user: str
    members: tuple[str, ...]
    mode: str = ChatMode.SERVER_KEY
    suite: str = "aes-256-gcm"
    label: str = "c1"


@dataclass(frozen=True)
class Invite:
    user: str
    label: str
    who: str


@dataclass(frozen=True)
class Leave:
    user: str
    label: str


@dataclass(frozen=True)
class Send:
    user: str
    label: str
    text: str


@dataclass(frozen=True)
class Logout:
    user: str


@dataclass(frozen=True)
class Who:
    user: str


Step = Join | OpenChat | Invite | Leave | Send | Logout | Who


class ScenarioError(SecureChatError):
    """A step the scenario cannot run (unknown chat label, user not logged in, label reused...).

    ``index`` is the step's position in the scenario (0-based) and ``step`` the step itself.
    """

    def __init__(self, index: int, step: object, problem: str) -> None:
        super().__init__(f"step {index} {step!r}: {problem}")
        self.index, self.step, self.problem = index, step, problem


@dataclass(frozen=True)
class Outcome:
    """What each user received, in order, in plain terms (see the module docstring for the entries)."""

    received: dict[str, tuple[tuple[Any, ...], ...]] = field(default_factory=dict)

    def of(self, user: str) -> tuple[tuple[Any, ...], ...]:
        return self.received.get(user, ())

    def messages(self, user: str) -> list[tuple[Any, ...]]:
        return [e for e in self.of(user) if e[0] == "message"]

    def differences(self, other: Outcome) -> list[str]:
        """Human-readable differences from *other* (empty if equal): the first diverging entry per user."""
        out: list[str] = []
        for user in sorted(set(self.received) | set(other.received)):
            mine, theirs = self.of(user), other.of(user)
            if mine == theirs:
                continue
            i = next((k for k, (a, b) in enumerate(zip(mine, theirs)) if a != b), min(len(mine), len(theirs)))
            out.append(f"{user}: entry {i}: {mine[i] if i < len(mine) else '<end>'} != "
                       f"{theirs[i] if i < len(theirs) else '<end>'} ({len(mine)} vs {len(theirs)} entries)")
        return out


# --- shared by both runners ----------------------------------------------------------------------------------------

_KEYS: dict[tuple[str, SignatureScheme], UserKeys] = {}
_KEYS_LOCK = threading.Lock()


def user_keys(user: str, scheme: SignatureScheme) -> UserKeys:
    """The process-wide keys of *user* for *scheme* (generated on first use: RSA and DSA take ~0.5-1 s)."""
    with _KEYS_LOCK:
        if (user, scheme) not in _KEYS:
            _KEYS[(user, scheme)] = generate_user_keys(scheme)
        return _KEYS[(user, scheme)]


class _Book:
    """Runner-independent bookkeeping: labels, members, who is online; and the normaliser of events."""

    def __init__(self) -> None:
        self.chat_ids: dict[str, str] = {}  # label -> chat id
        self.labels: dict[str, str] = {}  # chat id -> label
        self.online: list[str] = []
        self.joined: set[str] = set()
        self.received: dict[str, list[tuple[Any, ...]]] = {}

    def check(self, index: int, step: object) -> None:
        """Raise ScenarioError if *step* cannot run now."""
        if not isinstance(step, Join | OpenChat | Invite | Leave | Send | Logout | Who):
            raise ScenarioError(index, step, f"not a scenario step ({type(step).__name__})")
        if isinstance(step, Join):
            if step.user in self.joined:
                raise ScenarioError(index, step, f"{step.user!r} already joined")
            return
        if step.user not in self.online:
            raise ScenarioError(index, step, f"{step.user!r} is not logged in")
        if isinstance(step, OpenChat):
            if step.label in self.chat_ids:
                raise ScenarioError(index, step, f"chat label {step.label!r} is already used")
        elif isinstance(step, Invite | Leave | Send) and step.label not in self.chat_ids:
            raise ScenarioError(index, step, f"unknown chat label {step.label!r} (known: {sorted(self.chat_ids)})")

    def name_chat(self, label: str, chat_id: str) -> None:
        self.chat_ids[label], self.labels[chat_id] = chat_id, label

    def label(self, chat_id: str) -> str:
        return self.labels.get(chat_id, "?")

    def record(self, user: str, event: ev.Event) -> None:
        entry = self.normalise(event)
        if entry is not None:
            self.received.setdefault(user, []).append(entry)

    def normalise(self, e: ev.Event) -> tuple[Any, ...] | None:  # noqa: PLR0911 (one line per event type)
        if isinstance(e, ev.RegistrationSucceeded):
            return ("registered",)
        if isinstance(e, ev.LoggedIn):
            return ("logged_in", tuple(e.online))
        if isinstance(e, ev.LoggedOut):
            return ("logged_out",)
        if isinstance(e, ev.PresenceChanged):
            return ("presence", e.username, e.online)
        if isinstance(e, ev.WhoListed):
            return ("who", tuple(e.online))
        if isinstance(e, ev.RequestFailed):
            return ("failed", e.code)
        if isinstance(e, ev.ChatOpened):
            return ("opened", self.label(e.chat_id), tuple(e.members), tuple(e.offline), tuple(e.unknown))
        if isinstance(e, ev.ChatInvited):
            return ("invited", self.label(e.chat_id), e.username)
        if isinstance(e, ev.ChatKeyed):
            return ("keyed", self.label(e.chat_id), e.epoch, tuple(e.members), e.reason, e.actor, tuple(e.joined),
                    tuple(e.left), e.mode)
        if isinstance(e, ev.ChatLeft):
            return ("left", self.label(e.chat_id))
        if isinstance(e, ev.ChatReceived):
            return ("message", self.label(e.chat_id), e.sender, e.text, e.signature_scheme)
        if isinstance(e, ev.MessageRejected):
            return ("rejected", self.label(e.chat_id), e.sender, e.code)
        if isinstance(e, ev.ChatAborted):
            return ("aborted", self.label(e.chat_id), e.epoch, e.code)
        return None  # handshakes, pins, status replies, end of stream: timing-dependent or not the story

    def outcome(self) -> Outcome:
        return Outcome({user: tuple(entries) for user, entries in sorted(self.received.items())})


def _steps(steps: Iterable[Step]) -> list[Step]:
    out = list(steps)
    if not out:
        raise ValueError("a scenario needs at least one step")
    return out


# --- runner 1: the in-memory simulation ------------------------------------------------------------------------


def run_in_simulation(steps: Sequence[Step], *, seed: int = 1) -> Outcome:
    """Run *steps* in a ``Simulation`` (seeded random, virtual clock), idling the wire after every step."""
    from .simulation import Simulation  # noqa: PLC0415 (keeps ``import securechat.scenario`` light)

    sim = Simulation(seed=seed)
    book = _Book()
    cursor: dict[str, int] = {}

    def collect() -> None:
        for user in list(sim.events):
            events = sim.events_of(user)
            for event in events[cursor.get(user, 0):]:
                book.record(user, event)
            cursor[user] = len(events)

    for index, step in enumerate(_steps(steps)):
        book.check(index, step)
        if isinstance(step, Join):
            sim.keys[step.user] = user_keys(step.user, step.scheme)
            sim.register_and_login(step.user, step.password, step.scheme)
            book.joined.add(step.user)
            book.online.append(step.user)
            collect()
            continue
        client = sim.client(step.user)
        if isinstance(step, OpenChat):
            before = len(sim.events_of(step.user))
            client.open_chat(list(step.members), mode=step.mode, suite=step.suite)
            sim.run_until_idle()
            opened = [e for e in sim.events_of(step.user)[before:] if isinstance(e, ev.ChatOpened)]
            if opened:
                book.name_chat(step.label, opened[0].chat_id)
        elif isinstance(step, Invite):
            client.invite(book.chat_ids[step.label], step.who)
        elif isinstance(step, Leave):
            client.leave(book.chat_ids[step.label])
        elif isinstance(step, Send):
            client.send_chat(book.chat_ids[step.label], step.text)
        elif isinstance(step, Logout):
            client.logout()
            book.online.remove(step.user)
        elif isinstance(step, Who):
            client.who()
        sim.run_until_idle()
        collect()
    return book.outcome()


# --- runner 2: real sockets on the loopback -------------------------------------------------------------------


class _SocketUser:
    """One TcpClient and the events it received so far (drained from its queue, in order)."""

    def __init__(self, name: str, client: TcpClient) -> None:
        self.name, self.client = name, client
        self.seen: list[ev.Event] = []

    def drain(self, book: _Book) -> None:
        while True:
            try:
                event = self.client.events.get_nowait()
            except queue.Empty:
                return
            self.seen.append(event)
            book.record(self.name, event)


TRANSPORTS = ("tcp", "ws", "mixed")


def run_over_sockets(steps: Sequence[Step], *, timeout: float = 10.0, transport: str = "tcp") -> Outcome:
    """Run *steps* against a real ``TcpServer`` on 127.0.0.1 (port 0), one ``TcpClient`` per user.

    *transport*: ``"tcp"`` (every user on the TCP port), ``"ws"`` (every user over WebSocket, PROTOCOL.md 15)
    or ``"mixed"`` (users alternate, first TCP, in order of joining; all in the same chats).

    Uses a ``MemoryRegistry``, a fresh server key and ``ServerConfig(scrypt=FAST_SCRYPT)``. Every wait is bounded
    by *timeout* seconds (``TimeoutError``). The server and every client are stopped before returning or raising.
    """
    from ..net.tcp_client import RequestError, TcpClient  # noqa: PLC0415
    from ..net.tcp_server import TcpServer  # noqa: PLC0415
    from ..store import MemoryRegistry, new_server_key  # noqa: PLC0415

    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}")
    steps = _steps(steps)
    book = _Book()
    users: dict[str, _SocketUser] = {}
    members: dict[str, list[str]] = {}  # label -> members of the chat's current epoch (server's order unknown)
    server = TcpServer(server_key=new_server_key(), registry=MemoryRegistry(),
                       config=ServerConfig(scrypt=FAST_SCRYPT), host="127.0.0.1", port=0,
                       ws_port=None if transport == "tcp" else 0)
    server.start()

    def url() -> str:
        over_ws = transport == "ws" or (transport == "mixed" and len(users) % 2 == 1)
        if over_ws and server.ws_address is not None:
            return f"ws://{server.ws_address[0]}:{server.ws_address[1]}/securechat"
        return f"tcp://{server.address[0]}:{server.address[1]}"
    key = server.protocol.server_key
    pinned = (key.public_der, key.scheme.value)

    def wait(user: str, what: str, ready: Callable[[list[ev.Event]], bool]) -> None:
        deadline = time.monotonic() + timeout
        u = users[user]
        while True:
            u.drain(book)
            if ready(u.seen):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{user}: no {what} within {timeout} s")
            time.sleep(0.002)

    def keyed(label: str, epoch: int) -> Callable[[list[ev.Event]], bool]:
        chat_id = book.chat_ids[label]
        return lambda seen: any(isinstance(e, ev.ChatKeyed) and e.chat_id == chat_id and e.epoch >= epoch
                                for e in seen)

    def presence(who: str, online: bool) -> Callable[[list[ev.Event]], bool]:
        return lambda seen: any(isinstance(e, ev.PresenceChanged) and e.username == who and e.online is online
                                for e in seen)

    def messages(user: str, step: Send) -> int:
        return sum(1 for e in book.received.get(user, ()) if e[:4] == ("message", step.label, step.user, step.text))

    def more_messages(user: str, step: Send, count: int) -> Callable[[list[ev.Event]], bool]:
        return lambda _seen: messages(user, step) > count

    def epoch(label: str) -> int:
        chat_id = book.chat_ids[label]
        return max((u.client.keyed_epoch(chat_id) for u in users.values()), default=0)

    def wait_rekey(label: str, new_members: list[str], new_epoch: int) -> None:
        members[label] = new_members
        for name in new_members:
            if name in book.online:
                wait(name, f"key of {label} epoch {new_epoch}", keyed(label, new_epoch))

    def barrier() -> None:
        """A status round trip per online user: whatever the server queued for them before has arrived."""
        for name in book.online:
            users[name].client.status(name)
            users[name].drain(book)

    try:
        for index, step in enumerate(steps):
            book.check(index, step)
            if isinstance(step, Join):
                keys = user_keys(step.user, step.scheme)
                others = list(book.online)
                users[step.user] = _SocketUser(step.user, TcpClient(url=url(), server_key=pinned,
                                                                    timeout=timeout))
                book.joined.add(step.user)
                users[step.user].client.register(step.user, step.password, keys)
                users[step.user].client.login(step.user, step.password, keys)
                book.online.append(step.user)
                for name in others:
                    wait(name, f"presence of {step.user}", presence(step.user, True))
                barrier()
                continue
            client = users[step.user].client
            try:
                if isinstance(step, OpenChat):
                    opened = client.open_chat(list(step.members), mode=step.mode, suite=step.suite,
                                              wait_for_key=False)  # the key is awaited below, at every member
                    book.name_chat(step.label, opened.chat_id)
                    wait_rekey(step.label, list(dict.fromkeys((step.user, *opened.members))), 1)
                elif isinstance(step, Invite):
                    new_epoch = epoch(step.label) + 1
                    client.invite(book.chat_ids[step.label], step.who)
                    wait_rekey(step.label, [*members.get(step.label, []), step.who], new_epoch)
                elif isinstance(step, Leave):
                    new_epoch = epoch(step.label) + 1
                    client.leave(book.chat_ids[step.label])
                    wait_rekey(step.label, [n for n in members.get(step.label, []) if n != step.user], new_epoch)
                elif isinstance(step, Send):
                    before = {name: messages(name, step) for name in members.get(step.label, [])}
                    client.send(book.chat_ids[step.label], step.text)
                    for name, count in before.items():
                        if name != step.user and name in book.online:
                            wait(name, f"message {step.text!r}", more_messages(name, step, count))
                elif isinstance(step, Logout):
                    rekeys = {label: epoch(label) + 1 for label, names in members.items() if step.user in names}
                    client.logout()
                    users[step.user].drain(book)
                    book.online.remove(step.user)
                    for name in book.online:
                        wait(name, f"{step.user} going offline", presence(step.user, False))
                    for label, new_epoch in rekeys.items():
                        wait_rekey(label, [n for n in members[label] if n != step.user], new_epoch)
                elif isinstance(step, Who):
                    client.who()
            except RequestError:
                pass  # the RequestFailed event is in the stream, as in the simulation; nothing changed
            barrier()
        for u in users.values():
            u.drain(book)
        return book.outcome()
    finally:
        for u in users.values():
            try:
                u.client.close()
            except OSError:
                pass
        server.stop()


__all__ = [
    "Invite", "Join", "Leave", "Logout", "OpenChat", "Outcome", "ScenarioError", "Send", "Step", "Who",
    "TRANSPORTS", "run_in_simulation", "run_over_sockets", "user_keys",
]
