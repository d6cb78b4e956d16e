"""docs/THREATS.md C17-C26: registration and authentication, against a live server."""

from __future__ import annotations

import os
import socket
import statistics
import time

import pytest

from securechat.crypto.encoding import b64e
from securechat.errors import ErrorCode
from securechat.protocol import events as ev
from securechat.protocol.codec import frame

from .conftest import PASSWORD, RawConn, count, fresh_name, online_client, sanity

pytestmark = [pytest.mark.tcp, pytest.mark.usefixtures("sane_before_and_after")]  # a live server

E = ErrorCode


def registered(server, keys, name=None):
    name = name or fresh_name("c")
    conn = RawConn(server)
    try:
        assert isinstance(conn.register(name, keys), ev.RegistrationSucceeded)
    finally:
        conn.close()
    return name


def login_error(conn, name, keys, password=PASSWORD):
    result = conn.login(name, keys, password)
    assert isinstance(result, ev.RequestFailed), result
    return result


def test_c17_wrong_password_and_unknown_user_look_the_same(make_server, keys):
    srv = make_server(failures_before_backoff=10_000, address_failures_allowed=10_000, max_refusals_before_login=10_000)
    name = registered(srv, keys)
    conn = RawConn(srv)
    try:
        times = {"wrong": [], "unknown": []}
        replies = set()
        for i in range(40):
            for kind in ("wrong", "unknown"):
                started = time.perf_counter()
                failure = login_error(conn, name if kind == "wrong" else fresh_name("nobody"), keys,
                                      "wrong password" if kind == "wrong" else PASSWORD)
                times[kind].append(time.perf_counter() - started)
                replies.add((failure.code, failure.message, failure.ref))
        count("C", 80)
        assert replies == {(E.AUTH_FAILED.value, "login failed", "login")}
        diff = abs(statistics.median(times["wrong"]) - statistics.median(times["unknown"]))
        assert diff < 0.5 * max(statistics.median(times["wrong"]), statistics.median(times["unknown"])) + 0.002
        assert isinstance(conn.login(name, keys), ev.LoggedIn)  # connection kept throughout
    finally:
        conn.close()
    sanity(srv, keys)


def test_c18_online_brute_force_is_throttled_but_real_user_gets_in(make_server, keys):
    srv = make_server()
    name = registered(srv, keys)
    attacker = RawConn(srv)
    try:
        codes = []
        for _ in range(8):
            count("C")
            codes.append(login_error(attacker, name, keys, "guess").code)
        assert codes[:3] == [E.AUTH_FAILED.value] * 3
        assert E.RATE_LIMITED.value in codes[3:]
        # the real user, from another address, is not locked out (backoff is per account AND address)
        sock = socket.create_connection(srv.address, timeout=5, source_address=("127.0.0.2", 0))
        real = RawConn.__new__(RawConn)
        RawConn.__init__(real, srv, handshake=False)
        real.sock.close()
        real.sock = sock
        real.handshake()
        try:
            assert isinstance(real.login(name, keys), ev.LoggedIn)
        finally:
            real.close()
    finally:
        attacker.close()
    sanity(srv, keys)


def test_c19_stolen_password_without_private_key(server, key_pool):
    name = registered(server, key_pool[0])
    observer = online_client(server, key_pool[1])
    conn = RawConn(server)
    try:
        count("C")
        failure = login_error(conn, name, key_pool[2])  # right password, someone else's signing key
        assert failure.code == E.AUTH_FAILED.value
        assert name not in server.protocol.online
        assert name not in observer.who()
        time.sleep(0.2)
        pushes = []
        while not observer.events.empty():
            pushes.append(observer.events.get_nowait())
        assert not [e for e in pushes if isinstance(e, ev.PresenceChanged) and e.username == name]
    finally:
        conn.close()
        observer.close()


def test_c20_private_key_held_password_wrong(server, keys):
    name = registered(server, keys)
    conn = RawConn(server)
    try:
        count("C")
        assert login_error(conn, name, keys, "not the password").code == E.AUTH_FAILED.value
        assert name not in server.protocol.online
    finally:
        conn.close()


def test_c21_replayed_login_record_on_new_connection(server, keys):
    name = registered(server, keys)
    first = RawConn(server)
    first.cp.login(name, PASSWORD, keys)
    captured = first.cp.data_to_send()  # the encrypted login record, as an eavesdropper captures it
    first.close()
    second = RawConn(server)
    try:
        count("C")
        second.send_raw(captured)
        second.expect_error(E.BAD_RECORD, closed=True)
        assert name not in server.protocol.online
    finally:
        second.close()


def _login_with_foreign_signature(server, name, keys):
    """The login signature made on one channel, presented (correctly encrypted) on another."""
    victim = RawConn(server)
    victim.cp.login(name, PASSWORD, keys)
    signature = victim.cp.link.inner[-1]  # the inner login frame the victim's client built
    victim.close()
    attacker = RawConn(server)
    attacker.send_inner(signature[4:])
    return attacker


def test_c21_replayed_challenge_response_fails(server, keys):
    name = registered(server, keys)
    attacker = _login_with_foreign_signature(server, name, keys)
    try:
        count("C")
        assert attacker.expect_error(E.AUTH_FAILED, closed=False)["ref"] == "login"
        assert name not in server.protocol.online
    finally:
        attacker.close()


def test_c22_challenge_relay_is_bound_to_the_victims_channel(server, keys):
    # A phishing relay holds its own channel to the server and forwards the victim's password and login
    # signature; the signature covers the victim's transcript, so the server refuses it.
    name = registered(server, keys)
    victim_side = RawConn(server)
    victim_side.cp.login(name, PASSWORD, keys)
    relayed = victim_side.cp.link.inner[-1]
    victim_side.close()
    relay = RawConn(server)
    try:
        count("C")
        relay.send_inner(relayed[4:])
        relay.expect_error(E.AUTH_FAILED, closed=False)
    finally:
        relay.close()


def test_c23_impersonation_claims_are_ignored(server, key_pool):
    bob = registered(server, key_pool[1])
    mallory = RawConn(server)
    try:
        mallory.register_and_login(fresh_name("mallory"), key_pool[0])
        count("C", 3)
        mallory.send_obj({"type": "chat_send", "chat_id": "c1", "epoch": 1, "seq": 1, "ciphertext": "AAAA",
                          "signature": "AAAA", "sender": bob})
        mallory.expect_error(E.BAD_FIELD, closed=False)
        mallory.send_obj({"type": "presence", "username": bob, "online": True})
        mallory.expect_error(E.UNEXPECTED_MESSAGE, closed=False)
        mallory.send_obj({"type": "status", "rid": 9, "username": bob})
        assert mallory.expect("status_result", rid=9)["online"] is False
        assert bob not in server.protocol.online
    finally:
        mallory.close()


def _register_obj(name, keys, scheme=None):
    return {"type": "register", "rid": 1, "username": name, "password": PASSWORD,
            "signature_scheme": scheme or keys.scheme.value, "encryption_key": b64e(keys.encryption_public),
            "signing_key": b64e(keys.signing_public)}


@pytest.mark.parametrize("variant,code", [
    ("{}", E.NAME_TAKEN), ("{}".upper(), E.NAME_TAKEN), ("\uff41{}", E.NAME_TAKEN),
    ("{}\u200b", E.BAD_FIELD), ("\u0430{}", E.BAD_FIELD), (" {}", E.BAD_FIELD), ("{}\u0301", E.BAD_FIELD),
])
def test_c24_duplicate_or_confusable_name(server, keys, variant, code):
    base = fresh_name("dup")
    registered(server, keys, base)
    name = variant.format(base) if "\uff41" not in variant else variant.format(base[1:]).replace("\uff41", "\uff44")
    conn = RawConn(server)
    try:
        count("C")
        conn.send_obj(_register_obj(name, keys))
        conn.expect_error(code, closed=False)
        assert isinstance(conn.login(base, keys), ev.LoggedIn)  # the original account is unchanged
    finally:
        conn.close()


def test_c25_key_substitution_at_registration(server, key_pool):
    alice_keys = key_pool[1]
    registered(server, alice_keys)
    thief = fresh_name("thief")
    conn = RawConn(server)
    try:
        count("C")
        conn.send_obj(_register_obj(thief, alice_keys))  # alice's public keys, copied from her certificate
        conn.expect("register_challenge", rid=1)  # wrapped to alice's key: the thief cannot open it
        conn.send_obj({"type": "register_proof", "rid": 1, "nonce": b64e(os.urandom(32)),
                       "signature": b64e(os.urandom(64))})
        conn.expect_error(E.AUTH_FAILED, closed=False)
        assert server.protocol.registry.get_user(thief) is None
    finally:
        conn.close()


@pytest.mark.parametrize("case", ["none", "pkcs1v15", "rsa_for_ed25519", "dsa_for_rsa"])
def test_c26_signature_algorithm_downgrade(server, key_pool, case):
    ed, rsa = key_pool[0], key_pool[3]
    obj = {
        "none": _register_obj(fresh_name("g"), ed, "none"),
        "pkcs1v15": _register_obj(fresh_name("g"), rsa, "rsa-pkcs1v15-sha256"),
        "rsa_for_ed25519": _register_obj(fresh_name("g"), ed, "rsa-pss-sha256"),
        "dsa_for_rsa": _register_obj(fresh_name("g"), rsa, "dsa-2048-sha256"),
    }[case]
    conn = RawConn(server)
    try:
        count("C")
        conn.send_obj(obj)
        conn.expect_error(E.BAD_FIELD, closed=False)
        assert server.protocol.registry.get_user(obj["username"]) is None
    finally:
        conn.close()


def test_c26_login_cannot_name_an_algorithm(server, keys):
    conn = RawConn(server)
    try:
        count("C")
        conn.send_obj({"type": "login", "username": "alice", "password": "x", "signature": "AAAA", "alg": "none"})
        conn.expect_error(E.BAD_FIELD, closed=False)
    finally:
        conn.close()
