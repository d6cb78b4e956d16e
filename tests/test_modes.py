"""The chat modes (PROTOCOL.md 7) in the simulator: contributory (commit/reveal/HKDF/confirm), its insecure XOR
variant, per-message hybrid encryption, CBC-HMAC, pinned fingerprints, mailboxes for offline members, the lobby.

Keys come from the session cache of tests.helpers. A malicious member is built by swapping the Agreement class
the client modes module instantiates (``MalloryAgreement``: honest for everyone but "mallory").
"""

from __future__ import annotations

import base64
import json
import dataclasses
from typing import Any

import pytest

from securechat.crypto import aead
from securechat.crypto.certificates import issue_certificate
from securechat.crypto.signatures import sign
from securechat.crypto.wrap import unwrap_key, wrap_key
from securechat.errors import ErrorCode, LocalProtocolError, SecureChatError
from securechat.protocol import agreement as agr
from securechat.protocol import codec
from securechat.protocol import events as ev
from securechat.protocol import messages as m
from securechat.protocol import modes
from securechat.protocol.constructions import chat_header, sender_key
from securechat.protocol.registry import UserRecord
from tests.helpers import (
    DSA, login_user, make_simulation, password_of, register_only, request, server_errors, user_keys,
)

SECURE, XOR, HYBRID = "contributory", "contributory-xor", "hybrid"
CBC = "aes-256-cbc-hmac-sha256"
TARGET = bytes.fromhex("7a" * 32)


# --- helpers -------------------------------------------------------------------------------------------------


def xor(*values: bytes) -> bytes:
    out = bytes(32)
    for v in values:
        out = bytes(a ^ b for a, b in zip(out, v))
    return out


def setup_chat(mode: str, *, users: tuple[str, ...] = ("alice", "bob", "carol"), suite: str = "aes-256-gcm",
               seed: int = 1, **config: Any):  # type: ignore[no-untyped-def]
    """alice (RSA-PSS), bob (DSA), carol (RSA-PSS) ... logged in; alice opens a chat with the others."""
    sim = make_simulation(*users, seed=seed, dsa=("bob",), **config)
    sim.clients[users[0]].open_chat(list(users[1:]), mode=mode, suite=suite)
    sim.run_until_idle()
    chat_id = sim.last_event(users[0], ev.ChatOpened).chat_id
    return sim, chat_id


def chat_of(sim, name: str, chat_id: str):  # type: ignore[no-untyped-def]
    return sim.clients[name].book.chats[chat_id]


def keyed(sim, name: str, chat_id: str, epoch: int | None = None) -> list[ev.ChatKeyed]:  # type: ignore[no-untyped-def]
    return [e for e in sim.events_of(name, ev.ChatKeyed)
            if e.chat_id == chat_id and (epoch is None or e.epoch == epoch)]


def aborted(sim, name: str, chat_id: str | None = None) -> list[ev.ChatAborted]:  # type: ignore[no-untyped-def]
    return [e for e in sim.events_of(name, ev.ChatAborted) if chat_id is None or e.chat_id == chat_id]


def rejected(sim, name: str) -> list[ev.MessageRejected]:  # type: ignore[no-untyped-def]
    return sim.events_of(name, ev.MessageRejected)


def texts(sim, name: str, chat_id: str) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(e.sender, e.text) for e in sim.events_of(name, ev.ChatReceived) if e.chat_id == chat_id]


def say(sim, name: str, chat_id: str, text: str) -> m.ChatSend:  # type: ignore[no-untyped-def]
    sim.clients[name].send_chat(chat_id, text)
    sim.run_until_idle()
    sent = sim.messages_of(name, "send", "chat_send")[-1]
    assert isinstance(sent, m.ChatSend)
    return sent


def try_unseal(chat_key: bytes, msg: m.ChatSend | m.ChatMessage, sender: str, suite: str) -> bytes | None:
    """Decrypt a captured chat ciphertext with a candidate chat key, as anyone holding that key could."""
    header = chat_header(chat_id=msg.chat_id, epoch=msg.epoch, sender=sender, seq=msg.seq, suite=suite)
    key = sender_key(chat_key, chat_id=msg.chat_id, epoch=msg.epoch, sender=sender)
    try:
        return aead.unseal(key, msg.ciphertext, aad=header, nonce=aead.nonce_from_counter(msg.seq),
                           suite=aead.CipherSuite(suite))
    except SecureChatError:
        return None


def try_unseal_hybrid(private_key: object, msg: m.ChatSend | m.ChatMessage, sender: str, suite: str) -> bytes | None:
    header = chat_header(chat_id=msg.chat_id, epoch=msg.epoch, sender=sender, seq=msg.seq, suite=suite)
    for wrap in msg.wraps or ():
        try:
            key = unwrap_key(private_key, wrap, expected_length=32)
            return aead.unseal(key, msg.ciphertext, aad=header, nonce=aead.nonce_from_counter(msg.seq),
                               suite=aead.CipherSuite(suite))
        except SecureChatError:
            continue
    return None


def step_until(sim, ready, limit: int = 5000) -> None:  # type: ignore[no-untyped-def]
    sim.flush()
    for _ in range(limit):
        if ready():
            return
        if not sim.step():
            break
    assert ready(), "condition never met"


def running_agreement(sim, name: str, chat_id: str, epoch: int):  # type: ignore[no-untyped-def]
    a = sim.clients[name].book.agreements.get(chat_id) if sim.clients[name].book else None
    return a if isinstance(a, agr.Agreement) and a.epoch == epoch else None


# --- recording every Agreement, and a malicious one --------------------------------------------------------


class MalloryAgreement(agr.Agreement):
    """Honest for everyone except "mallory", whose behaviour is chosen by ``STRATEGY``."""

    STRATEGY: dict[str, Any] = {}
    ALL: list[agr.Agreement] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        MalloryAgreement.ALL.append(self)

    @property
    def evil(self) -> str | None:
        return self.STRATEGY.get("kind") if self.me == "mallory" else None

    def start(self) -> list[m.Message]:
        out = super().start()
        if self.evil == "commit_target":
            # she commits honestly, to the key she would like (the best she can do without seeing shares)
            self.share = TARGET
            value = agr.commitment(self.chat_id, self.epoch, self.me, self.share)
            self.commitments[self.me] = value
            out = [m.ShareCommit(chat_id=self.chat_id, epoch=self.epoch, commitment=value, signature=sign(
                self.my_scheme, self.my_signing_key, agr.commit_signed_bytes(self.chat_id, self.epoch, self.me, value),
                random_bytes=self.random_bytes))]
        if self.evil == "bad_commit_sig":
            other = user_keys("eve")
            msg = out[0]
            assert isinstance(msg, m.ShareCommit)
            out = [dataclasses.replace(msg, signature=sign(other.scheme, other.signing_key, agr.commit_signed_bytes(
                self.chat_id, self.epoch, self.me, msg.commitment), random_bytes=self.random_bytes))]
        return out

    def maybe_reveal(self, peers, now):  # type: ignore[no-untyped-def]
        kind = self.evil
        if kind is None or self.revealed:
            return super().maybe_reveal(peers, now)
        if kind in ("last_mover", "echo"):
            # wait for every other member's share, then choose ours
            if len(self.shares) < len(self.others):
                return []
            if kind == "last_mover":
                self.share = xor(TARGET, *self.shares.values())
            else:
                self.share = self.shares[self.STRATEGY.get("echo_of", "alice")]
                self.shares.clear()  # so that her own derivation does not trip on the duplicate
            return super().maybe_reveal(peers, now)
        if kind == "lie" and (self.variant == agr.XOR or len(self.commitments) == len(self.members)):
            self.share = bytes(b ^ 0xFF for b in self.share)  # reveal something else than committed
        if kind == "old_timestamp":
            return super().maybe_reveal(peers, now - 1000)
        out = super().maybe_reveal(peers, now)
        if not out:
            return out
        if kind == "bad_sig":
            other = user_keys("eve")
            out = [dataclasses.replace(k, signature=sign(other.scheme, other.signing_key, agr.envelope_signed_bytes(
                k.chat_id, k.epoch, self.me, k.recipient, k.wrapped_share, k.nonce, k.timestamp),
                random_bytes=self.random_bytes)) for k in out]
        elif kind == "garbage":
            keys = user_keys("mallory")
            fixed = []
            for k in out:
                junk = self.random_bytes(256)
                fixed.append(dataclasses.replace(k, wrapped_share=junk, signature=sign(
                    keys.scheme, keys.signing_key, agr.envelope_signed_bytes(
                        k.chat_id, k.epoch, self.me, k.recipient, junk, k.nonce, k.timestamp),
                    random_bytes=self.random_bytes)))
            out = fixed
        elif kind == "equivocate":
            # a different share for each recipient (XOR variant: nothing binds her to one share)
            keys = user_keys("mallory")
            fixed = []
            for k in out:
                share = self.random_bytes(32)
                wrapped = wrap_key(peers(k.recipient).encryption_key, share, random_bytes=self.random_bytes)
                fixed.append(dataclasses.replace(k, wrapped_share=wrapped, signature=sign(
                    keys.scheme, keys.signing_key, agr.envelope_signed_bytes(
                        k.chat_id, k.epoch, self.me, k.recipient, wrapped, k.nonce, k.timestamp),
                    random_bytes=self.random_bytes)))
            out = fixed
        return out

    def _maybe_confirm(self) -> list[m.Message]:
        out = super()._maybe_confirm()
        if out and self.evil == "bad_mac":
            out = [dataclasses.replace(out[0], mac=bytes(32))]
        return out


@pytest.fixture
def mallory(monkeypatch):  # type: ignore[no-untyped-def]
    """Every client of the test builds MalloryAgreement; returns its strategy dict (empty: all honest)."""
    MalloryAgreement.STRATEGY = {}
    MalloryAgreement.ALL = []
    monkeypatch.setattr(modes, "Agreement", MalloryAgreement)
    return MalloryAgreement.STRATEGY


def agreements_of(chat_id: str, epoch: int) -> dict[str, agr.Agreement]:
    return {a.me: a for a in MalloryAgreement.ALL if a.chat_id == chat_id and a.epoch == epoch}


def mallory_chat(mode: str, strategy: dict[str, Any], kind: str):  # type: ignore[no-untyped-def]
    strategy["kind"] = kind
    sim, chat_id = setup_chat(mode, users=("alice", "bob", "mallory"))
    return sim, chat_id


def assert_no_key(sim, names, chat_id: str, epoch: int = 1) -> None:  # type: ignore[no-untyped-def]
    """Nobody honest holds or uses a key for *epoch*: no ChatKeyed, no key installed, sending refused."""
    for name in names:
        assert not keyed(sim, name, chat_id, epoch), name
        chat = chat_of(sim, name, chat_id)
        # an aborted epoch must not keep the key derived before the abort (see modes.advance)
        assert chat.epoch == epoch and chat.key is None, f"{name} keeps a key for aborted epoch {epoch}"
        with pytest.raises(LocalProtocolError):
            sim.clients[name].send_chat(chat_id, "must not go out")
        assert not sim.messages_of(name, "send", "chat_send")


def abort_codes(sim, names, chat_id: str) -> dict[str, set[str]]:  # type: ignore[no-untyped-def]
    return {n: {e.code for e in aborted(sim, n, chat_id)} for n in names}


# --- 1. happy paths ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [SECURE, XOR, HYBRID])
def test_happy_path_three_users_mixed_schemes(mode: str) -> None:
    sim, cid = setup_chat(mode)
    assert sim.keys["bob"].scheme is DSA and sim.keys["alice"].scheme is not DSA
    for name in ("alice", "bob", "carol"):
        (k,) = keyed(sim, name, cid, 1)
        assert k.mode == mode and set(k.members) == {"alice", "bob", "carol"}
        assert not aborted(sim, name) and not rejected(sim, name)
    say(sim, "alice", cid, "hi all")
    say(sim, "bob", cid, "hi from dsa bob")
    say(sim, "carol", cid, "and carol")
    assert texts(sim, "alice", cid) == [("bob", "hi from dsa bob"), ("carol", "and carol")]
    assert texts(sim, "bob", cid) == [("alice", "hi all"), ("carol", "and carol")]
    assert texts(sim, "carol", cid) == [("alice", "hi all"), ("bob", "hi from dsa bob")]
    schemes = {e.sender: e.signature_scheme for e in sim.events_of("alice", ev.ChatReceived)}
    assert schemes["bob"] == DSA.value


@pytest.mark.parametrize("mode", [SECURE, XOR, HYBRID])
def test_leaver_cannot_read_later_messages(mode: str) -> None:
    sim, cid = setup_chat(mode)
    old_key = chat_of(sim, "carol", cid).key
    if mode != HYBRID:
        assert old_key is not None
    sim.clients["carol"].leave(cid)
    sim.run_until_idle()
    for name in ("alice", "bob"):
        (k,) = keyed(sim, name, cid, 2)
        assert k.reason == "leave" and k.left == ("carol",) and set(k.members) == {"alice", "bob"}
    if mode != HYBRID:
        assert chat_of(sim, "alice", cid).key == chat_of(sim, "bob", cid).key != old_key
    sent = say(sim, "bob", cid, "after carol left")
    assert texts(sim, "alice", cid) == [("bob", "after carol left")]
    assert texts(sim, "carol", cid) == []
    if mode == HYBRID:
        assert sent.wrap_recipients == ("alice",)
        assert try_unseal_hybrid(user_keys("carol").encryption_key, sent, "bob", "aes-256-gcm") is None
    else:
        assert old_key is not None
        for epoch in (1, 2):  # her old key, whatever epoch she assumes
            assert try_unseal(old_key, dataclasses.replace(sent, epoch=epoch), "bob", "aes-256-gcm") is None
        # sanity: the current key does open it
        assert try_unseal(chat_of(sim, "alice", cid).key, sent, "bob", "aes-256-gcm") == b"after carol left"


@pytest.mark.parametrize("mode", [SECURE, XOR, HYBRID])
def test_newcomer_cannot_read_earlier_messages(mode: str) -> None:
    sim, cid = setup_chat(mode, users=("alice", "bob", "carol", "dave"))
    # dave is in the chat from the start here; use a fresh chat of three and invite him instead
    sim.clients["alice"].open_chat(["bob", "carol"], mode=mode)
    sim.run_until_idle()
    cid = sim.last_event("alice", ev.ChatOpened).chat_id
    before = say(sim, "alice", cid, "before dave")
    sim.clients["alice"].invite(cid, "dave")
    sim.run_until_idle()
    for name in ("alice", "bob", "carol", "dave"):
        (k,) = keyed(sim, name, cid, 2)
        assert k.reason == "invite"
    say(sim, "carol", cid, "welcome dave")
    assert ("carol", "welcome dave") in texts(sim, "dave", cid)
    assert ("alice", "before dave") not in texts(sim, "dave", cid)
    if mode == HYBRID:
        assert try_unseal_hybrid(user_keys("dave").encryption_key, before, "alice", "aes-256-gcm") is None
    else:
        new_key = chat_of(sim, "dave", cid).key
        assert new_key is not None
        for epoch in (1, 2):
            assert try_unseal(new_key, dataclasses.replace(before, epoch=epoch), "alice", "aes-256-gcm") is None


@pytest.mark.parametrize("mode", [SECURE, XOR, HYBRID])
def test_disconnect_rekeys(mode: str) -> None:
    sim, cid = setup_chat(mode)
    sim.disconnect("carol")
    sim.run_until_idle()
    for name in ("alice", "bob"):
        (k,) = keyed(sim, name, cid, 2)
        assert k.reason == "disconnect" and k.left == ("carol",)
    say(sim, "alice", cid, "carol dropped")
    assert texts(sim, "bob", cid) == [("alice", "carol dropped")]


@pytest.mark.parametrize("mode", [SECURE, XOR, HYBRID])
def test_cbc_hmac_suite(mode: str) -> None:
    sim, cid = setup_chat(mode, suite=CBC)
    assert keyed(sim, "bob", cid, 1)[0].suite == CBC
    sent = say(sim, "bob", cid, "cbc then hmac")
    say(sim, "alice", cid, "reply")
    assert texts(sim, "alice", cid) == [("bob", "cbc then hmac")]
    assert texts(sim, "carol", cid) == [("bob", "cbc then hmac"), ("alice", "reply")]
    if mode != HYBRID:
        key = chat_of(sim, "alice", cid).key
        assert try_unseal(key, sent, "bob", CBC) == b"cbc then hmac"
        assert try_unseal(key, sent, "bob", "aes-256-gcm") is None  # really the other suite


# --- 2. the same key everywhere, and not the XOR of shares -------------------------------------------------


@pytest.mark.parametrize("mode", [SECURE, XOR])
def test_all_members_derive_the_same_key(mode: str, mallory) -> None:  # type: ignore[no-untyped-def]
    sim, cid = setup_chat(mode)
    found = agreements_of(cid, 1)
    assert set(found) == {"alice", "bob", "carol"}
    keys = {name: a.key for name, a in found.items()}
    assert len(set(keys.values())) == 1 and None not in keys.values()
    for name in found:
        assert chat_of(sim, name, cid).key == keys[name]
        assert found[name].state is agr.AgreementState.DONE
    shares = [a.share for a in found.values()]
    assert len(set(shares)) == 3
    if mode == SECURE:
        assert keys["alice"] != xor(*shares)
    else:
        assert keys["alice"] == xor(*shares)


# --- 3. the XOR last mover (docs/THREATS.md 47) -----------------------------------------------------------------


def test_xor_last_mover_forces_the_key(mallory) -> None:  # type: ignore[no-untyped-def]
    sim, cid = mallory_chat(XOR, mallory, "last_mover")
    for name in ("alice", "bob"):
        assert keyed(sim, name, cid, 1), aborted(sim, name)
        assert chat_of(sim, name, cid).key == TARGET
    say(sim, "alice", cid, "secret")
    assert texts(sim, "bob", cid) == [("alice", "secret")]
    assert try_unseal(TARGET, sim.messages_of("alice", "send", "chat_send")[-1], "alice", "aes-256-gcm") == b"secret"


def test_last_mover_fails_in_secure_mode_by_commitment_mismatch(mallory) -> None:  # type: ignore[no-untyped-def]
    sim, cid = mallory_chat(SECURE, mallory, "last_mover")
    assert abort_codes(sim, ("alice", "bob"), cid) == {"alice": {"commitment_mismatch"},
                                                       "bob": {"commitment_mismatch"}}
    assert_no_key(sim, ("alice", "bob"), cid)


def test_committed_target_does_not_become_the_key_in_secure_mode(mallory) -> None:  # type: ignore[no-untyped-def]
    sim, cid = mallory_chat(SECURE, mallory, "commit_target")
    keys = {n: chat_of(sim, n, cid).key for n in ("alice", "bob", "mallory")}
    assert keyed(sim, "alice", cid, 1) and keyed(sim, "bob", cid, 1)
    assert len(set(keys.values())) == 1
    assert keys["alice"] != TARGET
    shares = [a.share for a in agreements_of(cid, 1).values()]
    assert keys["alice"] != xor(*shares)


# --- 4. rejections during the rounds ---------------------------------------------------------------------


def test_commitment_mismatch(mallory) -> None:  # type: ignore[no-untyped-def]
    sim, cid = mallory_chat(SECURE, mallory, "lie")
    assert abort_codes(sim, ("alice", "bob"), cid) == {"alice": {"commitment_mismatch"},
                                                       "bob": {"commitment_mismatch"}}
    assert_no_key(sim, ("alice", "bob"), cid)


def test_duplicate_share(mallory) -> None:  # type: ignore[no-untyped-def]
    mallory["echo_of"] = "alice"
    sim, cid = mallory_chat(XOR, mallory, "echo")
    codes = abort_codes(sim, ("alice", "bob"), cid)
    assert codes == {"alice": {"duplicate_share"}, "bob": {"duplicate_share"}}
    assert_no_key(sim, ("alice", "bob"), cid)


def test_stale_epoch_share_replayed_by_the_server() -> None:
    sim, cid = setup_chat(SECURE)
    old = [d for d in sim.messages_of("alice", "receive", "key_share_delivery")]
    assert old and all(d.epoch == 1 for d in old)
    sim.clients["carol"].leave(cid)
    # stop while alice's epoch-2 agreement is running, and replay an epoch-1 envelope into it (docs/THREATS.md 49)
    step_until(sim, lambda: running_agreement(sim, "alice", cid, 2) is not None)
    sim.server_push("alice", old[0])
    sim.run_until_idle()
    stale = [r for r in rejected(sim, "alice") if r.code == "stale_epoch"]
    assert stale and stale[0].chat_id == cid
    assert not aborted(sim, "alice")
    assert keyed(sim, "alice", cid, 2) and chat_of(sim, "alice", cid).key == chat_of(sim, "bob", cid).key
    # after the agreement, too
    sim.server_push("alice", old[1] if len(old) > 1 else old[0])
    sim.run_until_idle()
    assert len([r for r in rejected(sim, "alice") if r.code == "stale_epoch"]) == 2


def test_replay_same_envelope_twice() -> None:
    sim2 = make_simulation("alice", "bob", "carol", seed=4, dsa=("bob",))
    sim2.clients["alice"].open_chat(["bob", "carol"], mode=SECURE)
    def got_share() -> bool:
        return bool(sim2.messages_of("alice", "receive", "key_share_delivery"))

    step_until(sim2, got_share)
    cid2 = sim2.messages_of("alice", "receive", "key_share_delivery")[0].chat_id
    assert running_agreement(sim2, "alice", cid2, 1) is not None
    sim2.server_push("alice", sim2.messages_of("alice", "receive", "key_share_delivery")[0])
    sim2.run_until_idle()
    assert {e.code for e in aborted(sim2, "alice", cid2)} == {"replay"}
    assert_no_key(sim2, ("alice",), cid2)


def test_replay_timestamp_outside_window(mallory) -> None:  # type: ignore[no-untyped-def]
    sim, cid = mallory_chat(SECURE, mallory, "old_timestamp")
    assert abort_codes(sim, ("alice", "bob"), cid) == {"alice": {"replay"}, "bob": {"replay"}}
    assert_no_key(sim, ("alice", "bob"), cid)


@pytest.mark.parametrize("kind", ["bad_sig", "bad_commit_sig"])
def test_bad_signature(kind: str, mallory) -> None:  # type: ignore[no-untyped-def]
    sim, cid = mallory_chat(SECURE, mallory, kind)
    assert abort_codes(sim, ("alice", "bob"), cid) == {"alice": {"bad_signature"}, "bob": {"bad_signature"}}
    assert_no_key(sim, ("alice", "bob"), cid)


def test_key_unwrap_failed(mallory) -> None:  # type: ignore[no-untyped-def]
    sim, cid = mallory_chat(SECURE, mallory, "garbage")
    assert abort_codes(sim, ("alice", "bob"), cid) == {"alice": {"key_unwrap_failed"},
                                                       "bob": {"key_unwrap_failed"}}
    assert_no_key(sim, ("alice", "bob"), cid)


def test_key_confirmation_failed_equivocation_xor(mallory) -> None:  # type: ignore[no-untyped-def]
    sim, cid = mallory_chat(XOR, mallory, "equivocate")
    assert abort_codes(sim, ("alice", "bob"), cid) == {"alice": {"key_confirmation_failed"},
                                                       "bob": {"key_confirmation_failed"}}
    assert not keyed(sim, "alice", cid, 1) and not keyed(sim, "bob", cid, 1)
    # they derived different keys: the confirmation round is what stopped a split group
    found = agreements_of(cid, 1)
    assert found["alice"].key != found["bob"].key
    for name in ("alice", "bob"):
        assert chat_of(sim, name, cid).key is None, f"{name} keeps the unconfirmed key of an aborted epoch"
        with pytest.raises(LocalProtocolError):
            sim.clients[name].send_chat(cid, "must not go out")
        assert not sim.messages_of(name, "send", "chat_send")


def test_key_confirmation_failed_tampered_mac(mallory) -> None:  # type: ignore[no-untyped-def]
    sim, cid = mallory_chat(SECURE, mallory, "bad_mac")
    assert abort_codes(sim, ("alice", "bob"), cid) == {"alice": {"key_confirmation_failed"},
                                                       "bob": {"key_confirmation_failed"}}
    assert not keyed(sim, "alice", cid, 1) and not keyed(sim, "bob", cid, 1)
    for name in ("alice", "bob"):
        assert chat_of(sim, name, cid).key is None, f"{name} keeps the unconfirmed key of an aborted epoch"
        with pytest.raises(LocalProtocolError):
            sim.clients[name].send_chat(cid, "must not go out")
        assert not sim.messages_of(name, "send", "chat_send")


def test_not_member_envelope_pushed_by_the_server() -> None:
    sim = make_simulation("alice", "bob", "carol", "dave", seed=5, dsa=("bob",))
    sim.clients["alice"].open_chat(["bob", "carol"], mode=SECURE)
    step_until(sim, lambda: bool(sim.messages_of("alice", "receive", "chat_epoch")))
    cid = sim.messages_of("alice", "receive", "chat_epoch")[0].chat_id
    assert running_agreement(sim, "alice", cid, 1) is not None
    dave = user_keys("dave")
    wrapped = wrap_key(sim.clients["alice"].book.keys.encryption_key, bytes(range(32)), random_bytes=sim.random_bytes)
    nonce, stamp = b"\x01" * 16, int(sim.now)
    forged = m.KeyShareDelivery(chat_id=cid, epoch=1, sender="dave", recipient="alice", wrapped_share=wrapped,
                                nonce=nonce, timestamp=stamp, signature=sign(
                                    dave.scheme, dave.signing_key, agr.envelope_signed_bytes(
                                        cid, 1, "dave", "alice", wrapped, nonce, stamp), random_bytes=sim.random_bytes))
    sim.server_push("alice", forged)
    sim.run_until_idle()
    assert {e.code for e in aborted(sim, "alice", cid)} == {"not_member"}
    assert_no_key(sim, ("alice",), cid)


# --- 4b. the server's own checks on round messages and sends ---------------------------------------------


def last_server_error(sim, label: str) -> str:  # type: ignore[no-untyped-def]
    errors = server_errors(sim, label)
    assert errors, "no error sent"
    return errors[-1].code


@pytest.mark.parametrize("kind", ["share_commit", "key_share", "key_confirm"])
def test_server_refuses_rounds_in_a_server_key_chat(kind: str) -> None:
    sim, cid = setup_chat("server-key")
    message = {"share_commit": m.ShareCommit(chat_id=cid, epoch=1, commitment=bytes(32), signature=b"\x01" * 64),
               "key_share": m.KeyShare(chat_id=cid, epoch=1, recipient="bob", wrapped_share=b"\x02" * 256,
                                       nonce=b"\x03" * 16, timestamp=int(sim.now), signature=b"\x01" * 64),
               "key_confirm": m.KeyConfirm(chat_id=cid, epoch=1, mac=bytes(32))}[kind]
    request(sim, "alice", message)
    assert last_server_error(sim, "alice") == "unexpected_message"
    assert not sim.messages_of("bob", "receive", {"share_commit": "share_committed", "key_share":
                                                  "key_share_delivery", "key_confirm": "key_confirmed"}[kind])


def test_server_refuses_round_of_another_epoch() -> None:
    sim, cid = setup_chat(SECURE)
    request(sim, "alice", m.KeyConfirm(chat_id=cid, epoch=7, mac=bytes(32)))
    assert last_server_error(sim, "alice") == "stale_epoch"
    request(sim, "alice", m.ShareCommit(chat_id=cid, epoch=2, commitment=bytes(32), signature=b"\x01" * 64))
    assert last_server_error(sim, "alice") == "stale_epoch"


def test_server_refuses_key_share_to_non_member() -> None:
    sim, cid = setup_chat(SECURE, users=("alice", "bob", "carol", "dave"))
    sim.clients["alice"].open_chat(["bob"], mode=SECURE)
    sim.run_until_idle()
    cid = sim.last_event("alice", ev.ChatOpened).chat_id
    before = len(sim.messages_of("dave", "receive", "key_share_delivery"))
    for recipient in ("dave", "alice"):
        request(sim, "alice", m.KeyShare(chat_id=cid, epoch=1, recipient=recipient, wrapped_share=b"\x02" * 256,
                                         nonce=b"\x03" * 16, timestamp=int(sim.now), signature=b"\x01" * 64))
        assert last_server_error(sim, "alice") == "not_member"
    assert len(sim.messages_of("dave", "receive", "key_share_delivery")) == before


def test_server_checks_wraps_against_the_mode() -> None:
    sim, hybrid = setup_chat(HYBRID)
    sim.clients["alice"].open_chat(["bob", "carol"])
    sim.run_until_idle()
    server_key_chat = sim.last_event("alice", ev.ChatOpened).chat_id
    # hybrid without wraps
    request(sim, "alice", m.ChatSend(rid=0, chat_id=hybrid, epoch=1, seq=1, ciphertext=b"\x01" * 40,
                                     signature=b"\x01" * 64))
    assert last_server_error(sim, "alice") == "bad_field"
    # server-key with wraps
    request(sim, "alice", m.ChatSend(rid=0, chat_id=server_key_chat, epoch=1, seq=1, ciphertext=b"\x01" * 40,
                                     signature=b"\x01" * 64, wrap_recipients=("bob",), wraps=(b"\x02" * 256,)))
    assert last_server_error(sim, "alice") == "bad_field"
    assert not sim.messages_of("bob", "receive", "chat_message")


# --- 5. the server cannot read (contributory) -------------------------------------------------------------


def _bytes_fields(value: Any) -> list[bytes]:
    if isinstance(value, bytes):
        return [value]
    if isinstance(value, (tuple, list)):
        return [b for v in value for b in _bytes_fields(v)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [b for f in dataclasses.fields(value) for b in _bytes_fields(getattr(value, f.name))]
    return []


def test_server_cannot_read_contributory(mallory) -> None:  # type: ignore[no-untyped-def]
    sim, cid = setup_chat(SECURE)
    sim.clients["carol"].leave(cid)
    sim.run_until_idle()
    sim.clients["alice"].invite(cid, "carol")
    sim.run_until_idle()
    plaintexts = ["the server must not read this", "nor this reply", "nor carol's"]
    sent = [say(sim, "alice", cid, plaintexts[0]), say(sim, "bob", cid, plaintexts[1]),
            say(sim, "carol", cid, plaintexts[2])]
    senders = ["alice", "bob", "carol"]
    assert texts(sim, "bob", cid)[-1] == ("carol", plaintexts[2])
    epochs = {a.epoch for a in MalloryAgreement.ALL if a.chat_id == cid}
    assert epochs == {1, 2, 3}

    secrets: list[bytes] = [p.encode() for p in plaintexts]
    for a in MalloryAgreement.ALL:
        assert a.key is not None
        secrets += [a.key, a.share]
        secrets += [sender_key(a.key, chat_id=cid, epoch=a.epoch, sender=n) for n in a.members]

    # everything the server has: every frame it handled (inner and record), the wire, its registry, its key
    inner_frames = [e.data for e in sim.server_trace]
    wire = [r.data for r in sim.trace]
    # the registry as the persistent server stores it (securechat/store.py: the certificate as JSON, the scrypt record)
    registry_blob = json.dumps([{"username": r.username, "password_record": r.password_record,
                                 "certificate": r.certificate.to_dict()}
                                for r in (sim.registry.get_user(n) for n in sim.clients) if r is not None],
                               sort_keys=True).encode()
    assert registry_blob.count(b"scrypt$") == len(sim.clients)  # every member's record is in what is searched
    server_private = sim.server_key.private_key.private_bytes_raw() if hasattr(
        sim.server_key.private_key, "private_bytes_raw") else repr(sim.server_key.private_key).encode()
    blobs = inner_frames + wire + [registry_blob, server_private, sim.server_key.public_der]
    for secret in secrets:
        forms = {secret, base64.b64encode(secret), base64.b64encode(secret).rstrip(b"="),
                 base64.urlsafe_b64encode(secret).rstrip(b"="), secret.hex().encode()}
        for blob in blobs:
            for form in forms:
                assert form not in blob

    # every 32-byte value the server could extract, tried as the chat key of every epoch
    decoded = []
    for e in sim.server_trace:
        if e.layer == "inner":
            body = e.data[codec.HEADER_BYTES:] if e.data[:1] != b"{" else e.data
            decoded.append(codec.decode_message(body))
    fields = {b for msg in decoded for b in _bytes_fields(msg)}
    fields |= {b for b in _bytes_fields(list(sim.registry._users.values()))}
    fields.add(server_private)
    candidates = set()
    for value in fields:
        candidates.update(value[i:i + 32] for i in range(0, max(len(value) - 31, 1), 32) if len(value) >= 32)
        if len(value) >= 32:
            candidates.add(value[-32:])
    assert len(candidates) > 50
    for candidate in candidates:
        for msg, sender in zip(sent, senders):
            assert try_unseal(candidate, msg, sender, "aes-256-gcm") is None
    # and the real key does open them (the check above is meaningful)
    final = agreements_of(cid, 3)["alice"].key
    assert all(try_unseal(final, s, n, "aes-256-gcm") is not None for s, n in zip(sent, senders))

    # the envelopes: the server's private key unwraps none of them
    shares = [msg for msg in decoded if isinstance(msg, (m.KeyShare, m.KeyShareDelivery))]
    assert shares
    for msg in shares:
        with pytest.raises(Exception):
            unwrap_key(sim.server_key.private_key, msg.wrapped_share, expected_length=32)


# --- 6. fingerprints (docs/THREATS.md 46) ----------------------------------------------------------------------


def test_fingerprints_pinned_and_substitution_detected() -> None:
    sim, cid = setup_chat(SECURE)
    alice, bob = sim.clients["alice"], sim.clients["bob"]
    pinned = {e.username: e.fingerprint for e in sim.events_of("alice", ev.PeerKeyPinned)}
    assert set(pinned) == {"bob", "carol"}
    bob_real = sim.registry.get_user("bob").certificate
    assert pinned["bob"] == bob_real.identity_fingerprint() == alice.pins["bob"]
    assert alice.safety_number("bob") == bob.safety_number("alice")
    assert "alice" in alice.safety_number("bob") and "bob" in alice.safety_number("bob")

    # the server (also the CA) substitutes bob's keys with mallory's, in a CA-valid certificate
    mal = user_keys("mallory")
    forged = issue_certificate(
        username="bob", signature_scheme=mal.scheme, encryption_key=mal.encryption_public,
        signing_key=mal.signing_public, serial=999, now=int(sim.now), validity_seconds=3600,
        ca_private_key=sim.server_key.private_key, ca_scheme=sim.server_key.scheme, random_bytes=sim.random_bytes)
    record = sim.registry.get_user("bob")
    sim.registry._users["bob"] = UserRecord(username="bob", password_record=record.password_record,
                                            certificate=forged)

    # alice comes back on a new connection with her saved pins; dave is someone she has never met
    saved = dict(alice.pins)
    login_user(sim, "dave")
    sim.disconnect("alice")
    sim.run_until_idle()
    new = sim.add_client("alice2")
    sim.run_until_idle()
    new.pins = saved
    new.login("alice", password_of("alice"), user_keys("alice"))
    sim.run_until_idle()
    new.open_chat(["bob", "dave"], mode=SECURE)
    sim.run_until_idle()
    cid2 = sim.last_event("alice2", ev.ChatOpened).chat_id
    (changed,) = [e for e in sim.events_of("alice2", ev.PeerKeyChanged) if e.username == "bob"]
    assert changed.code == "key_changed"
    assert changed.pinned == pinned["bob"] and changed.seen == forged.identity_fingerprint() != pinned["bob"]
    assert new.pins["bob"] == pinned["bob"]
    assert "bob" not in new.book.certificates
    assert [e.username for e in sim.events_of("alice2", ev.PeerKeyPinned)] == ["dave"]
    # no envelope to the substituted identity, no key, and nothing accepted from it
    assert not [k for k in sim.messages_of("alice2", "send", "key_share") if k.recipient == "bob"]
    assert not keyed(sim, "alice2", cid2)
    sim.clients["bob"].open_chat(["alice"], mode=HYBRID)
    sim.run_until_idle()
    hybrid_id = sim.last_event("bob", ev.ChatOpened).chat_id
    # bob (with the real keys) cannot seal to alice without her cert: he has it from before; he sends
    sim.clients["bob"].send_chat(hybrid_id, "from the real bob")
    sim.run_until_idle()
    assert not [e for e in sim.events_of("alice2", ev.ChatReceived) if e.sender == "bob"]

    # the user compared fingerprints and accepts: the new key is pinned
    new.accept_key_change("bob", changed.seen)
    sim.run_until_idle()
    assert new.pins["bob"] == forged.identity_fingerprint()
    assert ("bob", forged.identity_fingerprint()) in [(e.username, e.fingerprint)
                                                      for e in sim.events_of("alice2", ev.PeerKeyPinned)]
    assert new.book.certificates["bob"][0].identity_fingerprint() == forged.identity_fingerprint()


def test_safety_number_is_symmetric_for_every_pair() -> None:
    sim, cid = setup_chat(HYBRID)
    names = ("alice", "bob", "carol")
    for a in names:
        for b in names:
            if a != b:
                assert sim.clients[a].safety_number(b) == sim.clients[b].safety_number(a)
    with pytest.raises(LocalProtocolError):
        sim.clients["alice"].safety_number("zed")


# --- 7. an offline member (PROTOCOL.md 7.6 mailboxes) -------------------------------------------------------------


def test_offline_invitee_accepts_at_login_and_joins_the_agreement() -> None:
    """PROTOCOL.md 7.11: an offline invitee is not a member (it takes no slot and holds up no round); its
    invitation waits for its login, and accepting starts a new epoch that all three agree on."""
    sim = make_simulation("alice", "bob", seed=7, dsa=("bob",))
    carol = register_only(sim, "carol")
    sim.clients["alice"].open_chat(["bob", "carol"], mode=SECURE)
    sim.run_until_idle()
    opened = sim.last_event("alice", ev.ChatOpened)
    cid = opened.chat_id
    assert set(opened.members) == {"alice", "bob"} and opened.offline == ("carol",) and opened.pending == ("carol",)
    assert keyed(sim, "alice", cid, 1) and keyed(sim, "bob", cid, 1)  # nobody waits for carol
    assert not sim.server.mailboxes.get("carol")
    carol.login("carol", password_of("carol"), user_keys("carol"))
    sim.run_until_idle()
    invitation = sim.last_event("carol", ev.InvitationReceived)
    assert (invitation.chat_id, invitation.inviter, invitation.mode) == (cid, "alice", SECURE)
    for name in ("alice", "bob", "carol"):
        assert keyed(sim, name, cid, 2), (name, aborted(sim, name))
    assert keyed(sim, "bob", cid, 2)[0].joined == ("carol",)
    assert chat_of(sim, "alice", cid).key == chat_of(sim, "bob", cid).key == chat_of(sim, "carol", cid).key
    say(sim, "carol", cid, "I was offline")
    say(sim, "bob", cid, "welcome")
    assert texts(sim, "alice", cid) == [("carol", "I was offline"), ("bob", "welcome")]
    assert texts(sim, "carol", cid) == [("bob", "welcome")]


# --- 8. the lobby -------------------------------------------------------------------------------------------


def test_lobby() -> None:
    sim = make_simulation("alice", "bob", "carol", seed=8, dsa=("bob",), lobby=True)
    lobby = m.LOBBY_ID
    for name in ("alice", "bob", "carol"):
        chat = chat_of(sim, name, lobby)
        assert chat.mode == HYBRID and set(chat.members) == {"alice", "bob", "carol"}
    say(sim, "alice", lobby, "hello lobby")
    assert texts(sim, "bob", lobby) == [("alice", "hello lobby")]
    assert texts(sim, "carol", lobby) == [("alice", "hello lobby")]
    assert texts(sim, "alice", lobby) == []
    epoch = chat_of(sim, "alice", lobby).epoch
    sim.clients["carol"].logout()
    sim.run_until_idle()
    for name in ("alice", "bob"):
        chat = chat_of(sim, name, lobby)
        assert chat.epoch == epoch + 1 and set(chat.members) == {"alice", "bob"}
    sent = say(sim, "bob", lobby, "carol is gone")
    assert sent.wrap_recipients == ("alice",)
    assert texts(sim, "alice", lobby) == [("bob", "carol is gone")]
    # invite and leave are refused by the server
    rid = sim.clients["alice"].invite(lobby, "carol")
    sim.run_until_idle()
    failed = sim.last_event("alice", ev.RequestFailed)
    assert failed.rid == rid and failed.code == "unexpected_message"
    rid = sim.clients["alice"].leave(lobby)
    sim.run_until_idle()
    failed = sim.last_event("alice", ev.RequestFailed)
    assert failed.rid == rid and failed.code == "unexpected_message"
    assert set(chat_of(sim, "alice", lobby).members) == {"alice", "bob"}
    say(sim, "alice", lobby, "still here")
    assert texts(sim, "bob", lobby)[-1] == ("alice", "still here")
