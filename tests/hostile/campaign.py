"""Sequences of hostile actions against one victim, shared by the property test and benchmarks/hostile_server.py.

A ``Campaign`` sets up alice (the victim) and bob (an honest member) in one chat of a given mode behind the
``HostileServer``, then applies actions: bob's honest messages, and the server's replays, reorderings, bit flips,
sender swaps, wrong epochs, forged signatures (mallory's keys under bob's name), mode-switching distributions,
presence noise, unanswered certificate requests and raw garbage. After every action it checks the invariants the
client promises (docs/SECURITY.md): nothing escapes ``receive_data``; every ChatReceived is a message bob really
sent, under his name, at most once; the state the client keeps stays bounded.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field

from securechat.protocol import events as ev
from securechat.protocol import messages as m
from securechat.protocol.chats import MAX_PENDING_MESSAGES
from securechat.protocol.identity import UserKeys

from .world import Conn, HostileServer, as_relayed

MODE_SWITCH = "mode-switch"  # a signed chat_key or chat_epoch naming another mode for the chat
ACTIONS = ("honest", "replay", "reorder", "bitflip", "swap-sender", "wrong-epoch", "forged-signature",
           MODE_SWITCH, "noise", "unknown-sender", "garbage", "rekey")
# Bounds on what the client keeps, whatever the server sends (bounded memory).
MAX_FETCHES_IN_FLIGHT = 64


@dataclass
class Stats:
    frames: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    accepted_honest: int = 0
    accepted_forgeries: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    closed: int = 0
    crashes: int = 0


class Campaign:
    def __init__(self, world: HostileServer, people: dict[str, UserKeys], mode: str) -> None:
        self.world = world
        self.mode = mode
        self.alice = world.login("alice", people["alice"])
        self.bob = world.login("bob", people["bob"])
        self.mallory = people["mallory"]
        self.chat_id = world.open_chat(self.alice, ("bob",), mode)
        self.sent: dict[int, str] = {}  # (bob's) seq -> text, of this epoch
        self.honest_texts: set[str] = set()
        self.relayed: list[m.ChatMessage] = []
        self.held_back: list[m.ChatMessage] = []
        self.stats = Stats()
        self._seen_events = len(self.alice.events)
        self._counter = 0
        self._delivered: set[tuple[int, int]] = set()
        self.check_mode = True  # the chat keeps the mode it was first seen with

    @property
    def closed(self) -> bool:
        return self.alice.client.closed

    # --- actions ---------------------------------------------------------------------------------------------

    def _bob_sends(self, *, deliver: bool) -> m.ChatMessage | None:
        if self.bob.client.closed or not self._bob_can_send():
            return None
        self._counter += 1
        text = f"honest {self._counter}"
        self.honest_texts.add(text)
        hook = self.world.hooks.pop("chat_send", None)
        self.world.hooks["chat_send"] = lambda c, msg: []  # the script decides what reaches alice
        try:
            self.bob.client.send_chat(self.chat_id, text)
            self.world.pump()
        finally:
            self.world.hooks.pop("chat_send", None)
            if hook is not None:
                self.world.hooks["chat_send"] = hook
        send = [s for s in self.bob.received if isinstance(s, m.ChatSend)][-1]
        msg = as_relayed(send, "bob")
        self.relayed.append(msg)
        del self.relayed[:-64]
        if deliver:
            self.alice.push(msg)
        return msg

    def _bob_can_send(self) -> bool:
        from securechat.protocol import modes
        book = self.bob.client.book
        return book is not None and self.chat_id in book.chats and modes.can_send(book, self.chat_id)

    def apply(self, action: str, arg: int) -> None:
        """Apply *action* (one of ACTIONS); *arg* picks among choices (which message, which byte)."""
        if self.closed:
            return
        self.stats.actions[action] += 1
        alice, world = self.alice, self.world
        pick = (lambda seq: seq[arg % len(seq)]) if True else None
        if action == "honest":
            self._bob_sends(deliver=True)
        elif action == "reorder":
            msg = self._bob_sends(deliver=False)
            if msg is not None:
                self.held_back.append(msg)
            if len(self.held_back) >= 2 or (arg % 3 == 0 and self.held_back):
                for held in reversed(self.held_back):
                    alice.push(held)
                self.held_back = []
        elif action in ("replay", "bitflip", "swap-sender", "wrong-epoch", "forged-signature", "unknown-sender"):
            if not self.relayed:
                self._bob_sends(deliver=True)
                return
            msg = pick(self.relayed)
            if action == "unknown-sender" and arg % 2:
                # a directory that never answers: the message is held, its certificate request stays in flight
                world.hooks["get_certificates"] = lambda c, req: [] if c is alice else None
            try:
                alice.push(self._forge(action, msg, arg))
                world.pump()
            finally:
                world.hooks.pop("get_certificates", None)
        elif action == "mode-switch":
            chat = alice.client.chats.get(self.chat_id)
            epoch = getattr(chat, "epoch", 1) + 1
            other = pick([x for x in m.CHAT_MODES if x != self.mode])
            if arg % 2:
                alice.push(world.chat_epoch(self.chat_id, epoch, other, ("alice", "bob")))
            else:
                alice.push(world.chat_key(self.chat_id, epoch, other, ("alice", "bob"), bytes(32), recipient="alice"))
            world.pump()
        elif action == "noise":
            alice.push(pick([m.Presence(username="bob", online=bool(arg % 2)),
                             m.WhoResult(rid=arg, online=("alice", "ghost")),
                             m.Error(code="rate_limited", message="\x1b[2J slow down", rid=arg),
                             m.ChatInvited(rid=None, chat_id=self.chat_id, username="ghost"),
                             m.Certificates(rid=arg + 10_000, certificates=(world.certify("ghost", self.mallory),),
                                            unknown=())]))
        elif action == "garbage":
            alice.feed(alice.inner(bytes([(arg * 7 + i) % 256 for i in range(1 + arg % 40)])))
        elif action == "rekey":
            # an honest rekey (server-key: a fresh key; keyless modes: a new signed epoch) - not a forgery
            chat = world.chats[self.chat_id]
            world.rekey(chat, "invite", "alice")
        self._check()

    def _forge(self, action: str, msg: m.ChatMessage, arg: int) -> m.ChatMessage:
        if action == "replay":
            return msg
        if action == "bitflip":
            ct = bytearray(msg.ciphertext)
            ct[arg % len(ct)] ^= 1 << (arg % 8)
            return dataclasses.replace(msg, ciphertext=bytes(ct))
        if action == "swap-sender":
            return dataclasses.replace(msg, sender="carol")
        if action == "wrong-epoch":
            return dataclasses.replace(msg, epoch=msg.epoch + 1 + arg % 3)
        if action == "unknown-sender":
            return dataclasses.replace(msg, sender=f"ghost{arg}")
        # forged-signature: the server re-signs bob's ciphertext with mallory's key, under bob's name
        from securechat.crypto.signatures import sign
        from securechat.protocol.constructions import chat_header, chat_signed_bytes, hybrid_signed_bytes
        header = chat_header(chat_id=msg.chat_id, epoch=msg.epoch, sender="bob", seq=msg.seq + 1,
                             suite="aes-256-gcm")
        signed = (hybrid_signed_bytes(header, msg.ciphertext, msg.wrap_recipients or (), msg.wraps or (),
                                      msg.key_commitment or b"", msg.prev_hash or b"")
                  if msg.wraps else chat_signed_bytes(header, msg.ciphertext))
        return dataclasses.replace(msg, seq=msg.seq + 1, signature=sign(self.mallory.scheme, self.mallory.signing_key,
                                                                       signed))

    # --- invariants ----------------------------------------------------------------------------------------

    def _check(self) -> None:
        events = self.alice.events[self._seen_events:]
        self._seen_events = len(self.alice.events)
        for event in events:
            if isinstance(event, ev.ChatReceived):
                key = (event.epoch, event.seq)
                forged = (event.sender != "bob" or event.text not in self.honest_texts or key in self._delivered)
                self._delivered.add(key)
                if forged:
                    self.stats.accepted_forgeries += 1
                else:
                    self.stats.accepted_honest += 1
            elif isinstance(event, (ev.MessageRejected, ev.ChatAborted)):
                self.stats.rejected[event.code] += 1
            elif isinstance(event, ev.ConnectionClosed):
                self.stats.closed += 1
        self.stats.frames = self.world.frames_sent
        self.stats.crashes = len(self.world.crashes)
        assert self.stats.accepted_forgeries == 0, events
        book = self.alice.client.book
        if book is not None:
            assert len(book.pending) <= MAX_PENDING_MESSAGES
            assert len(book.pins) <= 8, book.pins  # only alice's real peers (and the server's ghosts never)
        assert len(self.alice.client.chats) <= 4
        if self.check_mode:
            chat = self.alice.client.chats.get(self.chat_id)
            assert chat is None or getattr(chat, "mode", self.mode) == self.mode, chat


def bounded_state(conn: Conn) -> dict[str, int]:
    """Sizes of everything the client keeps per connection (for the memory figures)."""
    client = conn.client
    book = client.book
    sizes = {
        "events_queued": 0,
        "fetch_requests": len(client.fetches.requests),
        "fetching": len(client.fetches.fetching),
        "leaving": len(client.messaging.leaving),
    }
    if book is not None:
        sizes.update(chats=len(book.chats), pending=len(book.pending), pins=len(book.pins),
                     certificates=len(book.certificates),
                     agreement_inbox=sum(len(getattr(a, "inbox", ())) for a in book.agreements.values()))
    return sizes
