"""The client's side of the handshake (PROTOCOL.md 4): ``client_hello`` out, ``server_hello`` checked, keys made.

Owns: this connection's ephemeral X25519 key (and ML-KEM-768 key in the hybrid option, PROTOCOL.md 4.4), the
``client_hello`` we sent, the transcript hash, the server's long-term key once its signature over the transcript
verifies, and the channel keys derived from both (PROTOCOL.md 4.3). The ephemeral private keys are dropped as soon
as the shared secret is made (forward secrecy). Must not: send anything itself or move the connection's state;
``ClientProtocol`` queues the hello and opens the record layer with what this returns.
"""

from __future__ import annotations

from collections.abc import Callable

from ..crypto.encoding import RandomBytes, constant_time_equal, fingerprint
from ..crypto.exchange import generate_ephemeral, shared_secret
from ..crypto.kem import decapsulate, generate_kem_key
from ..crypto.key_types import EphemeralKey, KemPrivateKey, VerifyKey
from ..crypto.keys import load_public_key
from ..crypto.signatures import SignatureScheme, verify
from ..errors import ErrorCode, LocalProtocolError, RemoteProtocolError, SecureChatError
from . import events as ev
from . import messages as m
from .channel import (
    HYBRID_KEM, KEM_CONTEXT, X25519, RecordLayer, derive_channel_keys, handshake_secret, server_signed_bytes,
    transcript_hash,
)
from .vocabulary import KeyExchange

# PROTOCOL.md 16.3: called once with (client_random, k_c2s, k_s2c) when the driver asked for a key log
KeyLog = Callable[[bytes, bytes, bytes], None]


class ClientHandshake:
    """One connection's handshake.

    Args:
        key_exchange: ``KeyExchange.X25519`` or ``KeyExchange.X25519_MLKEM768`` (PROTOCOL.md 4.4).
        pinned: the server's pinned SubjectPublicKeyInfo DER and scheme, or None to trust on first use.
        check_pin: False only in the unpinned-client lab variant (PROTOCOL.md 16.1).
    """

    def __init__(self, *, key_exchange: str, pinned: tuple[bytes, str] | None, random_bytes: RandomBytes,
                 keylog: KeyLog | None = None, check_pin: bool = True) -> None:
        if key_exchange not in (X25519, HYBRID_KEM):
            raise LocalProtocolError(f"unknown key exchange {key_exchange}", ErrorCode.BAD_FIELD)
        self.key_exchange = KeyExchange(key_exchange)
        self.pinned = pinned
        self.hello: m.ClientHello | None = None
        self.transcript = b""
        self.server_key: VerifyKey | None = None
        self.server_scheme: SignatureScheme | None = None
        self._check_pin = check_pin
        self._random_bytes = random_bytes
        self._keylog = keylog
        self._ephemeral: EphemeralKey | None = None
        self._kem_private: KemPrivateKey | None = None

    def start(self) -> m.ClientHello:
        """Our fresh key share(s) and random (PROTOCOL.md 4.1)."""
        self._ephemeral, share = generate_ephemeral(random_bytes=self._random_bytes)
        kem_key = None
        if self.key_exchange == HYBRID_KEM:
            self._kem_private, kem_key = generate_kem_key(random_bytes=self._random_bytes)
        self.hello = m.ClientHello(random=self._random_bytes(32), key_share=share, key_exchange=self.key_exchange,
                                   kem_key=kem_key)
        return self.hello

    def finish(self, hello: m.ServerHello) -> tuple[RecordLayer, ev.HandshakeCompleted]:
        """PROTOCOL.md 4.2-4.3, the client's checks in order: the pin, the server key, the key exchange we
        offered, the server's signature over the transcript; then the channel keys. Raises RemoteProtocolError
        (``handshake_failed``) on the first failure, before any credential is sent."""
        assert self.hello is not None and self._ephemeral is not None  # both made by start()
        pinned = self.pinned if self._check_pin else None
        if pinned is not None and not (
            constant_time_equal(pinned[0], hello.server_key) and pinned[1] == hello.server_scheme
        ):
            raise RemoteProtocolError("server key differs from the pinned key", ErrorCode.HANDSHAKE_FAILED)
        scheme = SignatureScheme(pinned[1] if pinned else hello.server_scheme)
        try:
            server_key = load_public_key(hello.server_key)
        except SecureChatError:
            raise RemoteProtocolError("server key unreadable", ErrorCode.HANDSHAKE_FAILED) from None
        hybrid = self.hello.key_exchange == HYBRID_KEM
        if hybrid != (hello.kem_ciphertext is not None):
            raise RemoteProtocolError("server did not answer the key exchange we offered", ErrorCode.HANDSHAKE_FAILED)
        self.transcript = transcript_hash(
            version=hello.version, key_exchange=self.hello.key_exchange, client_random=self.hello.random,
            client_share=self.hello.key_share, server_random=hello.random, server_share=hello.key_share,
            server_key=hello.server_key, server_scheme=scheme.value,
            kem_key=self.hello.kem_key or b"", kem_ciphertext=hello.kem_ciphertext or b"",
        )
        try:
            verify(scheme, server_key, server_signed_bytes(self.transcript), hello.signature)
        except SecureChatError:
            # docs/THREATS.md 27-28: a substituted or replayed server_hello fails here; no credential was sent.
            raise RemoteProtocolError("server signature over the handshake failed", ErrorCode.HANDSHAKE_FAILED) from None
        secret = shared_secret(self._ephemeral, hello.key_share)
        if hello.kem_ciphertext is not None:
            assert self._kem_private is not None  # hybrid: checked against our hello above
            secret = handshake_secret(secret, decapsulate(self._kem_private, hello.kem_ciphertext,
                                                          context=KEM_CONTEXT))
            self._kem_private = None
        keys = derive_channel_keys(secret, self.transcript)
        if self._keylog is not None:  # PROTOCOL.md 16.3: only when the user asked for a key log
            self._keylog(self.hello.random, keys.client_to_server, keys.server_to_client)
        records = RecordLayer(send_key=keys.client_to_server, receive_key=keys.server_to_client)
        self._ephemeral = None  # forward secrecy: the ephemeral private key is no longer needed
        self.server_key, self.server_scheme = server_key, scheme
        return records, ev.HandshakeCompleted(
            server_fingerprint=fingerprint(hello.server_key), server_key=hello.server_key,
            server_scheme=scheme.value, first_use=self.pinned is None, key_exchange=self.hello.key_exchange,
        )
