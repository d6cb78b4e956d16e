"""The capture-the-flag server: ``securechat-server --lab ctf`` or ``python -m securechat.labs ctf``.

Owns: a real securechat server in lab mode (``unbound-login``, ``no-rekey-on-leave``) with scripted bot users
who chat with every student who logs in and hand out that student's flags (``securechat.labs.flags``) only to
an attack (PROTOCOL.md 16.2):

* ``dsa-nonce`` — bot ``dan`` signs with one repeated DSA nonce; bot ``vault`` gives the flag for an order
  signed by dan (``!order <base64 signature over "ctf order: flag for <you>">``).
* ``no-rekey`` — bot ``alice`` posts the flag in the ``ops`` chat once you have left it; bot ``archivist``
  publishes every ``ops`` ciphertext to you (an encrypted archive is harmless when leavers are rekeyed out).
* ``login-replay`` — bot ``carol`` logs into any server you name (``!visit HOST PORT`` to bot ``dispatcher``),
  never into this one; once carol is online here, vault hands you the flag.

``weak=False`` runs the same bots against a default server with default clients: every attack then fails
(the tests check both). Must not: run outside an explicit ``--lab ctf`` (it is a deliberately weak server), or
write flags anywhere but into the bots' end-to-end encrypted chats.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..crypto.encoding import b64d, constant_time_equal, fingerprint
from ..crypto.kdf import ScryptParams
from ..crypto.keys import load_public_key
from ..crypto.signatures import SignatureScheme, verify
from ..errors import SecureChatError
from ..net.tcp_client import TcpClient
from ..net.tcp_server import TcpServer
from ..protocol import events as ev
from ..protocol import messages as m
from ..protocol.codec import decode_message
from ..protocol.identity import UserKeys, generate_user_keys
from ..protocol.lab import LAB_ACKNOWLEDGEMENT, LabMode, LabVariant
from ..protocol.limits import ServerConfig
from ..store import MemoryRegistry, new_server_key
from .flags import flag
from .params import check_student_id
from .variants import banner

log = logging.getLogger("securechat.labs.ctf")

DAN, VAULT, ALICE, BOB, ARCHIVIST, DISPATCHER, CAROL = (
    "dan", "vault", "alice", "bob", "archivist", "dispatcher", "carol")
ONLINE_BOTS = (DAN, VAULT, ALICE, BOB, ARCHIVIST, DISPATCHER)
BOTS = frozenset(ONLINE_BOTS + (CAROL,))
ARCHIVE_PREFIX = "archive "
CTF_SCRYPT = ScryptParams(n=2**14, r=8, p=1)  # bots and students log in often; the lab is not about scrypt
_VISIT_TIMEOUT_SECONDS = 5.0

KeyFactory = Callable[[str, SignatureScheme], UserKeys]


def order_bytes(username: str) -> bytes:
    """What dan must have signed for vault to hand *username* the dsa-nonce flag."""
    return f"ctf order: flag for {username}".encode()


def _default_keys(name: str, scheme: SignatureScheme) -> UserKeys:
    return generate_user_keys(scheme)


@dataclass(frozen=True)
class _Archived:
    """A chat_message frame the archivist's connection received, handed from its reader thread to the director."""

    data: bytes


@dataclass
class _Student:
    name: str
    chats: dict[str, str] = field(default_factory=dict)  # bot -> chat id with that bot
    ops: str = ""
    ops_announced: bool = False


class CtfServer:
    """The CTF server and its bots on (host, port); ``start()`` returns once every bot is online."""

    def __init__(self, *, student: str = "self-study", weak: bool = True, host: str = "127.0.0.1", port: int = 0,
                 scrypt: ScryptParams = CTF_SCRYPT, keys: KeyFactory = _default_keys) -> None:
        self.student = check_student_id(student)
        self.weak = weak
        server_lab = LabMode(frozenset({LabVariant.UNBOUND_LOGIN, LabVariant.NO_REKEY_ON_LEAVE}), "server",
                             LAB_ACKNOWLEDGEMENT) if weak else None
        self._registry = MemoryRegistry()
        self.server_key = new_server_key()
        self.server = TcpServer(server_key=self.server_key, registry=self._registry, host=host, port=port,
                                config=ServerConfig(scrypt=scrypt, lab=server_lab))
        self._keys = keys
        self._bots: dict[str, TcpClient] = {}
        self._bot_keys: dict[str, UserKeys] = {}
        self._events: queue.Queue[tuple[str, ev.Event | _Archived]] = queue.Queue()
        self._students: dict[str, _Student] = {}
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._visiting = threading.Lock()
        self._secret = os.urandom(32)  # the bots' passwords derive from it: nothing public reveals them

    @property
    def address(self) -> tuple[str, int]:
        return self.server.address

    @property
    def pinned(self) -> tuple[bytes, str]:
        return self.server_key.public_der, self.server_key.scheme.value

    def _client_lab(self, variant: LabVariant) -> LabMode | None:
        return LabMode(frozenset({variant}), "client", LAB_ACKNOWLEDGEMENT) if self.weak else None

    # --- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> CtfServer:
        self.server.start()
        try:
            for name in ONLINE_BOTS + (CAROL,):
                scheme = SignatureScheme.DSA_SHA256 if name == DAN else SignatureScheme.RSA_PSS_SHA256
                self._bot_keys[name] = self._keys(name, scheme)
            for name in ONLINE_BOTS:
                self._bots[name] = self._connect_bot(name)
            carol = TcpClient(*self.address, server_key=self.pinned)  # carol registers, then stays away
            try:
                carol.register(CAROL, self._password(CAROL), self._bot_keys[CAROL])
            finally:
                carol.close()
        except BaseException:
            self.stop()
            raise
        thread = threading.Thread(target=self._direct, name="securechat-ctf-bots", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(10.0)
        for client in self._bots.values():
            client.close()
        self.server.stop()

    def __enter__(self) -> CtfServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _password(self, name: str) -> str:
        return fingerprint(self._secret + name.encode())

    def _connect_bot(self, name: str) -> TcpClient:
        lab = self._client_lab(LabVariant.DSA_NONCE_REUSE) if name == DAN else None
        trace = self._archive_trace if name == ARCHIVIST else None
        def on_event(event: ev.Event) -> None:
            self._events.put((name, event))

        client = TcpClient(*self.address, server_key=self.pinned, lab=lab, trace=trace, on_event=on_event)
        client.register(name, self._password(name), self._bot_keys[name])
        client.login(name, self._password(name), self._bot_keys[name])
        return client

    def _archive_trace(self, entry: ev.TraceEntry) -> None:
        # runs on the archivist's reader thread with its client locked: only hand the frame on
        if entry.direction == "receive" and entry.layer == "inner" and b'"chat_message"' in entry.data:
            self._events.put((ARCHIVIST, _Archived(entry.data)))

    # --- the bots ---------------------------------------------------------------------------------------------

    def _direct(self) -> None:
        while not self._stopping.is_set():
            item: ev.Event | _Archived | None
            try:
                bot, item = self._events.get(timeout=0.2)
            except queue.Empty:
                bot, item = "", None
            try:
                if item is not None:
                    self._handle(bot, item)
                self._watch_ops()
            except (SecureChatError, TimeoutError, OSError) as exc:
                log.warning("ctf bot %s: %s", bot or "director", exc)

    def _handle(self, bot: str, item: ev.Event | _Archived) -> None:
        if isinstance(item, _Archived):
            self._archive(item.data)
        elif isinstance(item, ev.PresenceChanged) and bot == VAULT and item.online:
            if item.username == CAROL:
                for student in self._students.values():
                    self._say(VAULT, student, f"carol is online. As promised: {flag(self.student, 'login-replay')}")
            elif item.username not in BOTS and item.username not in self._students:
                self._welcome(item.username)
        elif isinstance(item, ev.ChatReceived) and item.sender in self._students:
            student = self._students[item.sender]
            if bot == VAULT and item.chat_id == student.chats.get(VAULT):
                self._vault_order(student, item.text)
            elif bot == DISPATCHER and item.chat_id == student.chats.get(DISPATCHER):
                self._dispatch_visit(student, item.text)

    def _open(self, bot: str, members: list[str]) -> str:
        client = self._bots[bot]
        chat = client.open_chat(members).chat_id
        client.wait_for_key(chat, 1)
        return chat

    def _say(self, bot: str, student: _Student, text: str) -> None:
        chat = student.chats.get(bot)
        if chat:
            self._bots[bot].send(chat, text)

    def _welcome(self, name: str) -> None:
        student = self._students[name] = _Student(name)
        for bot in (VAULT, DAN, ARCHIVIST, DISPATCHER):
            student.chats[bot] = self._open(bot, [name])
        self._say(VAULT, student, f"Hello {name}. I hand out flags. 1) Send me '!order SIGNATURE' where SIGNATURE "
                                  f"is base64 of dan's DSA signature over the bytes 'ctf order: flag for {name}'. "
                                  "2) I also tell you the moment carol is online.")
        self._say(DAN, student, f"hi {name}, dan here. I sign every message with my DSA key.")
        self._say(DAN, student, "dan again: my client is fast because it never draws a new nonce.")
        self._say(ARCHIVIST, student, "I am the archivist: every message of the ops chat is re-posted here, still "
                                      "encrypted (harmless, since every leave changes the key... right?).")
        self._say(DISPATCHER, student, "Say '!visit HOST PORT' (an IP address) and carol will log in to the "
                                       "securechat server there. She trusts any server on first use.")
        student.ops = self._open(ALICE, [BOB, ARCHIVIST, name])
        self._bots[ALICE].send(student.ops, f"{name}: welcome to ops. Please leave this chat now; bob and I will "
                                            "discuss the flag once you are out.")
        self._bots[BOB].wait_for_key(student.ops, 1)
        self._bots[BOB].send(student.ops, "agreed, we wait until they are gone.")

    def _watch_ops(self) -> None:
        for student in self._students.values():
            if not student.ops or student.ops_announced:
                continue
            # the operator's view of the membership (a read of the server's directory, as an admin tool would)
            try:
                if student.ops in self.server.protocol.chats.chats_of(student.name):
                    continue  # still a member
            except RuntimeError:  # the engine changed the set while we copied it: look again next round
                continue
            student.ops_announced = True
            alice = self._bots[ALICE]
            deadline = time.monotonic() + 5.0  # a default server rekeys on leave: send under the new key
            chat = self.server.protocol.chats.get(student.ops)
            while chat is not None and alice.keyed_epoch(student.ops) < chat.epoch and time.monotonic() < deadline:
                time.sleep(0.05)
            alice.send(student.ops, f"{student.name} left. bob, the flag is {flag(self.student, 'no-rekey')}")

    def _archive(self, body: bytes) -> None:
        message = decode_message(body)
        if not isinstance(message, m.ChatMessage):
            return
        for student in self._students.values():
            if message.chat_id == student.ops:
                self._say(ARCHIVIST, student, ARCHIVE_PREFIX + body.decode("utf-8"))

    def _vault_order(self, student: _Student, text: str) -> None:
        if not text.startswith("!order "):
            self._say(VAULT, student, "I only understand '!order SIGNATURE'.")
            return
        try:
            signature = b64d(text.split(None, 1)[1].strip())
            dan_key = load_public_key(self._bot_keys[DAN].signing_public)
            verify(SignatureScheme.DSA_SHA256, dan_key, order_bytes(student.name), signature)
        except (SecureChatError, ValueError, IndexError):
            self._say(VAULT, student, "That is not dan's signature over your order.")
            return
        self._say(VAULT, student, f"dan's order, signed and sealed: {flag(self.student, 'dsa-nonce')}")

    def _dispatch_visit(self, student: _Student, text: str) -> None:
        words = text.split()
        try:
            if len(words) != 3 or words[0] != "!visit":
                raise ValueError("say '!visit HOST PORT'")
            host, port = str(ipaddress.ip_address(words[1])), int(words[2])
            if not 0 < port < 65536:
                raise ValueError("the port is 1-65535")
        except ValueError as exc:
            self._say(DISPATCHER, student, f"carol stays home: {exc}")
            return
        if not self._visiting.acquire(blocking=False):
            self._say(DISPATCHER, student, "carol is already out visiting; try again in a moment.")
            return
        thread = threading.Thread(target=self._visit, args=(student, host, port), name="securechat-ctf-carol",
                                  daemon=True)
        self._threads.append(thread)
        thread.start()

    def _visit(self, student: _Student, host: str, port: int) -> None:
        try:
            outcome = self._carol_logs_in(host, port)
            self._say(DISPATCHER, student, f"carol visited {host}:{port}: {outcome}")
        except (SecureChatError, OSError, TimeoutError) as exc:
            self._say(DISPATCHER, student, f"carol could not visit {host}:{port}: {exc}")
        finally:
            self._visiting.release()

    def _carol_logs_in(self, host: str, port: int) -> str:
        client = TcpClient(host, port, server_key=None, timeout=_VISIT_TIMEOUT_SECONDS,
                           lab=self._client_lab(LabVariant.UNBOUND_LOGIN))
        try:
            assert client.handshake is not None
            if constant_time_equal(client.handshake.server_key, self.server_key.public_der):
                return "she does not log in to the CTF server from a link"
            try:
                client.login(CAROL, self._password(CAROL), self._bot_keys[CAROL])
                return "she logged in"
            except (SecureChatError, TimeoutError) as exc:
                return f"her login failed there ({exc})"
        finally:
            client.close()


def run_ctf(*, host: str, port: int, student: str, weak: bool = True) -> int:
    """Run the CTF server until Ctrl-C (``securechat-server --lab ctf``)."""
    try:
        ctf = CtfServer(student=student, weak=weak, host=host, port=port)
    except ValueError as exc:
        print(f"ctf: {exc}", file=sys.stderr)
        return 2
    if weak:
        lab = ctf.server.protocol.config.lab
        assert lab is not None
        print(banner(lab), flush=True)
        log.warning("%s (capture the flag)", lab.label)
    print("starting the capture-the-flag server and its bots (key generation takes a few seconds)...", flush=True)
    try:
        ctf.start()
    except OSError as exc:
        print(f"ctf: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"CTF for student {student} on {ctf.address[0]}:{ctf.address[1]}; server key fingerprint "
          f"{fingerprint(ctf.server_key.public_der)}", flush=True)
    print("register any username with securechat-client, log in and accept the bots' invitations: they will talk "
          "to you.", flush=True)
    try:
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        ctf.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m securechat.labs ctf",
                                     description="LAB: the capture-the-flag server (deliberately weakened).")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for a LAN)")
    parser.add_argument("--port", type=int, default=5050)
    parser.add_argument("--student", default="self-study", help="whose flags this server hands out")
    parser.add_argument("--secure", action="store_true",
                        help="run the same bots on a default (not weakened) server: every attack fails")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return run_ctf(host=args.host, port=args.port, student=args.student, weak=not args.secure)


__all__ = ["ARCHIVE_PREFIX", "BOTS", "CtfServer", "main", "order_bytes", "run_ctf"]
