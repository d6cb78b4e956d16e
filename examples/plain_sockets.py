"""securechat over plain sockets: the whole client driver in one screen (as h2's plain-sockets example).

``ClientProtocol`` decides every byte; this file only moves bytes between it and a socket (docs/STYLE.md 1):
``data_to_send()`` goes out, whatever ``recv`` returns goes into ``receive_data(data, now)``, and the results
come back as events. Two clients, alice and bob, register, log in, open a chat (bob accepts the invitation,
PROTOCOL.md 7.11) and exchange one signed, encrypted message through a server on 127.0.0.1.

Run: ``python examples/plain_sockets.py`` (starts its own server) or ``... HOST PORT`` (an existing server,
whose key is then pinned on first use).
"""

from __future__ import annotations

import select
import socket
import sys
import time
from collections.abc import Callable
from typing import TypeVar

from securechat.crypto.kdf import FAST_SCRYPT
from securechat.crypto.signatures import SignatureScheme
from securechat.net.tcp_server import TcpServer
from securechat.protocol import events as ev
from securechat.protocol.client import ClientProtocol
from securechat.protocol.identity import generate_user_keys
from securechat.protocol.limits import ServerConfig
from securechat.store import MemoryRegistry, new_server_key

E = TypeVar("E", bound=ev.Event)


class Client:
    """One ClientProtocol and one socket, plus the events seen so far."""

    def __init__(self, name: str, address: tuple[str, int]) -> None:
        self.name, self.password = name, f"correct horse battery {name}"
        self.keys = generate_user_keys(SignatureScheme.ED25519)
        self.protocol = ClientProtocol()  # no pinned key: trust on first use
        self.sock = socket.create_connection(address, timeout=10)
        self.events: list[ev.Event] = []
        self.protocol.connect()  # queues client_hello

    def flush(self) -> None:
        data = self.protocol.data_to_send()
        if data:
            self.sock.sendall(data)

    def read(self) -> None:
        self.protocol.receive_data(self.sock.recv(65536), time.time())  # b"" means end of stream
        while (event := self.protocol.next_event()) is not None:
            self.events.append(event)

    def seen(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]


def pump(clients: list[Client], done: Callable[[], bool], timeout: float = 20.0) -> None:
    """Move bytes both ways until *done()* holds (bounded in time, as every loop here)."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError("the server did not answer in time")
        for client in clients:
            client.flush()
        readable, _, _ = select.select([c.sock for c in clients], [], [], 0.05)
        for client in clients:
            if client.sock in readable:
                client.read()


def run(address: tuple[str, int], say: Callable[[str], None] = print) -> str:
    """Register and log in alice and bob, open a chat, send one message; returns what bob read."""
    alice, bob = Client("alice", address), Client("bob", address)
    both = [alice, bob]
    try:
        pump(both, lambda: all(c.seen(ev.HandshakeCompleted) for c in both))  # PROTOCOL.md 4
        for c in both:
            c.protocol.register(c.name, c.password, c.keys)
        pump(both, lambda: all(c.seen(ev.RegistrationSucceeded) for c in both))
        for c in both:
            c.protocol.login(c.name, c.password, c.keys)
        pump(both, lambda: all(c.seen(ev.LoggedIn) for c in both))
        say(f"logged in; server key fingerprint {alice.seen(ev.HandshakeCompleted)[0].server_fingerprint}")

        alice.protocol.open_chat(["bob"])
        pump(both, lambda: bool(bob.seen(ev.InvitationReceived)))
        invitation = bob.seen(ev.InvitationReceived)[0]
        if not invitation.accepted:  # a client may be built to accept invitations by itself
            bob.protocol.answer_invitation(invitation.chat_id, accept=True)
        pump(both, lambda: all(c.seen(ev.ChatKeyed) for c in both))
        say(f"chat {invitation.chat_id[:8]} keyed for {', '.join(alice.seen(ev.ChatKeyed)[0].members)}")

        alice.protocol.send_chat(invitation.chat_id, "hello bob, over plain sockets")
        pump(both, lambda: bool(bob.seen(ev.ChatReceived)))
        received = bob.seen(ev.ChatReceived)[0]
        say(f"bob read from {received.sender}: {received.text!r} (signature {received.signature_scheme} verified)")
        return received.text
    finally:
        for c in both:
            c.sock.close()


def main(argv: list[str]) -> int:
    if len(argv) == 2:
        run((argv[0], int(argv[1])))
        return 0
    server = TcpServer(server_key=new_server_key(), registry=MemoryRegistry(),
                       config=ServerConfig(scrypt=FAST_SCRYPT)).start()  # 127.0.0.1, a free port
    try:
        run(server.address)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
