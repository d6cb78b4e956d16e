"""The client-server secure channel: handshake transcript, key schedule and AEAD records (PROTOCOL.md 4-5).

Owns: what the handshake signs, how the per-direction keys are derived, and the record layer with its
sequence-number nonces. Must not: parse JSON (the codec does), keep connection state beyond the record
counters, or touch sockets and clocks.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..crypto import aead
from ..crypto.encoding import encode_fields, sha256
from ..crypto.kdf import hkdf_sha256
from ..errors import ErrorCode, IntegrityError, RemoteProtocolError
from .vocabulary import KeyExchange

HANDSHAKE_LABEL = "securechat v1 handshake"
SERVER_SIGNATURE_LABEL = "securechat v1 server signature"
C2S_INFO = b"securechat v1 c2s"
S2C_INFO = b"securechat v1 s2c"
RECORD_AAD = b"securechat v1 record"
# PROTOCOL.md 5.2: a connection is closed long before the 64-bit counter could wrap (docs/THREATS.md 36); at one
# record per microsecond 2**48 records take nine years.
MAX_RECORDS_PER_DIRECTION = 2**48


def transcript_hash(
    *,
    version: int,
    key_exchange: str,
    client_random: bytes,
    client_share: bytes,
    server_random: bytes,
    server_share: bytes,
    server_key: bytes,
    server_scheme: str,
    kem_key: bytes = b"",
    kem_ciphertext: bytes = b"",
) -> bytes:
    """SHA-256 over every handshake field both sides saw (PROTOCOL.md 4.2); binds logins to this channel.

    The hybrid key exchange (PROTOCOL.md 4.4) appends the ML-KEM encapsulation key and ciphertext; the
    classical transcript is unchanged. ``key_exchange`` is in both, so stripping the ML-KEM part from a
    client_hello changes what the server signs (no downgrade).
    """
    fields: list[bytes | str | int] = [version, key_exchange, client_random, client_share,
                                       server_random, server_share, server_key, server_scheme]
    if key_exchange != X25519:
        fields += [kem_key, kem_ciphertext]
    return sha256(encode_fields(HANDSHAKE_LABEL, *fields))


X25519 = KeyExchange.X25519
HYBRID_KEM = KeyExchange.X25519_MLKEM768
KEM_CONTEXT = b"securechat v1 hybrid handshake"  # the HPKE info of the ML-KEM export (crypto/kem.py)


def handshake_secret(x25519_secret: bytes, kem_secret: bytes = b"") -> bytes:
    """The HKDF input: the X25519 secret, then the ML-KEM secret in the hybrid exchange (PROTOCOL.md 4.4).

    Concatenated and fed to HKDF as one input, so the channel keys stay secret while either part does.
    """
    return x25519_secret + kem_secret


def server_signed_bytes(transcript: bytes) -> bytes:
    """What the server's long-term key signs in server_hello (PROTOCOL.md 4.2)."""
    return encode_fields(SERVER_SIGNATURE_LABEL, transcript)


@dataclass(frozen=True)
class ChannelKeys:
    client_to_server: bytes
    server_to_client: bytes


def derive_channel_keys(shared_secret: bytes, transcript: bytes) -> ChannelKeys:
    """HKDF-SHA256(ikm=X25519 secret, salt=transcript hash) with one info label per direction (PROTOCOL.md 4.3).

    Separate keys per direction are what make a reflected record fail to open (docs/THREATS.md 33).
    """
    return ChannelKeys(
        client_to_server=hkdf_sha256(shared_secret, salt=transcript, info=C2S_INFO),
        server_to_client=hkdf_sha256(shared_secret, salt=transcript, info=S2C_INFO),
    )


class RecordLayer:
    """Seals outgoing and opens incoming records; the nonce of record n is n (PROTOCOL.md 5.2).

    The receiver never reads a sequence number from the wire: it uses the one it expects, so a replayed,
    dropped or reordered record fails authentication (docs/THREATS.md 30, 31).
    """

    def __init__(self, *, send_key: bytes, receive_key: bytes, lab_replay_window: int = 0) -> None:
        self._send_key = send_key
        self._receive_key = receive_key
        self.sent = 0
        self.received = 0
        # LAB ONLY (PROTOCOL.md 16.1, no-replay-window): also accept a copy of one of the last N records
        self._lab_replay_window = lab_replay_window

    def seal(self, plaintext: bytes) -> bytes:
        if self.sent >= MAX_RECORDS_PER_DIRECTION:
            raise RemoteProtocolError("record counter exhausted; reconnect", ErrorCode.LIMIT_EXCEEDED)
        nonce = aead.nonce_from_counter(self.sent)
        self.sent += 1
        return aead.seal(self._send_key, plaintext, aad=RECORD_AAD, nonce=nonce)

    def open(self, sealed: bytes) -> bytes:
        """Raises IntegrityError(BAD_RECORD) for any record that is not the next one, intact."""
        if self.received >= MAX_RECORDS_PER_DIRECTION:
            raise RemoteProtocolError("record counter exhausted; reconnect", ErrorCode.LIMIT_EXCEEDED)
        nonce = aead.nonce_from_counter(self.received)
        try:
            plaintext = aead.unseal(self._receive_key, sealed, aad=RECORD_AAD, nonce=nonce)
        except (IntegrityError, ValueError):
            for old in range(self.received - 1, max(-1, self.received - 1 - self._lab_replay_window), -1):
                try:  # LAB ONLY (PROTOCOL.md 16.1): an old record opens again, and the counter stays put
                    return aead.unseal(self._receive_key, sealed, aad=RECORD_AAD, nonce=aead.nonce_from_counter(old))
                except (IntegrityError, ValueError):
                    continue
            raise IntegrityError("record failed authentication", ErrorCode.BAD_RECORD) from None
        self.received += 1
        return plaintext
