"""The exact bytes securechat signs, authenticates and derives keys from (PROTOCOL.md 6 and 7).

Owns: the labels of login and registration proofs, chat keys and chat messages, the AAD layout of chat messages, per-sender key derivation, and what login proofs,
registration proofs and key distributions sign. Client and server both build these bytes from here, so they
cannot drift apart. The other labels sit beside the code that uses them: the channel's in ``channel.py``, the
contributory agreement's in ``agreement.py``, the decoy login's in ``jobs.py``, the certificate's and CBC-HMAC's in
``crypto/certificates.py`` and ``crypto/aead.py``. Must not: hold state, choose algorithms (the certificate does), or do I/O.
"""

from __future__ import annotations

from ..crypto.encoding import encode_fields, sha256
from ..crypto.kdf import hkdf_sha256

LOGIN_LABEL = "securechat v1 login"
REGISTER_LABEL = "securechat v1 register"
RENEW_LABEL = "securechat v1 renew"
CHAT_KEY_LABEL = "securechat v1 chat key"
CHAT_SALT_LABEL = "securechat v1 chat salt"
SENDER_KEY_LABEL = "securechat v1 sender key"
CHAT_HEADER_LABEL = "securechat v1 chat message"
CHAT_SIGNATURE_LABEL = "securechat v1 chat signature"
# PROTOCOL.md 7.3: a sender's sequence number is the GCM nonce under its own key, so it must never wrap.
MAX_SEQ = 2**32 - 1


def login_proof_bytes(transcript: bytes, username: str) -> bytes:
    """PROTOCOL.md 6.2: the challenge is the channel's transcript hash, so a relayed proof fails elsewhere."""
    return encode_fields(LOGIN_LABEL, transcript, username)


def renew_proof_bytes(transcript: bytes, username: str, serial: int) -> bytes:
    """PROTOCOL.md 6.6: the holder of the certified signing key asks, on this channel, to renew that certificate."""
    return encode_fields(RENEW_LABEL, transcript, username, serial)


def register_proof_bytes(
    transcript: bytes, username: str, scheme: str, encryption_key: bytes, signing_key: bytes, nonce: bytes
) -> bytes:
    """PROTOCOL.md 6.1: proves possession of the signing key (signature) and the encryption key (nonce)."""
    return encode_fields(
        REGISTER_LABEL, transcript, username, scheme, sha256(encryption_key), sha256(signing_key), nonce
    )


def chat_key_signed_bytes(
    *,
    chat_id: str,
    epoch: int,
    mode: str,
    suite: str,
    reason: str,
    actor: str,
    members: tuple[str, ...],
    wrap_digests: tuple[bytes, ...],
) -> bytes:
    """PROTOCOL.md 7.2: one server signature covers the whole distribution, so every member sees the same
    member list and can tell if its wrap was swapped (docs/THREATS.md 44)."""
    return encode_fields(
        CHAT_KEY_LABEL, chat_id, epoch, mode, suite, reason, actor,
        encode_fields("members", *members), encode_fields("wraps", *wrap_digests),
    )


def sender_key(chat_key: bytes, *, chat_id: str, epoch: int, sender: str) -> bytes:
    """PROTOCOL.md 7.3: each member encrypts under its own key, so two members never share (key, nonce)
    even though both count from 1 (docs/THREATS.md 34b)."""
    return hkdf_sha256(
        chat_key,
        salt=encode_fields(CHAT_SALT_LABEL, chat_id, epoch),
        info=encode_fields(SENDER_KEY_LABEL, sender),
    )


def chat_header(*, chat_id: str, epoch: int, sender: str, seq: int, suite: str) -> bytes:
    """The AAD of a chat message: binds chat, epoch, sender, sequence number and suite (PROTOCOL.md 7.3)."""
    return encode_fields(CHAT_HEADER_LABEL, chat_id, epoch, sender, seq, suite)


def chat_signed_bytes(header: bytes, ciphertext: bytes) -> bytes:
    """The sender signs exactly what travels: the header fields and the ciphertext (PROTOCOL.md 7.3)."""
    return encode_fields(CHAT_SIGNATURE_LABEL, header, ciphertext)


CHAT_EPOCH_LABEL = "securechat v1 chat epoch"
# PROTOCOL.md 7.7, hybrid messages version 2: key commitment and the per-sender hash chain.
HYBRID_SIGNATURE_LABEL = "securechat v2 hybrid signature"
HYBRID_ENCRYPTION_KEY_LABEL = "securechat v2 hybrid encryption key"
HYBRID_COMMITMENT_LABEL = "securechat v2 hybrid key commitment"
HYBRID_CHAIN_LABEL = "securechat v2 hybrid chain"
HYBRID_CHAIN_START = bytes(32)  # prev_hash of a sender's first message in an epoch


def chat_epoch_signed_bytes(*, chat_id: str, epoch: int, mode: str, suite: str, reason: str, actor: str,
                            members: tuple[str, ...]) -> bytes:
    """PROTOCOL.md 7.7: in keyless modes the server signs only the membership of each epoch."""
    return encode_fields(CHAT_EPOCH_LABEL, chat_id, epoch, mode, suite, reason, actor,
                         encode_fields("members", *members))


def hybrid_message_keys(message_key: bytes, header: bytes) -> tuple[bytes, bytes]:
    """PROTOCOL.md 7.7: the AEAD key and the key commitment, both derived from the wrapped message key.

    AES-GCM is not key-committing: one ciphertext can be made to open under two keys (the "invisible
    salamanders" attack). Every recipient recomputes the commitment from the key it unwrapped and compares it
    with the signed one before decrypting, so all who accept hold the same key and read the same plaintext.
    Both outputs are bound to the header (chat, epoch, sender, seq, suite).
    """
    encryption_key = hkdf_sha256(message_key, salt=b"", info=encode_fields(HYBRID_ENCRYPTION_KEY_LABEL, header))
    commitment = hkdf_sha256(message_key, salt=b"", info=encode_fields(HYBRID_COMMITMENT_LABEL, header))
    return encryption_key, commitment


def hybrid_signed_bytes(header: bytes, ciphertext: bytes, recipients: tuple[str, ...], wraps: tuple[bytes, ...],
                        commitment: bytes, prev_hash: bytes) -> bytes:
    """PROTOCOL.md 7.7: a per-message-key message is signed over header, ciphertext, every wrap, the key
    commitment and the hash of the sender's previous message in this epoch (the hash chain)."""
    pairs = [x for name, wrap in zip(recipients, wraps) for x in (name, wrap)]
    return encode_fields(HYBRID_SIGNATURE_LABEL, header, ciphertext, encode_fields("wraps", *pairs), commitment,
                         prev_hash)


def hybrid_chain_hash(signed: bytes) -> bytes:
    """PROTOCOL.md 7.7: what the sender's next message carries as ``prev_hash``: a hash of this message's
    signed bytes, i.e. of the message exactly as sent (its wraps included)."""
    return sha256(encode_fields(HYBRID_CHAIN_LABEL, signed))
