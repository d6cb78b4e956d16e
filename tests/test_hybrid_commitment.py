"""Every member who accepts a hybrid message sees the same message (docs/PROTOCOL.md 7.7, hybrid v2).

A malicious member (alice) plays against two honest ones (bob, carol) with the project's own classes and
hand-made messages:

1. invisible salamanders: one signed AES-GCM ciphertext that opens under the two different keys alice wrapped
   for bob and for carol (tests/vectors/hybrid_salamander.json, made by tests/vectors/make_salamander.py);
2. silent exclusion: carol's wrap holds a key that does not open the ciphertext;
3. same-sequence equivocation: two messages with seq 1, each readable by one member only.

Without the key commitment (the lab variant ``verify_key_commitment=False``) bob and carol accept different
texts from one signed message; with it, carol refuses and is told that alice misbehaved. Same-seq messages are
caught by sequence numbers used up on a valid signature, and by the hash chain when the server helps alice.
"""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from securechat.crypto import aead
from securechat.crypto.certificates import issue_certificate
from securechat.crypto.keys import load_public_key, public_key_der
from securechat.crypto.signatures import sign
from securechat.crypto.wrap import wrap_key
from securechat.protocol import events as ev
from securechat.protocol import messages as m
from securechat.protocol.chats import ChatBook
from securechat.protocol.constructions import (
    HYBRID_CHAIN_START, chat_epoch_signed_bytes, chat_header, hybrid_chain_hash, hybrid_message_keys,
    hybrid_signed_bytes,
)
from securechat.store import new_server_key
from securechat.protocol.codec import encode_message
from tests.helpers import make_simulation, send_inner_bodies, server_errors, user_keys

VECTOR = json.loads((Path(__file__).parent / "vectors" / "hybrid_salamander.json").read_text())
NOW = 1_700_000_000
MEMBERS = ("alice", "bob", "carol")
CA = new_server_key(random_bytes=random.Random(7).randbytes)


def b64(text: str) -> bytes:
    return base64.b64decode(text)


def book(name: str, chat_id: str, *, commitment: bool = True) -> ChatBook:
    """*name*'s chat book, in a hybrid chat with alice, bob and carol at epoch 1, alice's certificate verified."""
    rng = random.Random(f"book/{name}")
    out = ChatBook(username=name, keys=user_keys(name), server_key=load_public_key(CA.public_der),
                   server_scheme=CA.scheme, random_bytes=rng.randbytes, verify_key_commitment=commitment)
    signature = sign(CA.scheme, CA.private_key, chat_epoch_signed_bytes(
        chat_id=chat_id, epoch=1, mode="hybrid", suite="aes-256-gcm", reason="open", actor="alice",
        members=MEMBERS), random_bytes=rng.randbytes)
    from securechat.protocol import modes  # the keyless epoch is installed by the modes module
    events = modes.install_epoch(out, m.ChatEpoch(chat_id=chat_id, epoch=1, mode="hybrid", suite="aes-256-gcm",
                                                   reason="open", actor="alice", members=MEMBERS,
                                                   signature=signature), NOW)
    assert isinstance(events.events[-1], ev.ChatKeyed)
    certs = tuple(certificate(n) for n in MEMBERS if n != name)
    assert all(isinstance(e, ev.PeerKeyPinned) for e in out.add_certificates(certs, NOW))
    return out


def certificate(name: str) -> Any:
    keys = user_keys(name)
    return issue_certificate(username=name, signature_scheme=keys.scheme,
                             encryption_key=public_key_der(keys.encryption_key),
                             signing_key=public_key_der(keys.signing_key), serial=MEMBERS.index(name) + 1,
                             now=NOW - 60, validity_seconds=86_400, ca_private_key=CA.private_key,
                             ca_scheme=CA.scheme, random_bytes=random.Random(name).randbytes)


def malicious(chat_id: str, seq: int, ciphertext: bytes, keys_for: dict[str, bytes], committed: bytes,
              prev: bytes = HYBRID_CHAIN_START) -> m.ChatMessage:
    """alice's hand-made hybrid message: her own choice of key per recipient, signed by her."""
    header = chat_header(chat_id=chat_id, epoch=1, sender="alice", seq=seq, suite="aes-256-gcm")
    rng = random.Random(f"alice/{seq}/{ciphertext.hex()}")
    recipients = ("bob", "carol")
    wraps = tuple(wrap_key(user_keys(n).encryption_key.public_key(), keys_for[n], random_bytes=rng.randbytes)
                  for n in recipients)
    commitment = hybrid_message_keys(committed, header)[1]
    alice = user_keys("alice")
    signature = sign(alice.scheme, alice.signing_key,
                     hybrid_signed_bytes(header, ciphertext, recipients, wraps, commitment, prev),
                     random_bytes=rng.randbytes)
    return m.ChatMessage(chat_id=chat_id, epoch=1, sender="alice", seq=seq, ciphertext=ciphertext,
                         signature=signature, wrap_recipients=recipients, wraps=wraps, key_commitment=commitment,
                         prev_hash=prev)


def honest(chat_id: str, seq: int, text: str, prev: bytes = HYBRID_CHAIN_START,
           carol_key: bytes | None = None, bob_key: bytes | None = None) -> tuple[m.ChatMessage, bytes]:
    """A well-formed message from alice (optionally with a wrong key for one member); returns it and its hash."""
    header = chat_header(chat_id=chat_id, epoch=1, sender="alice", seq=seq, suite="aes-256-gcm")
    mk = bytes(random.Random(f"mk/{seq}/{text}").randbytes(32))
    ciphertext = aead.seal(hybrid_message_keys(mk, header)[0], text.encode(), aad=header,
                           nonce=aead.nonce_from_counter(seq))
    msg = malicious(chat_id, seq, ciphertext, {"bob": bob_key or mk, "carol": carol_key or mk}, mk, prev)
    signed = hybrid_signed_bytes(header, msg.ciphertext, msg.wrap_recipients or (), msg.wraps or (),
                                 msg.key_commitment or b"", prev)
    return msg, hybrid_chain_hash(signed)


# --- 1. invisible salamanders ---------------------------------------------------------------------------------


def test_vector_opens_under_both_keys_with_pycryptodome() -> None:
    """The stored ciphertext really is valid AES-256-GCM under both derived keys: GCM commits to no key."""
    header = chat_header(chat_id=VECTOR["chat_id"], epoch=int(VECTOR["epoch"]), sender=VECTOR["sender"],
                         seq=int(VECTOR["seq"]), suite=VECTOR["suite"])
    nonce = aead.nonce_from_counter(int(VECTOR["seq"]))
    for mk, text in ((VECTOR["message_key_bob"], VECTOR["text_bob"]), (VECTOR["message_key_carol"],
                                                                         VECTOR["text_carol"])):
        key = hybrid_message_keys(b64(mk), header)[0]
        assert aead.unseal(key, b64(VECTOR["sealed"]), aad=header, nonce=nonce).decode() == text
    assert VECTOR["text_bob"].startswith("pay bob $100 now") and "pay eve $100 now" in VECTOR["text_carol"]


def salamander() -> m.ChatMessage:
    return malicious(VECTOR["chat_id"], 1, b64(VECTOR["sealed"]),
                     {"bob": b64(VECTOR["message_key_bob"]), "carol": b64(VECTOR["message_key_carol"])},
                     committed=b64(VECTOR["message_key_bob"]))


def test_without_commitment_two_members_accept_two_texts_from_one_signed_message() -> None:
    """The lab variant: what hybrid v1 did. Both see "signature verified", each a different payment."""
    msg = salamander()
    bob, carol = book("bob", VECTOR["chat_id"], commitment=False), book("carol", VECTOR["chat_id"], commitment=False)
    got_bob, got_carol = bob.open(msg), carol.open(msg)
    assert isinstance(got_bob, ev.ChatReceived) and isinstance(got_carol, ev.ChatReceived)
    assert got_bob.text == VECTOR["text_bob"] and got_carol.text == VECTOR["text_carol"]
    assert got_bob.text != got_carol.text


def test_with_commitment_the_member_given_another_key_refuses_and_names_the_sender() -> None:
    msg = salamander()
    bob, carol = book("bob", VECTOR["chat_id"]), book("carol", VECTOR["chat_id"])
    got_bob = bob.receive(msg)
    got_carol = carol.receive(msg)
    assert [type(e) for e in got_bob] == [ev.ChatReceived] and got_bob[0].text == VECTOR["text_bob"]
    assert len(got_carol) == 1 and isinstance(got_carol[0], ev.PeerMisbehaved)
    warning = got_carol[0]
    assert (warning.code, warning.sender, warning.seq) == ("unreadable_message", "alice", 1)
    assert "committed" in warning.reason
    # the seq is used up: the same signed message cannot be retried at carol
    assert carol.open(msg).code == "replay"  # type: ignore[union-attr]


# --- 2. silent exclusion --------------------------------------------------------------------------------------


@pytest.mark.parametrize("commitment", [True, False])
def test_silent_exclusion_is_reported_as_the_senders_fault(commitment: bool) -> None:
    """carol's wrap opens to a key that does not decrypt: she is told alice left her out (either check)."""
    bob, carol = book("bob", "excluded", commitment=commitment), book("carol", "excluded", commitment=commitment)
    msg, _ = honest("excluded", 1, "for bob's eyes only", carol_key=b"\x42" * 32)
    assert isinstance(bob.open(msg), ev.ChatReceived)
    warning = carol.open(msg)
    assert isinstance(warning, ev.PeerMisbehaved) and (warning.code, warning.sender) == ("unreadable_message", "alice")


def test_a_message_with_bytes_that_do_not_unwrap_is_the_senders_fault() -> None:
    carol = book("carol", "garbage")
    msg, _ = honest("garbage", 1, "x")
    wraps = (msg.wraps or ())[0], b"\x00" * 256
    alice, header = user_keys("alice"), chat_header(chat_id="garbage", epoch=1, sender="alice", seq=1,
                                                    suite="aes-256-gcm")
    signature = sign(alice.scheme, alice.signing_key, hybrid_signed_bytes(
        header, msg.ciphertext, ("bob", "carol"), wraps, msg.key_commitment or b"", HYBRID_CHAIN_START),
        random_bytes=random.Random(1).randbytes)
    forged = m.ChatMessage(**{**msg.__dict__, "wraps": wraps, "signature": signature})
    warning = carol.open(forged)
    assert isinstance(warning, ev.PeerMisbehaved) and warning.code == "unreadable_message"


# --- 3. same-sequence equivocation ----------------------------------------------------------------------------


def test_two_messages_with_one_seq_cannot_both_be_accepted() -> None:
    """alice sends A (only bob can open) and B (only carol can open), both seq 1, through an honest server that
    relays both to both: before hybrid v2, bob accepted A and carol B. Now seq 1 is used by the first validly
    signed message, whatever follows."""
    bob, carol = book("bob", "fork"), book("carol", "fork")
    a, _ = honest("fork", 1, "A: meet at noon", carol_key=b"\x01" * 32)
    b, _ = honest("fork", 1, "B: meet at midnight", bob_key=b"\x02" * 32)
    bob_events = bob.receive(a) + bob.receive(b)
    carol_events = carol.receive(a) + carol.receive(b)
    assert [type(e).__name__ for e in bob_events] == ["ChatReceived", "MessageRejected"]
    assert bob_events[1].code == "replay"  # type: ignore[attr-defined]
    assert [(type(e).__name__, getattr(e, "code", "")) for e in carol_events] == [
        ("PeerMisbehaved", "unreadable_message"), ("MessageRejected", "replay")]
    assert not any(isinstance(e, ev.ChatReceived) for e in carol_events)


def test_equivocation_with_the_servers_help_is_caught_at_the_next_message() -> None:
    """The server shows A only to bob and B only to carol; each accepts "alice, seq 1". alice's next message
    chains from the one she really sent (A), so carol learns at seq 2 that her seq 1 was not it."""
    bob, carol = book("bob", "fork2"), book("carol", "fork2")
    a, hash_a = honest("fork2", 1, "A: the vote is yes")
    b, _ = honest("fork2", 1, "B: the vote is no")
    assert isinstance(bob.open(a), ev.ChatReceived) and isinstance(carol.open(b), ev.ChatReceived)
    nxt, _ = honest("fork2", 2, "see you", prev=hash_a)
    assert [type(e) for e in bob.receive(nxt)] == [ev.ChatReceived]
    carol_events = carol.receive(nxt)
    assert [type(e) for e in carol_events] == [ev.PeerMisbehaved, ev.ChatReceived]
    warning = carol_events[0]
    assert (warning.code, warning.sender, warning.seq) == ("equivocation", "alice", 1)  # type: ignore[attr-defined]


def test_honest_chain_raises_no_warning_and_a_gap_is_not_a_fork() -> None:
    bob = book("bob", "chain")
    first, h1 = honest("chain", 1, "one")
    second, h2 = honest("chain", 2, "two", prev=h1)
    fourth, _ = honest("chain", 4, "four", prev=b"\x09" * 32)  # seq 3 never arrived: nothing to compare
    events = bob.receive(first) + bob.receive(second) + bob.receive(fourth)
    assert [type(e) for e in events] == [ev.ChatReceived] * 3
    assert [e.gap for e in events] == [0, 0, 1]  # type: ignore[attr-defined]


def test_v1_hybrid_message_without_commitment_is_refused() -> None:
    bob = book("bob", "old")
    msg, _ = honest("old", 1, "hello")
    old = m.ChatMessage(**{**msg.__dict__, "key_commitment": None, "prev_hash": None})
    assert bob.open(old).code == "bad_field"  # type: ignore[union-attr]


# --- the real client and server, end to end -------------------------------------------------------------------


def test_simulated_hybrid_chat_chains_and_commits() -> None:
    """ClientProtocol's own sends carry a commitment and a chain that the others check without a warning."""
    sim = make_simulation("alice", "bob", "carol", seed=31, dsa=("bob",))
    sim.clients["alice"].open_chat(["bob", "carol"], mode="hybrid")
    sim.run_until_idle()
    cid = sim.last_event("alice", ev.ChatOpened).chat_id
    for i in range(3):
        sim.clients["alice"].send_chat(cid, f"hello {i}")
        sim.clients["bob"].send_chat(cid, f"hi {i}")
        sim.run_until_idle()
    sent = sim.messages_of("alice", "send", "chat_send")
    assert sent[0].prev_hash == HYBRID_CHAIN_START and len({s.prev_hash for s in sent}) == 3
    for name in ("bob", "carol"):
        assert not sim.events_of(name, ev.PeerMisbehaved)
        assert [e.text for e in sim.events_of(name, ev.ChatReceived) if e.sender == "alice"] == [
            f"hello {i}" for i in range(3)]


def test_server_refuses_a_hybrid_send_without_commitment() -> None:
    sim = make_simulation("alice", "bob", seed=32)
    sim.clients["alice"].open_chat(["bob"], mode="hybrid")
    sim.run_until_idle()
    cid = sim.last_event("alice", ev.ChatOpened).chat_id
    msg = sim.clients["alice"].book.seal(cid, "x", rid=99)
    send_inner_bodies(sim, "alice", [encode_message(m.ChatSend(**{**msg.__dict__, "key_commitment": None}))])
    assert server_errors(sim, "alice")[-1].code == "bad_field"
    assert not sim.events_of("bob", ev.ChatReceived)


# --- property: whatever a hostile sender does, accepting members agree ---------------------------------------

ACTIONS = st.lists(st.tuples(
    st.integers(1, 4),                                         # seq (repeats and gaps allowed)
    st.sampled_from(["same", "bob-only", "carol-only", "split"]),  # which keys the wraps hold
    st.booleans(),                                             # prev_hash correct?
    st.sampled_from(["both", "bob", "carol"]),                 # who the (possibly colluding) server delivers to
), min_size=1, max_size=8)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ACTIONS)
def test_hostile_sender_never_makes_two_members_accept_different_texts_at_one_seq(actions: list[Any]) -> None:
    bob, carol = book("bob", "prop"), book("carol", "prop")
    accepted: dict[str, dict[int, str]] = {"bob": {}, "carol": {}}
    prev = HYBRID_CHAIN_START
    for i, (seq, keys, good_prev, audience) in enumerate(actions):
        text = f"message {i}"
        kwargs: dict[str, Any] = {"prev": prev if good_prev else bytes([i + 1]) * 32}
        if keys in ("bob-only", "split"):
            kwargs["carol_key"] = bytes([0x30 + i]) * 32
        if keys == "carol-only":
            kwargs["bob_key"] = bytes([0x60 + i]) * 32
        if keys == "split":
            msg = salamander_like(seq, text)
        else:
            msg, h = honest("prop", seq, text, **kwargs)
            prev = h
        for name, member in (("bob", bob), ("carol", carol)):
            if audience in ("both", name):
                for event in member.receive(msg):
                    if isinstance(event, ev.ChatReceived):
                        assert event.seq not in accepted[name], "one seq accepted twice"
                        accepted[name][event.seq] = event.text
    if all(action[3] == "both" for action in actions):
        # an honest server relays every message to both: whatever alice signs, they agree on every seq
        for seq in set(accepted["bob"]) & set(accepted["carol"]):
            assert accepted["bob"][seq] == accepted["carol"][seq]
    # (a server that shows each member a different message can keep them apart until a chained message
    # reaches both: test_equivocation_with_the_servers_help_is_caught_at_the_next_message; PROTOCOL.md 7.7)


def salamander_like(seq: int, text: str) -> m.ChatMessage:
    """A message whose ciphertext opens for bob only, with carol's wrap holding another key (split keys)."""
    header = chat_header(chat_id="prop", epoch=1, sender="alice", seq=seq, suite="aes-256-gcm")
    mk = bytes(random.Random(f"split/{seq}/{text}").randbytes(32))
    ciphertext = aead.seal(hybrid_message_keys(mk, header)[0], text.encode(), aad=header,
                           nonce=aead.nonce_from_counter(seq))
    return malicious("prop", seq, ciphertext, {"bob": mk, "carol": bytes(32)}, committed=bytes(32))
