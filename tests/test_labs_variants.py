"""Lab variants (PROTOCOL.md 16): refused outside an explicit lab mode, and each instructor attack
(securechat.labs.attacks) succeeds against its weakened variant and fails against the default, over real
sockets on 127.0.0.1 port 0. Every server and client is stopped in a finally or fixture teardown."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from securechat.crypto.kdf import FAST_SCRYPT
from securechat.crypto.signatures import SignatureScheme, verify
from securechat.crypto.keys import load_public_key
from securechat.errors import LocalProtocolError
from securechat.labs import attacks
from securechat.net.tcp_client import TcpClient
from securechat.net.tcp_server import TcpServer
from securechat.protocol import events as ev
from securechat.protocol.client import ClientProtocol
from securechat.protocol.constructions import chat_header, chat_signed_bytes
from securechat.protocol.lab import LAB_ACKNOWLEDGEMENT, LabMode, LabVariant, parse_variants
from securechat.protocol.limits import ServerConfig
from securechat.store import MemoryRegistry, new_server_key
from tests.helpers import DSA, user_keys
from tests.live import User, start_server

def server_lab(*names: str) -> LabMode:
    return LabMode(parse_variants(names), "server", LAB_ACKNOWLEDGEMENT)


def client_lab(*names: str) -> LabMode:
    return LabMode(parse_variants(names), "client", LAB_ACKNOWLEDGEMENT)


@contextmanager
def running_server(lab: LabMode | None = None) -> Iterator[TcpServer]:
    srv = start_server(lab=lab)
    try:
        yield srv
    finally:
        srv.stop()


def lab_user(srv: TcpServer, name: str, *, scheme: SignatureScheme | None = None, lab: LabMode | None = None,
         trace: list[ev.TraceEntry] | None = None) -> User:
    """A live user with the session's cached keys of *name*, in *lab* mode, tracing into *trace* if given."""
    return User(srv, name, user_keys(name, scheme), lab=lab, trace=None if trace is None else trace.append)


# --- refused outside lab mode -----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", [v.value for v in LabVariant])
def test_every_variant_is_refused_without_the_acknowledgement(variant):
    with pytest.raises(LocalProtocolError, match="explicit lab mode"):
        LabMode(parse_variants([variant]), "server")
    with pytest.raises(LocalProtocolError, match="explicit lab mode"):
        LabMode(parse_variants([variant]), "client", acknowledge="yes")


def test_lab_mode_refuses_unknown_names_empty_sets_and_the_wrong_side():
    with pytest.raises(LocalProtocolError, match="unknown lab variant 'no-crypto'"):
        parse_variants(["no-crypto"])
    with pytest.raises(LocalProtocolError, match="at least one"):
        LabMode(frozenset(), "server", LAB_ACKNOWLEDGEMENT)
    with pytest.raises(LocalProtocolError, match="does not apply to the server"):
        server_lab("dsa-nonce-reuse")
    with pytest.raises(LocalProtocolError, match="does not apply to the client"):
        client_lab("no-rekey-on-leave")
    with pytest.raises(ValueError, match="server LabMode"):
        ServerConfig(lab=client_lab("unbound-login"))
    with pytest.raises(LocalProtocolError, match="client LabMode"):
        ClientProtocol(lab=server_lab("unbound-login"))
    with pytest.raises(LocalProtocolError, match="client LabMode"):
        ClientProtocol(lab="dsa-nonce-reuse")  # type: ignore[arg-type]
    assert ServerConfig().lab is None and ClientProtocol().lab is None  # the defaults weaken nothing


@pytest.mark.tcp
def test_dsa_nonce_reuse_needs_a_dsa_key():
    with running_server() as srv:
        user = lab_user(srv, "rsa-user", lab=client_lab("dsa-nonce-reuse"))
        try:
            user.client.register(user.name, "pw", user.keys)
            with pytest.raises(LocalProtocolError, match="needs a dsa-2048-sha256"):
                user.client.login(user.name, "pw", user.keys)
        finally:
            user.client.close()


# --- dsa-nonce-reuse: key recovery and forgery ------------------------------------------------------------


def _dsa_attack(alice_lab: LabMode | None) -> bytes:
    """Bob records two of alice's chat messages, recovers her key and forges a chat signature as her."""
    trace: list[ev.TraceEntry] = []
    with running_server() as srv:
        alice = lab_user(srv, "dsa-alice", scheme=DSA, lab=alice_lab).join()
        bob = lab_user(srv, "bob", trace=trace).join()
        try:
            chat = alice.client.open_chat(["bob"]).chat_id
            bob.client.wait_for_key(chat, 1)
            alice.client.wait_for_key(chat, 1)
            alice.client.send(chat, "first")
            alice.client.send(chat, "second")
            bob.expect(ev.ChatReceived, lambda e: e.text == "second")
            first, second = attacks.signatures_from_trace(trace, "dsa-alice")[:2]
            signed = [chat_signed_bytes(chat_header(chat_id=chat, epoch=x.epoch, sender=x.sender, seq=x.seq,
                                                    suite="aes-256-gcm"), x.ciphertext) for x in (first, second)]
            public = alice.keys.signing_public
            x = attacks.recover_dsa_key(public, (signed[0], first.signature), (signed[1], second.signature))
            forged_data = chat_signed_bytes(chat_header(chat_id=chat, epoch=1, sender="dsa-alice", seq=99,
                                                        suite="aes-256-gcm"), b"forged ciphertext")
            forged = attacks.forge_dsa_signature(public, x, forged_data)
            verify(DSA, load_public_key(public), forged_data, forged)  # bob's client would accept it
            return forged
        finally:
            alice.client.close()
            bob.client.close()


@pytest.mark.tcp
def test_dsa_nonce_reuse_gives_away_the_key_and_a_forgery_verifies():
    assert _dsa_attack(client_lab("dsa-nonce-reuse"))


@pytest.mark.tcp
def test_dsa_attack_fails_against_the_default_client():
    with pytest.raises(attacks.AttackFailed, match="different nonces"):
        _dsa_attack(None)


# --- unbound-login and unpinned-client: a rogue server captures the login --------------------------------


def _victim_logs_into(catcher: attacks.LoginCatcher, real: TcpServer, lab: LabMode | None,
                      *, pinned_real: bool) -> None:
    """The victim, registered on *real*, logs into the attacker's server (a rogue server)."""
    keys = user_keys("victim")
    key = real.protocol.server_key if pinned_real else catcher.server.protocol.server_key
    client = TcpClient(*catcher.server.address, server_key=(key.public_der, key.scheme.value), lab=lab)
    # a key was pinned: even the unpinned-client variant does not invite the driver to re-pin the rogue key
    assert client.handshake is not None and client.handshake.first_use is False
    try:
        with pytest.raises(Exception):  # the victim has no account on the rogue server: its login fails there
            client.login("victim", "pw-victim", keys)
    finally:
        client.close()


def _register(srv: TcpServer, name: str) -> None:
    key = srv.protocol.server_key
    client = TcpClient(*srv.address, server_key=(key.public_der, key.scheme.value))
    try:
        client.register(name, "pw-" + name, user_keys(name))
    finally:
        client.close()


def _relay_attack(server_variant: LabMode | None, client_variant: LabMode | None) -> str:
    with running_server(server_variant) as real:
        _register(real, "victim")
        registry = MemoryRegistry()
        with attacks.login_catcher(registry, new_server_key(), ServerConfig(scrypt=FAST_SCRYPT)) as catcher:
            _victim_logs_into(catcher, real, client_variant, pinned_real=False)
            captured = catcher.captured()
        assert [c.username for c in captured] == ["victim"] and captured[0].password == "pw-victim"
        key = real.protocol.server_key
        return attacks.replay_login(*real.address, captured[0], server_key=(key.public_der, key.scheme.value))


@pytest.mark.tcp
def test_unbound_login_proof_replays_on_the_real_server():
    assert _relay_attack(server_lab("unbound-login"), client_lab("unbound-login")) == "victim"


@pytest.mark.tcp
def test_login_relay_fails_against_the_default_server():
    with pytest.raises(attacks.AttackFailed, match="login failed"):
        _relay_attack(None, None)


@pytest.mark.tcp
def test_unpinned_client_logs_into_a_rogue_server_and_the_default_does_not():
    with running_server() as real:
        with attacks.login_catcher(MemoryRegistry(), new_server_key(), ServerConfig(scrypt=FAST_SCRYPT)) as catcher:
            _victim_logs_into(catcher, real, client_lab("unpinned-client"), pinned_real=True)
            assert [(c.username, c.password) for c in catcher.captured()] == [("victim", "pw-victim")]
            key = real.protocol.server_key
            with pytest.raises(Exception, match="pinned"):  # the default client stops at the handshake
                TcpClient(*catcher.server.address, server_key=(key.public_der, key.scheme.value), timeout=5.0)
            assert len(catcher.captured()) == 1


# --- no-rekey-on-leave: the leaver's kept key reads what is said after it left ---------------------------


def _leaver_attack(lab: LabMode | None) -> str:
    archive: list[ev.TraceEntry] = []  # bob's received frames: the encrypted archive that leaked
    with running_server(lab) as srv:
        alice = lab_user(srv, "alice").join()
        bob = lab_user(srv, "bob", trace=archive).join()
        eve = lab_user(srv, "eve").join()
        try:
            chat = alice.client.open_chat(["bob", "eve"]).chat_id
            for user in (alice, bob, eve):
                user.client.wait_for_key(chat, 1)
            kept = attacks.keep_key(eve.client.protocol, chat)
            eve.client.leave(chat)
            epoch = 1 if lab is not None else 2  # the default rekeys on leave; the variant keeps epoch 1
            for user in (alice, bob):
                user.client.wait_for_key(chat, epoch)
            alice.client.send(chat, "said after eve left")
            assert bob.expect(ev.ChatReceived).text == "said after eve left"  # the chat still works
            message = attacks.signatures_from_trace(archive, "alice")[-1]
            return attacks.read_after_leave(kept, message)
        finally:
            for user in (alice, bob, eve):
                user.client.close()


@pytest.mark.tcp
def test_no_rekey_on_leave_lets_the_leaver_read_later_messages():
    assert _leaver_attack(server_lab("no-rekey-on-leave")) == "said after eve left"


@pytest.mark.tcp
def test_leaver_attack_fails_against_the_default_server():
    with pytest.raises(attacks.AttackFailed, match="rekeyed"):
        _leaver_attack(None)


def test_cli_lab_options_are_explicit_and_loud(capsys):
    import logging

    from securechat.labs.variants import announce, lab_mode
    from securechat.server import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["--lab", "no-crypto"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--lab", "dsa-nonce-reuse"])  # a client variant is not a server option
    assert build_parser().parse_args([]).lab == [] and lab_mode([], "server") is None
    lab = lab_mode(["no-rekey-on-leave", "unbound-login"], "server")
    assert lab is not None and lab.variants == {LabVariant.NO_REKEY_ON_LEAVE, LabVariant.UNBOUND_LOGIN}
    announce(lab, logging.getLogger("test"))
    out = capsys.readouterr().out
    assert "LAB MODE (INSECURE): no-rekey-on-leave, unbound-login" in out and "Never use it for real chats" in out


# --- no-key-commitment: the client's switch, wired to the chat book --------------------------------------


@pytest.mark.tcp
def test_no_key_commitment_is_a_lab_variant_and_reaches_the_chat_book():
    with pytest.raises(LocalProtocolError, match="no-key-commitment lab variant"):
        ClientProtocol(verify_key_commitment=False)  # the weak option alone is refused
    assert ClientProtocol().verify_key_commitment is True
    with running_server() as srv:
        weak = lab_user(srv, "weak-bob", lab=client_lab("no-key-commitment")).join()
        strict = lab_user(srv, "strict-carol").join()
        try:
            assert weak.client.protocol.book is not None and strict.client.protocol.book is not None
            # the salamander attack on this switch is tests/test_hybrid_commitment.py (a book without the check
            # accepts one ciphertext read two ways; with it, the member is warned)
            assert weak.client.protocol.book.verify_key_commitment is False
            assert strict.client.protocol.book.verify_key_commitment is True
        finally:
            weak.client.close()
            strict.client.close()
