#!/usr/bin/env python3
"""The chat modes side by side, in a few seconds over real TCP on 127.0.0.1.

The same three users — alice, bob and carol — talk in each mode a chat can be opened in:
  1. contributory      the members make the key (commit -> reveal -> HKDF -> confirm); the server only relays
  2. contributory-xor  the XOR derivation (no commitments), INSECURE: the last member to reveal
                       chooses the key; shown by computing, not by a malicious client
  3. hybrid            a fresh key per message, RSA-OAEP-wrapped for each recipient
  4. the lobby         one room every online user is in (hybrid mode)
then a table of what the server can see in each mode, and the fingerprints / safety numbers users compare out
of band. Everything runs on port 0 and is stopped at the end. Run: python run_modes_demo.py
"""

from __future__ import annotations

import queue
import sys
import time
from collections.abc import Callable
from typing import TypeVar

from securechat.crypto.encoding import fingerprint
from securechat.crypto.signatures import SignatureScheme
from securechat.crypto.wrap import unwrap_key
from securechat.net.tcp_client import TcpClient
from securechat.protocol import events as ev
from securechat.protocol import messages as m
from securechat.protocol.codec import decode_message
from securechat.protocol.identity import generate_user_keys
from securechat.teaching.demo import COST_LINE, Demo, demo_server

WAIT_SECONDS = 15.0
E = TypeVar("E", bound=ev.Event)
ROUND_TYPES = ("share_committed", "key_share_delivery", "key_confirmed")


def say(text: str = "") -> None:
    print(text, flush=True)


def xor(*parts: bytes) -> bytes:
    out = bytes(len(parts[0]))
    for part in parts:
        out = bytes(a ^ b for a, b in zip(out, part))
    return out


def short(data: bytes) -> str:
    return data.hex()[:16] + "..."


class Person:
    """A TcpClient, the events it saw and the inner frames it received (to narrate the rounds)."""

    def __init__(self, name: str, scheme: SignatureScheme, demo: Demo) -> None:
        self.name = name
        self.received: list[m.Message] = []   # inner frames from the server, decoded
        self.sent: list[m.Message] = []       # inner frames to the server, decoded
        self.keys = generate_user_keys(scheme)
        self.client = TcpClient(*demo.server.address, server_key=demo.pinned, trace=self._trace)
        demo.clients.append(self.client)  # closed when the demo ends

    def _trace(self, entry: ev.TraceEntry) -> None:
        if entry.layer != "inner":
            return
        data = entry.data[4:] if entry.direction == "send" else entry.data  # sent frames carry their length
        try:
            message = decode_message(data)
        except Exception:  # noqa: BLE001 (narration only: a frame we cannot parse is simply not shown)
            return
        (self.sent if entry.direction == "send" else self.received).append(message)

    def expect(self, kind: type[E], predicate: Callable[[E], bool] | None = None) -> E:
        return self.client.wait_for(kind, predicate, timeout=WAIT_SECONDS)

    def rounds(self, chat_id: str) -> list[m.Message]:
        return [f for f in list(self.received) if f.TYPE in ROUND_TYPES and getattr(f, "chat_id", "") == chat_id]

    def chat_key(self, chat_id: str) -> bytes:
        with self.client._lock:  # noqa: SLF001 (the demo looks inside to compare keys; applications never do)
            return bytes(self.client.protocol.book.chats[chat_id].key)  # type: ignore[union-attr, arg-type]

    def shares_received(self, chat_id: str) -> dict[str, bytes]:
        """The shares others sent us, unwrapped with our own key (what our client computed internally)."""
        return {f.sender: unwrap_key(self.keys.encryption_key, f.wrapped_share, expected_length=32)
                for f in self.rounds(chat_id) if isinstance(f, m.KeyShareDelivery)}


def main() -> int:
    say("== 0. A server on a free loopback port, with the lobby switched on (securechat-server --lobby)")
    with demo_server(lobby=True) as demo:
        server, server_key = demo.server, demo.server_key
        say(COST_LINE)
        say(f"  listening on {server.address[0]}:{server.address[1]}; server key {fingerprint(server_key.public_der)}")
        run_story(demo)
    say("\nEverything stopped. The demo is over.")
    return 0


def run_story(demo: Demo) -> None:
    people: list[Person] = []
    for name, scheme in (("alice", SignatureScheme.ED25519), ("bob", SignatureScheme.ECDSA_P256_SHA256),
                         ("carol", SignatureScheme.RSA_PSS_SHA256)):
        person = Person(name, scheme, demo)
        people.append(person)
        person.client.register(name, f"pw-{name}-modes", person.keys)
        person.client.login(name, f"pw-{name}-modes", person.keys)
        say(f"  {name}: registered and logged in ({scheme.value} signatures, RSA-OAEP for wrapping)")
    alice, bob, carol = people
    story_contributory(alice, bob, carol)
    story_xor(alice, bob, carol)
    story_hybrid(alice, bob, carol)
    story_lobby(alice, bob, carol)
    story_table()
    story_fingerprints(alice, bob, carol)


def story_contributory(alice: Person, bob: Person, carol: Person) -> None:
    say("\n== 1. contributory: the members make the key; the server only relays")
    opened = alice.client.open_chat(["bob", "carol"], mode="contributory")
    chat = opened.chat_id
    for person in (bob, carol):
        person.client.wait_for_key(chat, 1)
    say(f"  alice opened chat {chat[:10]}... [contributory]; the server signed the membership (epoch 1) and "
        f"made no key")
    say("  commit: each member drew a random 32-byte share and sent a signed hash commitment to (chat, "
        "epoch, member, share)")
    say("  reveal: once every commitment was in, each member wrapped its share with RSA-OAEP for every other "
        "member, in an envelope signed over (chat, epoch, sender, recipient, nonce, timestamp)")
    say("  HKDF:   key = HKDF-SHA256(all (member, share) pairs, salt = the agreement transcript)")
    say("  confirm: each member sent an HMAC of the transcript under the new key; all matched")
    rounds = [f for p in (alice, bob, carol) for f in p.rounds(chat)]
    envelopes = sum(isinstance(f, m.KeyShareDelivery) for f in rounds)
    say(f"  the server relayed {len(rounds)} round messages, among them {envelopes} envelopes it cannot open "
        f"(each wrapped to a member's private key, which never leaves that member)")
    keys = {p.name: p.chat_key(chat) for p in (alice, bob, carol)}
    assert len(set(keys.values())) == 1
    say(f"  all three derived the same key {short(keys['alice'])} (compared here, never sent)")
    alice.client.send(chat, "Hi bob and carol: the server never had this key.")
    got = bob.expect(ev.ChatReceived, lambda e: e.chat_id == chat)
    say(f"  bob decrypted: {got.text!r} ({got.signature_scheme} signature verified)")
    shares = {"alice": bob.shares_received(chat)["alice"], **alice.shares_received(chat)}
    say(f"  and XOR of the shares = {short(xor(*shares.values()))} != the HKDF key {short(keys['alice'])}: "
        f"no member can steer it")


def story_xor(alice: Person, bob: Person, carol: Person) -> None:
    say("\n== 2. contributory-xor: the XOR derivation — INSECURE (XOR of shares, no commitments): the last member "
        "to reveal chooses the key")
    opened = alice.client.open_chat(["bob", "carol"], mode="contributory-xor")
    chat = opened.chat_id
    for person in (bob, carol):
        person.client.wait_for_key(chat, 1)
    shares = {"alice": bob.shares_received(chat)["alice"], **alice.shares_received(chat)}
    key = alice.chat_key(chat)
    assert xor(*shares.values()) == key
    say("  no commitments: each member sends its share straight away, and key = XOR of the shares")
    for name in sorted(shares):
        say(f"    share of {name:5s} {short(shares[name])}")
    say(f"    XOR of the shares = {short(xor(*shares.values()))} == the chat key {short(key)}")
    wanted = b"carol chose this key, not luck!!"
    forged = xor(wanted, shares["alice"], shares["bob"])
    say("  the attack: carol waits until alice's and bob's shares have arrived, then reveals")
    say(f"    share_carol = WANTED xor share_alice xor share_bob = {short(forged)}")
    say(f"    XOR(alice, bob, that share) = {xor(shares['alice'], shares['bob'], forged)!r}")
    say("  every share still looks random, every envelope verifies, and the key is the one carol chose (one she")
    say("  may have shared with the server). The contributory mode defeats this: shares are committed before any")
    say("  is revealed (a changed share fails its commitment: commitment_mismatch), and HKDF over all shares")
    say("  gives nobody control of the output.")


def story_hybrid(alice: Person, bob: Person, carol: Person) -> None:
    say("\n== 3. hybrid: a fresh key per message, wrapped for each recipient (PGP-style)")
    opened = alice.client.open_chat(["bob", "carol"], mode="hybrid")
    chat = opened.chat_id
    for person in (bob, carol):
        person.client.wait_for_key(chat, 1)
    say(f"  chat {chat[:10]}... [hybrid]: the server signed the membership; there is no chat key at all")
    texts = ("First hybrid message.", "Second one, under another fresh key.")
    for text in texts:
        alice.client.send(chat, text)
        got = bob.expect(ev.ChatReceived, lambda e: e.chat_id == chat)
        assert got.text == text
    deliveries = [f for f in list(bob.received) if isinstance(f, m.ChatMessage) and f.chat_id == chat]
    for n, (msg, text) in enumerate(zip(deliveries, texts), 1):
        assert msg.wrap_recipients and msg.wraps
        mine = unwrap_key(bob.keys.encryption_key, msg.wraps[msg.wrap_recipients.index("bob")], expected_length=32)
        say(f"  message {n}: {len(msg.ciphertext)} bytes of AES-256-GCM ciphertext + {len(msg.wraps)} RSA-OAEP "
            f"wraps (for {', '.join(msg.wrap_recipients)}), signed by alice; bob's unwrap gives the message key "
            f"{short(mine)}; he read: {text!r}")
    say("  each message has its own key: one leaked message key opens that message only")


def story_lobby(alice: Person, bob: Person, carol: Person) -> None:
    say(f"\n== 4. the lobby (chat id {m.LOBBY_ID!r}): every online user is in it; messages go to all but the sender")
    alice.client.wait_for_key(m.LOBBY_ID, 1)
    members = alice.client.protocol.chats[m.LOBBY_ID].members
    say(f"  members: {', '.join(members)} (joined at login; hybrid mode, so each message is wrapped per member)")
    alice.client.send(m.LOBBY_ID, "Hello lobby!")
    for person in (bob, carol):
        got = person.expect(ev.ChatReceived, lambda e: e.chat_id == m.LOBBY_ID)
        say(f"  {person.name} read in the lobby: {got.text!r} from {got.sender} ({got.signature_scheme} verified)")


def story_table() -> None:
    say("\n== 5. what the server can see in each mode")
    rows = (
        ("mode", "server can read?", "server sees", "who makes the key"),
        ("server-key", "YES (it makes the key)", "members, sizes, timing", "the server"),
        ("contributory", "no", "members, sizes, timing, round frames", "all members (HKDF, confirmed)"),
        ("contributory-xor", "no, but INSECURE", "same as contributory", "the last member to reveal"),
        ("hybrid", "no", "members, sizes, timing, #wraps", "the sender, per message"),
        ("lobby (hybrid)", "no", "who is online, sizes, timing", "the sender, per message"),
    )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for i, row in enumerate(rows):
        say("  " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)))
        if i == 0:
            say("  " + "-+-".join("-" * w for w in widths))
    say("  in every mode the server is also the CA: it could certify a key of its own for bob. Safety numbers")
    say("  (below) catch that; a key change after pinning raises a loud warning and blocks the peer.")


def story_fingerprints(alice: Person, bob: Person, carol: Person) -> None:
    say("\n== 6. fingerprints and the safety number (compare out of band, then the client pins them)")
    for person in (alice, bob, carol):
        cert = person.client.protocol.certificate
        assert cert is not None
        say(f"  {person.name:5s} identity fingerprint {cert.identity_fingerprint()}")
    ours, theirs = alice.client.safety_number("bob"), bob.client.safety_number("alice")
    assert ours == theirs
    say(f"  alice's screen, safety number with bob: {ours}")
    say(f"  bob's screen, safety number with alice: {theirs}")
    say("  same on both screens: read aloud, in person or by phone. If the server substituted a key, they differ.")
    say(f"  alice has pinned: {', '.join(sorted(alice.client.pins))} (the CLI keeps them in known_peers.json)")


if __name__ == "__main__":
    sys.exit(main())
