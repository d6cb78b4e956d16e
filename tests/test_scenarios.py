"""Whole conversations on the simulated network: the 3-user story, disconnects, a nonce audit and privacy checks.

alice certifies RSA-PSS, bob DSA and carol RSA-PSS; dave never registers.
"""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from securechat.crypto import aead
from securechat.errors import ErrorCode, IntegrityError
from securechat.protocol.constructions import chat_header, sender_key
from securechat.protocol import events as ev
from securechat.protocol.states import ClientState
from securechat.simulation import Simulation
from tests.helpers import (
    DSA,
    RSA,
    all_chat_messages,
    assert_serves,
    chat_messages_to,
    last_failure,
    login_user,
    make_simulation,
    open_chat,
    password_of,
    presence_of,
    received_texts,
    register_only,
)


def keyed(sim: Simulation, label: str, chat_id: str) -> list[ev.ChatKeyed]:
    return [e for e in sim.events_of(label, ev.ChatKeyed) if e.chat_id == chat_id]


def say(sim: Simulation, label: str, chat_id: str, text: str) -> None:
    sim.clients[label].send_chat(chat_id, text)
    sim.run_until_idle()


def three_user_story(seed: int = 1) -> tuple[Simulation, str]:
    """Run the story of the module docstring and check every step; returns the simulation and the chat id."""
    sim = Simulation(seed=seed)
    alice = login_user(sim, "alice", RSA)
    assert sim.last_event("alice", ev.LoggedIn).online == ("alice",)
    login_user(sim, "bob", DSA)
    assert sim.last_event("bob", ev.LoggedIn).online == ("alice", "bob")
    assert presence_of(sim, "alice", "bob") == [True]  # pushed to those already online
    assert sim.last_event("bob", ev.LoggedIn).certificate.signature_scheme.value == "dsa-2048-sha256"

    assert assert_serves(sim, "alice") == ("alice", "bob")
    alice.status("bob")
    sim.run_until_idle()
    assert sim.last_event("alice", ev.StatusReported).online is True
    alice.status("dave")
    sim.run_until_idle()
    assert last_failure(sim, "alice").code == ErrorCode.UNKNOWN_USER

    # alice opens a chat with bob and dave: dave is reported, the chat is alice+bob at epoch 1
    alice.open_chat(["bob", "dave"])
    sim.run_until_idle()
    opened = sim.last_event("alice", ev.ChatOpened)
    cid = opened.chat_id
    assert (opened.members, opened.offline, opened.unknown) == (("alice", "bob"), (), ("dave",))
    for name in ("alice", "bob"):
        assert [(k.epoch, k.members, k.reason) for k in keyed(sim, name, cid)] == [(1, ("alice", "bob"), "open")]

    # messages both ways, each verified under the sender's certified scheme
    say(sim, "alice", cid, "hello bob")
    say(sim, "bob", cid, "hi alice")
    got_bob = sim.last_event("bob", ev.ChatReceived)
    got_alice = sim.last_event("alice", ev.ChatReceived)
    assert (got_bob.sender, got_bob.text, got_bob.signature_scheme, got_bob.epoch) == (
        "alice", "hello bob", "rsa-pss-sha256", 1)
    assert (got_alice.sender, got_alice.text, got_alice.signature_scheme) == ("bob", "hi alice", "dsa-2048-sha256")

    # carol logs in; alice invites her: epoch 2, and carol reads what is said from then on
    login_user(sim, "carol", RSA)
    assert presence_of(sim, "alice", "carol") == [True] and presence_of(sim, "bob", "carol") == [True]
    alice.invite(cid, "carol")
    sim.run_until_idle()
    assert sim.last_event("alice", ev.ChatInvited).username == "carol"
    for name in ("alice", "bob", "carol"):
        last = keyed(sim, name, cid)[-1]
        assert (last.epoch, last.members, last.reason, last.actor) == (2, ("alice", "bob", "carol"), "invite", "alice")
    assert keyed(sim, "bob", cid)[-1].joined == ("carol",)
    say(sim, "alice", cid, "welcome carol")
    say(sim, "bob", cid, "hi carol")
    say(sim, "carol", cid, "thanks both")
    assert received_texts(sim, "carol", cid) == [("alice", "welcome carol"), ("bob", "hi carol")]
    assert received_texts(sim, "alice", cid)[-1] == ("carol", "thanks both")
    assert received_texts(sim, "bob", cid)[-1] == ("carol", "thanks both")
    assert sim.last_event("bob", ev.ChatReceived).epoch == 2

    # carol leaves: epoch 3 for alice and bob, nothing more for carol
    carol_key = sim.clients["carol"].book.chats[cid].key  # type: ignore[union-attr]  # what a modified client keeps
    sim.clients["carol"].leave(cid)
    sim.run_until_idle()
    assert sim.last_event("carol", ev.ChatLeft).chat_id == cid
    for name in ("alice", "bob"):
        last = keyed(sim, name, cid)[-1]
        assert (last.epoch, last.members, last.reason, last.left) == (3, ("alice", "bob"), "leave", ("carol",))
    assert [k.epoch for k in keyed(sim, "carol", cid)] == [2]
    carol_before = len(sim.events_of("carol", ev.ChatReceived))
    say(sim, "alice", cid, "carol has gone")
    say(sim, "bob", cid, "she has")
    assert received_texts(sim, "bob", cid)[-1] == ("alice", "carol has gone")
    assert received_texts(sim, "alice", cid)[-1] == ("bob", "she has")
    assert sim.last_event("alice", ev.ChatReceived).epoch == 3
    assert len(sim.events_of("carol", ev.ChatReceived)) == carol_before
    assert not sim.events_of("carol", ev.MessageRejected)  # nothing was even routed to her
    assert sim.clients["carol"].book.chats[cid].key == b""  # type: ignore[union-attr]  # her client forgot it
    epoch3 = [msg for msg in all_chat_messages(sim) if msg.epoch == 3]
    assert len(epoch3) == 2
    assert [msg.epoch for msg in chat_messages_to(sim, "carol")] == [2, 2]  # the server routed her nothing after
    for msg in epoch3:  # docs/THREATS.md 38: the key she kept opens none of them, under any epoch's derivation
        header = chat_header(chat_id=cid, epoch=3, sender=msg.sender, seq=msg.seq, suite="aes-256-gcm")
        for epoch in (2, 3):
            with pytest.raises(IntegrityError):
                aead.unseal(sender_key(carol_key, chat_id=cid, epoch=epoch, sender=msg.sender), msg.ciphertext,
                            aad=header, nonce=aead.nonce_from_counter(msg.seq))

    # bob logs out: alice sees him go offline and the chat is rekeyed without him
    sim.clients["bob"].logout()
    sim.run_until_idle()
    assert sim.events_of("bob", ev.LoggedOut) and sim.clients["bob"].state is ClientState.CLOSED
    assert presence_of(sim, "alice", "bob") == [True, False]
    assert presence_of(sim, "carol", "bob") == [False]
    last = keyed(sim, "alice", cid)[-1]
    assert (last.epoch, last.members, last.reason, last.left) == (4, ("alice",), "disconnect", ("bob",))
    assert assert_serves(sim, "alice") == ("alice", "carol")
    for name in ("alice", "bob", "carol"):
        assert not sim.events_of(name, ev.MessageRejected), (name, sim.events_of(name, ev.MessageRejected))
    return sim, cid


def test_three_user_story() -> None:
    three_user_story()


def test_disconnect_without_logout_has_the_same_effect() -> None:
    sim = make_simulation("alice", "bob", "carol", dsa=("bob",))
    cid = open_chat(sim, "alice", "bob", "carol")
    sim.disconnect("bob")
    sim.run_until_idle()
    assert sim.last_event("bob", ev.ConnectionClosed).code == ErrorCode.CONNECTION_LOST
    assert "bob" not in sim.server.online
    assert presence_of(sim, "alice", "bob") == [True, False]  # alice saw bob arrive after her
    assert presence_of(sim, "carol", "bob") == [False]         # carol logged in after bob
    for name in ("alice", "carol"):
        last = keyed(sim, name, cid)[-1]
        assert (last.epoch, last.members, last.reason, last.left) == (2, ("alice", "carol"), "disconnect", ("bob",))
    gone = [e for e in sim.server_events if isinstance(e, ev.UserLoggedOut)]
    assert [(e.username, e.reason) for e in gone] == [("bob", "connection closed")]
    say(sim, "alice", cid, "still here")
    assert received_texts(sim, "carol", cid) == [("alice", "still here")]
    # bob comes back on a new connection: online again, but not back in the chat until invited
    login_again = sim.add_client("bob-again")
    sim.run_until_idle()
    login_again.login("bob", password_of("bob"), sim.keys["bob"])
    sim.run_until_idle()
    assert login_again.state is ClientState.ONLINE and presence_of(sim, "alice", "bob") == [True, False, True]
    assert sim.server.chats.get(cid).members == ["alice", "carol"]  # type: ignore[union-attr]
    sim.clients["carol"].invite(cid, "bob")
    sim.run_until_idle()
    say(sim, "alice", cid, "welcome back bob")
    assert received_texts(sim, "bob-again", cid) == [("alice", "welcome back bob")]


def test_everyone_leaving_deletes_the_chat() -> None:
    sim = make_simulation("alice", "bob")
    cid = open_chat(sim, "alice", "bob")
    sim.clients["alice"].leave(cid)
    sim.run_until_idle()
    sim.clients["bob"].leave(cid)
    sim.run_until_idle()
    assert sim.server.chats.get(cid) is None and len(sim.server.chats) == 0
    assert [k.epoch for k in keyed(sim, "bob", cid)] == [1, 2]


def test_chat_with_the_cbc_hmac_suite() -> None:
    sim = make_simulation("alice", "bob")
    rid = sim.clients["alice"].open_chat(["bob"], suite="aes-256-cbc-hmac-sha256")
    sim.run_until_idle()
    opened = sim.last_event("alice", ev.ChatOpened)
    assert opened.rid == rid
    assert keyed(sim, "bob", opened.chat_id)[-1].suite == "aes-256-cbc-hmac-sha256"
    say(sim, "alice", opened.chat_id, "over cbc")
    say(sim, "bob", opened.chat_id, "and back")
    assert received_texts(sim, "bob") == [("alice", "over cbc")]
    assert received_texts(sim, "alice") == [("bob", "and back")]


def test_nonce_audit_finds_no_reused_key_nonce_pair() -> None:
    """docs/THREATS.md 34: every AEAD encryption of a whole story is recorded; no (key, nonce) pair repeats."""
    seen: list[tuple[bytes, bytes]] = []

    def record(key_hash: bytes, nonce: bytes) -> None:
        seen.append((key_hash, nonce))

    aead.AUDIT_HOOKS.append(record)
    try:
        sim, cid = three_user_story(seed=5)
        # more traffic after the story: a second chat between the two left, and a rejoin
        second = open_chat(sim, "alice", "carol")
        for i in range(5):
            say(sim, "alice", second, f"a{i}")
            say(sim, "carol", second, f"c{i}")
        login_user(sim, "bob2", DSA)
        sim.clients["alice"].invite(cid, "bob2")
        sim.run_until_idle()
        say(sim, "bob2", cid, "new bob")
    finally:
        aead.AUDIT_HOOKS.remove(record)
    assert record not in aead.AUDIT_HOOKS
    duplicates = [pair for pair, count in Counter(seen).items() if count > 1]
    assert duplicates == []
    assert len(seen) > 100 and len({k for k, _ in seen}) > 10  # channel keys per direction, sender keys per epoch


def test_runs_are_reproducible_from_the_seed() -> None:
    first, _ = three_user_story(seed=11)
    second, _ = three_user_story(seed=11)
    assert [r.data for r in first.trace] == [r.data for r in second.trace]
    third = make_simulation("alice", seed=12)
    assert third.trace[0].data != first.trace[0].data  # the client_hello randoms differ with the seed


def test_wire_and_server_events_carry_no_contents_or_passwords() -> None:
    """docs/THREATS.md 54 and PROTOCOL.md 11: canaries in messages and passwords never appear on the wire or in
    the server's events; after the handshake Eve only sees records."""
    sim = make_simulation("alice", "bob")
    register_only(sim, "c1", "carol")
    cid = open_chat(sim, "alice", "bob")
    canary = "CANARY-7f3a9b-do-not-log"
    say(sim, "alice", cid, canary)
    assert received_texts(sim, "bob") == [("alice", canary)]
    wire = b"".join(r.data for r in sim.trace)
    for secret in (canary, password_of("alice"), password_of("bob"), password_of("carol")):
        assert secret.encode() not in wire
        assert secret not in repr(sim.server_events)
    clear_types = {t for r in sim.eavesdropper_view() for t in r["visible_types"]}
    assert clear_types <= {"client_hello", "server_hello", "record"}
    relayed = [e for e in sim.server_events if isinstance(e, ev.MessageRelayed)]
    assert [(e.sender, e.recipients) for e in relayed] == [("alice", 1)]
    digest = hashlib.sha256(canary.encode()).hexdigest()
    assert digest not in repr(sim.server_events)
