"""ServerProtocol, one test per rule and per error code the server sends (docs/THREATS.md sections A-E).

tlsfuzzer pattern: every malformed or forbidden conversation expects one exact ErrorCode (the client's
RequestFailed, the server's ErrorSent, or the client's ConnectionClosed for fatal ones), then checks that no
state changed and that the server still serves a logged-in "sanity" client (``assert_serves``).
"""

from __future__ import annotations

import struct

import pytest

from securechat.crypto.certificates import CLOCK_SKEW_SECONDS
from securechat.crypto.signatures import sign
from securechat.errors import ErrorCode
from securechat.protocol import codec
from securechat.protocol import events as ev
from securechat.protocol import messages as m
from securechat.protocol.constructions import login_proof_bytes
from securechat.protocol.server import ServerProtocol
from securechat.protocol.states import ClientState, PeerState
from securechat.simulation import SERVER
from tests.helpers import (
    Pair,
    assert_serves,
    connect,
    failures,
    is_closed,
    last_failure,
    make_pair,
    make_simulation,
    open_chat,
    password_of,
    peer_of,
    presence_of,
    register_only,
    relogin,
    request,
    send_inner_bodies,
    send_record_plaintext,
    server_errors,
    substituted_keys,
    user_keys,
)

A = ErrorCode


def error_sent(sim, label: str) -> ev.ErrorSent:  # type: ignore[no-untyped-def]
    errors = server_errors(sim, label)
    assert errors, f"no ErrorSent for {label}"
    return errors[-1]


def closed_with(sim, label: str) -> str | None:  # type: ignore[no-untyped-def]
    return sim.last_event(label, ev.ConnectionClosed).code


def online(sim) -> set[str]:  # type: ignore[no-untyped-def]
    return set(sim.server.online)


# =============================================================================================================
# C. Registration and authentication
# =============================================================================================================


def test_wrong_password_and_unknown_user_get_the_same_auth_failed() -> None:
    sim = make_simulation("alice")
    register_only(sim, "b1", "bob")
    bob = sim.clients["b1"]
    bob.login("bob", "not bob's password", user_keys("bob"))
    sim.run_until_idle()
    wrong = last_failure(sim, "b1")
    stranger = connect(sim, "s1")
    stranger.login("nobody", "whatever", user_keys("mallory"))
    sim.run_until_idle()
    unknown = last_failure(sim, "s1")
    assert wrong.code == unknown.code == A.AUTH_FAILED
    assert wrong.message == unknown.message and wrong.ref == unknown.ref == "login"  # docs/THREATS.md 17
    assert bob.state is stranger.state is ClientState.CONNECTED  # the connections stay open
    assert online(sim) == {"alice"} and presence_of(sim, "alice", "bob") == []
    assert_serves(sim, "alice")


def test_stolen_password_without_the_private_key_is_auth_failed() -> None:
    sim = make_simulation("alice")
    register_only(sim, "b1", "bob")
    thief = connect(sim, "thief")
    thief.login("bob", password_of("bob"), user_keys("mallory"))  # right password, wrong key
    sim.run_until_idle()
    assert last_failure(sim, "thief").code == A.AUTH_FAILED
    assert "bob" not in online(sim) and presence_of(sim, "alice", "bob") == []  # docs/THREATS.md 19
    assert not sim.events_of("thief", ev.LoggedIn)
    assert_serves(sim, "alice")


def test_private_key_with_wrong_password_is_auth_failed() -> None:
    sim = make_simulation("alice")
    register_only(sim, "b1", "bob")
    sim.clients["b1"].login("bob", "guess", user_keys("bob"))
    sim.run_until_idle()
    assert last_failure(sim, "b1").code == A.AUTH_FAILED and "bob" not in online(sim)
    assert_serves(sim, "alice")


def test_login_proof_for_another_channel_is_auth_failed() -> None:
    """docs/THREATS.md 22: a phishing server relays the real challenge; the proof binds the victim's transcript."""
    sim = make_simulation("alice")
    register_only(sim, "b1", "bob")
    victim_side = connect(sim, "victim")      # the channel the victim's proof was made for
    attacker = connect(sim, "relay")          # the attacker's own channel to the real server
    assert victim_side.transcript != attacker.transcript
    keys = user_keys("bob")
    relayed = sign(keys.scheme, keys.signing_key, login_proof_bytes(victim_side.transcript, "bob"))
    rid = request(sim, "relay", m.Login(username="bob", password=password_of("bob"), signature=relayed))
    failure = last_failure(sim, "relay")
    assert (failure.rid, failure.code) == (rid, A.AUTH_FAILED)
    assert "bob" not in online(sim) and presence_of(sim, "alice", "bob") == []
    # control: the same connection with a proof over its own transcript is accepted
    attacker.link.state = ClientState.CONNECTED
    attacker.login("bob", password_of("bob"), keys)
    sim.run_until_idle()
    assert sim.last_event("relay", ev.LoggedIn).username == "bob"
    assert_serves(sim, "alice")


def test_replayed_login_proof_on_a_new_connection_is_auth_failed() -> None:
    """docs/THREATS.md 21: a captured login (password and proof) replayed inside a fresh channel."""
    sim = make_simulation("alice")
    register_only(sim, "b1", "bob")
    first = relogin(sim, "first", "bob")
    assert first.state is ClientState.ONLINE
    captured = next(e for e in sim.client_trace["first"] if e.layer == "inner" and e.type == "login")
    login = codec.decode_message(captured.data[4:])
    first.logout()
    sim.run_until_idle()
    replay = connect(sim, "replay")
    request(sim, "replay", login)
    assert last_failure(sim, "replay").code == A.AUTH_FAILED and "bob" not in online(sim)
    assert_serves(sim, "alice")


def test_repeated_failures_back_off_per_account_and_address() -> None:
    """docs/THREATS.md 18: throttling, not lockout: the same account from another address still gets in."""
    sim = make_simulation("alice")
    register_only(sim, "b1", "bob")
    guesser = connect(sim, "guesser")
    codes = []
    for attempt in range(5):
        guesser.login("bob", f"guess {attempt}", user_keys("bob"))
        sim.run_until_idle()
        codes.append(last_failure(sim, "guesser").code)
    assert codes == [A.AUTH_FAILED] * 3 + [A.RATE_LIMITED] * 2
    # the right password from the throttled address is refused too, before any scrypt work
    jobs_before = sum(isinstance(e, ev.UserLoggedIn) for e in sim.server_events)
    guesser.login("bob", password_of("bob"), user_keys("bob"))
    sim.run_until_idle()
    assert last_failure(sim, "guesser").code == A.RATE_LIMITED
    assert sum(isinstance(e, ev.UserLoggedIn) for e in sim.server_events) == jobs_before
    # the real bob, from another address, logs in at once
    real = relogin(sim, "real", "bob")
    assert real.state is ClientState.ONLINE and presence_of(sim, "alice", "bob") == [True]
    assert_serves(sim, "alice")


def test_backoff_expires() -> None:
    sim = make_simulation("alice")
    register_only(sim, "b1", "bob")
    client = sim.clients["b1"]
    for attempt in range(4):
        client.login("bob", f"guess {attempt}", user_keys("bob"))
        sim.run_until_idle()
    assert last_failure(sim, "b1").code == A.RATE_LIMITED
    sim.advance(1.5)
    client.login("bob", password_of("bob"), user_keys("bob"))
    sim.run_until_idle()
    assert client.state is ClientState.ONLINE


def test_failures_from_one_address_across_accounts_are_rate_limited() -> None:
    sim = make_simulation("alice", address_failures_allowed=2)
    register_only(sim, "b1", "bob")
    sprayer = connect(sim, "sprayer")
    codes = []
    for name in ["bob", "carol", "dave"]:
        sprayer.login(name, "password1", user_keys("mallory"))
        sim.run_until_idle()
        codes.append(last_failure(sim, "sprayer").code)
    assert codes == [A.AUTH_FAILED, A.AUTH_FAILED, A.RATE_LIMITED]
    assert relogin(sim, "real", "bob").state is ClientState.ONLINE
    assert_serves(sim, "alice")


@pytest.mark.parametrize("taken", ["alice", "Alice", "ALICE", "\uff41\uff4c\uff49\uff43\uff45"])
def test_registering_a_taken_name_is_name_taken(taken: str) -> None:
    sim = make_simulation("alice")
    before = sim.registry.get_user("alice")
    copycat = connect(sim, "copycat")
    copycat.register(taken, "pw", user_keys("mallory"))
    sim.run_until_idle()
    failure = last_failure(sim, "copycat")
    assert (failure.code, failure.ref) == (A.NAME_TAKEN, "register")
    assert copycat.state is ClientState.CONNECTED and not is_closed(sim, "copycat")
    assert sim.registry.get_user("alice") == before and sim.registry.count_users() == 1
    assert_serves(sim, "alice")


def test_register_then_login_on_the_same_connection() -> None:
    sim = make_simulation()
    client = register_only(sim, "dave")
    assert client.state is ClientState.CONNECTED and sim.registry.count_users() == 1  # registering never logs in
    client.login("dave", password_of("dave"), user_keys("dave"))
    sim.run_until_idle()
    assert client.state is ClientState.ONLINE and online(sim) == {"dave"}


def test_registration_with_copied_public_keys_issues_no_certificate() -> None:
    """docs/THREATS.md 25: mallory announces alice's public keys; she cannot open the OAEP nonce."""
    sim = make_simulation("alice")
    forged = substituted_keys(user_keys("alice"), user_keys("mallory"), encryption=True, signing=True)
    mallory = connect(sim, "mallory")
    mallory.register("mallory", "pw", forged)  # type: ignore[arg-type]
    sim.run_until_idle()
    assert closed_with(sim, "mallory") == A.KEY_UNWRAP_FAILED  # the client gives up: no proof can be made
    # a raw proof with a guessed nonce is refused by the server
    request(sim, "mallory", m.RegisterProof(nonce=b"\x00" * 32, signature=b"\x01" * 64))
    assert error_sent(sim, "mallory").code == A.AUTH_FAILED
    assert sim.registry.get_user("mallory") is None and sim.registry.count_users() == 1
    assert not [e for e in sim.server_events if isinstance(e, ev.UserRegistered) and e.username == "mallory"]
    assert_serves(sim, "alice")


def test_registration_with_a_copied_signing_key_is_auth_failed() -> None:
    """Mallory's own encryption key opens the nonce, but she cannot sign for alice's signing key."""
    sim = make_simulation("alice")
    forged = substituted_keys(user_keys("alice"), user_keys("mallory"), encryption=False, signing=True)
    mallory = connect(sim, "mallory")
    mallory.register("mallory", "pw", forged)  # type: ignore[arg-type]
    sim.run_until_idle()
    failure = last_failure(sim, "mallory")
    assert failure.code == A.AUTH_FAILED
    assert not sim.events_of("mallory", ev.RegistrationSucceeded)
    assert sim.registry.get_user("mallory") is None and sim.registry.count_users() == 1
    assert mallory.state is ClientState.CONNECTED
    assert_serves(sim, "alice")


def test_storage_failure_stores_nothing_and_others_carry_on() -> None:
    sim = make_simulation("alice")
    sim.registry.fail_writes = True
    dave = connect(sim, "dave")
    dave.register("dave", password_of("dave"), user_keys("dave"))
    sim.run_until_idle()
    failure = last_failure(sim, "dave")
    assert (failure.code, failure.ref) == (A.STORAGE_FAILED, "register_proof")
    assert sim.registry.get_user("dave") is None and sim.registry.count_users() == 1
    assert dave.state is ClientState.CONNECTED and not is_closed(sim, "dave")
    assert_serves(sim, "alice")
    sim.registry.fail_writes = False  # the disk is back: the same connection can register
    dave.register("dave", password_of("dave"), user_keys("dave"))
    sim.run_until_idle()
    assert sim.last_event("dave", ev.RegistrationSucceeded).username == "dave"


def test_second_login_of_an_online_user_is_limit_exceeded() -> None:
    sim = make_simulation("alice", "bob")
    twin = relogin(sim, "twin", "bob")
    failure = last_failure(sim, "twin")
    assert (failure.code, failure.ref) == (A.LIMIT_EXCEEDED, "login")
    assert twin.state is ClientState.CONNECTED
    assert sim.server.online["bob"] == peer_of(sim, "bob")  # the first session is untouched
    assert presence_of(sim, "alice", "bob") == [True]
    assert_serves(sim, "bob")
    assert_serves(sim, "alice")


def test_user_can_log_in_again_after_logging_out() -> None:
    sim = make_simulation("alice", "bob")
    sim.clients["bob"].logout()
    sim.run_until_idle()
    assert "bob" not in online(sim)
    again = relogin(sim, "bob-again", "bob")
    assert again.state is ClientState.ONLINE and presence_of(sim, "alice", "bob") == [True, False, True]


# =============================================================================================================
# B. Admission and denial of service
# =============================================================================================================


def with_config(sim, **changes):  # type: ignore[no-untyped-def]
    """Change the server's limits after the users of a test have logged in."""
    sim.server.config = sim.config = type(sim.config)(**{**sim.config.__dict__, **changes})


def test_password_job_queue_full_is_server_busy() -> None:
    """docs/THREATS.md 14: refused before any hashing; PROTOCOL.md 9.2: a reply, the connection stays."""
    sim = make_simulation("alice")
    register_only(sim, "b1", "bob")  # registered while the queue had room
    with_config(sim, max_pending_password_jobs=0)
    busy = connect(sim, "busy")
    rid = busy.login("bob", password_of("bob"), user_keys("bob"))
    sim.run_until_idle()
    error = error_sent(sim, "busy")
    assert (error.code, error.ref, error.fatal) == (A.SERVER_BUSY, "login", False)
    failure = last_failure(sim, "busy")
    assert (failure.rid, failure.code) == (rid, A.SERVER_BUSY)
    assert sim.server.pending_password_jobs == 0 and "bob" not in online(sim)
    assert sim.server.peers[peer_of(sim, "busy")].state is PeerState.CONNECTED
    assert_serves(sim, "alice")
    with_config(sim, max_pending_password_jobs=1)  # capacity is back: the same connection retries
    busy.login("bob", password_of("bob"), user_keys("bob"))
    sim.run_until_idle()
    assert busy.state is ClientState.ONLINE


def test_password_job_queue_full_refuses_registration_before_hashing() -> None:
    sim = make_simulation("alice")
    with_config(sim, max_pending_password_jobs=0)
    dave = connect(sim, "dave")
    dave.register("dave", password_of("dave"), user_keys("dave"))
    sim.run_until_idle()
    error = error_sent(sim, "dave")
    assert (error.code, error.ref) == (A.SERVER_BUSY, "register_proof")
    assert sim.registry.get_user("dave") is None and sim.server.pending_password_jobs == 0
    assert sim.server.peers[peer_of(sim, "dave")].state is PeerState.CONNECTED
    assert_serves(sim, "alice")


def test_connection_over_the_global_cap_gets_server_busy_and_is_closed() -> None:
    sim = make_simulation("alice", max_connections=1)
    extra = sim.add_client("extra")
    sim.run_until_idle()
    assert closed_with(sim, "extra") == A.SERVER_BUSY  # a clear error, before any handshake
    assert extra.state is ClientState.CLOSED and is_closed(sim, "extra")
    error = error_sent(sim, "extra")
    assert error.fatal and error.code == A.SERVER_BUSY
    assert peer_of(sim, "extra") not in sim.server.peers
    assert_serves(sim, "alice")


def test_connection_over_the_per_address_cap_gets_server_busy() -> None:
    pair = make_pair(config=None)
    server = pair.server
    server.config = type(server.config)(**{**server.config.__dict__, "max_connections_per_address": 1})
    server.connection_made(2, "192.0.2.1", pair.now)  # same address as the pair's client
    server.connection_made(3, "192.0.2.9", pair.now)
    out = dict(server.data_to_send())
    assert codec.decode_message(out[2][4:]) == m.Error(code="server_busy", message="too many connections")
    assert 3 not in out and server.peers_to_close() == [2]
    assert 3 in server.peers


def test_handshake_deadline_closes_a_silent_connection() -> None:
    """docs/THREATS.md 10: a connection that never sends client_hello is closed after about 10 s."""
    sim = make_simulation("alice")
    silent = sim.add_client("silent")
    sim.in_flight.clear()  # its client_hello never reaches the server
    sim.advance(5)
    assert not is_closed(sim, "silent")
    sim.advance(6)
    error = error_sent(sim, "silent")
    assert (error.code, error.fatal) == (A.HANDSHAKE_FAILED, True)
    sim.run_until_idle()
    assert closed_with(sim, "silent") == A.HANDSHAKE_FAILED and silent.state is ClientState.CLOSED
    assert_serves(sim, "alice")


def test_handshake_deadline_directly_on_the_server() -> None:
    pair = make_pair()
    server = pair.server
    server.connection_made(99, "198.51.100.7", pair.now)
    server.handle_timer(pair.now + 10)
    assert server.peers_to_close() == []
    server.handle_timer(pair.now + 10.5)
    out = dict(server.data_to_send())
    assert codec.decode_message(out[99][4:]).code == "handshake_failed"  # type: ignore[attr-defined]
    assert server.peers_to_close() == [99]
    events = []
    while (e := server.next_event()) is not None:
        events.append(e)
    assert ev.ErrorSent(peer=99, code="handshake_failed", ref=None, fatal=True) in events
    assert pair.peer in server.peers  # the completed handshake of the other peer is untouched


def test_login_deadline_closes_a_connection_that_never_logs_in() -> None:
    sim = make_simulation("alice")
    lurker = connect(sim, "lurker")
    sim.advance(119)
    assert not is_closed(sim, "lurker")
    sim.advance(2)
    sim.run_until_idle()
    assert error_sent(sim, "lurker").code == A.LIMIT_EXCEEDED and is_closed(sim, "lurker")
    assert lurker.state is ClientState.CLOSED
    assert "alice" in online(sim)  # logged-in users have no such deadline
    assert_serves(sim, "alice")


def test_unfinished_frame_deadline_is_bad_frame() -> None:
    """docs/THREATS.md 1: a prefix announcing 100 bytes followed by 40 is never processed and times out."""
    sim = make_simulation("alice")
    slow = connect(sim, "slow")
    sim.inject("slow", SERVER, struct.pack(">I", 100) + b"x" * 40)
    sim.run_until_idle()
    assert not is_closed(sim, "slow")
    sim.advance(31)
    sim.run_until_idle()
    assert error_sent(sim, "slow").code == A.BAD_FRAME and slow.state is ClientState.CLOSED
    assert_serves(sim, "alice")


def test_chat_messages_beyond_the_rate_are_rate_limited() -> None:
    """docs/THREATS.md 15: per-user token bucket (1/s, burst 2): the third message of a burst is refused."""
    sim = make_simulation("alice", "bob", messages_per_second=1, message_burst=2)
    cid = open_chat(sim, "alice", "bob")
    sim.advance(5)  # the bucket refills to its burst
    alice = sim.clients["alice"]
    rids = [alice.send_chat(cid, f"m{i}") for i in range(3)]
    sim.run_until_idle()
    limited = [f for f in failures(sim, "alice") if f.code == A.RATE_LIMITED]
    assert [(f.rid, f.ref) for f in limited] == [(rids[2], "chat_send")]
    assert [e.text for e in sim.events_of("bob", ev.ChatReceived)] == ["m0", "m1"]
    assert not is_closed(sim, "alice")  # rate limiting is not fatal
    sim.advance(3)
    assert_serves(sim, "alice")
    assert_serves(sim, "bob")


def test_too_many_chats_is_limit_exceeded() -> None:
    sim = make_simulation("alice", "bob", "carol", max_chats_per_user=1)
    alice = sim.clients["alice"]
    open_chat(sim, "alice", "bob")
    chats_before = len(sim.server.chats)
    rid = alice.open_chat(["carol"])
    sim.run_until_idle()
    failure = last_failure(sim, "alice")
    assert (failure.rid, failure.code) == (rid, A.LIMIT_EXCEEDED)
    # carol has room, but bob is full: bob's acceptance is refused (told to bob), carol's chat starts without him
    # (PROTOCOL.md 7.11: an invitation takes no slot, so nobody can fill bob's quota for him)
    rid = sim.clients["carol"].open_chat(["bob"])
    sim.run_until_idle()
    opened = sim.last_event("carol", ev.ChatOpened)
    assert (opened.rid, opened.members, opened.declined) == (rid, ("carol",), ("bob",))
    assert last_failure(sim, "bob").code == A.LIMIT_EXCEEDED and last_failure(sim, "bob").ref == "chat_answer"
    assert len(sim.server.chats) == chats_before + 1
    assert len(sim.server.chats.chats_of("bob")) == 1
    assert not is_closed(sim, "alice")
    assert_serves(sim, "carol")


# =============================================================================================================
# A. Framing, channel and message shape
# =============================================================================================================


def test_oversized_prefix_before_the_handshake_is_frame_too_large() -> None:
    sim = make_simulation("alice")
    sim.add_client("big")
    sim.in_flight.clear()
    sim.inject("big", SERVER, b"\xff\xff\xff\xff")
    sim.run_until_idle()
    error = error_sent(sim, "big")
    assert (error.code, error.fatal) == (A.FRAME_TOO_LARGE, True)
    assert closed_with(sim, "big") == A.FRAME_TOO_LARGE
    assert_serves(sim, "alice")


def test_oversized_prefix_after_login_is_frame_too_large_and_takes_the_user_offline() -> None:
    sim = make_simulation("alice", "bob")
    sim.inject("bob", SERVER, struct.pack(">I", codec.MAX_FRAME_BYTES + 1))
    sim.run_until_idle()
    assert error_sent(sim, "bob").code == A.FRAME_TOO_LARGE
    assert closed_with(sim, "bob") == A.FRAME_TOO_LARGE and "bob" not in online(sim)
    assert presence_of(sim, "alice", "bob") == [True, False]
    assert_serves(sim, "alice")


def test_zero_length_prefix_is_bad_frame() -> None:
    sim = make_simulation("alice")
    connect(sim, "zero")
    sim.inject("zero", SERVER, b"\x00\x00\x00\x00")
    sim.run_until_idle()
    assert error_sent(sim, "zero").code == A.BAD_FRAME and closed_with(sim, "zero") == A.BAD_FRAME
    assert_serves(sim, "alice")


@pytest.mark.parametrize("body", [b"\xff\xfe", b'{"type":', b"[1,2]", b'{"type":"who","rid":NaN}'])
def test_bad_json_before_the_channel_is_fatal(body: bytes) -> None:
    sim = make_simulation("alice")
    sim.add_client("junk")
    sim.in_flight.clear()
    sim.inject("junk", SERVER, codec.frame(body))
    sim.run_until_idle()
    error = error_sent(sim, "junk")
    assert (error.code, error.fatal) == (A.BAD_JSON, True) and is_closed(sim, "junk")
    assert_serves(sim, "alice")


def test_messages_other_than_client_hello_before_the_handshake_are_fatal() -> None:
    sim = make_simulation("alice")
    sim.add_client("early")
    sim.in_flight.clear()
    sim.inject("early", SERVER, codec.encode_frame(m.Login(username="alice", password="x", signature=b"s")))
    sim.run_until_idle()
    error = error_sent(sim, "early")
    assert (error.code, error.fatal, error.ref) == (A.UNEXPECTED_MESSAGE, True, None)
    assert "alice" in online(sim) and sim.server.online["alice"] == peer_of(sim, "alice")
    assert_serves(sim, "alice")


def test_low_order_key_share_is_handshake_failed() -> None:
    """docs/THREATS.md 29 (Wycheproof LowOrderPublic): the all-zero X25519 share."""
    sim = make_simulation("alice")
    sim.add_client("weak")
    sim.in_flight.clear()
    sim.inject("weak", SERVER, codec.encode_frame(m.ClientHello(random=b"r" * 32, key_share=bytes(32))))
    sim.run_until_idle()
    assert error_sent(sim, "weak").code == A.HANDSHAKE_FAILED and closed_with(sim, "weak") == A.HANDSHAKE_FAILED
    assert not [e for e in sim.server_events if isinstance(e, ev.PeerHandshakeCompleted)
                and e.peer == peer_of(sim, "weak")]
    assert_serves(sim, "alice")


def test_second_client_hello_mid_session_is_fatal() -> None:
    sim = make_simulation("alice", "bob")
    sim.inject("bob", SERVER, codec.encode_frame(m.ClientHello(random=b"r" * 32, key_share=b"k" * 32)))
    sim.run_until_idle()
    assert error_sent(sim, "bob").code == A.UNEXPECTED_MESSAGE and "bob" not in online(sim)
    assert_serves(sim, "alice")


def test_clear_frame_after_the_handshake_is_fatal() -> None:
    sim = make_simulation("alice", "bob")
    sim.inject("bob", SERVER, codec.encode_frame(m.Who(rid=1)))  # not inside a record
    sim.run_until_idle()
    assert error_sent(sim, "bob").code == A.UNEXPECTED_MESSAGE and is_closed(sim, "bob")
    assert "bob" not in online(sim)
    assert_serves(sim, "alice")


def test_tampered_record_is_bad_record_and_closes() -> None:
    """docs/THREATS.md 32: one flipped bit in a client's record."""
    from securechat.simulation import flip_bit

    sim = make_simulation("alice", "bob")
    sim.intercept = flip_bit(-3, source="bob", target=SERVER)
    sim.clients["bob"].who()
    sim.run_until_idle()
    sim.intercept = None
    assert error_sent(sim, "bob").code == A.BAD_RECORD and closed_with(sim, "bob") == A.BAD_RECORD
    assert not sim.events_of("bob", ev.WhoListed)  # the tampered request was never processed
    assert presence_of(sim, "alice", "bob") == [True, False]
    assert_serves(sim, "alice")


def test_replayed_record_is_bad_record() -> None:
    """docs/THREATS.md 30: a duplicated client record is processed at most once."""
    sim = make_simulation("alice", "bob")
    seen: list[bytes] = []

    def duplicate(frame):  # type: ignore[no-untyped-def]
        if frame.source == "bob" and not seen:
            seen.append(frame.data)
            return [frame, frame]
        return [frame]

    sim.intercept = duplicate
    sim.clients["bob"].who()
    sim.run_until_idle()
    sim.intercept = None
    assert len(sim.events_of("bob", ev.WhoListed)) == 1
    assert error_sent(sim, "bob").code == A.BAD_RECORD and "bob" not in online(sim)
    assert_serves(sim, "alice")


def test_reordered_records_are_bad_record() -> None:
    sim = make_simulation("alice", "bob")
    bob = sim.clients["bob"]
    bob.who()
    sim.flush()
    bob.status("alice")
    sim.flush()
    first, second = sim.in_flight.popleft(), sim.in_flight.popleft()
    sim.in_flight.extendleft([first, second])  # second now goes first
    sim.run_until_idle()
    assert error_sent(sim, "bob").code == A.BAD_RECORD and "bob" not in online(sim)
    assert not sim.events_of("bob", ev.StatusReported)
    assert_serves(sim, "alice")


@pytest.mark.parametrize("plaintext", [b"", b"\x00\x00", b"\x00\x00\x00\x00", b"\x00\x00\x00\x09{}"])
def test_badly_framed_record_plaintext_is_bad_frame(plaintext: bytes) -> None:
    sim = make_simulation("alice", "bob")
    send_record_plaintext(sim, "bob", plaintext)
    assert error_sent(sim, "bob").code == A.BAD_FRAME and closed_with(sim, "bob") == A.BAD_FRAME
    assert "bob" not in online(sim)
    assert_serves(sim, "alice")


@pytest.mark.parametrize("body, code", [
    (b'{"type":', A.BAD_JSON),
    (b"[1]", A.BAD_JSON),
    (b"\xff\xfe", A.BAD_JSON),
    (b'{"type":"who","rid":NaN}', A.BAD_JSON),
    (b'{"type":"who","rid":' + b"9" * 5000 + b"}", A.BAD_JSON),
    (b'{"type":"who","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}", A.BAD_JSON),
    (b'{"type":"chat_send","to":"a","to":"b"}', A.BAD_JSON),
    (b'{"type":"status","rid":4,"username":"\\ud800"}', A.BAD_FIELD),
    (b'{"type":"admin_shutdown","rid":4}', A.UNKNOWN_TYPE),
    (b'{"rid":4}', A.UNKNOWN_TYPE),
    (b'{"type":"who","rid":4,"admin":true}', A.BAD_FIELD),
    (b'{"type":"status","rid":4,"username":null}', A.BAD_FIELD),
    (b'{"type":"status","rid":4,"username":"\xd0\xb0lice"}', A.BAD_FIELD),
    (b'{"type":"chat_open","rid":4,"members":"alice","mode":"server-key","suite":"aes-256-gcm"}', A.BAD_FIELD),
    (b'{"type":"chat_send","rid":4,"chat_id":"c","epoch":1,"seq":"7","ciphertext":"","signature":""}', A.BAD_FIELD),
    (b'{"type":"chat_send","rid":4,"chat_id":"c","epoch":1,"seq":true,"ciphertext":"","signature":""}', A.BAD_FIELD),
    (b'{"type":"chat_send","rid":4,"chat_id":"c","epoch":1,"seq":-1,"ciphertext":"","signature":""}', A.BAD_FIELD),
    (b'{"type":"chat_send","rid":4,"chat_id":"c","epoch":1,"seq":18446744073709551616,"ciphertext":"",'
     b'"signature":""}', A.BAD_FIELD),
    (b'{"type":"presence","username":"bob","online":true}', A.UNEXPECTED_MESSAGE),  # server-to-client type
    (b'{"type":"client_hello","version":1,"random":"' + b"A" * 43 + b'=","key_share":"' + b"A" * 43
     + b'=","key_exchange":"x25519"}', A.UNEXPECTED_MESSAGE),
    (b'{"type":"login","rid":4,"username":"bob","password":"p","signature":"AAAA"}', A.UNEXPECTED_MESSAGE),
    (b'{"type":"register_proof","rid":4,"nonce":"' + b"A" * 43 + b'=","signature":"AAAA"}', A.UNEXPECTED_MESSAGE),
])
def test_bad_inner_frame_after_login_is_answered_and_the_connection_kept(body: bytes, code: ErrorCode) -> None:
    """docs/THREATS.md 4-9: inside a valid record, a malformed frame gets error{code, rid} and changes nothing."""
    sim = make_simulation("alice", "bob")
    send_inner_bodies(sim, "bob", [body])
    failure = last_failure(sim, "bob")
    assert failure.code == code
    if b'"rid":4' in body and code is not A.BAD_JSON:
        assert failure.rid == 4  # the error names the request
    error = error_sent(sim, "bob")
    assert (error.code, error.fatal) == (code, False)
    assert not is_closed(sim, "bob") and online(sim) == {"alice", "bob"}
    assert_serves(sim, "bob")  # the same connection carries on
    assert_serves(sim, "alice")


def test_several_frames_in_one_record_are_each_answered() -> None:
    sim = make_simulation("alice", "bob")
    send_inner_bodies(sim, "bob", [b'{"type":"who","rid":1}', b"{junk", b'{"type":"status","rid":2,"username":"alice"}'])
    assert sim.last_event("bob", ev.WhoListed).rid == 1
    assert last_failure(sim, "bob").code == A.BAD_JSON
    assert sim.last_event("bob", ev.StatusReported).online is True


# =============================================================================================================
# Out-of-state messages (docs/THREATS.md 8)
# =============================================================================================================


def test_chat_before_login_is_unexpected_message_and_closes() -> None:
    sim = make_simulation("alice")
    early = connect(sim, "early")
    request(sim, "early", m.ChatSend(chat_id="c1", epoch=1, seq=1, ciphertext=b"x" * 20, signature=b"s" * 64))
    error = error_sent(sim, "early")
    assert (error.code, error.fatal, error.ref) == (A.UNEXPECTED_MESSAGE, True, "chat_send")
    assert last_failure(sim, "early").code == A.UNEXPECTED_MESSAGE
    assert is_closed(sim, "early") and early.state is ClientState.CLOSED
    assert_serves(sim, "alice")


@pytest.mark.parametrize("message", [
    m.Who(), m.Status(username="alice"), m.ChatOpen(members=("alice",)), m.ChatLeave(chat_id="c"),
    m.ChatInvite(chat_id="c", username="alice"), m.GetCertificates(usernames=("alice",)),
    m.RegisterProof(nonce=b"n" * 32, signature=b"s"),
])
def test_requests_before_login_are_fatal(message: m.Message) -> None:
    sim = make_simulation("alice")
    connect(sim, "early")
    request(sim, "early", message)
    error = error_sent(sim, "early")
    assert (error.code, error.fatal, error.ref) == (A.UNEXPECTED_MESSAGE, True, message.TYPE)
    assert is_closed(sim, "early")
    assert_serves(sim, "alice")


def test_second_register_during_registration_is_fatal() -> None:
    sim = make_simulation("alice")
    dave = connect(sim, "dave")
    keys = user_keys("dave")
    dave.register("dave", "pw", keys)
    dave.link.send(m.Register(username="dave", password="pw", signature_scheme=keys.scheme.value,
                                encryption_key=keys.encryption_public, signing_key=keys.signing_public))
    sim.run_until_idle()
    assert error_sent(sim, "dave").code == A.UNEXPECTED_MESSAGE and is_closed(sim, "dave")
    assert sim.registry.get_user("dave") is None
    assert_serves(sim, "alice")


@pytest.mark.parametrize("message", [
    m.Login(username="bob", password="pw", signature=b"s"),
    m.Register(username="zed", password="pw", signature_scheme="ed25519", encryption_key=b"k", signing_key=b"k"),
    m.RegisterProof(nonce=b"n" * 32, signature=b"s"),
])
def test_account_requests_when_online_are_unexpected_but_kept(message: m.Message) -> None:
    sim = make_simulation("alice", "bob")
    rid = request(sim, "bob", message)
    failure = last_failure(sim, "bob")
    assert (failure.rid, failure.code, failure.ref) == (rid, A.UNEXPECTED_MESSAGE, message.TYPE)
    assert not is_closed(sim, "bob") and sim.server.online["bob"] == peer_of(sim, "bob")
    assert sim.registry.count_users() == 2
    assert_serves(sim, "bob")


# =============================================================================================================
# Directory
# =============================================================================================================


def test_who_and_status() -> None:
    sim = make_simulation("alice", "bob")
    register_only(sim, "c1", "carol")
    assert assert_serves(sim, "alice") == ("alice", "bob")
    alice = sim.clients["alice"]
    for name, state in [("bob", True), ("carol", False), ("Bob", True)]:
        rid = alice.status(name)
        sim.run_until_idle()
        report = sim.last_event("alice", ev.StatusReported)
        assert (report.rid, report.username, report.online) == (rid, name.lower(), state)


def test_status_of_an_unknown_user_is_unknown_user() -> None:
    sim = make_simulation("alice", "bob")
    rid = sim.clients["alice"].status("nobody")
    sim.run_until_idle()
    failure = last_failure(sim, "alice")
    assert (failure.rid, failure.code, failure.ref) == (rid, A.UNKNOWN_USER, "status")
    assert not is_closed(sim, "alice")
    assert_serves(sim, "bob")


def test_get_certificates_returns_known_and_lists_unknown() -> None:
    sim = make_simulation("alice", "bob")
    rid = request(sim, "alice", m.GetCertificates(usernames=("bob", "nobody")))
    entries = [e for e in sim.server_trace if e.type == "certificates" and e.direction == "send"]
    reply = codec.decode_message(entries[-1].data[4:])
    assert isinstance(reply, m.Certificates) and reply.rid == rid
    assert [c.username for c in reply.certificates] == ["bob"] and reply.unknown == ("nobody",)
    assert reply.certificates[0] == sim.registry.get_user("bob").certificate  # type: ignore[union-attr]


# =============================================================================================================
# Chats (docs/THREATS.md section E)
# =============================================================================================================


def test_chat_open_with_nobody_registered_to_invite_is_user_offline() -> None:
    sim = make_simulation("alice", "bob")
    alice = sim.clients["alice"]
    for members in (["dave"], ["dave", "erin"], ["alice"]):
        rid = alice.open_chat(members)
        sim.run_until_idle()
        failure = last_failure(sim, "alice")
        assert (failure.rid, failure.code, failure.ref) == (rid, A.USER_OFFLINE, "chat_open")
    assert len(sim.server.chats) == 0 and not sim.events_of("alice", ev.ChatKeyed)
    assert not [e for e in sim.server_events if isinstance(e, ev.ChatRekeyed)]
    assert_serves(sim, "bob")


def test_chat_open_with_only_offline_invitees_starts_with_their_invitations_open() -> None:
    """PROTOCOL.md 7.11: offline invitees are invited, not added; they may accept when they log in."""
    sim = make_simulation("alice", "bob")
    register_only(sim, "c1", "carol")
    rid = sim.clients["alice"].open_chat(["carol", "dave"])
    sim.run_until_idle()
    opened = sim.last_event("alice", ev.ChatOpened)
    assert (opened.rid, opened.members, opened.offline, opened.unknown, opened.pending) == (
        rid, ("alice",), ("carol",), ("dave",), ("carol",))
    assert sim.server.chats.chats_of("carol") == set()  # no slot taken


def test_chat_open_with_mixed_invitees_reports_offline_and_unknown() -> None:
    sim = make_simulation("alice", "bob")
    register_only(sim, "c1", "carol")
    rid = sim.clients["alice"].open_chat(["bob", "carol", "dave", "Alice"])
    sim.run_until_idle()
    opened = sim.last_event("alice", ev.ChatOpened)
    assert (opened.rid, opened.members, opened.offline, opened.unknown) == (rid, ("alice", "bob"), ("carol",), ("dave",))
    assert sim.server.chats.get(opened.chat_id).members == ["alice", "bob"]  # type: ignore[union-attr]
    for name in ("alice", "bob"):
        keyed = sim.last_event(name, ev.ChatKeyed)
        assert (keyed.chat_id, keyed.epoch, keyed.members, keyed.reason) == (opened.chat_id, 1, ("alice", "bob"), "open")


def test_chat_open_error_text_fits_the_error_frame() -> None:
    """PROTOCOL.md 10: error.message <= 512 chars. A user_offline text listing every invitee used to exceed it
    with 16+ long offline names, so the client could not decode the reply and dropped the connection with
    bad_field (fixed in 1285ace)."""
    sim = make_simulation("alice", "bob")
    names = [f"offline-user-number-{i:02d}-abcdefg" for i in range(20)]
    rid = sim.clients["alice"].open_chat(names)
    sim.run_until_idle()
    assert not sim.events_of("alice", ev.ConnectionClosed), sim.events_of("alice", ev.ConnectionClosed)
    failure = last_failure(sim, "alice")
    assert (failure.rid, failure.code) == (rid, A.USER_OFFLINE)
    assert_serves(sim, "alice")


def test_unknown_field_error_text_fits_the_error_frame() -> None:
    """Same rule: an unknown field's (client-chosen) name must not blow up the error text."""
    sim = make_simulation("alice", "bob")
    send_inner_bodies(sim, "bob", [b'{"type":"who","rid":3,"' + b"x" * 600 + b'":1}'])
    assert not sim.events_of("bob", ev.ConnectionClosed), sim.events_of("bob", ev.ConnectionClosed)
    assert last_failure(sim, "bob").code == A.BAD_FIELD


def test_invite_errors_change_nothing() -> None:
    sim = make_simulation("alice", "bob", "carol")
    register_only(sim, "d1", "dave")
    cid = open_chat(sim, "alice", "bob")
    chat = sim.server.chats.get(cid)
    assert chat is not None
    cases = [
        ("alice", m.ChatInvite(chat_id=cid, username="nobody"), A.UNKNOWN_USER),
        ("alice", m.ChatInvite(chat_id=cid, username="bob"), A.ALREADY_MEMBER),
        ("alice", m.ChatInvite(chat_id=cid, username="alice"), A.ALREADY_MEMBER),
        ("alice", m.ChatInvite(chat_id="c-missing", username="carol"), A.UNKNOWN_CHAT),
        ("carol", m.ChatInvite(chat_id=cid, username="carol"), A.NOT_MEMBER),
        ("carol", m.ChatInvite(chat_id=cid, username="dave"), A.NOT_MEMBER),
    ]
    for label, message, code in cases:
        rid = request(sim, label, message)
        failure = last_failure(sim, label)
        assert (failure.rid, failure.code, failure.ref) == (rid, code, "chat_invite"), (message, failure)
        assert (chat.members, chat.epoch) == (["alice", "bob"], 1)
        assert not is_closed(sim, label)
    assert not sim.events_of("carol", ev.ChatKeyed)
    assert_serves(sim, "carol")
    # an offline user is invited, not refused (PROTOCOL.md 7.11): nothing changes until it accepts
    rid = request(sim, "alice", m.ChatInvite(chat_id=cid, username="dave"))
    assert sim.last_event("alice", ev.ChatInvited).rid == rid
    assert (chat.members, chat.epoch) == (["alice", "bob"], 1)


def test_invite_rekeys_and_reaches_the_newcomer() -> None:
    sim = make_simulation("alice", "bob", "carol")
    cid = open_chat(sim, "alice", "bob")
    rid = sim.clients["bob"].invite(cid, "carol")  # any member may invite
    sim.run_until_idle()
    invited = sim.last_event("bob", ev.ChatInvited)
    assert (invited.rid, invited.username) == (rid, "carol")
    for name in ("alice", "bob", "carol"):
        keyed = sim.last_event(name, ev.ChatKeyed)
        assert (keyed.epoch, keyed.members, keyed.reason, keyed.actor) == (2, ("alice", "bob", "carol"), "invite", "bob")


def test_leave_errors_change_nothing() -> None:
    sim = make_simulation("alice", "bob", "carol")
    cid = open_chat(sim, "alice", "bob")
    for label, chat_id, code in [("carol", cid, A.NOT_MEMBER), ("alice", "c-missing", A.UNKNOWN_CHAT)]:
        rid = request(sim, label, m.ChatLeave(chat_id=chat_id))
        failure = last_failure(sim, label)
        assert (failure.rid, failure.code, failure.ref) == (rid, code, "chat_leave")
    assert sim.server.chats.get(cid).members == ["alice", "bob"]  # type: ignore[union-attr]
    assert_serves(sim, "carol")


def test_chat_send_errors_relay_nothing() -> None:
    sim = make_simulation("alice", "bob", "carol")
    cid = open_chat(sim, "alice", "bob")
    send = m.ChatSend(chat_id=cid, epoch=1, seq=1, ciphertext=b"c" * 32, signature=b"s" * 64)
    cases = [
        ("carol", send, A.NOT_MEMBER),
        ("alice", m.ChatSend(chat_id="c-missing", epoch=1, seq=1, ciphertext=b"c", signature=b"s"), A.UNKNOWN_CHAT),
        ("alice", m.ChatSend(chat_id=cid, epoch=2, seq=1, ciphertext=b"c", signature=b"s"), A.STALE_EPOCH),
    ]
    for label, message, code in cases:
        rid = request(sim, label, message)
        failure = last_failure(sim, label)
        assert (failure.rid, failure.code, failure.ref) == (rid, code, "chat_send")
    assert not [e for e in sim.server_events if isinstance(e, ev.MessageRelayed)]
    assert not sim.events_of("bob", ev.ChatReceived) and not sim.events_of("bob", ev.MessageRejected)
    assert_serves(sim, "carol")


def test_chat_send_with_a_stale_epoch_is_stale_epoch() -> None:
    sim = make_simulation("alice", "bob", "carol")
    cid = open_chat(sim, "alice", "bob")
    alice = sim.clients["alice"]
    stale = alice.book.seal(cid, "sealed at epoch 1", None)  # type: ignore[union-attr]
    alice.invite(cid, "carol")
    sim.run_until_idle()
    assert sim.server.chats.get(cid).epoch == 2  # type: ignore[union-attr]
    rid = request(sim, "alice", stale)
    failure = last_failure(sim, "alice")
    assert (failure.rid, failure.code) == (rid, A.STALE_EPOCH)
    assert not sim.events_of("bob", ev.ChatReceived) and not sim.events_of("carol", ev.ChatReceived)
    assert_serves(sim, "bob")


def test_relay_uses_the_authenticated_sender() -> None:
    """docs/THREATS.md 23: the server labels relayed messages with the connection's user, whatever was sent."""
    sim = make_simulation("alice", "bob", "carol")
    cid = open_chat(sim, "alice", "bob", "carol")
    sim.clients["carol"].send_chat(cid, "from carol")
    sim.run_until_idle()
    relayed = [e for e in sim.server_events if isinstance(e, ev.MessageRelayed)]
    assert [(r.sender, r.recipients) for r in relayed] == [("carol", 2)]
    assert received_from(sim, "alice") == [("carol", "from carol")]


def received_from(sim, label):  # type: ignore[no-untyped-def]
    return [(e.sender, e.text) for e in sim.events_of(label, ev.ChatReceived)]


def test_logout_takes_the_user_out_of_presence_and_chats() -> None:
    sim = make_simulation("alice", "bob", "carol")
    cid = open_chat(sim, "alice", "bob", "carol")
    rid = sim.clients["bob"].logout()
    sim.run_until_idle()
    assert sim.last_event("bob", ev.LoggedOut).rid == rid
    assert closed_with(sim, "bob") is None  # a clean close after bye
    assert "bob" not in online(sim) and sim.server.chats.get(cid).members == ["alice", "carol"]  # type: ignore[union-attr]
    for name in ("alice", "carol"):
        assert presence_of(sim, name, "bob")[-1] is False
        keyed = sim.last_event(name, ev.ChatKeyed)
        assert (keyed.epoch, keyed.reason, keyed.left) == (2, "disconnect", ("bob",))


def test_logout_before_login_says_bye() -> None:
    sim = make_simulation("alice")
    early = connect(sim, "early")
    early.logout()
    sim.run_until_idle()
    assert sim.events_of("early", ev.LoggedOut) and early.state is ClientState.CLOSED
    assert_serves(sim, "alice")


def test_logout_is_never_rate_limited() -> None:
    """PROTOCOL.md 6.2: logout is answered with bye. It used to go through the per-user token bucket, so a user
    over budget got rate_limited, which the CLOSING client ignores: it waited forever and stayed online
    (fixed in 617a669)."""
    sim = make_simulation("alice", "bob", messages_per_second=1, message_burst=2)
    bob = sim.clients["bob"]
    bob.who()
    bob.who()
    bob.logout()
    sim.run_until_idle()
    assert "bob" not in online(sim)
    assert sim.events_of("bob", ev.LoggedOut)


def test_connection_lost_mid_frame_takes_the_user_offline() -> None:
    """docs/THREATS.md 35: the user goes offline and the others are told, as after a logout."""
    sim = make_simulation("alice", "bob")
    cid = open_chat(sim, "alice", "bob")
    sim.inject("bob", SERVER, struct.pack(">I", 50) + b"partial")
    sim.run_until_idle()
    sim.disconnect("bob")
    sim.run_until_idle()
    closed = [e for e in sim.server_events if isinstance(e, ev.UserLoggedOut) and e.username == "bob"]
    assert closed and closed[-1].reason == "closed inside a frame"
    assert "bob" not in online(sim) and presence_of(sim, "alice", "bob") == [True, False]
    assert sim.server.chats.get(cid).members == ["alice"]  # type: ignore[union-attr]
    assert_serves(sim, "alice")


# =============================================================================================================
# Directly on ServerProtocol, without the Simulation
# =============================================================================================================


def test_direct_pair_registers_and_logs_in() -> None:
    pair = make_pair()
    keys = user_keys("dave")
    pair.client.register("dave", "pw", keys)
    pair.pump()
    pair.client.login("dave", "pw", keys)
    pair.pump()
    assert pair.client.state is ClientState.ONLINE and pair.server.online == {"dave": pair.peer}
    kinds = [type(e).__name__ for e in pair.server_events]
    assert kinds == ["PeerConnected", "PeerHandshakeCompleted", "UserRegistered", "UserLoggedIn"]


def test_unknown_peer_and_closed_peer_input_is_ignored() -> None:
    pair = make_pair()
    server: ServerProtocol = pair.server
    server.receive_data(12345, b"\xff" * 10, pair.now)  # never connected
    server.connection_lost(12345, pair.now)
    server.receive_data(pair.peer, b"\x00\x00\x00\x00", pair.now)  # fatal: bad_frame
    assert server.peers[pair.peer].closing
    server.receive_data(pair.peer, b"more bytes after the error", pair.now)  # ignored, no exception
    server.connection_lost(pair.peer, pair.now)
    assert server.peers_to_close() == [pair.peer]
    assert server.peers_to_close() == []
    server.connection_lost(pair.peer, pair.now)  # twice, after removal: still quiet


def test_job_finishing_after_its_peer_left_releases_the_slot() -> None:
    pair = make_pair()
    keys = user_keys("dave")
    pair.client.register("dave", "pw", keys)
    pair.pump()
    pair.client.login("dave", "pw", keys)
    pair.server.receive_data(pair.peer, pair.client.data_to_send(), pair.now)
    job = pair.server.next_job()
    assert job is not None and pair.server.pending_password_jobs == 1
    pair.server.connection_lost(pair.peer, pair.now)
    job.run()
    pair.server.job_done(job, pair.now)
    assert pair.server.pending_password_jobs == 0 and pair.server.online == {}


def test_server_send_counter_exhaustion_closes_only_that_peer() -> None:
    """docs/THREATS.md 36 / PROTOCOL.md 5.2: an exhausted send counter closes that peer only. RecordLayer.seal used to
    raise out of ServerProtocol.data_to_send (the driver's round and every other peer's bytes were lost); the
    first fix then raised "Set changed size during iteration" (fixed in 88ce980 and 617a669)."""
    from securechat.protocol.channel import MAX_RECORDS_PER_DIRECTION

    sim = make_simulation("alice", "bob")
    sim.server.peers[peer_of(sim, "bob")].records.sent = MAX_RECORDS_PER_DIRECTION  # type: ignore[union-attr]
    sim.clients["alice"].who()
    sim.clients["bob"].who()
    sim.run_until_idle()
    assert "bob" not in online(sim)
    assert_serves(sim, "alice")


def test_pair_helper_is_deterministic() -> None:
    first, second = Pair("same"), Pair("same")
    assert first.server_key.public_der == second.server_key.public_der


def test_concurrent_registrations_of_one_name_give_one_account() -> None:
    """Both connections pass the name check before either proof is stored: the second job gets name_taken."""
    sim = make_simulation("alice")
    first, second = connect(sim, "r1"), connect(sim, "r2")
    first.register("zed", "pw-1", user_keys("dave"))
    second.register("zed", "pw-2", user_keys("mallory"))
    sim.run_until_idle()
    assert sim.last_event("r1", ev.RegistrationSucceeded).username == "zed"
    failure = last_failure(sim, "r2")
    assert (failure.code, failure.ref) == (A.NAME_TAKEN, "register_proof")
    stored = sim.registry.get_user("zed")
    assert stored is not None and stored.certificate.signing_key == user_keys("dave").signing_public
    assert_serves(sim, "alice")


def test_parallel_login_guesses_are_throttled_like_sequential_ones() -> None:
    """BUG (docs/THREATS.md 14/18): the throttle counts a failure only when its scrypt job has finished, so logins
    sent on several connections from one address before any job completes are all admitted: 8 parallel guesses
    for bob are all checked although backoff starts after 3 failures (with the threaded driver an attacker
    keeps up to max_pending_password_jobs guesses in flight and bypasses both the per-pair backoff and the
    per-address window). Expected: attempts in flight count against the budget."""
    sim = make_simulation("alice")
    register_only(sim, "b1", "bob")
    labels = [f"g{i}" for i in range(8)]
    for label in labels:
        connect(sim, label)
        sim.server.peers[peer_of(sim, label)].address = "203.0.113.5"  # one address (a NAT or one attacker)
    for label in labels:
        sim.clients[label].login("bob", f"guess {label}", user_keys("bob"))
    for label in labels:  # every login reaches the server before any job has run (as with worker threads)
        sim.server.receive_data(peer_of(sim, label), sim.clients[label].data_to_send(), sim.now)
    sim.run_until_idle()
    codes = [last_failure(sim, label).code for label in labels]
    assert codes.count(A.AUTH_FAILED) <= sim.config.failures_before_backoff, codes
    assert set(codes) <= {A.AUTH_FAILED, A.RATE_LIMITED}
    assert_serves(sim, "alice")


def test_a_long_guessing_campaign_never_breaks_receive_data() -> None:
    """BUG: LoginThrottle.allowed computes 2.0 ** (failures - 3) before capping it at max_backoff_seconds; after
    about 1027 failures for one (account, address) pair (17 hours at one guess per minute, the rate the cap
    allows) the float power raises OverflowError, which escapes ServerProtocol.receive_data."""
    sim = make_simulation("alice")
    register_only(sim, "b1", "bob")
    guesser = connect(sim, "guesser")
    address = sim.server.peers[peer_of(sim, "guesser")].address
    for _ in range(1030):  # the state a patient attacker reaches, one failure per backoff period
        sim.server.accounts.throttle.failed("bob", address, sim.now - 10_000)
    guesser.login("bob", "guess 1031", user_keys("bob"))
    sim.run_until_idle()  # must not raise
    assert last_failure(sim, "guesser").code in (A.AUTH_FAILED, A.RATE_LIMITED)
    assert_serves(sim, "alice")


def test_unknown_user_and_wrong_password_cost_the_same() -> None:
    """BUG (docs/THREATS.md 17: "indistinguishable timing"): LoginJob runs scrypt for an unknown user too, but only a
    known user's job also loads and verifies the stored certificate and the proof. For a DSA user that adds
    ~45 ms (pycryptodome re-tests the DSA domain primes on every key import), so a wrong-password answer for
    an existing DSA user is measurably slower than for a name that does not exist: user enumeration by timing.
    Measured on LoginJob directly (scrypt is the FAST test setting, which only shortens both paths equally)."""
    import statistics
    import time

    from securechat.protocol.jobs import LoginJob

    sim = make_simulation("alice", "bob", dsa=("bob",))

    def cost(name: str) -> float:
        samples = []
        for _ in range(9):
            job = LoginJob(peer=1, registry=sim.registry, username=name, password="wrong", signature=b"\x01" * 64,
                           transcript=b"t" * 32, dummy_record=sim.server.accounts.dummy_record, ca=sim.server_key,
                           now=sim.now)
            start = time.perf_counter()
            job.run()
            samples.append(time.perf_counter() - start)
            assert job.code is A.AUTH_FAILED
        return statistics.median(samples)

    unknown, known_dsa = cost("nobody"), cost("bob")
    assert known_dsa - unknown < 0.010, f"unknown {unknown * 1000:.1f} ms, existing DSA user {known_dsa * 1000:.1f} ms"


# =============================================================================================================
# Server building blocks, directly: ChatDirectory, TokenBucket, LoginThrottle
# =============================================================================================================


def test_chat_directory_membership_rules() -> None:
    from securechat.errors import SecureChatError
    from securechat.protocol.messages import MAX_CHAT_MEMBERS
    from securechat.protocol.server_chats import ChatDirectory

    chats = ChatDirectory(max_chats_per_user=2)
    chat = chats.open("alice", ["bob"], mode="server-key", suite="aes-256-gcm", chat_id="c1")
    assert (chat.members, chat.epoch) == (["alice", "bob"], 1)
    with pytest.raises(SecureChatError) as info:
        chats.add("c1", "bob")
    assert info.value.code is A.ALREADY_MEMBER
    chats.add("c1", "carol")
    assert chat.epoch == 2 and chats.chats_of("carol") == {"c1"}
    chats.open("alice", ["carol"], mode="server-key", suite="aes-256-gcm", chat_id="c2")
    with pytest.raises(SecureChatError) as info:  # alice is in 2 chats already
        chats.open("bob", ["alice"], mode="server-key", suite="aes-256-gcm", chat_id="c3")
    assert info.value.code is A.LIMIT_EXCEEDED and chats.get("c3") is None and chats.chats_of("bob") == {"c1"}
    with pytest.raises(SecureChatError) as info:
        chats.check_member("c1", "dave")
    assert info.value.code is A.NOT_MEMBER
    with pytest.raises(SecureChatError) as info:
        chats.remove("c9", "alice")
    assert info.value.code is A.UNKNOWN_CHAT
    assert chats.remove("c1", "carol") == 2 and chat.epoch == 3
    assert sorted(chats.leave_all("alice")) == ["c1", "c2"]  # both still have members: both are rekeyed
    assert chats.chats_of("alice") == set() and chat.members == ["bob"] and chat.epoch == 4
    assert chats.remove("c1", "bob") == 0 and chats.get("c1") is None  # the last one out deletes it
    big = ChatDirectory(max_chats_per_user=64)
    names = [f"u{i}" for i in range(MAX_CHAT_MEMBERS)]
    full = big.open(names[0], names[1:], mode="server-key", suite="aes-256-gcm", chat_id="big")
    assert len(full.members) == MAX_CHAT_MEMBERS
    with pytest.raises(SecureChatError) as info:
        big.add("big", "one-more")
    assert info.value.code is A.LIMIT_EXCEEDED
    with pytest.raises(SecureChatError):
        big.open("x", names, mode="server-key", suite="aes-256-gcm", chat_id="too-big")


def test_token_bucket_rate_and_burst() -> None:
    from securechat.protocol.limits import TokenBucket

    bucket = TokenBucket(rate=2.0, burst=3.0, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5) is True and bucket.take(0.5) is False  # 0.5 s at 2/s refills one token
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # never more than the burst


def _fail(throttle, username: str, address: str, now: float) -> None:  # type: ignore[no-untyped-def]
    throttle.attempt(username, address, now)
    throttle.failed(username, address, now)


def test_login_throttle_backoff_window_and_memory_bound() -> None:
    """An admitted attempt counts for its (account, address) pair; a failure also counts for the address."""
    from securechat.protocol.limits import LoginThrottle, ServerConfig

    throttle = LoginThrottle(ServerConfig(failures_before_backoff=2, max_backoff_seconds=8,
                                          address_failures_allowed=100, tracked_keys=3))
    for t in (0.0, 1.0):
        assert throttle.allowed("bob", "a", t)
        _fail(throttle, "bob", "a", t)
    assert not throttle.allowed("bob", "a", 1.5)  # 2^0 = 1 s after the last failure
    assert throttle.allowed("bob", "a", 2.1) and throttle.allowed("bob", "b", 1.5)  # other address: fine
    _fail(throttle, "bob", "a", 2.1)
    assert not throttle.allowed("bob", "a", 3.9) and throttle.allowed("bob", "a", 4.2)  # 2^1 s
    for i in range(10):
        _fail(throttle, "bob", "a", 10.0 + i)
    assert not throttle.allowed("bob", "a", 26.0) and throttle.allowed("bob", "a", 27.1)  # capped at 8 s
    throttle.succeeded("bob", "a")
    assert throttle.allowed("bob", "a", 27.2)
    for i in range(10):
        _fail(throttle, f"user{i}", f"addr{i}", 30.0)
    assert len(throttle._pairs) <= 3 and len(throttle._addresses) <= 3  # tracked_keys bounds memory


def test_a_record_full_of_tiny_bad_frames_is_not_amplified() -> None:
    """BUG (docs/THREATS.md 12/15, availability): every malformed inner frame gets its own error reply, with no bound
    and before login (bad_json keeps even an unauthenticated connection). One record of 5-byte frames
    b"\\x00\\x00\\x00\\x01{" makes the single-threaded engine parse and answer each: a ~1 MB record costs ~2.4 s
    of engine time (every user stalls) and queues ~16 MB of errors plus 150,000 ErrorSent log events.
    Expected: a bounded number of error replies per record or per second (then close), no amplification."""
    sim = make_simulation("alice")
    flooder = connect(sim, "flooder")  # handshake only: no account needed
    plaintext = b"\x00\x00\x00\x01{" * 20_000
    record = codec.encode_frame(m.Record(data=flooder.link.records.seal(plaintext)))  # type: ignore[union-attr]
    sim.server.receive_data(peer_of(sim, "flooder"), record, sim.now)
    out = sum(len(data) for peer, data in sim.server.data_to_send() if peer == peer_of(sim, "flooder"))
    sim.flush()
    errors = len(server_errors(sim, "flooder"))
    assert out <= len(record) and errors <= 1000, f"{len(record)} bytes in, {out} bytes and {errors} errors out"
    assert_serves(sim, "alice")


# =============================================================================================================
# Registration and login details (PROTOCOL.md 6.1, 6.2)
# =============================================================================================================


@pytest.mark.parametrize("case", ["scheme_mismatch", "dsa_encryption_key", "garbage_key", "short_rsa"])
def test_unusable_public_keys_at_registration_are_bad_field(case: str) -> None:
    from securechat.crypto.keys import public_key_der
    from securechat.crypto.signatures import SignatureScheme, generate_signing_key

    sim = make_simulation("alice")
    rsa, dsa = user_keys("dave"), user_keys("erin", SignatureScheme.DSA_SHA256)
    scheme, encryption, signing = "rsa-pss-sha256", rsa.encryption_public, rsa.signing_public
    if case == "scheme_mismatch":  # a DSA key announced as an RSA-PSS key
        signing = dsa.signing_public
    elif case == "dsa_encryption_key":
        encryption = dsa.signing_public
    elif case == "garbage_key":
        signing = b"\x30\x03\x02\x01\x01"
    else:  # an Ed25519 key where an RSA encryption key is needed
        encryption = public_key_der(generate_signing_key(SignatureScheme.ED25519))
    connect(sim, "reg")
    rid = request(sim, "reg", m.Register(username="dave", password="pw", signature_scheme=scheme,
                                         encryption_key=encryption, signing_key=signing))
    failure = last_failure(sim, "reg")
    assert (failure.rid, failure.code, failure.ref) == (rid, A.BAD_FIELD, "register")
    assert not is_closed(sim, "reg") and sim.registry.get_user("dave") is None
    assert sim.server.peers[peer_of(sim, "reg")].state is PeerState.CONNECTED
    assert_serves(sim, "alice")


def test_password_is_compared_after_nfc_normalisation() -> None:
    sim = make_simulation()
    client = connect(sim, "dave")
    keys = user_keys("dave")
    client.register("dave", "caf\u00e9", keys)  # composed e-acute
    sim.run_until_idle()
    client.login("dave", "cafe\u0301", keys)  # e + combining acute accent
    sim.run_until_idle()
    assert client.state is ClientState.ONLINE


def test_expired_certificate_is_the_same_auth_failed() -> None:
    sim = make_simulation("alice")
    register_only(sim, "b1", "bob")
    # a year later, past the clock tolerance too (PROTOCOL.md 6.3; no timers: alice stays online)
    sim.now += sim.config.certificate_validity_seconds + CLOCK_SKEW_SECONDS + 1
    late = connect(sim, "late")
    late.login("bob", password_of("bob"), user_keys("bob"))
    sim.run_until_idle()
    failure = last_failure(sim, "late")
    assert (failure.code, failure.message, failure.ref) == (A.AUTH_FAILED, "login failed", "login")
    assert "bob" not in online(sim)


def test_rekeys_while_a_key_job_runs_are_merged_into_the_newest_epoch() -> None:
    """PROTOCOL.md 7.2 "bounded rekey": one key job per chat at a time; the changes made while it runs are
    merged into one job for the newest epoch; the overtaken distribution is never sent, and a user removed
    meanwhile gets nothing of the later epochs."""
    sim = make_simulation("alice", "bob", "carol")
    cid = open_chat(sim, "alice", "bob")
    held: list = []
    real_next_job = sim.server.next_job
    sim.server.next_job = lambda: None  # type: ignore[method-assign]  # the driver is slow: jobs wait
    try:
        sim.clients["alice"].invite(cid, "carol")  # epoch 2
        sim.run_until_idle()
        sim.disconnect("bob")  # epoch 3, reason disconnect
        sim.run_until_idle()
        while (job := real_next_job()) is not None:
            held.append(job)
        assert [j.epoch for j in held] == [2]  # epoch 3 waits for the running job: merged, not queued
        held[0].run()
        sim.server.job_done(held[0], sim.now)  # epoch 2's key is overtaken: not sent
        while (job := real_next_job()) is not None:
            held.append(job)
        assert [j.epoch for j in held] == [2, 3] and held[1].members == ("alice", "carol")
        assert (held[1].reason, held[1].actor) == ("disconnect", "bob")
        held[1].run()
        sim.server.job_done(held[1], sim.now)
        sim.flush()
        sim.run_until_idle()
    finally:
        sim.server.next_job = real_next_job  # type: ignore[method-assign]
    assert [k.epoch for k in sim.events_of("alice", ev.ChatKeyed)] == [1, 3]
    assert [k.epoch for k in sim.events_of("carol", ev.ChatKeyed)] == [3]
    assert [k.epoch for k in sim.events_of("bob", ev.ChatKeyed)] == [1]
    assert not sim.events_of("alice", ev.MessageRejected) and not sim.events_of("carol", ev.MessageRejected)
    sim.clients["carol"].send_chat(cid, "epoch three")
    sim.run_until_idle()
    assert received_from(sim, "alice") == [("carol", "epoch three")]
