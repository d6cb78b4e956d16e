"""A server the client does not trust may not change what a chat is (PROTOCOL.md 7.10).

The contributory and hybrid modes promise that the server cannot read the chat. That promise only holds if a
chat stays in its mode: before this check, a validly signed ``chat_key`` (the server-key mode's distribution,
wrapping a key the server chose) for a contributory chat at epoch + 1 was installed, and the client then sent
under the server's key; a signed ``chat_epoch`` naming ``contributory-xor`` switched the chat to the XOR
agreement that the last member to reveal controls. These tests play the malicious server with its own signing
key (``Simulation.server_push``) and check that the client refuses, says why, and keeps the agreed key.
"""

from __future__ import annotations

from typing import Any

from securechat.crypto.signatures import sign
from securechat.protocol import events as ev
from securechat.protocol import messages as m
from securechat.protocol.constructions import chat_epoch_signed_bytes
from securechat.protocol.jobs import ChatKeyJob
from tests.helpers import make_simulation

SECURE, XOR, HYBRID, CBC = "contributory", "contributory-xor", "hybrid", "aes-256-cbc-hmac-sha256"


def open_chat(mode: str, suite: str = "aes-256-gcm", seed: int = 11) -> tuple[Any, str]:
    sim = make_simulation("alice", "bob", "carol", seed=seed, dsa=("bob",))
    sim.clients["alice"].open_chat(["bob", "carol"], mode=mode, suite=suite)
    sim.run_until_idle()
    chat_id = sim.last_event("alice", ev.ChatOpened).chat_id
    assert sim.clients["alice"].book.chats[chat_id].mode == mode
    return sim, chat_id


def forged_chat_key(sim: Any, chat_id: str, *, epoch: int, mode: str, suite: str = "aes-256-gcm",
                    reason: str = "invite", actor: str = "alice") -> tuple[dict[str, m.ChatKey], bytes]:
    """A distribution the server could really sign: its own key, wrapped for each member, server-signed."""
    members = ("alice", "bob", "carol")
    keys = tuple(sim.keys[n].encryption_key.public_key() for n in members)
    chosen: list[bytes] = []

    def remember(n: int) -> bytes:
        out = sim.random_bytes(n)
        if n == 32 and not chosen:
            chosen.append(out)  # the first 32 random bytes ChatKeyJob draws are the chat key
        return out

    job = ChatKeyJob(peer=0, chat_id=chat_id, epoch=epoch, mode=mode, suite=suite, reason=reason, actor=actor,
                     members=members, encryption_keys=keys, ca=sim.server_key, random_bytes=remember)
    job.run()
    return job.messages, chosen[0]


def forged_epoch(sim: Any, chat_id: str, *, epoch: int, mode: str, suite: str = "aes-256-gcm",
                 reason: str = "invite", actor: str = "alice",
                 members: tuple[str, ...] = ("alice", "bob", "carol")) -> m.ChatEpoch:
    signature = sign(sim.server_key.scheme, sim.server_key.private_key, chat_epoch_signed_bytes(
        chat_id=chat_id, epoch=epoch, mode=mode, suite=suite, reason=reason, actor=actor, members=members),
        random_bytes=sim.random_bytes)
    return m.ChatEpoch(chat_id=chat_id, epoch=epoch, mode=mode, suite=suite, reason=reason, actor=actor,
                       members=members, signature=signature)


def refusals(sim: Any, name: str, chat_id: str) -> list[ev.MessageRejected]:
    return [e for e in sim.events_of(name, ev.MessageRejected) if e.chat_id == chat_id and e.sender == "server"]


def test_server_key_distribution_for_a_contributory_chat_is_refused() -> None:
    """Finding 1 of the client review: the server sets the key of a contributory chat."""
    sim, cid = open_chat(SECURE)
    chat = sim.clients["alice"].book.chats[cid]
    agreed, epoch = chat.key, chat.epoch
    assert agreed is not None
    for mode in ("server-key", SECURE):  # the honest name of the mode does not help either
        epoch += 1
        messages, server_choice = forged_chat_key(sim, cid, epoch=epoch, mode=mode)
        sim.server_push("alice", messages["alice"])
        sim.run_until_idle()
        assert refusals(sim, "alice", cid)[-1].code == "mode_changed"
        chat = sim.clients["alice"].book.chats[cid]
        assert (chat.mode, chat.key, chat.epoch) == (SECURE, agreed, 1)
        assert chat.key != server_choice
    # alice keeps talking under the agreed key, and bob still reads her
    sim.clients["alice"].send_chat(cid, "still ours")
    sim.run_until_idle()
    assert ("alice", "still ours") in [(e.sender, e.text) for e in sim.events_of("bob", ev.ChatReceived)]


def test_epoch_switching_a_contributory_chat_to_xor_is_refused() -> None:
    sim, cid = open_chat(SECURE)
    sim.server_push("alice", forged_epoch(sim, cid, epoch=2, mode=XOR))
    sim.run_until_idle()
    refusal = refusals(sim, "alice", cid)[-1]
    assert refusal.code == "mode_changed" and "contributory-xor" in refusal.reason
    chat = sim.clients["alice"].book.chats[cid]
    assert (chat.mode, chat.epoch) == (SECURE, 1) and chat.key is not None
    assert cid not in sim.clients["alice"].book.agreements  # no XOR round was started


def test_epoch_switching_the_suite_is_refused() -> None:
    sim, cid = open_chat(HYBRID)
    sim.server_push("alice", forged_epoch(sim, cid, epoch=2, mode=HYBRID, suite=CBC))
    sim.run_until_idle()
    assert refusals(sim, "alice", cid)[-1].code == "mode_changed"
    assert sim.clients["alice"].book.chats[cid].suite == "aes-256-gcm"


def test_keyless_epoch_for_a_server_key_chat_is_refused() -> None:
    sim, cid = open_chat("server-key")
    key = sim.clients["alice"].book.chats[cid].key
    sim.server_push("alice", forged_epoch(sim, cid, epoch=2, mode=HYBRID))
    sim.run_until_idle()
    assert refusals(sim, "alice", cid)[-1].code == "mode_changed"
    chat = sim.clients["alice"].book.chats[cid]
    assert (chat.mode, chat.key, chat.epoch) == ("server-key", key, 1)


def test_mode_stays_fixed_after_leaving_and_epochs_never_go_back() -> None:
    """Leaving forgets the chat's key, not what the chat was: a re-invitation cannot change its mode."""
    sim, cid = open_chat(SECURE)
    sim.clients["alice"].leave(cid)
    sim.run_until_idle()
    sim.server_push("alice", forged_epoch(sim, cid, epoch=3, mode=XOR, actor="bob"))
    sim.server_push("alice", forged_epoch(sim, cid, epoch=1, mode=SECURE, actor="bob"))
    sim.run_until_idle()
    codes = [e.code for e in refusals(sim, "alice", cid)]
    assert codes[-2:] == ["mode_changed", "stale_epoch"]


def test_membership_that_contradicts_its_reason_is_refused() -> None:
    sim, cid = open_chat(HYBRID)
    # "carol left" while carol is still listed; "dave invited" by someone who is not a member
    sim.server_push("alice", forged_epoch(sim, cid, epoch=2, mode=HYBRID, reason="leave", actor="carol"))
    sim.server_push("alice", forged_epoch(sim, cid, epoch=3, mode=HYBRID, reason="invite", actor="dave"))
    sim.run_until_idle()
    assert [e.code for e in refusals(sim, "alice", cid)][-2:] == ["membership_inconsistent"] * 2
    assert sim.clients["alice"].book.chats[cid].epoch == 1


def test_honest_rekeys_still_pass() -> None:
    """The checks refuse nothing an honest server sends: invite and leave in every mode."""
    for mode in ("server-key", SECURE, HYBRID):
        sim = make_simulation("alice", "bob", "carol", "dave", seed=12, dsa=("bob",))
        sim.clients["alice"].open_chat(["bob", "carol"], mode=mode)
        sim.run_until_idle()
        cid = sim.last_event("alice", ev.ChatOpened).chat_id
        sim.clients["alice"].invite(cid, "dave")
        sim.run_until_idle()
        sim.clients["carol"].leave(cid)
        sim.run_until_idle()
        for name in ("alice", "bob", "dave"):
            assert not [e for e in sim.events_of(name, ev.MessageRejected) if e.chat_id == cid], (mode, name)
            assert sim.clients[name].book.chats[cid].epoch == 3, (mode, name)


# --- bounded memory against a flooding server, and the agreement's table ---------------------------------------


def test_round_flood_ends_the_epoch_instead_of_filling_memory() -> None:
    """A member whose certificate never arrives keeps round messages waiting; a server that floods them makes
    the epoch abort (limit_exceeded) once more arrive than the members could honestly send."""
    sim, cid = open_chat(SECURE)
    members = ("alice", "bob", "mallory")
    sim.server_push("alice", forged_epoch(sim, cid, epoch=2, mode=SECURE, members=members))
    sim.run_until_idle()
    agreement = sim.clients["alice"].book.chats[cid].agreement
    assert agreement is not None and agreement.epoch == 2  # waiting for mallory's certificate
    flood = [m.ShareCommitted(chat_id=cid, epoch=2, sender="mallory", commitment=bytes([i]) * 32,
                              signature=b"\x00" * 64) for i in range(40)]
    for message in flood:
        sim.server_push("alice", message)
    sim.run_until_idle()
    aborted = [e for e in sim.events_of("alice", ev.ChatAborted) if e.chat_id == cid]
    assert [e.code for e in aborted] == ["limit_exceeded"]
    assert len(agreement.inbox) <= 4 * 2
    assert sim.clients["alice"].book.chats[cid].agreement is None


def test_a_server_cannot_make_the_client_remember_unlimited_chats(monkeypatch: Any) -> None:
    import securechat.protocol.chats as chats
    monkeypatch.setattr(chats, "MAX_KNOWN_CHATS", 3)
    sim, _ = open_chat(HYBRID)
    for i in range(5):
        sim.server_push("alice", forged_epoch(sim, f"flood-{i}", epoch=1, mode=HYBRID, reason="open"))
    sim.run_until_idle()
    book = sim.clients["alice"].book
    assert len(book.chats) == 3
    assert [e.code for e in sim.events_of("alice", ev.MessageRejected)][-3:] == ["limit_exceeded"] * 3


def test_agreement_table_allows_only_its_steps() -> None:
    import pytest

    from securechat.errors import LocalProtocolError
    from securechat.protocol.states import AGREEMENT_TRANSITIONS, AgreementState, next_agreement_state
    for state in AgreementState:
        for step in ("reveal", "derive", "confirm", "fail"):
            if (state, step) in AGREEMENT_TRANSITIONS:
                assert next_agreement_state(state, step) is AGREEMENT_TRANSITIONS[state, step]
            else:
                with pytest.raises(LocalProtocolError):
                    next_agreement_state(state, step)
    finals = {AgreementState.DONE, AgreementState.ABORTED}
    assert not [key for key in AGREEMENT_TRANSITIONS if key[0] in finals]
