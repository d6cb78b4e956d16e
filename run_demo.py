#!/usr/bin/env python3
"""The securechat story in about ten seconds, over real TCP on 127.0.0.1.

alice (RSA-PSS), bob (DSA) and carol (RSA-PSS) register and log in; alice opens a chat with bob and with dave
(who does not exist); they exchange signed, encrypted messages; alice invites carol (new epoch, new key);
carol leaves (another epoch); bob logs out. Each step says what was computed and shows an excerpt of what
crossed the wire — ciphertext, never plaintext. Run: python run_demo.py
"""

from __future__ import annotations

import queue
import sys
import time
from collections.abc import Callable
from typing import TypeVar

from securechat.crypto.encoding import fingerprint
from securechat.crypto.signatures import SignatureScheme
from securechat.net.tcp_client import RequestError, TcpClient
from securechat.protocol import events as ev
from securechat.protocol.identity import generate_user_keys
from securechat.teaching.demo import COST_LINE, Demo, demo_server

WAIT_SECONDS = 15.0
E = TypeVar("E", bound=ev.Event)


def say(text: str = "") -> None:
    print(text, flush=True)


class Person:
    """A TcpClient plus the events and wire frames it saw, for narration."""

    def __init__(self, name: str, scheme: SignatureScheme, demo: Demo) -> None:
        self.name, self.scheme = name, scheme
        self.wire: list[ev.TraceEntry] = []
        say(f"  {name}: generating keys (RSA-2048 for key wrapping, {scheme.value} for signatures) ...")
        self.keys = generate_user_keys(scheme)
        enc, sig = self.keys.fingerprints
        say(f"    encryption key {enc}\n    signing key    {sig}")
        self.client = TcpClient(*demo.server.address, server_key=demo.pinned, trace=self.wire.append)
        demo.clients.append(self.client)  # closed when the demo ends

    def expect(self, kind: type[E], predicate: Callable[[E], bool] | None = None) -> E:
        return self.client.wait_for(kind, predicate, timeout=WAIT_SECONDS)

    def last_record(self, direction: str) -> ev.TraceEntry:
        return [t for t in self.wire if t.layer == "record" and t.direction == direction][-1]


def iter_nowait(inbox: queue.Queue[ev.Event]) -> list[ev.Event]:
    items = []
    while True:
        try:
            items.append(inbox.get_nowait())
        except queue.Empty:
            return items


def excerpt(entry: ev.TraceEntry) -> str:
    body = entry.data[4:]
    return f"{entry.size} bytes on the wire: {body[:60].decode('ascii', 'replace')}..."


def main() -> int:
    say("== 1. The server starts on a free loopback port, with its registry in SQLite")
    with demo_server(lobby=False) as demo:
        server, server_key = demo.server, demo.server_key
        say(COST_LINE)
        say(f"  listening on {server.address[0]}:{server.address[1]}")
        say(f"  server signing key ({server_key.scheme.value}) fingerprint {fingerprint(server_key.public_der)}")
        run_story(demo)
    say("\nEverything stopped. The demo is over.")
    return 0


def run_story(demo: Demo) -> None:
    people: list[Person] = []
    say("\n== 2. alice, bob and carol connect, register and log in")
    for name, scheme in (("alice", SignatureScheme.RSA_PSS_SHA256), ("bob", SignatureScheme.DSA_SHA256),
                         ("carol", SignatureScheme.RSA_PSS_SHA256)):
        person = Person(name, scheme, demo)
        people.append(person)
        hs = person.client.handshake
        assert hs is not None
        say(f"  {name}: X25519 handshake done; server signature over the transcript verified against the "
            f"pinned key {hs.server_fingerprint[:19]}...; AES-256-GCM keys c2s/s2c derived with HKDF-SHA256")
        reg = person.client.register(name, f"pw-{name}-demo", person.keys)
        say(f"  {name}: registered with proof of possession of both keys; certificate serial {reg.certificate.serial} "
            f"signed by the server CA")
        person.client.login(name, f"pw-{name}-demo", person.keys)
        say(f"  {name}: logged in (password + {scheme.value} signature over this channel's transcript)")
        say(f"    wire: {excerpt(person.last_record('send'))}")
    alice, bob, carol = people

    say("\n== 3. Who is online?")
    say(f"  alice asks: {', '.join(alice.client.who())}")
    say(f"  alice asks the status of carol: {'online' if alice.client.status('carol') else 'offline'}")
    try:
        alice.client.status("dave")
    except RequestError as exc:
        say(f"  and of dave: error {exc.code.value} ({exc.failure.message})")

    say("\n== 4. alice opens a chat with bob and dave")
    opened = alice.client.open_chat(["bob", "dave"])
    chat = opened.chat_id
    say(f"  chat {chat[:10]}... members {', '.join(opened.members)}; not added: "
        f"{', '.join(opened.unknown + opened.offline)} (not registered / offline)")
    keyed = bob.expect(ev.ChatKeyed, lambda e: e.chat_id == chat)
    say(f"  server made a fresh 256-bit key, wrapped it with RSA-OAEP-SHA256 for each member and signed the "
        f"distribution; bob verified it and unwrapped epoch {keyed.epoch}")

    say("\n== 5. Signed, encrypted messages both ways")
    alice.client.send(chat, "Hi bob! This is end-to-end encrypted and signed.")
    got = bob.expect(ev.ChatReceived, lambda e: e.chat_id == chat)
    say(f"  alice sealed with AES-256-GCM under her own sender key (HKDF of the chat key), nonce = seq "
        f"{got.seq}, and signed header+ciphertext with RSA-PSS")
    say(f"    wire (alice -> server): {excerpt(alice.last_record('send'))}")
    say(f"  bob: verified {got.signature_scheme} signature, then decrypted: {got.text!r}")
    bob.client.send(chat, "Hello alice, DSA-signed reply here.")
    got = alice.expect(ev.ChatReceived, lambda e: e.chat_id == chat)
    say(f"  alice: verified {got.signature_scheme} signature from {got.sender}, decrypted: {got.text!r}")

    say("\n== 6. alice invites carol: new epoch, new key")
    alice.client.invite(chat, "carol")
    keyed = carol.expect(ev.ChatKeyed, lambda e: e.chat_id == chat)
    bob.expect(ev.ChatKeyed, lambda e: e.chat_id == chat and e.epoch == keyed.epoch)
    alice.client.wait_for_key(chat, keyed.epoch)
    say(f"  epoch {keyed.epoch}: members {', '.join(keyed.members)}; carol never had the epoch-1 key, so she "
        f"cannot read what was said before she joined")
    carol.client.send(chat, "Thanks for the invite!")
    for person in (alice, bob):
        got = person.expect(ev.ChatReceived, lambda e: e.sender == "carol")
        say(f"  {person.name}: from carol ({got.signature_scheme} verified): {got.text!r}")

    say("\n== 7. carol leaves: another epoch, another key")
    carol.client.leave(chat)
    keyed = alice.expect(ev.ChatKeyed, lambda e: e.chat_id == chat and "carol" in e.left)
    bob.client.wait_for_key(chat, keyed.epoch)
    say(f"  epoch {keyed.epoch}: members {', '.join(keyed.members)}; carol's old key opens nothing from now on")
    alice.client.send(chat, "Just the two of us again.")
    got = bob.expect(ev.ChatReceived, lambda e: e.epoch == keyed.epoch)
    time.sleep(0.2)
    leaked = [e for e in iter_nowait(carol.client.events) if isinstance(e, ev.ChatReceived) and e.epoch >= keyed.epoch]
    assert not leaked, "carol must not receive messages after leaving"
    say(f"  bob: {got.text!r} (epoch {got.epoch}); carol received nothing (checked)")

    say("\n== 8. bob logs out")
    bob.client.logout()
    alice.expect(ev.PresenceChanged, lambda e: e.username == "bob" and not e.online)
    keyed = alice.expect(ev.ChatKeyed, lambda e: e.chat_id == chat and "bob" in e.left)
    say(f"  alice sees bob go offline; the chat moved to epoch {keyed.epoch} without him")
    say(f"  online now: {', '.join(alice.client.who())}")


if __name__ == "__main__":
    sys.exit(main())
