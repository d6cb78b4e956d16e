"""Hostile server, wire level: every server->client type, malformed, out of place, replayed, reordered, oversized.

Each case drives the REAL ClientProtocol through ``HostileServer`` (tests/hostile/world.py) and asserts the exact
event the application sees. The rule under test (PROTOCOL.md 3, 5.2, 8.1, 9.1): whatever the server sends, the
client library raises nothing; a frame it cannot parse, a record that is not the next one, or a message that is
not allowed in the current state ends the connection with one ConnectionClosed naming the reason, and nothing
else happens (no chat, key, pin or certificate changes).
"""

from __future__ import annotations

import json
import struct

import pytest

from securechat.errors import ErrorCode
from securechat.protocol import events as ev
from securechat.protocol import messages as m
from securechat.protocol.client import ClientProtocol
from securechat.protocol.codec import MAX_FRAME_BYTES, encode_frame, encode_message, frame
from securechat.protocol.states import ClientState

from .samples import SERVER_TYPES, as_dict, malformations, sample
from .world import HostileServer

INNER_TYPES = tuple(t for t in SERVER_TYPES if t != "server_hello")
MALFORMED = [(kind, label) for kind in SERVER_TYPES for label, _ in malformations(kind)]


def closed_with(events: list[ev.Event], code: str) -> None:
    """Exactly one event, a ConnectionClosed with *code*."""
    assert [type(e) for e in events] == [ev.ConnectionClosed], events
    assert events[0].code == code, events[0]


def snapshot(client: ClientProtocol) -> tuple[object, ...]:
    """What a forgery must not change: chats (mode, epoch, key, members), pins and verified certificates."""
    chats = tuple(sorted((cid, c.mode, c.epoch, c.key, c.members)  # type: ignore[attr-defined]
                         for cid, c in client.chats.items()))
    certs = tuple(sorted(client.book.certificates)) if client.book else ()
    return chats, tuple(sorted(client.pins.items())), certs, client.username


def test_every_server_type_has_a_sample(world: HostileServer) -> None:
    """The catalogue covers every server->client type of messages.py, so a new type cannot be forgotten."""
    conn = world.connect("probe")
    assert set(SERVER_TYPES) == m.SERVER_TO_CLIENT
    for kind in SERVER_TYPES:
        assert sample(kind, world, conn).TYPE == kind


@pytest.mark.parametrize(("kind", "label"), MALFORMED, ids=[f"{k}-{lbl}" for k, lbl in MALFORMED])
def test_malformed_message_closes_cleanly(world: HostileServer, people: dict, kind: str, label: str) -> None:
    """A codec-invalid message of any type, inside a valid record, to a logged-in client: closed bad_field/bad_json,
    nothing changed (PROTOCOL.md 3.2: a frame is validated field by field before any handler runs)."""
    alice = world.login("alice", people["alice"])
    before = snapshot(alice.client)
    transform = dict(malformations(kind))[label]
    events = alice.push_obj(transform(as_dict(sample(kind, world, alice))))
    assert [type(e) for e in events] == [ev.ConnectionClosed], events
    assert events[0].code in (ErrorCode.BAD_FIELD.value, ErrorCode.BAD_JSON.value), events
    assert alice.client.state is ClientState.CLOSED and snapshot(alice.client) == before


@pytest.mark.parametrize("kind", SERVER_TYPES)
def test_clear_frame_after_handshake_is_refused(world: HostileServer, people: dict, kind: str) -> None:
    """After the handshake everything travels in records (PROTOCOL.md 5): a valid message in clear, even an error,
    closes with unexpected_message; it is never acted on."""
    alice = world.login("alice", people["alice"])
    before = snapshot(alice.client)
    closed_with(alice.feed(encode_frame(sample(kind, world, alice))), ErrorCode.UNEXPECTED_MESSAGE.value)
    assert snapshot(alice.client) == before


@pytest.mark.parametrize("kind", [t for t in SERVER_TYPES if t not in ("server_hello", "error")])
def test_message_before_handshake_is_refused(world: HostileServer, kind: str) -> None:
    """Before server_hello only server_hello and error may arrive (PROTOCOL.md 4.1)."""
    conn = world.connect("early")
    fresh = ClientProtocol(server_key=world.pinned)
    fresh.connect()
    fresh.data_to_send()
    conn.client = fresh
    closed_with(conn.feed(encode_frame(sample(kind, world, conn))), ErrorCode.UNEXPECTED_MESSAGE.value)


def test_error_before_handshake_is_fatal_with_its_code(world: HostileServer) -> None:
    conn = world.connect("early")
    fresh = ClientProtocol(server_key=world.pinned)
    fresh.connect()
    conn.client = fresh
    closed_with(conn.feed(encode_frame(m.Error(code="server_busy", message="full"))), "server_busy")


@pytest.mark.parametrize("kind", [t for t in INNER_TYPES if t != "error"])
def test_push_before_login_is_refused(world: HostileServer, kind: str) -> None:
    """A logged-out client (CONNECTED) accepts only error replies: any other type closes (PROTOCOL.md 8.1)."""
    conn = world.connect("anon")
    closed_with(conn.push(sample(kind, world, conn)), ErrorCode.UNEXPECTED_MESSAGE.value)
    assert conn.client.book is None and conn.client.username is None


@pytest.mark.parametrize("kind", ["server_hello", "register_challenge", "registered", "login_ok", "bye"])
def test_out_of_state_message_when_online_is_refused(world: HostileServer, people: dict, kind: str) -> None:
    """Online, a second hello, a challenge, a registration, a second login_ok or an unasked bye: closed."""
    alice = world.login("alice", people["alice"])
    before = snapshot(alice.client)
    closed_with(alice.push(sample(kind, world, alice)), ErrorCode.UNEXPECTED_MESSAGE.value)
    assert snapshot(alice.client) == before


def test_replayed_record_is_refused(world: HostileServer, people: dict) -> None:
    """The same sealed record twice: the second fails authentication (nonce = record counter, PROTOCOL.md 5.2)."""
    alice = world.login("alice", people["alice"])
    record = alice.message(m.Presence(username="bob", online=True))
    assert alice.feed(record) == [ev.PresenceChanged(username="bob", online=True)]
    closed_with(alice.feed(record), ErrorCode.BAD_RECORD.value)
    assert len(alice.of(ev.PresenceChanged)) == 1


@pytest.mark.parametrize("kind", INNER_TYPES)
def test_record_of_another_connection_is_refused(world: HostileServer, people: dict, kind: str) -> None:
    """A record sealed for bob's connection (same counter), carrying any type, never opens on alice's."""
    alice = world.login("alice", people["alice"])
    bob = world.login("bob", people["bob"])
    while bob.records.sent < alice.records.sent:  # type: ignore[union-attr]
        bob.push(m.Presence(username="carol", online=True))
    while alice.records.sent < bob.records.sent:  # type: ignore[union-attr]
        alice.push(m.Presence(username="carol", online=True))
    before = snapshot(alice.client)
    closed_with(alice.feed(bob.message(sample(kind, world, alice))), ErrorCode.BAD_RECORD.value)
    assert snapshot(alice.client) == before


def test_reordered_records_are_refused(world: HostileServer, people: dict) -> None:
    alice = world.login("alice", people["alice"])
    first = alice.message(m.Presence(username="bob", online=True))
    second = alice.message(m.Presence(username="bob", online=False))
    closed_with(alice.feed(second), ErrorCode.BAD_RECORD.value)
    assert not alice.of(ev.PresenceChanged)
    del first


def test_record_sealed_for_the_other_direction_is_refused(world: HostileServer, people: dict) -> None:
    """A reflected record (client->server key) never opens on the client (separate keys per direction)."""
    alice = world.login("alice", people["alice"])
    alice.client.who()
    reflected = alice.client.data_to_send()
    closed_with(alice.feed(reflected), ErrorCode.BAD_RECORD.value)


def test_tampered_record_is_refused(world: HostileServer, people: dict) -> None:
    alice = world.login("alice", people["alice"])
    record = json.loads(alice.message(m.Presence(username="bob", online=True))[4:])
    data = bytearray(__import__("base64").b64decode(record["data"]))
    data[-1] ^= 1
    record["data"] = __import__("base64").b64encode(bytes(data)).decode()
    closed_with(alice.feed(frame(json.dumps(record).encode())), ErrorCode.BAD_RECORD.value)


@pytest.mark.parametrize(("plaintext", "code"), [
    (b"", ErrorCode.BAD_FRAME), (b"\x00\x00", ErrorCode.BAD_FRAME), (struct.pack(">I", 0), ErrorCode.BAD_FRAME),
    (struct.pack(">I", 50) + b"{}", ErrorCode.BAD_FRAME), (frame(b"[1,2]"), ErrorCode.BAD_JSON),
    (frame(b'{"type":"nope"}'), ErrorCode.UNKNOWN_TYPE), (frame(b"\xff\xfe"), ErrorCode.BAD_JSON),
    (frame(b'{"type":"presence","type":"presence"}'), ErrorCode.BAD_JSON),
    (frame(b"{" * 5000), ErrorCode.BAD_JSON), (frame(b'{"type":"who_result","online":[],"rid":NaN}'),
                                               ErrorCode.BAD_JSON),
    (frame(encode_message(m.ChatLeave(rid=1, chat_id="x"))), ErrorCode.UNEXPECTED_MESSAGE),
    (frame(encode_message(m.ClientHello(random=bytes(32), key_share=bytes(32)))), ErrorCode.UNEXPECTED_MESSAGE),
    (frame(encode_message(m.Record(data=b"abc"))), ErrorCode.UNEXPECTED_MESSAGE),
], ids=["empty", "short-header", "zero-length", "length-beyond", "array", "unknown-type", "bad-utf8", "dup-key",
        "deep", "nan", "client-type", "client-hello", "nested-record"])
def test_bad_record_plaintext(world: HostileServer, people: dict, plaintext: bytes, code: ErrorCode) -> None:
    alice = world.login("alice", people["alice"])
    before = snapshot(alice.client)
    closed_with(alice.feed(alice.seal(plaintext)), code.value)
    assert snapshot(alice.client) == before


def test_oversized_frame_is_refused_on_its_prefix(world: HostileServer, people: dict) -> None:
    """A length prefix beyond the limit closes at once, before a byte of body is buffered (bounded memory)."""
    alice = world.login("alice", people["alice"])
    closed_with(alice.feed(struct.pack(">I", MAX_FRAME_BYTES + 1)), ErrorCode.FRAME_TOO_LARGE.value)


def test_oversized_handshake_frame_is_refused(world: HostileServer) -> None:
    conn = world.connect("early")
    fresh = ClientProtocol(server_key=world.pinned)
    fresh.connect()
    conn.client = fresh
    closed_with(conn.feed(struct.pack(">I", 16 * 1024 + 1)), ErrorCode.FRAME_TOO_LARGE.value)


def test_stream_cut_inside_a_frame(world: HostileServer, people: dict) -> None:
    alice = world.login("alice", people["alice"])
    record = alice.message(m.Presence(username="bob", online=True))
    assert alice.feed(record[:10]) == []
    closed_with(alice.feed(b""), ErrorCode.CONNECTION_LOST.value)


def test_byte_by_byte_delivery_is_the_same_as_whole(world: HostileServer, people: dict) -> None:
    """Framing is independent of how TCP cuts the stream: one byte at a time gives the same single event."""
    alice = world.login("alice", people["alice"])
    record = alice.message(m.Presence(username="bob", online=True))
    events = [e for i in range(len(record)) for e in alice.feed(record[i:i + 1])]
    assert events == [ev.PresenceChanged(username="bob", online=True)]


def test_many_messages_in_one_record_stop_at_the_first_fatal(world: HostileServer, people: dict) -> None:
    """A record holding a valid push, a forbidden type and another push: the first is seen, then the close; the
    third is never acted on."""
    alice = world.login("alice", people["alice"])
    events = alice.feed(alice.seal(
        encode_frame(m.Presence(username="bob", online=True))
        + encode_frame(m.ChatLeave(rid=1, chat_id="x"))
        + encode_frame(m.Presence(username="carol", online=True))))
    assert events == [ev.PresenceChanged(username="bob", online=True),
                      ev.ConnectionClosed(code="unexpected_message", message="chat_leave cannot travel to a client")]


def test_nothing_is_processed_after_close(world: HostileServer, people: dict) -> None:
    alice = world.login("alice", people["alice"])
    closed_with(alice.feed(struct.pack(">I", 0)), ErrorCode.BAD_FRAME.value)
    assert alice.feed(alice.message(m.Presence(username="bob", online=True))) == []
