"""The key-change flow of PROTOCOL.md 7.9 as the user follows it: the safety number of the OFFERED key, accepting
exactly the fingerprint compared, one warning per change, and the CLI's /fingerprint and /trust.

The attack: the server is also the CA, so it can certify keys of its own as "bob". A user who follows the
documented steps (compare the safety number shown after the warning, then /trust) must catch that, and a real
key change (bob re-registered with new keys) must still complete.
"""

from __future__ import annotations

from typing import Any

import pytest

from securechat.terminal import Session, Shell
from securechat.crypto.certificates import Certificate, issue_certificate
from securechat.errors import ErrorCode, LocalProtocolError
from securechat.protocol import events as ev
from securechat.protocol.identity import UserKeys
from securechat.protocol.registry import UserRecord
from securechat.simulation import Simulation
from tests.helpers import connect, make_simulation, password_of, user_keys

SECURE = "contributory"


def _certify_as_bob(sim: Simulation, keys: UserKeys, serial: int) -> Certificate:
    """The server (holding the CA key) puts a CA-valid certificate for *keys* under the name bob."""
    cert = issue_certificate(
        username="bob", signature_scheme=keys.scheme, encryption_key=keys.encryption_public,
        signing_key=keys.signing_public, serial=serial, now=int(sim.now), validity_seconds=3600,
        ca_private_key=sim.server_key.private_key, ca_scheme=sim.server_key.scheme, random_bytes=sim.random_bytes)
    record = sim.registry.get_user("bob")
    sim.registry._users["bob"] = UserRecord(username="bob", password_record=record.password_record,  # type: ignore[attr-defined]
                                            certificate=cert)
    return cert


def _alice_again(sim: Simulation, label: str = "alice2") -> Any:
    """alice's pins survive a reconnect (the CLI keeps them in known_peers.json): she comes back on *label*."""
    saved = dict(sim.clients["alice"].pins)
    sim.disconnect("alice")
    sim.run_until_idle()
    client = connect(sim, label)
    client.pins.update(saved)
    client.login("alice", password_of("alice"), user_keys("alice"))
    sim.run_until_idle()
    return client


def _changes(sim: Simulation, label: str) -> list[ev.PeerKeyChanged]:
    return [e for e in sim.events_of(label, ev.PeerKeyChanged) if e.username == "bob"]


def _pinned_bob_chat() -> tuple[Simulation, str]:
    sim = make_simulation("alice", "bob", "carol")
    sim.clients["alice"].open_chat(["bob"], mode=SECURE)
    sim.run_until_idle()
    assert sim.clients["alice"].pins["bob"] == sim.registry.get_user("bob").certificate.identity_fingerprint()
    return sim, sim.last_event("alice", ev.ChatOpened).chat_id


def test_substituted_key_is_caught_by_comparing_the_offered_safety_number() -> None:
    """The server certifies mallory's keys as bob. alice follows the steps: the safety number of the OFFERED key
    differs from the one the real bob reads her, and /trust with what bob read pins nothing."""
    sim, _ = _pinned_bob_chat()
    real_bob = sim.clients["bob"]
    real_fp = real_bob.certificate.identity_fingerprint()
    forged = _certify_as_bob(sim, user_keys("mallory"), serial=901)
    alice = _alice_again(sim)
    alice.open_chat(["bob", "carol"], mode=SECURE)
    sim.run_until_idle()
    (changed,) = _changes(sim, "alice2")
    assert changed.pinned == real_fp and changed.seen == forged.identity_fingerprint()

    # the documented step: compare the safety numbers out of band
    bob_reads = real_bob.safety_number("alice")
    assert alice.safety_number("bob", offered=True) != bob_reads  # the substitution shows
    assert alice.pending_key_changes() == {"bob": (real_fp, forged.identity_fingerprint())}
    # she types the fingerprint bob read her: it is not the key the server presents, so nothing is pinned
    with pytest.raises(LocalProtocolError) as raised:
        alice.accept_key_change("bob", real_fp)
    assert raised.value.code is ErrorCode.KEY_CHANGED
    assert alice.pins["bob"] == real_fp and "bob" not in alice.book.certificates
    assert "bob" in alice.book.refused
    # and a garbled fingerprint is no fingerprint
    with pytest.raises(LocalProtocolError):
        alice.accept_key_change("bob", "yes")
    assert alice.pins["bob"] == real_fp


def test_accepting_pins_exactly_the_compared_key_never_the_next_one() -> None:
    """alice accepts the key she compared; the server then swaps in a third key: that is a new change, warned
    about, not pinned on sight (the old accept_key_change dropped the pin and pinned whatever came next)."""
    sim, _ = _pinned_bob_chat()
    first = _certify_as_bob(sim, user_keys("mallory"), serial=902)
    alice = _alice_again(sim)
    alice.fetch_certificates(["bob"])
    sim.run_until_idle()
    alice.accept_key_change("bob", first.identity_fingerprint().upper().replace(":", " "))
    assert alice.pins["bob"] == first.identity_fingerprint()
    sim.run_until_idle()  # accept_key_change fetched bob's certificate again: still the compared one
    assert alice.pins["bob"] == first.identity_fingerprint() and "bob" not in alice.book.refused
    second = _certify_as_bob(sim, user_keys("trudy"), serial=903)
    alice.fetch_certificates(["bob"])
    sim.run_until_idle()
    assert alice.pins["bob"] == first.identity_fingerprint() != second.identity_fingerprint()
    assert _changes(sim, "alice2")[-1].seen == second.identity_fingerprint()
    assert "bob" in alice.book.refused


def test_accept_refused_when_the_server_changed_the_key_after_the_comparison() -> None:
    """alice compared the offered key K1; before she types /trust the server presents K2: K1 is refused."""
    sim, _ = _pinned_bob_chat()
    first = _certify_as_bob(sim, user_keys("mallory"), serial=904)
    alice = _alice_again(sim)
    alice.fetch_certificates(["bob"])
    sim.run_until_idle()
    compared = alice.safety_number("bob", offered=True)
    assert first.identity_fingerprint() in compared
    _certify_as_bob(sim, user_keys("trudy"), serial=905)
    alice.fetch_certificates(["bob"])
    sim.run_until_idle()
    with pytest.raises(LocalProtocolError):
        alice.accept_key_change("bob", first.identity_fingerprint())
    assert len(_changes(sim, "alice2")) == 2  # one warning per offered key


def test_legitimate_key_change_completes_and_the_chat_works() -> None:
    """bob really re-keyed (new keys, certified by the server). His screen and alice's OFFERED number match;
    alice accepts that fingerprint and a contributory chat with bob then agrees a key and carries messages."""
    sim, _ = _pinned_bob_chat()
    new_keys = user_keys("mallory")  # bob's new keys (any fresh pair will do)
    cert = _certify_as_bob(sim, new_keys, serial=906)
    sim.disconnect("bob")
    sim.run_until_idle()
    bob = connect(sim, "bob2")
    bob.login("bob", password_of("bob"), new_keys)
    sim.run_until_idle()
    assert bob.username == "bob"
    alice = _alice_again(sim)
    alice.open_chat(["bob"], mode=SECURE)
    sim.run_until_idle()
    assert len(_changes(sim, "alice2")) == 1
    bob.fetch_certificates(["alice"])
    sim.run_until_idle()
    bob_reads = bob.safety_number("alice")
    assert alice.safety_number("bob", offered=True) == bob_reads  # the same on both screens
    assert alice.safety_number("bob") != bob_reads                 # the pinned one cannot match any more
    alice.accept_key_change("bob", cert.identity_fingerprint())
    sim.run_until_idle()
    assert alice.pins["bob"] == cert.identity_fingerprint() and not alice.pending_key_changes()
    assert alice.safety_number("bob") == bob_reads
    alice.open_chat(["bob"], mode=SECURE)
    sim.run_until_idle()
    chat_id = sim.last_event("alice2", ev.ChatOpened).chat_id
    assert [e for e in sim.events_of("alice2", ev.ChatKeyed) if e.chat_id == chat_id]
    alice.send_chat(chat_id, "welcome back")
    sim.run_until_idle()
    assert [e.text for e in sim.events_of("bob2", ev.ChatReceived) if e.chat_id == chat_id] == ["welcome back"]


def test_one_warning_per_change_however_many_messages_arrive() -> None:
    """Every message from a refused sender fetches its certificate again; the warning is raised once."""
    sim = make_simulation("alice", "bob")
    sim.clients["bob"].open_chat(["alice"], mode="hybrid")
    sim.run_until_idle()
    _certify_as_bob(sim, user_keys("mallory"), serial=907)
    alice = _alice_again(sim)
    bob = sim.clients["bob"]
    bob.open_chat(["alice"], mode="server-key")
    sim.run_until_idle()
    chat_id = sim.last_event("bob", ev.ChatOpened).chat_id
    for i in range(4):
        bob.send_chat(chat_id, f"message {i}")
        sim.run_until_idle()
    assert len([e for e in sim.events_of("alice2", ev.MessageRejected) if e.sender == "bob"]) == 4
    assert len(_changes(sim, "alice2")) == 1


# --- the CLI's handlers ----------------------------------------------------------------------------------------


class _SimClient:
    """What Shell needs of TcpClient, over a simulated ClientProtocol (the CLI is a thin shell over it)."""

    def __init__(self, sim: Simulation, label: str) -> None:
        self.sim, self.protocol = sim, sim.clients[label]

    def pending_key_changes(self) -> dict[str, tuple[str, str]]:
        return self.protocol.pending_key_changes()

    def safety_number(self, name: str, *, offered: bool = False) -> str:
        return self.protocol.safety_number(name, offered=offered)

    def accept_key_change(self, name: str, fingerprint: str) -> None:
        self.protocol.accept_key_change(name, fingerprint)
        self.sim.run_until_idle()

    @property
    def pins(self) -> dict[str, str]:
        return dict(self.protocol.pins)

    @property
    def username(self) -> str | None:
        return self.protocol.username

    def identity_fingerprint(self) -> str | None:
        return None if self.protocol.certificate is None else self.protocol.certificate.identity_fingerprint()


class _Store:
    def __init__(self) -> None:
        self.saved: list[dict[str, str]] = []

    def save_pins(self, username: str, pins: dict[str, str]) -> None:
        self.saved.append(dict(pins))


def test_cli_fingerprint_shows_offered_number_and_trust_needs_the_exact_fingerprint() -> None:
    sim, _ = _pinned_bob_chat()
    real_fp = sim.clients["bob"].certificate.identity_fingerprint()
    forged = _certify_as_bob(sim, user_keys("mallory"), serial=908)
    alice = _alice_again(sim)
    alice.fetch_certificates(["bob"])
    sim.run_until_idle()
    lines: list[str] = []
    store = _Store()
    client = _SimClient(sim, "alice2")
    shell = Shell(lambda on_event: client, store, emit=lines.append, ask_password=lambda q: "")  # type: ignore[arg-type, return-value]
    shell.attach(client)  # type: ignore[arg-type]
    shell.session = Session(username="alice", password="", keys=user_keys("alice"))
    shell.handle("/fingerprint bob")
    shown = "\n".join(lines)
    assert alice.safety_number("bob", offered=True) in shown and alice.safety_number("bob") in shown
    assert "OFFERED" in shown and f"/trust bob {forged.identity_fingerprint()}" in shown

    lines.clear()
    shell.handle("/trust bob")  # no fingerprint: refused, as a usage line
    shell.handle(f"/trust bob {real_fp}")  # what the real bob would read: not the presented key
    assert "NOT trusted" in "\n".join(lines) and alice.pins["bob"] == real_fp and not store.saved
    shell.handle("/trust carol 0000:0000:0000:0000:0000:0000:0000:0000")
    assert "have not changed" in "\n".join(lines)

    shell.handle(f"/trust bob {forged.identity_fingerprint()}")
    assert alice.pins["bob"] == forged.identity_fingerprint()
    assert store.saved[-1]["bob"] == forged.identity_fingerprint()


def test_a_sender_whose_messages_a_recipient_refused_is_told() -> None:
    """PROTOCOL.md 7.9, refusal notices: bob's keys changed (he re-registered); alice has not accepted them yet, so
    she drops his messages, and bob is told once per chat and epoch why nobody answers him."""
    sim = make_simulation("alice", "bob", seed=71)
    sim.clients["alice"].open_chat(["bob"])
    sim.run_until_idle()
    assert "bob" in sim.clients["alice"].pins
    new_keys = user_keys("bob2")
    _certify_as_bob(sim, new_keys, serial=77)
    sim.disconnect("bob")
    sim.run_until_idle()
    bob = connect(sim, "bob-again")
    bob.login("bob", password_of("bob"), new_keys)
    sim.run_until_idle()
    _alice_again(sim)  # a new session: alice verifies bob's certificate again and sees the change
    bob.open_chat(["alice"])
    sim.run_until_idle()
    cid = sim.last_event("bob-again", ev.ChatOpened).chat_id
    for text in ("hello?", "anyone?"):
        bob.send_chat(cid, text)
        sim.run_until_idle()
    assert not [e for e in sim.events_of("alice2", ev.ChatReceived) if e.chat_id == cid]
    refused = [e for e in sim.events_of("alice2", ev.MessageRejected) if e.chat_id == cid]
    assert [e.code for e in refused] == ["key_changed", "key_changed"]
    told = sim.events_of("bob-again", ev.MessageRefused)
    assert [(e.chat_id, e.recipient, e.seq, e.code) for e in told] == [(cid, "alice", 1, "key_changed")]  # once
    assert len(_changes(sim, "alice2")) == 1  # and alice saw one warning, not one per message


def test_a_refusal_notice_naming_a_stranger_is_not_relayed() -> None:
    from securechat.protocol import messages as m
    from tests.helpers import request
    sim = make_simulation("alice", "bob", "carol", seed=72)
    sim.clients["alice"].open_chat(["bob"])
    sim.run_until_idle()
    cid = sim.last_event("alice", ev.ChatOpened).chat_id
    # carol is not in the chat: her "notice" about alice goes nowhere
    request(sim, "carol", m.ChatRefused(chat_id=cid, epoch=1, sender="alice", seq=1, code="key_changed"))
    assert not sim.events_of("alice", ev.MessageRefused)
