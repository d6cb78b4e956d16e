"""The secure channel (protocol/channel.py): transcript, key schedule and the AEAD record layer.

docs/THREATS.md 30-33 and 36: replayed, reordered, reflected, tampered and truncated records fail with
IntegrityError(BAD_RECORD); an exhausted counter fails before any cryptography is attempted.
"""

from __future__ import annotations

from typing import Any

import pytest

from securechat.crypto import aead
from securechat.errors import ErrorCode, IntegrityError, RemoteProtocolError, SecureChatError
from securechat.protocol.channel import (
    MAX_RECORDS_PER_DIRECTION,
    RECORD_AAD,
    ChannelKeys,
    RecordLayer,
    derive_channel_keys,
    server_signed_bytes,
    transcript_hash,
)

SECRET = bytes(range(32))
TRANSCRIPT_FIELDS: dict[str, Any] = dict(
    version=1, key_exchange="x25519", client_random=b"\x01" * 32, client_share=b"\x02" * 32,
    server_random=b"\x03" * 32, server_share=b"\x04" * 32, server_key=b"\x05" * 44, server_scheme="ed25519",
)


def layers(keys: ChannelKeys | None = None) -> tuple[RecordLayer, RecordLayer]:
    keys = keys or derive_channel_keys(SECRET, transcript_hash(**TRANSCRIPT_FIELDS))
    client = RecordLayer(send_key=keys.client_to_server, receive_key=keys.server_to_client)
    server = RecordLayer(send_key=keys.server_to_client, receive_key=keys.client_to_server)
    return client, server


def bad_record(layer: RecordLayer, sealed: bytes) -> None:
    before = layer.received
    with pytest.raises(IntegrityError) as info:
        layer.open(sealed)
    assert info.value.code is ErrorCode.BAD_RECORD
    assert layer.received == before  # a failed record does not advance the counter


# --- key schedule -----------------------------------------------------------------------------------------


def test_directional_keys_are_distinct_and_32_bytes() -> None:
    keys = derive_channel_keys(SECRET, transcript_hash(**TRANSCRIPT_FIELDS))
    assert len(keys.client_to_server) == len(keys.server_to_client) == 32
    assert keys.client_to_server != keys.server_to_client
    assert SECRET not in (keys.client_to_server, keys.server_to_client)


def test_keys_depend_on_secret_and_transcript() -> None:
    base = derive_channel_keys(SECRET, b"t" * 32)
    assert derive_channel_keys(SECRET, b"t" * 32) == base
    assert derive_channel_keys(SECRET, b"u" * 32).client_to_server != base.client_to_server
    assert derive_channel_keys(b"\x09" * 32, b"t" * 32).server_to_client != base.server_to_client


@pytest.mark.parametrize("field", sorted(TRANSCRIPT_FIELDS))
def test_transcript_hash_binds_every_handshake_field(field: str) -> None:
    base = transcript_hash(**TRANSCRIPT_FIELDS)
    value = TRANSCRIPT_FIELDS[field]
    changed = value + 1 if isinstance(value, int) else (value + "x" if isinstance(value, str) else b"\xff" + value[1:])
    assert transcript_hash(**{**TRANSCRIPT_FIELDS, field: changed}) != base
    assert len(base) == 32


def test_server_signature_bytes_are_labelled() -> None:
    signed = server_signed_bytes(b"t" * 32)
    assert signed.startswith(b"securechat v1 server signature\x00") and signed.endswith(b"t" * 32)


# --- record layer -----------------------------------------------------------------------------------------------


def test_round_trip_both_directions_in_order() -> None:
    client, server = layers()
    for i in range(5):
        assert server.open(client.seal(b"c%d" % i)) == b"c%d" % i
        assert client.open(server.seal(b"s%d" % i)) == b"s%d" % i
    assert client.sent == client.received == server.sent == server.received == 5


def test_record_nonce_is_the_counter_and_aad_is_fixed() -> None:
    keys = derive_channel_keys(SECRET, b"t" * 32)
    client, _ = layers(keys)
    client.seal(b"first")
    sealed = client.seal(b"second")
    assert aead.unseal(keys.client_to_server, sealed, aad=RECORD_AAD, nonce=aead.nonce_from_counter(1)) == b"second"


def test_replayed_record_fails_integrity() -> None:
    client, server = layers()
    sealed = client.seal(b"login")
    assert server.open(sealed) == b"login"
    bad_record(server, sealed)


def test_reordered_records_fail_integrity() -> None:
    client, server = layers()
    first, second = client.seal(b"one"), client.seal(b"two")
    bad_record(server, second)
    assert server.open(first) == b"one"  # the expected record still opens
    assert server.open(second) == b"two"


def test_dropped_record_makes_the_next_one_fail() -> None:
    client, server = layers()
    client.seal(b"dropped")
    bad_record(server, client.seal(b"next"))


def test_reflected_record_fails_integrity() -> None:
    client, server = layers()
    sealed = client.seal(b"to the server")
    # Echoed back to its sender, whose layer is the server's with the keys swapped: the s2c key cannot
    # open a c2s record, even at the matching counter.
    bad_record(client, sealed)
    assert server.open(sealed) == b"to the server"
    reply = server.seal(b"to the client")
    bad_record(server, reply)
    assert client.open(reply) == b"to the client"


def test_record_from_another_channel_fails() -> None:
    client, _ = layers()
    _, other_server = layers(derive_channel_keys(b"\x07" * 32, b"t" * 32))
    bad_record(other_server, client.seal(b"hello"))


@pytest.mark.parametrize("position", [0, 5, -17, -1])
def test_bit_flip_anywhere_fails_integrity(position: int) -> None:
    client, server = layers()
    sealed = bytearray(client.seal(b"a record of some length"))
    sealed[position] ^= 0x01
    bad_record(server, bytes(sealed))


@pytest.mark.parametrize("cut", [1, 15, 16, 17, 100])
def test_truncated_record_fails_integrity(cut: int) -> None:
    client, server = layers()
    sealed = client.seal(b"x" * 40)
    bad_record(server, sealed[:-cut] if cut < len(sealed) else b"")


def test_empty_and_extended_records_fail() -> None:
    client, server = layers()
    bad_record(server, b"")
    bad_record(server, client.seal(b"abc") + b"\x00")


# --- counter exhaustion (docs/THREATS.md 36) ----------------------------------------------------------------------------


def _no_crypto(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    def refuse(*args: object, **kwargs: object) -> bytes:
        calls.append("crypto")
        raise AssertionError("AEAD called with an exhausted counter")

    monkeypatch.setattr(aead, "seal", refuse)
    monkeypatch.setattr(aead, "unseal", refuse)
    return calls


def test_send_counter_exhaustion_fails_before_any_crypto(monkeypatch: pytest.MonkeyPatch) -> None:
    client, _ = layers()
    client.sent = MAX_RECORDS_PER_DIRECTION
    calls = _no_crypto(monkeypatch)
    with pytest.raises(SecureChatError) as info:
        client.seal(b"one too many")
    assert info.value.code is ErrorCode.LIMIT_EXCEEDED and calls == []
    assert client.sent == MAX_RECORDS_PER_DIRECTION


def test_receive_counter_exhaustion_fails_before_any_crypto(monkeypatch: pytest.MonkeyPatch) -> None:
    client, server = layers()
    sealed = client.seal(b"x")
    server.received = MAX_RECORDS_PER_DIRECTION
    calls = _no_crypto(monkeypatch)
    with pytest.raises(RemoteProtocolError) as info:
        server.open(sealed)
    assert info.value.code is ErrorCode.LIMIT_EXCEEDED and calls == []


def test_last_counter_before_the_limit_still_works() -> None:
    client, server = layers()
    client.sent = server.received = MAX_RECORDS_PER_DIRECTION - 1
    assert server.open(client.seal(b"last")) == b"last"
    assert MAX_RECORDS_PER_DIRECTION < 2**64  # closes long before the 64-bit nonce counter could wrap
