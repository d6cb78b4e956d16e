"""ClientProtocol and its ChatBook: local refusals, handshake checks and every end-to-end check on what arrives.

A malicious server is played by ``server_push`` (frames sealed with the server's own channel to the client) and
by ChatKeyJob runs with chosen inputs; a malicious member by messages built with the chat key it holds.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from securechat.crypto import aead
from securechat.crypto.certificates import issue_certificate
from securechat.crypto.exchange import generate_ephemeral
from securechat.crypto.keys import load_public_key, public_key_der
from securechat.crypto.signatures import SignatureScheme, generate_signing_key, sign
from securechat.errors import ErrorCode, IntegrityError, LocalProtocolError, RemoteProtocolError, SecureChatError
from securechat.protocol import codec
from securechat.protocol import events as ev
from securechat.protocol import messages as m
from securechat.protocol.channel import server_signed_bytes, transcript_hash
from securechat.protocol.chats import ClientChat
from securechat.protocol.client import ClientProtocol
from securechat.protocol.constructions import MAX_SEQ, chat_header, chat_signed_bytes, sender_key
from securechat.protocol.jobs import ChatKeyJob, ServerKey
from securechat.protocol.states import ChatState, ClientState
from securechat.simulation import SERVER, flip_bit
from tests.helpers import (
    DSA,
    assert_serves,
    chat_messages_to,
    connect,
    is_closed,
    last_failure,
    make_pair,
    make_simulation,
    open_chat,
    password_of,
    peer_of,
    received_texts,
    rejections,
    seeded,
    server_push,
    user_keys,
)

A = ErrorCode


def closed_code(sim, label):  # type: ignore[no-untyped-def]
    return sim.last_event(label, ev.ConnectionClosed).code


def book_chat(sim, label: str, chat_id: str) -> ClientChat:  # type: ignore[no-untyped-def]
    return sim.clients[label].book.chats[chat_id]


def craft(chat: ClientChat, *, sender: str, seq: int, text: str, scheme: SignatureScheme, signing_key: object,
          epoch: int | None = None, key: bytes | None = None) -> m.ChatMessage:
    """A chat message as a member holding *key* (default: the chat's current key) would build it."""
    epoch = chat.epoch if epoch is None else epoch
    header = chat_header(chat_id=chat.chat_id, epoch=epoch, sender=sender, seq=seq, suite=chat.suite)
    ciphertext = aead.seal(sender_key(key or chat.key, chat_id=chat.chat_id, epoch=epoch, sender=sender),
                           text.encode(), aad=header, nonce=aead.nonce_from_counter(seq),
                           suite=aead.CipherSuite(chat.suite))
    signature = sign(scheme, signing_key, chat_signed_bytes(header, ciphertext))
    return m.ChatMessage(chat_id=chat.chat_id, epoch=epoch, sender=sender, seq=seq, ciphertext=ciphertext,
                         signature=signature)


def last_rejection(sim, label):  # type: ignore[no-untyped-def]
    return sim.last_event(label, ev.MessageRejected)


# =============================================================================================================
# Local refusals: nothing is sent, nothing changes (LocalProtocolError)
# =============================================================================================================


def test_commands_before_connect_are_local_protocol_errors() -> None:
    client = ClientProtocol()
    keys = user_keys("alice")
    for command in (
        lambda: client.login("alice", "pw", keys), lambda: client.register("alice", "pw", keys),
        client.who, client.logout, lambda: client.status("bob"), lambda: client.open_chat(["bob"]),
        lambda: client.send_chat("c1", "hi"), lambda: client.invite("c1", "bob"), lambda: client.leave("c1"),
    ):
        with pytest.raises(LocalProtocolError) as info:
            command()
        assert info.value.code is A.UNEXPECTED_MESSAGE
    assert client.state is ClientState.IDLE and client.data_to_send() == b"" and client.next_event() is None


def test_connect_twice_is_a_local_protocol_error() -> None:
    pair = make_pair()
    with pytest.raises(LocalProtocolError):
        pair.client.connect()
    assert pair.client.state is ClientState.CONNECTED and pair.client.data_to_send() == b""


def test_chat_before_login_is_local_protocol_error() -> None:
    sim = make_simulation()
    client = connect(sim, "early")
    for command in (lambda: client.send_chat("c1", "hi"), lambda: client.open_chat(["bob"]), client.who,
                    lambda: client.invite("c1", "bob"), lambda: client.leave("c1"), lambda: client.status("x")):
        with pytest.raises(LocalProtocolError) as info:
            command()
        assert info.value.code is A.UNEXPECTED_MESSAGE
    assert client.state is ClientState.CONNECTED and client.data_to_send() == b""
    assert client.link.next_rid == 1  # no request id was used up


def test_login_while_a_login_is_pending_is_refused_locally() -> None:
    sim = make_simulation()
    client = connect(sim, "c")
    client.login("alice", "pw", user_keys("alice"))
    with pytest.raises(LocalProtocolError):
        client.login("alice", "pw", user_keys("alice"))
    with pytest.raises(LocalProtocolError):
        client.register("alice", "pw", user_keys("alice"))
    assert client.state is ClientState.AUTHENTICATING


def test_online_commands_on_an_unknown_chat_are_unknown_chat() -> None:
    sim = make_simulation("alice")
    alice = sim.clients["alice"]
    for command in (lambda: alice.send_chat("c-missing", "hi"), lambda: alice.invite("c-missing", "bob"),
                    lambda: alice.leave("c-missing")):
        with pytest.raises(LocalProtocolError) as info:
            command()
        assert info.value.code is A.UNKNOWN_CHAT
    assert alice.data_to_send() == b""


def test_leaving_chat_refuses_further_commands_with_not_member() -> None:
    sim = make_simulation("alice", "bob")
    cid = open_chat(sim, "alice", "bob")
    alice = sim.clients["alice"]
    alice.leave(cid)
    assert book_chat(sim, "alice", cid).state is ChatState.LEAVING
    for command in (lambda: alice.leave(cid), lambda: alice.send_chat(cid, "x"), lambda: alice.invite(cid, "bob")):
        with pytest.raises(LocalProtocolError) as info:
            command()
        assert info.value.code is A.NOT_MEMBER
    sim.run_until_idle()
    assert book_chat(sim, "alice", cid).state is ChatState.LEFT and book_chat(sim, "alice", cid).key == b""
    with pytest.raises(LocalProtocolError):
        alice.send_chat(cid, "after leaving")


def test_message_too_long_and_seq_exhaustion_are_limit_exceeded() -> None:
    sim = make_simulation("alice", "bob")
    cid = open_chat(sim, "alice", "bob")
    alice = sim.clients["alice"]
    with pytest.raises(LocalProtocolError) as info:
        alice.send_chat(cid, "x" * (64 * 1024 + 1))
    assert info.value.code is A.LIMIT_EXCEEDED
    alice.send_chat(cid, "y" * (64 * 1024))  # exactly the limit is fine
    sim.run_until_idle()
    assert received_texts(sim, "bob") == [("alice", "y" * 65536)]
    chat = book_chat(sim, "alice", cid)
    chat.sent_seq = MAX_SEQ
    with pytest.raises(LocalProtocolError) as info:
        alice.send_chat(cid, "the nonce would wrap")
    assert info.value.code is A.LIMIT_EXCEEDED and chat.sent_seq == MAX_SEQ
    assert alice.data_to_send() == b""


# =============================================================================================================
# Handshake (docs/THREATS.md 27-29)
# =============================================================================================================


def test_pinned_key_mismatch_is_handshake_failed_and_no_credential_is_sent() -> None:
    pair = make_pair(connect_now=False)
    other = public_key_der(generate_signing_key(SignatureScheme.ED25519, random_bytes=seeded("other-server")))
    pair.client = ClientProtocol(server_key=(other, "ed25519"), random_bytes=seeded("c"))
    pair.client.connect()
    pair.pump()
    assert pair.client_events == [ev.ConnectionClosed(code="handshake_failed",
                                                      message="server key differs from the pinned key")]
    assert pair.client.state is ClientState.CLOSED
    with pytest.raises(LocalProtocolError):
        pair.client.login("alice", "pw", user_keys("alice"))


def test_trust_on_first_use_reports_the_fingerprint() -> None:
    sim = make_simulation()
    sim.add_client("tofu", pin_server_key=False)
    sim.run_until_idle()
    done = sim.last_event("tofu", ev.HandshakeCompleted)
    assert done.first_use and done.server_key == sim.server_key.public_der and done.server_scheme == "ed25519"
    pinned = connect(sim, "pinned")
    assert not sim.last_event("pinned", ev.HandshakeCompleted).first_use
    assert done.server_fingerprint == sim.last_event("pinned", ev.HandshakeCompleted).server_fingerprint
    assert pinned.state is ClientState.CONNECTED


def _rewrite_server_hello(change):  # type: ignore[no-untyped-def]
    """An interceptor that rewrites the first server_hello on the wire with *change*(hello) (Mallory)."""
    done = []

    def intercept(frame):  # type: ignore[no-untyped-def]
        if done or frame.source != SERVER or not frame.data:
            return [frame]
        hello = codec.decode_message(frame.data[4:])
        if not isinstance(hello, m.ServerHello):
            return [frame]
        done.append(hello)
        return [replace(frame, data=codec.encode_frame(change(hello)))]

    return intercept


@pytest.mark.parametrize("pinned", [True, False])
def test_substituted_key_share_is_handshake_failed(pinned: bool) -> None:
    sim = make_simulation()
    _, mallory_share = generate_ephemeral(random_bytes=seeded("mallory-x25519"))
    sim.intercept = _rewrite_server_hello(lambda h: replace(h, key_share=mallory_share))
    client = sim.add_client("victim", pin_server_key=pinned)
    sim.run_until_idle()
    assert closed_code(sim, "victim") == A.HANDSHAKE_FAILED and client.link.records is None
    assert not sim.events_of("victim", ev.HandshakeCompleted)


def test_mallory_signing_her_own_hello_is_refused_by_the_pin() -> None:
    sim = make_simulation()
    mallory_key = generate_signing_key(SignatureScheme.ED25519, random_bytes=seeded("mallory-server"))
    mallory_der = public_key_der(mallory_key)

    def resign(hello: m.ServerHello) -> m.ServerHello:
        client = sim.clients["victim"]
        transcript = transcript_hash(version=1, key_exchange="x25519", client_random=client.handshake.hello.random,
                                     client_share=client.handshake.hello.key_share, server_random=hello.random,
                                     server_share=hello.key_share, server_key=mallory_der, server_scheme="ed25519")
        return replace(hello, server_key=mallory_der,
                       signature=sign(SignatureScheme.ED25519, mallory_key, server_signed_bytes(transcript)))

    sim.intercept = _rewrite_server_hello(resign)
    sim.add_client("victim")
    sim.run_until_idle()
    assert closed_code(sim, "victim") == A.HANDSHAKE_FAILED


def test_replayed_server_hello_is_handshake_failed() -> None:
    """docs/THREATS.md 28: the signature covers the client's fresh random and share."""
    sim = make_simulation()
    connect(sim, "first")
    old = next(r for r in sim.trace if r.source == SERVER and r.target == "first" and r.types == ("server_hello",))
    sim.intercept = _rewrite_server_hello(lambda h: codec.decode_message(old.data[4:]))
    sim.add_client("second")
    sim.run_until_idle()
    assert closed_code(sim, "second") == A.HANDSHAKE_FAILED


def test_low_order_server_share_is_handshake_failed_even_when_signed() -> None:
    """docs/THREATS.md 29: a (malicious) server signs an all-zero share; the client refuses the unkeyed channel."""
    sim = make_simulation()

    def zero_share(hello: m.ServerHello) -> m.ServerHello:
        client = sim.clients["victim"]
        transcript = transcript_hash(version=1, key_exchange="x25519", client_random=client.handshake.hello.random,
                                     client_share=client.handshake.hello.key_share, server_random=hello.random,
                                     server_share=bytes(32), server_key=hello.server_key, server_scheme="ed25519")
        return replace(hello, key_share=bytes(32), signature=sign(
            SignatureScheme.ED25519, sim.server_key.private_key, server_signed_bytes(transcript)))

    sim.intercept = _rewrite_server_hello(zero_share)
    sim.add_client("victim")
    sim.run_until_idle()
    assert closed_code(sim, "victim") == A.HANDSHAKE_FAILED


@pytest.mark.parametrize("frame", [
    codec.encode_frame(m.Record(data=b"x" * 32)),                                 # a record before the hello
    codec.encode_frame(m.Who()),                                                  # a client-to-server type
    b"\x00\x00\x00\x00",
    b"\xff\xff\xff\xff",
    codec.frame(b'{"type":'),
])
def test_garbage_before_the_server_hello_closes_the_client(frame: bytes) -> None:
    client = ClientProtocol(random_bytes=seeded("g"))
    client.connect()
    client.receive_data(frame, 0.0)
    closed = client.next_event()
    assert isinstance(closed, ev.ConnectionClosed) and closed.code is not None
    assert client.state is ClientState.CLOSED
    client.receive_data(b"anything after the close", 0.0)  # ignored
    assert client.next_event() is None


def test_clear_error_before_the_channel_is_fatal_with_its_code() -> None:
    client = ClientProtocol(random_bytes=seeded("e"))
    client.connect()
    client.receive_data(codec.encode_frame(m.Error(code="server_busy", message="full")), 0.0)
    assert client.next_event() == ev.ConnectionClosed(code="server_busy", message="full")


def test_end_of_stream_is_connection_lost() -> None:
    sim = make_simulation("alice")
    sim.clients["alice"].receive_data(b"", sim.now)
    assert closed_code(sim, "alice") == A.CONNECTION_LOST


# =============================================================================================================
# What the server pushes (a malicious or buggy server)
# =============================================================================================================


@pytest.mark.parametrize("code", ["bad_record", "bad_frame", "frame_too_large", "handshake_failed"])
def test_fatal_inner_error_closes_the_client(code: str) -> None:
    sim = make_simulation("alice")
    server_push(sim, "alice", m.Error(code=code, message="bye"))
    assert closed_code(sim, "alice") == code and sim.clients["alice"].state is ClientState.CLOSED


@pytest.mark.parametrize("code", ["server_busy", "rate_limited", "some_future_code"])
def test_other_inner_errors_are_request_failures(code: str) -> None:
    sim = make_simulation("alice")
    server_push(sim, "alice", m.Error(code=code, message="later", rid=7, ref="who"))
    assert last_failure(sim, "alice") == ev.RequestFailed(rid=7, code=code, message="later", ref="who")
    assert sim.clients["alice"].state is ClientState.ONLINE
    assert_serves(sim, "alice")


@pytest.mark.parametrize("kind", [
    "who", "login", "server_hello", "record", "login_ok", "bye", "register_challenge",
])
def test_out_of_place_inner_frames_close_the_client(kind: str) -> None:
    sim = make_simulation("alice")
    message = {
        "who": lambda: m.Who(rid=1), "login": lambda: m.Login(username="a", password="p", signature=b"s"),
        "server_hello": lambda: m.ServerHello(random=b"r" * 32, key_share=b"k" * 32, server_key=b"k",
                                              server_scheme="ed25519", signature=b"s"),
        "record": lambda: m.Record(data=b"nested"),
        "login_ok": lambda: m.LoginOk(username="alice", online=(),
                                      certificate=sim.registry.get_user("alice").certificate),  # type: ignore[union-attr]
        "bye": lambda: m.Bye(), "register_challenge": lambda: m.RegisterChallenge(wrapped_nonce=b"w"),
    }[kind]()
    server_push(sim, "alice", message)
    assert closed_code(sim, "alice") == A.UNEXPECTED_MESSAGE


def test_login_ok_with_another_users_certificate_is_bad_certificate() -> None:
    sim = make_simulation("bob")
    alice = connect(sim, "alice")
    alice.login("alice", "pw", user_keys("alice"))
    sim.flush()
    sim.in_flight.clear()  # the real login never reaches the server: Mallory answers instead
    alice.link.records.sent -= 1  # type: ignore[union-attr]  # (the server did not see that record)
    bob_cert = sim.registry.get_user("bob").certificate  # type: ignore[union-attr]
    server_push(sim, "alice", m.LoginOk(rid=1, username="alice", certificate=bob_cert, online=("alice",)))
    assert closed_code(sim, "alice") == A.BAD_CERTIFICATE and alice.username is None


def test_registered_certificate_for_other_keys_is_bad_certificate() -> None:
    """A server that certifies keys other than ours (docs/THREATS.md 44 style) is caught at registration."""
    sim = make_simulation()
    dave = connect(sim, "dave")
    keys = user_keys("dave")
    dave.register("dave", "pw", keys)
    sim.flush()
    sim.in_flight.clear()
    dave.link.records.sent -= 1  # type: ignore[union-attr]
    dave.link.state = ClientState.PROVING  # as if the challenge had been answered
    other = user_keys("mallory")
    cert = issue_certificate(username="dave", signature_scheme=other.scheme, encryption_key=other.encryption_public,
                             signing_key=other.signing_public, serial=1, now=int(sim.now), validity_seconds=60,
                             ca_private_key=sim.server_key.private_key, ca_scheme=sim.server_key.scheme)
    server_push(sim, "dave", m.Registered(rid=1, certificate=cert))
    assert closed_code(sim, "dave") == A.BAD_CERTIFICATE
    assert not sim.events_of("dave", ev.RegistrationSucceeded)


def test_unreadable_registration_challenge_is_key_unwrap_failed() -> None:
    sim = make_simulation()
    dave = connect(sim, "dave")
    dave.register("dave", "pw", user_keys("dave"))
    sim.flush()
    sim.in_flight.clear()
    dave.link.records.sent -= 1  # type: ignore[union-attr]
    server_push(sim, "dave", m.RegisterChallenge(rid=1, wrapped_nonce=b"\x01" * 256))
    assert closed_code(sim, "dave") == A.KEY_UNWRAP_FAILED
    assert dave.data_to_send() == b""  # no proof was made


def test_pushes_after_logout_are_ignored() -> None:
    sim = make_simulation("alice", "bob")
    alice = sim.clients["alice"]
    alice.logout()
    sim.flush()
    server_push(sim, "alice", m.Presence(username="carol", online=True), m.Error(code="rate_limited"), run=False)
    sim.run_until_idle()
    assert not [e for e in sim.events_of("alice", ev.PresenceChanged) if e.username == "carol"]
    assert not sim.events_of("alice", ev.RequestFailed)
    assert sim.events_of("alice", ev.LoggedOut) and closed_code(sim, "alice") is None


def test_tampered_record_from_the_server_is_bad_record() -> None:
    """docs/THREATS.md 32: Mallory flips a bit of the record relaying a chat message; bob closes, releases nothing."""
    sim = make_simulation("alice", "bob")
    cid = open_chat(sim, "alice", "bob")
    sim.intercept = flip_bit(-5, source=SERVER, target="bob", when=lambda f: "chat_message" in f.inner)
    sim.clients["alice"].send_chat(cid, "secret")
    sim.run_until_idle()
    assert closed_code(sim, "bob") == A.BAD_RECORD
    assert not sim.events_of("bob", ev.ChatReceived)


def test_reflected_record_is_bad_record() -> None:
    """docs/THREATS.md 33: bob's own record echoed back to him does not open under the s2c key."""
    sim = make_simulation("alice", "bob")
    bob = sim.clients["bob"]
    bob.who()
    sim.flush()
    record = sim.in_flight[-1]
    assert record.source == "bob"
    sim.inject(SERVER, "bob", record.data)
    sim.in_flight.rotate(1)  # the reflection arrives before the server's answer
    sim.run_until_idle()
    assert closed_code(sim, "bob") == A.BAD_RECORD


# =============================================================================================================
# Chat key distributions (PROTOCOL.md 7.2, docs/THREATS.md 44-45)
# =============================================================================================================


def _distribution(sim, chat_id: str, epoch: int, members: tuple[str, ...], *, ca: ServerKey | None = None,  # type: ignore[no-untyped-def]
                  reason: str = "invite") -> dict[str, m.ChatKey]:
    job = ChatKeyJob(peer=-1, chat_id=chat_id, epoch=epoch, mode="server-key", suite="aes-256-gcm", reason=reason,
                     actor="alice", members=members,
                     encryption_keys=tuple(load_public_key(user_keys(n).encryption_public) for n in members),
                     ca=ca or sim.server_key, random_bytes=sim.random_bytes)
    job.run()
    return job.messages


def _mallory_ca() -> ServerKey:
    key = generate_signing_key(SignatureScheme.ED25519, random_bytes=seeded("mallory-ca"))
    return ServerKey(private_key=key, scheme=SignatureScheme.ED25519, public_der=public_key_der(key))


def test_valid_distribution_from_the_server_is_installed() -> None:
    sim = make_simulation("alice", "bob")
    cid = open_chat(sim, "alice", "bob")
    server_push(sim, "bob", _distribution(sim, cid, 2, ("alice", "bob"))["bob"])
    keyed = sim.last_event("bob", ev.ChatKeyed)
    assert (keyed.epoch, keyed.reason) == (2, "invite") and book_chat(sim, "bob", cid).epoch == 2


@pytest.mark.parametrize("attack, code", [
    ("mallory_signed", A.BAD_SIGNATURE),
    ("swapped_wrap", A.KEY_UNWRAP_FAILED),
    ("resigned_wrong_wrap", A.KEY_UNWRAP_FAILED),
    ("not_listing_us", A.NOT_MEMBER),
    ("stale_epoch", A.STALE_EPOCH),
    ("edited_member_list", A.BAD_SIGNATURE),
])
def test_bad_distribution_is_rejected_and_changes_nothing(attack: str, code: ErrorCode) -> None:
    sim = make_simulation("alice", "bob", "carol")
    cid = open_chat(sim, "alice", "bob")
    chat = book_chat(sim, "bob", cid)
    before = (chat.epoch, chat.key, chat.members)
    good = _distribution(sim, cid, 2, ("alice", "bob"))
    if attack == "mallory_signed":
        message = _distribution(sim, cid, 2, ("alice", "bob"), ca=_mallory_ca())["bob"]
    elif attack == "swapped_wrap":
        message = replace(good["bob"], wrapped_key=good["alice"].wrapped_key)
    elif attack == "resigned_wrong_wrap":
        # a server that signs a distribution where bob's wrap is really alice's: the digest matches, OAEP fails
        from securechat.protocol.constructions import chat_key_signed_bytes, wrap_tree

        wrong = good["alice"].wrapped_key
        root, paths = wrap_tree(("alice", "bob"), (good["alice"].wrapped_key, wrong))
        signature = sign(sim.server_key.scheme, sim.server_key.private_key, chat_key_signed_bytes(
            chat_id=cid, epoch=2, mode="server-key", suite="aes-256-gcm", reason="invite", actor="alice",
            members=("alice", "bob"), wrap_root=root))
        message = replace(good["bob"], wrap_root=root, wrap_path=paths[1], wrapped_key=wrong, signature=signature)
    elif attack == "not_listing_us":
        message = _distribution(sim, cid, 2, ("alice", "carol"))["carol"]
    elif attack == "stale_epoch":
        message = _distribution(sim, cid, 1, ("alice", "bob"))["bob"]
    else:
        message = replace(good["bob"], members=("alice", "bob", "mallory"))
    server_push(sim, "bob", message)
    rejected = last_rejection(sim, "bob")
    assert (rejected.chat_id, rejected.sender, rejected.code) == (cid, "server", code)
    assert (chat.epoch, chat.key, chat.members) == before
    assert sim.clients["bob"].state is ClientState.ONLINE
    # the chat still works at the old epoch
    sim.clients["alice"].send_chat(cid, "still here")
    sim.run_until_idle()
    assert received_texts(sim, "bob") == [("alice", "still here")]


def test_distribution_for_a_new_chat_with_a_bad_signature_creates_nothing() -> None:
    sim = make_simulation("alice", "bob")
    server_push(sim, "bob", _distribution(sim, "c-ghost", 1, ("alice", "bob"), ca=_mallory_ca())["bob"])
    assert last_rejection(sim, "bob").code == A.BAD_SIGNATURE and "c-ghost" not in sim.clients["bob"].chats


# =============================================================================================================
# Chat messages (PROTOCOL.md 7.4, docs/THREATS.md 38-43)
# =============================================================================================================


def test_spoofed_sender_is_bad_signature() -> None:
    """docs/THREATS.md 41: carol holds the group key and writes as alice, signing with her own key."""
    sim = make_simulation("alice", "bob", "carol")
    cid = open_chat(sim, "alice", "bob", "carol")
    chat = book_chat(sim, "carol", cid)
    carol = user_keys("carol")
    forged = craft(chat, sender="alice", seq=1, text="I owe carol 100", scheme=carol.scheme,
                   signing_key=carol.signing_key)
    server_push(sim, "bob", forged)
    assert (last_rejection(sim, "bob").sender, last_rejection(sim, "bob").code) == ("alice", A.BAD_SIGNATURE)
    assert not sim.events_of("bob", ev.ChatReceived)
    # the real alice's seq 1 is still accepted: the forgery did not advance her counter
    sim.clients["alice"].send_chat(cid, "real")
    sim.run_until_idle()
    assert received_texts(sim, "bob") == [("alice", "real")]


def test_unsigned_or_truncated_signature_is_bad_signature() -> None:
    sim = make_simulation("alice", "bob")
    cid = open_chat(sim, "alice", "bob")
    sim.clients["alice"].send_chat(cid, "hello")
    sim.flush()
    sim.in_flight.clear()
    sim.clients["alice"].link.records.sent -= 1  # type: ignore[union-attr]
    alice = user_keys("alice")
    good = craft(book_chat(sim, "alice", cid), sender="alice", seq=1, text="hello", scheme=alice.scheme,
                 signing_key=alice.signing_key)
    book = sim.clients["bob"].book
    assert book is not None
    for bad in (replace(good, signature=b"\x00"), replace(good, signature=good.signature[:-1]),
                replace(good, ciphertext=good.ciphertext[:-1] + bytes([good.ciphertext[-1] ^ 1]))):
        assert book.open(bad).code == A.BAD_SIGNATURE  # type: ignore[union-attr]
    assert isinstance(book.open(good), ev.ChatReceived)


def test_replayed_message_is_replay() -> None:
    """docs/THREATS.md 42: a malicious server re-sends a valid signed message."""
    sim = make_simulation("alice", "bob")
    cid = open_chat(sim, "alice", "bob")
    sim.clients["alice"].send_chat(cid, "pay bob 5")
    sim.run_until_idle()
    captured = chat_messages_to(sim, "bob")[-1]
    server_push(sim, "bob", captured)
    assert (last_rejection(sim, "bob").code, last_rejection(sim, "bob").sender) == (A.REPLAY, "alice")
    assert received_texts(sim, "bob") == [("alice", "pay bob 5")]
    book = sim.clients["bob"].book
    assert book.open(captured).code == A.REPLAY  # type: ignore[union-attr]


def test_out_of_order_message_reports_a_gap_then_refuses_the_older_one() -> None:
    sim = make_simulation("alice", "bob")
    cid = open_chat(sim, "alice", "bob")
    alice, book = user_keys("alice"), sim.clients["bob"].book
    chat = book_chat(sim, "alice", cid)
    first = craft(chat, sender="alice", seq=1, text="one", scheme=alice.scheme, signing_key=alice.signing_key)
    third = craft(chat, sender="alice", seq=3, text="three", scheme=alice.scheme, signing_key=alice.signing_key)
    got = book.open(third)  # type: ignore[union-attr]
    assert isinstance(got, ev.ChatReceived) and got.gap == 2
    assert book.open(first).code == A.REPLAY  # type: ignore[union-attr]


def test_message_from_a_previous_epoch_is_stale_epoch() -> None:
    sim = make_simulation("alice", "bob", "carol")
    cid = open_chat(sim, "alice", "bob")
    sim.clients["alice"].send_chat(cid, "epoch one")
    sim.run_until_idle()
    old = chat_messages_to(sim, "bob")[-1]
    sim.clients["alice"].invite(cid, "carol")
    sim.run_until_idle()
    assert book_chat(sim, "bob", cid).epoch == 2
    for name in ("bob", "carol"):
        server_push(sim, name, old)
        assert last_rejection(sim, name).code == A.STALE_EPOCH


def test_newcomer_cannot_decrypt_earlier_epochs() -> None:
    """docs/THREATS.md 40: carol joins at epoch 2; ciphertexts of epoch 1 do not open under anything she holds."""
    sim = make_simulation("alice", "bob", "carol")
    cid = open_chat(sim, "alice", "bob")
    sim.clients["alice"].send_chat(cid, "before carol")
    sim.run_until_idle()
    old = chat_messages_to(sim, "bob")[-1]
    sim.clients["alice"].invite(cid, "carol")
    sim.run_until_idle()
    carol_chat = book_chat(sim, "carol", cid)
    assert carol_chat.epoch == 2
    header = chat_header(chat_id=cid, epoch=1, sender="alice", seq=old.seq, suite="aes-256-gcm")
    for epoch in (1, 2):
        key = sender_key(carol_chat.key, chat_id=cid, epoch=epoch, sender="alice")
        with pytest.raises(IntegrityError):
            aead.unseal(key, old.ciphertext, aad=header, nonce=aead.nonce_from_counter(old.seq))
    assert not [e for e in sim.events_of("carol", ev.ChatReceived) if e.text == "before carol"]


def test_ex_member_cannot_read_later_epochs_and_is_not_routed_to() -> None:
    """docs/THREATS.md 38: carol keeps her epoch-2 key after leaving; epoch-3 messages fail AEAD for her."""
    sim = make_simulation("alice", "bob", "carol")
    cid = open_chat(sim, "alice", "bob", "carol")
    kept_key = book_chat(sim, "carol", cid).key
    sim.clients["carol"].leave(cid)
    sim.run_until_idle()
    assert book_chat(sim, "alice", cid).epoch == 2 and book_chat(sim, "carol", cid).key == b""
    routed_before = len(chat_messages_to(sim, "carol"))
    sim.clients["alice"].send_chat(cid, "after carol left")
    sim.run_until_idle()
    assert received_texts(sim, "bob") == [("alice", "after carol left")]
    assert len(chat_messages_to(sim, "carol")) == routed_before  # the server never routed it to carol
    new = chat_messages_to(sim, "bob")[-1]
    assert new.epoch == 2
    header = chat_header(chat_id=cid, epoch=new.epoch, sender="alice", seq=new.seq, suite="aes-256-gcm")
    for epoch in (1, 2):
        with pytest.raises(IntegrityError):
            aead.unseal(sender_key(kept_key, chat_id=cid, epoch=epoch, sender="alice"), new.ciphertext, aad=header,
                        nonce=aead.nonce_from_counter(new.seq))
    server_push(sim, "carol", new)  # even if a malicious server forwards it
    assert last_rejection(sim, "carol").code in (A.UNKNOWN_CHAT, A.NOT_MEMBER)
    assert not sim.events_of("carol", ev.ChatReceived)


def test_ex_member_sending_with_its_old_key_is_rejected() -> None:
    """docs/THREATS.md 39: a valid signature does not make an ex-member's message acceptable."""
    sim = make_simulation("alice", "bob", "carol")
    cid = open_chat(sim, "alice", "bob", "carol")
    old_chat = replace(book_chat(sim, "carol", cid))
    sim.clients["carol"].leave(cid)
    sim.run_until_idle()
    carol = user_keys("carol")
    at_old_epoch = craft(old_chat, sender="carol", seq=5, text="still here", scheme=carol.scheme,
                         signing_key=carol.signing_key)
    at_new_epoch = craft(old_chat, sender="carol", seq=6, text="still here", scheme=carol.scheme,
                         signing_key=carol.signing_key, epoch=2)
    server_push(sim, "bob", at_old_epoch)
    assert last_rejection(sim, "bob").code == A.STALE_EPOCH
    server_push(sim, "bob", at_new_epoch)
    assert last_rejection(sim, "bob").code == A.NOT_MEMBER
    assert not sim.events_of("bob", ev.ChatReceived)
    # and the server refuses her chat_send outright
    from tests.helpers import request

    request(sim, "carol", m.ChatSend(chat_id=cid, epoch=2, seq=1, ciphertext=b"c", signature=b"s"))
    assert last_failure(sim, "carol").code == A.NOT_MEMBER


def test_message_claiming_to_be_from_ourselves_or_for_an_unknown_chat_is_dropped() -> None:
    sim = make_simulation("alice", "bob")
    cid = open_chat(sim, "alice", "bob")
    alice = user_keys("alice")
    chat = book_chat(sim, "alice", cid)
    mine = craft(chat, sender="alice", seq=1, text="echo", scheme=alice.scheme, signing_key=alice.signing_key)
    server_push(sim, "alice", mine)
    assert last_rejection(sim, "alice").code == A.NOT_MEMBER
    elsewhere = replace(mine, chat_id="c-unknown")
    server_push(sim, "bob", elsewhere)
    assert last_rejection(sim, "bob").code == A.UNKNOWN_CHAT


def test_sender_certificate_from_another_ca_is_bad_certificate() -> None:
    sim = make_simulation("alice", "bob")
    cid = open_chat(sim, "alice", "bob")
    book = sim.clients["bob"].book
    assert book is not None
    book.certificates.pop("alice")
    mallory_ca = _mallory_ca()
    alice = user_keys("alice")
    foreign = issue_certificate(username="alice", signature_scheme=alice.scheme,
                                encryption_key=alice.encryption_public, signing_key=alice.signing_public, serial=1,
                                now=int(sim.now), validity_seconds=3600, ca_private_key=mallory_ca.private_key,
                                ca_scheme=mallory_ca.scheme)
    # the malicious answer to bob's own request (an unasked certificates message is ignored altogether)
    rid = sim.clients["bob"].fetch_certificates(["alice"])
    server_push(sim, "bob", m.Certificates(rid=rid, certificates=(foreign,), unknown=()))
    rejected = last_rejection(sim, "bob")
    assert (rejected.sender, rejected.code) == ("alice", A.BAD_CERTIFICATE)
    assert "alice" not in book.certificates
    message = craft(book_chat(sim, "alice", cid), sender="alice", seq=1, text="hi", scheme=alice.scheme,
                    signing_key=alice.signing_key)
    assert book.open(message).code == A.BAD_CERTIFICATE  # type: ignore[union-attr]


def test_message_from_a_member_without_certificate_is_held_then_verified() -> None:
    """PROTOCOL.md 7.4: the client fetches the sender's certificate once, then opens what it held."""
    sim = make_simulation("alice", "bob")
    cid = open_chat(sim, "alice", "bob")
    sim.clients["bob"].book.certificates.pop("alice")  # type: ignore[union-attr]
    sim.clients["alice"].send_chat(cid, "one")
    sim.clients["alice"].send_chat(cid, "two")
    sim.run_until_idle()
    assert received_texts(sim, "bob") == [("alice", "one"), ("alice", "two")]
    fetches = [e for e in sim.client_trace["bob"] if e.type == "get_certificates" and e.direction == "send"]
    assert len(fetches) == 2  # one when the chat was keyed, one for the held messages (not one per message)


def test_signature_downgrade_to_pss_with_a_dsa_users_rsa_key_is_bad_signature() -> None:
    """docs/THREATS.md 26: bob is certified for DSA; a PSS signature by his RSA (encryption) key is refused."""
    sim = make_simulation("alice", "bob", dsa=("bob",))
    cid = open_chat(sim, "alice", "bob")
    bob = user_keys("bob", DSA)
    chat = book_chat(sim, "bob", cid)
    downgraded = craft(chat, sender="bob", seq=1, text="pss", scheme=SignatureScheme.RSA_PSS_SHA256,
                       signing_key=bob.encryption_key)
    server_push(sim, "alice", downgraded)
    assert (last_rejection(sim, "alice").sender, last_rejection(sim, "alice").code) == ("bob", A.BAD_SIGNATURE)
    proper = craft(chat, sender="bob", seq=1, text="dsa", scheme=DSA, signing_key=bob.signing_key)
    server_push(sim, "alice", proper)
    received = sim.last_event("alice", ev.ChatReceived)
    assert (received.text, received.signature_scheme) == ("dsa", "dsa-2048-sha256")


def test_undecryptable_message_with_a_valid_signature_is_bad_record() -> None:
    """A member signs garbage: the signature verifies, AEAD does not; the seq is not consumed."""
    sim = make_simulation("alice", "bob")
    cid = open_chat(sim, "alice", "bob")
    alice = user_keys("alice")
    chat = book_chat(sim, "alice", cid)
    header = chat_header(chat_id=cid, epoch=chat.epoch, sender="alice", seq=1, suite=chat.suite)
    garbage = b"\x00" * 40
    message = m.ChatMessage(chat_id=cid, epoch=chat.epoch, sender="alice", seq=1, ciphertext=garbage,
                            signature=sign(alice.scheme, alice.signing_key, chat_signed_bytes(header, garbage)))
    server_push(sim, "bob", message)
    assert last_rejection(sim, "bob").code == A.BAD_RECORD
    sim.clients["alice"].send_chat(cid, "real one")
    sim.run_until_idle()
    assert received_texts(sim, "bob") == [("alice", "real one")]


# =============================================================================================================
# Membership on the client
# =============================================================================================================


def test_rejoining_a_left_chat_installs_the_new_epoch() -> None:
    sim = make_simulation("alice", "bob", "carol")
    cid = open_chat(sim, "alice", "bob", "carol")
    sim.clients["carol"].leave(cid)
    sim.run_until_idle()
    sim.clients["alice"].invite(cid, "carol")
    sim.run_until_idle()
    keyed = sim.last_event("carol", ev.ChatKeyed)
    assert (keyed.chat_id, keyed.epoch) == (cid, 3) and book_chat(sim, "carol", cid).state is ChatState.ACTIVE
    sim.clients["alice"].send_chat(cid, "welcome back")
    sim.run_until_idle()
    assert received_texts(sim, "carol")[-1] == ("alice", "welcome back")


def test_failed_leave_returns_only_that_chat_to_active() -> None:
    """An error names the request (rid), not the chat: only the chat whose leave failed returns to ACTIVE.
    With two leaves in flight, the first refused (rate_limited) and the second accepted, the second chat must
    still be LEAVING when its chat_left arrives (else chat_left is outside the chat table and the client closes).
    (Found failing with client.py reverting every LEAVING chat; fixed in e553117.)"""
    sim = make_simulation("alice", "bob", messages_per_second=1, message_burst=1)
    first = open_chat(sim, "alice", "bob")
    sim.advance(2)
    second = open_chat(sim, "alice", "bob")
    sim.advance(2)
    sim.run_until_idle()
    bucket = sim.server.peers[peer_of(sim, "alice")].bucket
    assert bucket is not None
    bucket.tokens, bucket.updated = 0.0, sim.now  # alice's budget is spent
    alice = sim.clients["alice"]
    leave_first = alice.leave(first)
    sim.flush()
    alice.leave(second)
    sim.flush()
    sim.tick = 2.0  # the second record reaches the server two seconds later, with budget again
    sim.run_until_idle()
    assert last_failure(sim, "alice").rid == leave_first
    assert not sim.events_of("alice", ev.ConnectionClosed), sim.events_of("alice", ev.ConnectionClosed)
    assert book_chat(sim, "alice", first).state is ChatState.ACTIVE
    assert book_chat(sim, "alice", second).state is ChatState.LEFT


def test_chat_left_for_an_active_chat_closes_the_client() -> None:
    sim = make_simulation("alice", "bob")
    cid = open_chat(sim, "alice", "bob")
    server_push(sim, "alice", m.ChatLeft(chat_id=cid))
    assert closed_code(sim, "alice") == A.NOT_MEMBER


def test_receive_data_never_raises_on_server_garbage_inside_the_channel() -> None:
    sim = make_simulation("alice")
    peer = sim.server.peers[peer_of(sim, "alice")]
    plaintext = codec.frame(b'{"type":"presence","username":"\\ud800","online":true}')
    sim.inject(SERVER, "alice", codec.encode_frame(m.Record(data=peer.records.seal(plaintext))))  # type: ignore[union-attr]
    sim.run_until_idle()
    assert closed_code(sim, "alice") == A.BAD_FIELD
    assert not is_closed(sim, "alice")  # (only the client gave up; the server learns at end of stream)


def test_direct_client_receive_of_a_valid_record_stream() -> None:
    pair = make_pair()
    keys = user_keys("dave")
    pair.client.register("dave", password_of("dave"), keys)
    pair.pump()
    assert [type(e).__name__ for e in pair.client_events] == ["HandshakeCompleted", "RegistrationSucceeded"]
    assert isinstance(pair.client_events[-1], ev.RegistrationSucceeded)
    assert pair.client_events[-1].certificate.username == "dave"


def test_error_codes_on_events_are_error_codes_that_compare_as_strings() -> None:
    # events carry ErrorCode (a StrEnum), so drivers can still log or compare them as plain strings
    sim = make_simulation("alice")
    rid = sim.clients["alice"].status("nobody")
    sim.run_until_idle()
    failure = last_failure(sim, "alice")
    assert failure.rid == rid and failure.code is A.UNKNOWN_USER and failure.code == "unknown_user"
    assert f"{failure.code}" == "unknown_user"
    assert isinstance(RemoteProtocolError("x"), SecureChatError)


# =============================================================================================================
# Commands with bad local input (docs/STYLE.md 6: commands raise LocalProtocolError, nothing else)
# =============================================================================================================


def test_invalid_usernames_in_commands_are_local_protocol_errors() -> None:
    """docs/STYLE.md 6: command methods raise only LocalProtocolError. They used to let the RemoteProtocolError of
    fields.normalize_username escape (fixed in 14a2bf4)."""
    sim = make_simulation("alice")
    alice = sim.clients["alice"]
    fresh = connect(sim, "fresh")
    for command in (lambda: alice.open_chat(["\u0430lice"]), lambda: fresh.login("bad name", "pw", user_keys("alice")),
                    lambda: fresh.register("x" * 40, "pw", user_keys("alice"))):
        with pytest.raises(LocalProtocolError) as info:
            command()
        assert info.value.code is A.BAD_FIELD
    assert fresh.state is ClientState.CONNECTED and fresh.data_to_send() == b"" and alice.data_to_send() == b""


def test_unencodable_chat_text_is_refused_locally() -> None:
    """A lone surrogate (what Tk hands over for some emoji) is refused locally; it used to raise
    UnicodeEncodeError out of send_chat (fixed in 14a2bf4)."""
    sim = make_simulation("alice", "bob")
    cid = open_chat(sim, "alice", "bob")
    alice = sim.clients["alice"]
    with pytest.raises(LocalProtocolError):
        alice.send_chat(cid, "smile \ud83d")
    assert book_chat(sim, "alice", cid).sent_seq == 0 and alice.data_to_send() == b""


def test_unencodable_password_leaves_the_client_usable() -> None:
    """BUG: login() moves the state to AUTHENTICATING before encoding the frame; a password with a lone
    surrogate then raises UnicodeEncodeError with nothing sent, and the client is stuck in AUTHENTICATING
    (every later login or register is refused locally). The same holds for register() (stuck in REGISTERING)."""
    sim = make_simulation()
    login_user_label = "x"
    client = connect(sim, login_user_label)
    with pytest.raises(LocalProtocolError):
        client.login("alice", "pw \ud800", user_keys("alice"))
    assert client.state is ClientState.CONNECTED and client.data_to_send() == b""
    with pytest.raises(LocalProtocolError):
        client.register("alice", "pw \ud800", user_keys("alice"))
    assert client.state is ClientState.CONNECTED
    client.register("alice", password_of("alice"), user_keys("alice"))  # the connection is still usable
    sim.run_until_idle()
    assert sim.last_event(login_user_label, ev.RegistrationSucceeded).username == "alice"


def test_held_message_is_opened_at_its_own_epoch_after_a_rekey() -> None:
    """PROTOCOL.md 7.4 step 1: a message held for a certificate is checked against the chat as it was on
    arrival, so a rekey that lands before the certificate does not make it stale."""
    sim = make_simulation("alice", "bob", "carol")
    cid = open_chat(sim, "alice", "bob")
    sim.clients["bob"].book.certificates.pop("alice")  # type: ignore[union-attr]
    alice = sim.clients["alice"]
    alice.send_chat(cid, "sent at epoch 1")
    alice.invite(cid, "carol")  # same record: bob gets the message, then the epoch-2 key, then the certificate
    sim.run_until_idle()
    got = [e for e in sim.events_of("bob", ev.ChatReceived)]
    assert [(e.text, e.epoch) for e in got] == [("sent at epoch 1", 1)]
    assert book_chat(sim, "bob", cid).epoch == 2 and not rejections(sim, "bob")


def test_refused_certificate_fetch_does_not_hold_a_senders_messages_forever() -> None:
    """BUG: the client fetches a sender's certificate only if no message of that sender is already held
    (client.py _on_chat_message). If that get_certificates is refused (here rate_limited), nothing ever fetches
    again: every later message of the sender is held too, silently, for the rest of the session."""
    sim = make_simulation("alice", "bob", messages_per_second=1, message_burst=5)
    cid = open_chat(sim, "alice", "bob")
    sim.advance(10)
    book = sim.clients["bob"].book
    assert book is not None
    book.certificates.pop("alice")
    bucket = sim.server.peers[peer_of(sim, "bob")].bucket
    assert bucket is not None
    bucket.tokens, bucket.updated = 0.0, sim.now  # bob's request budget is spent right now
    sim.clients["alice"].send_chat(cid, "m1")
    sim.run_until_idle()
    assert (last_failure(sim, "bob").code, last_failure(sim, "bob").ref) == (A.RATE_LIMITED, "get_certificates")
    sim.advance(10)  # budget is back
    sim.clients["alice"].send_chat(cid, "m2")
    sim.run_until_idle()
    assert received_texts(sim, "bob") == [("alice", "m1"), ("alice", "m2")]
