"""Hostile server, meaning level: well-formed messages of every server->client type that lie.

The server owns the CA key, so it can sign any chat_key, chat_epoch or certificate. What it must not be able to do
(docs/SECURITY.md, "The client against a malicious server"): read or forge a message in a contributory or hybrid
chat, make a member accept a message another member did not send, replay or reorder messages into acceptance,
swap a pinned identity silently, or change a chat's mode. Each case names the exact event the application sees.
"""

from __future__ import annotations

import dataclasses

import pytest

from securechat.crypto.signatures import SignatureScheme
from securechat.errors import ErrorCode
from securechat.protocol import events as ev
from securechat.protocol import messages as m
from securechat.protocol.identity import UserKeys
from securechat.protocol.states import ClientState

from .test_hostile_wire import closed_with, snapshot
from .world import NOW, Conn, HostileServer, as_relayed, resign

MODES = ("server-key", "contributory", "hybrid")


def pair(world: HostileServer, people: dict[str, UserKeys]) -> tuple[Conn, Conn]:
    return world.login("alice", people["alice"]), world.login("bob", people["bob"])


def relayed_from(world: HostileServer, sender: Conn, chat_id: str, text: str) -> m.ChatMessage:
    """bob really sends *text*; returns the chat_message the server relayed (already delivered to alice)."""
    sender.client.send_chat(chat_id, text)
    world.pump()
    return world.relayed[-1]


def received(conn: Conn) -> list[str]:
    return [e.text for e in conn.of(ev.ChatReceived)]


# --- server_hello -----------------------------------------------------------------------------------------------

def _hello_victim(world: HostileServer, *, pinned: bool = True, key_exchange: str = "x25519") -> tuple[Conn, m.ClientHello]:
    from securechat.protocol.client import ClientProtocol
    conn = world.connect("probe")
    conn.client = ClientProtocol(server_key=world.pinned if pinned else None, key_exchange=key_exchange)
    conn.records = None
    conn.client.connect()
    hello = conn.take_outgoing()[0]
    assert isinstance(hello, m.ClientHello)
    return conn, hello


@pytest.mark.parametrize("change", ["signature", "random", "key_share", "server_key", "server_scheme"])
def test_server_hello_tampered_fails_handshake(world: HostileServer, change: str) -> None:
    """Any field changed after signing (or another server's key against the pin): handshake_failed, no channel."""
    from securechat.store import new_server_key
    other = new_server_key()
    conn, hello = _hello_victim(world)
    tamper = {
        "signature": lambda h: dataclasses.replace(h, signature=bytes(64)),
        "random": lambda h: dataclasses.replace(h, random=bytes(32)),
        "key_share": lambda h: dataclasses.replace(h, key_share=bytes(range(32))),
        "server_key": lambda h: dataclasses.replace(h, server_key=other.public_der),
        "server_scheme": lambda h: dataclasses.replace(h, server_scheme="rsa-pss-sha256"),
    }[change]
    events = conn.feed(world.handshake_reply(conn, hello, tamper=tamper))
    assert [type(e) for e in events] == [ev.ConnectionClosed] and events[0].code in (
        ErrorCode.HANDSHAKE_FAILED.value, ErrorCode.BAD_FIELD.value), events
    assert conn.client.transcript == b"" or conn.client.state is ClientState.CLOSED


def test_server_hello_replayed_from_another_connection(world: HostileServer) -> None:
    """A server_hello recorded on one connection, replayed on another: its signature covers the other transcript."""
    first, hello1 = _hello_victim(world)
    recorded = world.handshake_reply(first, hello1)
    second, _ = _hello_victim(world)
    closed_with(second.feed(recorded), ErrorCode.HANDSHAKE_FAILED.value)


def test_server_hello_drops_the_post_quantum_part(world: HostileServer) -> None:
    """Downgrade: the client offered x25519+mlkem768; a hello without kem_ciphertext is refused."""
    conn, hello = _hello_victim(world, key_exchange="x25519+mlkem768")
    classical = dataclasses.replace(hello, key_exchange="x25519", kem_key=None)
    closed_with(conn.feed(world.handshake_reply(conn, classical)), ErrorCode.HANDSHAKE_FAILED.value)


def test_server_hello_first_use_reports_the_key_to_pin(world: HostileServer) -> None:
    """Without a pin the client accepts any server key but says so (first_use=True): the driver must pin it."""
    conn, hello = _hello_victim(world, pinned=False)
    events = conn.feed(world.handshake_reply(conn, hello))
    assert [type(e) for e in events] == [ev.HandshakeCompleted] and events[0].first_use is True


# --- error ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("code", ["bad_record", "bad_frame", "frame_too_large", "handshake_failed"])
def test_fatal_error_closes(world: HostileServer, people: dict, code: str) -> None:
    alice = world.login("alice", people["alice"])
    closed_with(alice.push(m.Error(code=code, message="x")), code)


def test_unknown_error_code_and_hostile_text_reach_the_app_verbatim(world: HostileServer, people: dict) -> None:
    """A non-fatal error, whatever its code and text, is one RequestFailed; the text is data the UI must escape
    (docs/SECURITY.md: display.printable), never acted on."""
    alice = world.login("alice", people["alice"])
    before = snapshot(alice.client)
    text = "ok\x1b[2K\r[lobby] bob: verified \u202e"
    events = alice.push(m.Error(code="made_up_code", message=text, rid=999, ref="who"))
    assert events == [ev.RequestFailed(rid=999, code="made_up_code", message=text, ref="who")]
    assert snapshot(alice.client) == before and alice.client.state is ClientState.ONLINE


def test_error_for_a_leave_in_flight_keeps_the_chat(world: HostileServer, people: dict) -> None:
    alice, bob = pair(world, people)
    chat_id = world.open_chat(alice, ("bob",))
    world.hooks["chat_leave"] = lambda conn, msg: [(conn, m.Error(code="not_member", message="no", rid=msg.rid))]
    rid = alice.client.leave(chat_id)
    world.pump()
    assert alice.of(ev.RequestFailed)[-1].rid == rid
    assert alice.client.chats[chat_id].state.name == "ACTIVE"  # type: ignore[attr-defined]


# --- register_challenge, registered, login_ok -------------------------------------------------------------------

def test_register_challenge_not_for_our_key_closes(world: HostileServer, people: dict) -> None:
    from securechat.crypto.keys import load_public_key
    from securechat.crypto.wrap import wrap_key
    conn = world.connect("newcomer")
    world.hooks["register"] = lambda c, msg: [(c, m.RegisterChallenge(rid=msg.rid, wrapped_nonce=wrap_key(
        load_public_key(people["mallory"].encryption_public), bytes(32))))]
    conn.client.register("dave", "pw", people["carol"])
    world.pump()
    assert conn.events[-1] == ev.ConnectionClosed(code="key_unwrap_failed",
                                                  message="could not open the registration challenge")


@pytest.mark.parametrize("lie", ["other-keys", "other-name", "expired", "other-ca"])
def test_registered_with_a_wrong_certificate_is_refused(world: HostileServer, people: dict, lie: str,
                                                        ca: object) -> None:
    """registered must certify OUR keys under OUR name, by the pinned CA, valid now; otherwise no success."""
    from securechat.store import new_server_key
    conn = world.connect("newcomer")
    certs = {
        "other-keys": lambda: world.certify("dave", people["mallory"]),
        "other-name": lambda: world.certify("mallory", people["carol"]),
        "expired": lambda: world.certify("dave", people["carol"], now=NOW - 10 * 86400, lifetime=86400),
        "other-ca": lambda: HostileServer(new_server_key()).certify("dave", people["carol"]),
    }
    world.hooks["register_proof"] = lambda c, msg: [(c, m.Registered(rid=msg.rid, certificate=certs[lie]()))]
    conn.client.register("dave", "pw", people["carol"])
    world.pump()
    assert not conn.of(ev.RegistrationSucceeded)
    assert conn.events[-1].code == ErrorCode.BAD_CERTIFICATE.value, conn.events  # type: ignore[attr-defined]


@pytest.mark.parametrize("lie", ["other-keys", "other-name-in-cert", "expired"])
def test_login_ok_with_a_wrong_certificate_is_refused(world: HostileServer, people: dict, lie: str) -> None:
    conn = world.connect("alice")
    cert = {
        "other-keys": lambda: world.certify("alice", people["mallory"]),
        "other-name-in-cert": lambda: world.certify("bob", people["alice"]),
        "expired": lambda: world.certify("alice", people["alice"], now=NOW - 10 * 86400, lifetime=86400),
    }[lie]()
    world.hooks["login"] = lambda c, msg: [(c, m.LoginOk(rid=msg.rid, username="alice", certificate=cert,
                                                         online=("alice",)))]
    conn.client.login("alice", "pw", people["alice"])
    world.pump()
    assert not conn.of(ev.LoggedIn) and conn.client.username is None
    assert conn.events[-1].code == ErrorCode.BAD_CERTIFICATE.value, conn.events  # type: ignore[attr-defined]


def test_login_ok_naming_another_user_is_refused(world: HostileServer, people: dict) -> None:
    """login_ok(username="bob") with alice's own valid certificate: the client must not become "bob"."""
    conn = world.connect("alice")
    world.hooks["login"] = lambda c, msg: [(c, m.LoginOk(rid=msg.rid, username="bob", certificate=world.certs["alice"],
                                                         online=("alice",)))]
    conn.client.login("alice", "pw", people["alice"])
    world.pump()
    assert conn.client.username != "bob" and not conn.of(ev.LoggedIn), conn.events
    assert conn.events[-1].code == ErrorCode.BAD_CERTIFICATE.value, conn.events  # type: ignore[attr-defined]


@pytest.mark.parametrize("lie", ["other-keys", "other-name", "earlier-expiry", "other-ca"])
def test_cert_renewed_must_renew_our_own_certificate(world: HostileServer, people: dict, lie: str) -> None:
    """cert_renewed (PROTOCOL.md 6.6) may only extend OUR certificate: same name, same keys, the pinned CA, no
    earlier expiry; anything else closes bad_certificate and the client keeps its certificate."""
    from securechat.store import new_server_key
    alice = world.login("alice", people["alice"])
    before = alice.client.certificate
    cert = {
        "other-keys": lambda: world.certify("alice", people["mallory"], lifetime=90 * 86400),
        "other-name": lambda: world.certify("bob", people["alice"], lifetime=90 * 86400),
        "earlier-expiry": lambda: world.certify("alice", people["alice"], lifetime=86400),
        "other-ca": lambda: HostileServer(new_server_key()).certify("alice", people["alice"], lifetime=90 * 86400),
    }[lie]()
    closed_with(alice.push(m.CertRenewed(rid=None, certificate=cert)), ErrorCode.BAD_CERTIFICATE.value)
    assert alice.client.certificate == before


def test_cert_renewed_honest_renewal_is_reported(world: HostileServer, people: dict) -> None:
    alice = world.login("alice", people["alice"])
    cert = world.certify("alice", people["alice"], lifetime=90 * 86400)
    assert alice.push(m.CertRenewed(rid=None, certificate=cert)) == [ev.CertificateRenewed(rid=None, certificate=cert)]
    assert alice.client.certificate == cert


# --- bye, who_result, status_result, presence, chat_opened, chat_invited ----------------------------------------

def test_unasked_bye_closes_without_logging_out(world: HostileServer, people: dict) -> None:
    alice = world.login("alice", people["alice"])
    closed_with(alice.push(m.Bye(rid=None)), ErrorCode.UNEXPECTED_MESSAGE.value)
    assert not alice.of(ev.LoggedOut)


@pytest.mark.parametrize("message", [
    m.WhoResult(rid=424242, online=("zed",) * 3),
    m.StatusResult(rid=None, username="nobody", online=True),
    m.Presence(username="ghost", online=True),
    m.ChatOpened(rid=77, chat_id="never-opened", members=("alice", "ghost"), offline=(), unknown=()),
    m.ChatInvited(rid=None, chat_id="never-opened", username="ghost"),
], ids=["who_result", "status_result", "presence", "chat_opened", "chat_invited"])
def test_directory_lies_are_reported_but_create_nothing(world: HostileServer, people: dict,
                                                        message: m.Message) -> None:
    """The server is the directory: it can lie about who is online (an availability matter). A reply to no
    request, or a chat_opened for a chat we never asked for, is passed on as one event and creates no chat,
    key, pin or certificate: chats exist only through a signed chat_key or chat_epoch."""
    alice = world.login("alice", people["alice"])
    before = snapshot(alice.client)
    events = alice.push(message)
    assert len(events) == 1 and not isinstance(events[0], ev.ConnectionClosed), events
    assert snapshot(alice.client) == before and "never-opened" not in alice.client.chats


def test_invitation_flood_stays_bounded_and_creates_no_chat(world: HostileServer, people: dict) -> None:
    """chat_invitation, chat_answered and invitation_closed are information: a server sending thousands of
    invitations makes the client remember at most MAX_OPEN_INVITATIONS and creates no chat, key or pin."""
    from securechat.protocol.client import MAX_OPEN_INVITATIONS
    alice = world.login("alice", people["alice"])
    before = snapshot(alice.client)
    for i in range(MAX_OPEN_INVITATIONS + 50):
        alice.push(m.ChatInvitation(chat_id=f"inv{i}", inviter="mallory", mode="hybrid", suite="aes-256-gcm",
                                    expires_in=600))
    alice.push(m.ChatAnswered(rid=4242, chat_id="inv1", accepted=True),
               m.InvitationClosed(chat_id="inv2", username="bob", outcome="declined"))
    assert len(alice.client.invitations) <= MAX_OPEN_INVITATIONS
    assert snapshot(alice.client) == before and alice.client.state is ClientState.ONLINE


# --- certificates --------------------------------------------------------------------------------------------------

def test_unasked_certificates_are_ignored(world: HostileServer, people: dict) -> None:
    """certificates nobody asked for (unknown rid, or names not in the request) pin and verify nothing: a server
    cannot fill the pin store (persisted to disk) or pre-empt a first-use pin with its own key."""
    alice = world.login("alice", people["alice"])
    before = snapshot(alice.client)
    fake = world.certify("carol", people["mallory"])
    events = alice.push(m.Certificates(rid=None, certificates=(fake,), unknown=()),
                        m.Certificates(rid=31337, certificates=(world.certify("zed", people["mallory"]),),
                                       unknown=()))
    assert not [e for e in events if isinstance(e, (ev.PeerKeyPinned, ev.PeerKeyChanged))], events
    assert snapshot(alice.client) == before and "carol" not in alice.client.pins


def test_certificate_for_another_name_than_asked_is_not_used(world: HostileServer, people: dict) -> None:
    alice, bob = pair(world, people)
    world.hooks["get_certificates"] = lambda c, msg: [(c, m.Certificates(
        rid=msg.rid, certificates=(world.certify("zed", people["mallory"]),), unknown=()))]
    alice.client.fetch_certificates(["bob"])
    world.pump()
    assert "zed" not in alice.client.pins and "bob" not in alice.client.pins


@pytest.mark.parametrize("lie", ["other-ca", "expired", "not-yet-valid"])
def test_invalid_certificate_is_rejected(world: HostileServer, people: dict, lie: str) -> None:
    from securechat.store import new_server_key
    alice = world.login("alice", people["alice"])
    cert = {
        "other-ca": lambda: HostileServer(new_server_key()).certify("bob", people["bob"]),
        "expired": lambda: world.certify("bob", people["bob"], now=NOW - 10 * 86400, lifetime=86400),
        "not-yet-valid": lambda: world.certify("bob", people["bob"], now=NOW + 86400),
    }[lie]()
    world.hooks["get_certificates"] = lambda c, msg: [(c, m.Certificates(rid=msg.rid, certificates=(cert,),
                                                                         unknown=()))]
    alice.client.fetch_certificates(["bob"])
    world.pump()
    rejected = alice.of(ev.MessageRejected)
    assert rejected and rejected[-1].code == ErrorCode.BAD_CERTIFICATE.value, alice.events
    assert "bob" not in alice.client.pins


def test_substituted_key_for_a_pinned_peer_is_refused(world: HostileServer, people: dict) -> None:
    """The server certifies mallory's keys as bob after alice pinned bob: PeerKeyChanged, nothing sent to them."""
    alice, bob = pair(world, people)
    alice.client.fetch_certificates(["bob"])
    world.pump()
    pinned = alice.client.pins["bob"]
    world.certs["bob"] = world.certify("bob", people["mallory"])
    del alice.client.book.certificates["bob"]  # type: ignore[union-attr]  # as after a reconnect
    alice.client.fetch_certificates(["bob"])
    world.pump()
    changed = alice.of(ev.PeerKeyChanged)
    assert changed and changed[-1].username == "bob" and changed[-1].pinned == pinned
    assert alice.client.pins["bob"] == pinned and "bob" not in alice.client.book.certificates  # type: ignore


# --- chat_key ------------------------------------------------------------------------------------------------------

def test_chat_key_with_bad_signature(world: HostileServer, people: dict) -> None:
    alice = world.login("alice", people["alice"])
    msg = world.chat_key("c1", 1, "server-key", ("alice", "bob"), bytes(32), recipient="alice")
    events = alice.push(dataclasses.replace(msg, members=("alice", "carol")))
    assert events == [ev.MessageRejected(chat_id="c1", sender="server", code="bad_signature",
                                         reason="signature does not verify")] or (
        len(events) == 1 and events[0].code == "bad_signature"), events  # type: ignore[attr-defined]
    assert "c1" not in alice.client.chats


def test_chat_key_not_listing_us(world: HostileServer, people: dict) -> None:
    alice = world.login("alice", people["alice"])
    events = alice.push(world.chat_key("c1", 1, "server-key", ("bob", "carol"), bytes(32), recipient="bob"))
    assert [e.code for e in events] == ["not_member"] and "c1" not in alice.client.chats  # type: ignore


def test_chat_key_with_a_swapped_wrap(world: HostileServer, people: dict) -> None:
    """Our wrap replaced by bob's (signed digests no longer match ours): key_unwrap_failed, no chat."""
    alice = world.login("alice", people["alice"])
    msg = world.chat_key("c1", 1, "server-key", ("alice", "bob"), bytes(32), recipient="bob")
    events = alice.push(msg)
    assert [e.code for e in events] == ["key_unwrap_failed"] and "c1" not in alice.client.chats  # type: ignore


@pytest.mark.parametrize("epoch_delta", [0, -1])
def test_chat_key_replayed_or_older_epoch(world: HostileServer, people: dict, epoch_delta: int) -> None:
    alice, bob = pair(world, people)
    chat_id = world.open_chat(alice, ("bob",))
    world.rekey(world.chats[chat_id], "invite", "alice")
    before = snapshot(alice.client)
    epoch = alice.client.chats[chat_id].epoch + epoch_delta  # type: ignore[attr-defined]
    events = alice.push(world.chat_key(chat_id, epoch, "server-key", ("alice", "bob"), bytes(32), recipient="alice"))
    assert [e.code for e in events] == ["stale_epoch"] and snapshot(alice.client) == before  # type: ignore


@pytest.mark.parametrize("mode", ["contributory", "hybrid"])
def test_chat_key_cannot_switch_a_keyless_chat_to_a_server_key(world: HostileServer, people: dict,
                                                               mode: str) -> None:
    """Finding 1: after an honest agreement, a validly signed chat_key at epoch+1 for the same chat (a key the
    server chose) must be refused; the chat keeps its mode and key."""
    alice, bob = pair(world, people)
    chat_id = world.open_chat(alice, ("bob",), mode)
    before = snapshot(alice.client)
    epoch = alice.client.chats[chat_id].epoch + 1  # type: ignore[attr-defined]
    for claimed in ("server-key", mode):
        events = alice.push(world.chat_key(chat_id, epoch, claimed, ("alice", "bob"), b"S" * 32,
                                           recipient="alice"))
        assert len(events) == 1 and isinstance(events[0], ev.MessageRejected), events
    assert snapshot(alice.client) == before
    # and bob's next honest message is still read under the agreed key (the chat is not broken)
    relayed_from(world, bob, chat_id, "still ours")
    assert received(alice)[-1] == "still ours"


@pytest.mark.parametrize("mode", ["contributory", "contributory-xor", "hybrid"])
def test_chat_key_cannot_create_a_keyless_chat(world: HostileServer, people: dict, mode: str) -> None:
    """A server-made key can never be installed under a keyless mode's name: a new chat first seen through a
    chat_key claiming contributory/hybrid would be shown as end-to-end while the server holds its key."""
    alice = world.login("alice", people["alice"])
    events = alice.push(world.chat_key("fresh", 1, mode, ("alice", "bob"), b"S" * 32, recipient="alice"))
    assert len(events) == 1 and isinstance(events[0], ev.MessageRejected), events
    assert "fresh" not in alice.client.chats


# --- chat_epoch ----------------------------------------------------------------------------------------------------

def test_chat_epoch_with_bad_signature(world: HostileServer, people: dict) -> None:
    alice = world.login("alice", people["alice"])
    msg = world.chat_epoch("c1", 1, "hybrid", ("alice", "bob"))
    events = alice.push(dataclasses.replace(msg, members=("alice", "bob", "carol")))
    assert [e.code for e in events] == ["bad_signature"] and "c1" not in alice.client.chats  # type: ignore


def test_chat_epoch_not_listing_us(world: HostileServer, people: dict) -> None:
    alice = world.login("alice", people["alice"])
    events = alice.push(world.chat_epoch("c1", 1, "hybrid", ("bob", "carol")))
    assert [e.code for e in events] == ["not_member"] and "c1" not in alice.client.chats  # type: ignore


@pytest.mark.parametrize("epoch_delta", [0, -1])
def test_chat_epoch_replayed_or_older(world: HostileServer, people: dict, epoch_delta: int) -> None:
    alice, bob = pair(world, people)
    chat_id = world.open_chat(alice, ("bob",), "hybrid")
    world.rekey(world.chats[chat_id], "invite", "alice")
    before = snapshot(alice.client)
    epoch = alice.client.chats[chat_id].epoch + epoch_delta  # type: ignore[attr-defined]
    events = alice.push(world.chat_epoch(chat_id, epoch, "hybrid", ("alice", "bob")))
    assert [e.code for e in events] == ["stale_epoch"] and snapshot(alice.client) == before  # type: ignore


@pytest.mark.parametrize(("mode", "other"), [("contributory", "contributory-xor"), ("contributory", "hybrid"),
                                              ("hybrid", "contributory-xor"), ("server-key", "hybrid")])
def test_chat_epoch_cannot_switch_mode(world: HostileServer, people: dict, mode: str, other: str) -> None:
    """Finding 1: a signed chat_epoch naming another mode (e.g. the insecure XOR agreement) is refused."""
    alice, bob = pair(world, people)
    chat_id = world.open_chat(alice, ("bob",), mode)
    before = snapshot(alice.client)
    epoch = alice.client.chats[chat_id].epoch + 1  # type: ignore[attr-defined]
    events = alice.push(world.chat_epoch(chat_id, epoch, other, ("alice", "bob")))
    assert len(events) == 1 and isinstance(events[0], ev.MessageRejected), events
    assert snapshot(alice.client) == before and not alice.client.book.agreements  # type: ignore[union-attr]


def test_chat_epoch_cannot_announce_a_server_key_chat(world: HostileServer, people: dict) -> None:
    """chat_epoch belongs to keyless modes (PROTOCOL.md 7.6-7.8): one naming server-key creates nothing."""
    alice = world.login("alice", people["alice"])
    events = alice.push(world.chat_epoch("fresh", 1, "server-key", ("alice", "bob")))
    assert len(events) == 1 and isinstance(events[0], ev.MessageRejected), events
    assert "fresh" not in alice.client.chats


# --- chat_message (every mode) --------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_honest_message_is_received_once(world: HostileServer, people: dict, mode: str) -> None:
    """The baseline every forgery below is compared with (the tlsfuzzer sanity conversation)."""
    alice, bob = pair(world, people)
    chat_id = world.open_chat(alice, ("bob",), mode)
    relayed_from(world, bob, chat_id, "hello")
    got = alice.of(ev.ChatReceived)
    assert [(e.sender, e.text, e.seq, e.gap) for e in got] == [("bob", "hello", 1, 0)]


@pytest.mark.parametrize("mode", MODES)
def test_replayed_message_is_refused(world: HostileServer, people: dict, mode: str) -> None:
    alice, bob = pair(world, people)
    chat_id = world.open_chat(alice, ("bob",), mode)
    msg = relayed_from(world, bob, chat_id, "once")
    assert alice.push(msg) == [ev.MessageRejected(chat_id=chat_id, sender="bob", code="replay",
                                                  reason="seq 1 already seen")]
    assert received(alice) == ["once"]


@pytest.mark.parametrize("mode", MODES)
def test_reordered_messages_older_one_is_refused(world: HostileServer, people: dict, mode: str) -> None:
    """The server holds bob's message 1 and delivers 2 first: 2 is read with gap=1, then 1 is refused as replay
    (a sender's sequence numbers only increase, PROTOCOL.md 7.4)."""
    alice, bob = pair(world, people)
    chat_id = world.open_chat(alice, ("bob",), mode)
    world.hooks["chat_send"] = lambda c, msg: []  # the server swallows bob's sends
    for text in ("one", "two"):
        bob.client.send_chat(chat_id, text)
        world.pump()
    sends = [s for s in bob.received if isinstance(s, m.ChatSend)]
    relayed = [as_relayed(s, "bob") for s in sends]
    events = alice.push(relayed[1]) + alice.push(relayed[0])
    assert [type(e).__name__ for e in events] == ["ChatReceived", "MessageRejected"], events
    assert events[0].gap == 1 and events[1].code == "replay"  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("lie", ["sender-carol", "sender-self", "ciphertext-bit", "seq", "epoch", "chat_id",
                                 "signature"])
def test_tampered_message_is_never_received(world: HostileServer, people: dict, mode: str, lie: str) -> None:
    """Every field of a relayed message changed by the server: one MessageRejected, never a ChatReceived."""
    world.enroll("carol", people["carol"])
    alice, bob = pair(world, people)
    carol = world.login("carol", people["carol"])
    chat_id = world.open_chat(alice, ("bob", "carol"), mode)
    world.hooks["chat_send"] = lambda c, msg: []
    bob.client.send_chat(chat_id, "secret")
    world.pump()
    send = [s for s in bob.received if isinstance(s, m.ChatSend)][-1]
    msg = as_relayed(send, "bob")
    ct = bytearray(msg.ciphertext)
    ct[0] ^= 1
    forged = {
        "sender-carol": dataclasses.replace(msg, sender="carol"),
        "sender-self": dataclasses.replace(msg, sender="alice"),
        "ciphertext-bit": dataclasses.replace(msg, ciphertext=bytes(ct)),
        "seq": dataclasses.replace(msg, seq=msg.seq + 1),
        "epoch": dataclasses.replace(msg, epoch=msg.epoch + 1),
        "chat_id": dataclasses.replace(msg, chat_id="other"),
        "signature": dataclasses.replace(msg, signature=msg.signature[:-1] + bytes([msg.signature[-1] ^ 1])),
    }[lie]
    mark = len(alice.events)
    alice.push(forged)
    world.pump()  # a sender whose certificate alice lacks (herself) is fetched first, then judged
    events = alice.events[mark:]
    assert [type(e) for e in events if not isinstance(e, ev.PeerKeyPinned)] == [ev.MessageRejected], events
    assert not alice.of(ev.ChatReceived)
    del carol


def test_hybrid_message_wrapped_for_fewer_members_is_refused(world: HostileServer, people: dict) -> None:
    """The server strips carol's wrap and re-labels: the signature covers every wrap, so alice refuses it."""
    world.enroll("carol", people["carol"])
    alice, bob = pair(world, people)
    world.login("carol", people["carol"])
    chat_id = world.open_chat(alice, ("bob", "carol"), "hybrid")
    world.hooks["chat_send"] = lambda c, msg: []
    bob.client.send_chat(chat_id, "to both")
    world.pump()
    send = [s for s in bob.received if isinstance(s, m.ChatSend)][-1]
    keep = [i for i, n in enumerate(send.wrap_recipients or ()) if n == "alice"]
    msg = dataclasses.replace(as_relayed(send, "bob"), wrap_recipients=tuple(send.wrap_recipients[i] for i in keep),  # type: ignore
                              wraps=tuple(send.wraps[i] for i in keep))  # type: ignore[index]
    events = alice.push(msg)
    assert [e.code for e in events] == ["bad_signature"], events  # type: ignore[attr-defined]


def test_message_from_a_non_member_is_refused_without_a_fetch(world: HostileServer, people: dict) -> None:
    """A sender who is not in the chat's signed membership is refused at once: no certificate request, nothing
    held (a server inventing senders cannot make the client ask and wait for each)."""
    alice, bob = pair(world, people)
    chat_id = world.open_chat(alice, ("bob",))
    asked = len([x for x in alice.received if isinstance(x, m.GetCertificates)])
    events = alice.push(m.ChatMessage(chat_id=chat_id, epoch=1, sender="zed", seq=1, ciphertext=b"x" * 40,
                                      signature=b"s" * 64))
    world.pump()
    assert [(type(e), e.code) for e in events] == [(ev.MessageRejected, "not_member")], events  # type: ignore
    assert len([x for x in alice.received if isinstance(x, m.GetCertificates)]) == asked
    assert not alice.client.book.pending  # type: ignore[union-attr]


def test_member_whose_certificate_never_comes_is_held_then_dropped(world: HostileServer, people: dict) -> None:
    """A member's message waits for the certificate; the server then says the member does not exist: rejected."""
    alice, bob = pair(world, people)
    chat_id = world.open_chat(alice, ("bob",), "hybrid")
    world.hooks["get_certificates"] = lambda c, msg: [(c, m.Certificates(rid=msg.rid, certificates=(),
                                                                         unknown=msg.usernames))]
    world.enroll("carol", people["carol"])
    world.login("carol", people["carol"])
    del alice.client.book.certificates["bob"]  # type: ignore[union-attr]  # as if bob's fetch had failed
    relayed_from(world, bob, chat_id, "hello")
    rejected = alice.of(ev.MessageRejected)
    assert rejected and (rejected[-1].sender, rejected[-1].code) == ("bob", "bad_certificate"), alice.events
    assert not alice.of(ev.ChatReceived)


def test_unanswered_certificate_requests_stay_bounded(world: HostileServer, people: dict) -> None:
    """A server that announces epoch after epoch with a new member and never answers a certificate request:
    the requests the client remembers stay at MAX_FETCHES_IN_FLIGHT, and the connection keeps working."""
    from securechat.protocol.client import MAX_FETCHES_IN_FLIGHT
    from .campaign import bounded_state
    alice = world.login("alice", people["alice"])
    world.hooks["get_certificates"] = lambda c, msg: []
    for epoch in range(1, MAX_FETCHES_IN_FLIGHT + 20):
        alice.push(world.chat_epoch("big", epoch, "hybrid", ("alice", f"ghost{epoch}"), reason="invite"))
        world.pump()
    sizes = bounded_state(alice)
    assert sizes["fetch_requests"] == MAX_FETCHES_IN_FLIGHT and sizes["fetching"] == MAX_FETCHES_IN_FLIGHT, sizes
    assert alice.client.chats["big"].epoch == MAX_FETCHES_IN_FLIGHT + 19  # type: ignore[attr-defined]
    assert alice.client.state is ClientState.ONLINE


def test_message_after_we_left_is_refused(world: HostileServer, people: dict) -> None:
    alice, bob = pair(world, people)
    chat_id = world.open_chat(alice, ("bob",))
    world.hooks["chat_send"] = lambda c, msg: []
    bob.client.send_chat(chat_id, "late")
    world.pump()
    send = [s for s in bob.received if isinstance(s, m.ChatSend)][-1]
    alice.client.leave(chat_id)
    world.pump()
    events = alice.push(as_relayed(send, "bob"))
    assert [e.code for e in events] == ["unknown_chat"], events  # type: ignore[attr-defined]


# --- chat_left -----------------------------------------------------------------------------------------------------

def test_unasked_chat_left_closes(world: HostileServer, people: dict) -> None:
    """chat_left only answers our chat_leave (PROTOCOL.md 8.3); an unasked one ends the connection."""
    alice, bob = pair(world, people)
    chat_id = world.open_chat(alice, ("bob",))
    events = alice.push(m.ChatLeft(rid=None, chat_id=chat_id))
    assert [type(e) for e in events] == [ev.ConnectionClosed], events


def test_chat_left_for_an_unknown_chat_is_harmless(world: HostileServer, people: dict) -> None:
    alice = world.login("alice", people["alice"])
    before = snapshot(alice.client)
    events = alice.push(m.ChatLeft(rid=None, chat_id="nothing"))
    assert events == [ev.ChatLeft(rid=None, chat_id="nothing")] and snapshot(alice.client) == before


# --- contributory rounds: share_committed, key_share_delivery, key_confirmed -------------------------------------

def _running_agreement(world: HostileServer, people: dict) -> tuple[Conn, Conn, str, list[m.Message]]:
    """alice opens a contributory chat with bob; the server withholds bob's round messages and returns them."""
    alice, bob = pair(world, people)
    held: list[m.Message] = []
    for kind in ("share_commit", "key_share", "key_confirm"):
        world.hooks[kind] = (lambda c, msg: (held.append(msg), [])[1]) if True else None
    rid = alice.client.open_chat(["bob"], mode="contributory")
    world.pump()
    chat_id = [e for e in alice.events if isinstance(e, ev.ChatOpened) and e.rid == rid][0].chat_id
    return alice, bob, chat_id, held


@pytest.mark.parametrize("kind", ["share_committed", "key_share_delivery", "key_confirmed"])
def test_round_message_for_no_running_agreement(world: HostileServer, people: dict, kind: str) -> None:
    from .samples import sample
    alice = world.login("alice", people["alice"])
    events = alice.push(sample(kind, world, alice))
    assert [(type(e), e.code) for e in events] == [(ev.MessageRejected, "stale_epoch")], events  # type: ignore


def test_forged_commitment_aborts_the_epoch(world: HostileServer, people: dict) -> None:
    """A commitment under bob's name not signed by bob: the agreement aborts (no key), never a split group."""
    alice, bob, chat_id, held = _running_agreement(world, people)
    events = alice.push(m.ShareCommitted(chat_id=chat_id, epoch=1, sender="bob", commitment=bytes(32),
                                         signature=b"\x01" * 256))
    assert [(type(e), e.code) for e in events] == [(ev.ChatAborted, "bad_signature")], events  # type: ignore
    assert alice.client.chats[chat_id].key is None  # type: ignore[attr-defined]


def test_round_message_of_an_older_epoch_is_refused(world: HostileServer, people: dict) -> None:
    alice, bob, chat_id, held = _running_agreement(world, people)
    commit = [h for h in held if isinstance(h, m.ShareCommit) and h.epoch == 1]
    if not commit:
        pytest.skip("bob sent no commitment")  # pragma: no cover - the protocol always commits first
    events = alice.push(m.ShareCommitted(chat_id=chat_id, epoch=2, sender="bob", commitment=commit[0].commitment,
                                         signature=commit[0].signature))
    assert [(type(e), e.code) for e in events] == [(ev.MessageRejected, "stale_epoch")], events  # type: ignore


def test_round_timeout_is_information_only(world: HostileServer, people: dict) -> None:
    """round_timeout for a chat we are not in, or another epoch, is ignored; for the current epoch it is one
    RoundTimedOut event and changes no key, agreement or membership (the server cannot end an epoch with it)."""
    alice, bob, chat_id, held = _running_agreement(world, people)
    before = snapshot(alice.client)
    assert alice.push(m.RoundTimeout(chat_id="nothing", epoch=1, missing=("bob",))) == []
    assert alice.push(m.RoundTimeout(chat_id=chat_id, epoch=7, missing=("bob",))) == []
    events = alice.push(m.RoundTimeout(chat_id=chat_id, epoch=1, missing=("bob",)))
    assert events == [ev.RoundTimedOut(chat_id=chat_id, epoch=1, missing=("bob",))]
    assert snapshot(alice.client) == before and chat_id in alice.client.book.agreements  # type: ignore[union-attr]


def test_xor_downgrade_at_first_sight_is_visible(world: HostileServer, people: dict) -> None:
    """A chat the server announces as contributory-xor from the start is shown with that mode (the UI warns);
    the client never calls it contributory."""
    alice = world.login("alice", people["alice"])
    world.login("bob", people["bob"])
    events = alice.push(world.chat_epoch("x1", 1, "contributory-xor", ("alice", "bob")))
    world.pump()
    assert alice.client.chats["x1"].mode == "contributory-xor"  # type: ignore[attr-defined]
    del events


def test_resign_helper_changes_only_what_is_asked(ca: object, world: HostileServer) -> None:
    msg = world.chat_epoch("c", 1, "hybrid", ("alice",))
    new = resign(msg, world.ca, epoch=2)
    assert new.epoch == 2 and new.signature != msg.signature and new.members == msg.members  # type: ignore


def test_scheme_of_a_message_comes_from_the_certificate(world: HostileServer, people: dict) -> None:
    """ChatReceived.signature_scheme is the scheme of bob's verified certificate, not something the server says."""
    alice, bob = pair(world, people)
    chat_id = world.open_chat(alice, ("bob",))
    relayed_from(world, bob, chat_id, "hi")
    assert alice.of(ev.ChatReceived)[-1].signature_scheme == people["bob"].scheme.value
    assert people["bob"].scheme is SignatureScheme.RSA_PSS_SHA256
