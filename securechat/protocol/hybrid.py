"""Hybrid mode on the client (PROTOCOL.md 7.7, hybrid v2): a fresh key for every message, wrapped for each member.

Owns: sealing a message under its own key (wrapped with RSA-OAEP for every other member, a key commitment and the
chain hash of our previous message, all under our signature), and the receiver's order of checks that makes every
member who accepts a message read the same plaintext. Must not: choose recipients or trust certificates
(``ChatBook`` passes the verified keys of the epoch's members).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..crypto import aead
from ..crypto.certificates import Certificate
from ..crypto.encoding import RandomBytes, constant_time_equal
from ..crypto.key_types import EncryptionPrivateKey, EncryptionPublicKey, VerifyKey
from ..crypto.signatures import sign, verify
from ..crypto.wrap import unwrap_key, wrap_key
from ..errors import ErrorCode, SecureChatError
from . import events as ev
from .client_chat import ClientChat, decrypt_text, rejected
from .constructions import HYBRID_CHAIN_START, hybrid_chain_hash, hybrid_message_keys, hybrid_signed_bytes
from .identity import UserKeys
from .messages import ChatMessage, ChatSend


def seal_hybrid(chat: ClientChat, header: bytes, plaintext: bytes, seq: int, rid: int | None, *,
                recipients: tuple[str, ...], wrap_to: Sequence[EncryptionPublicKey], keys: UserKeys,
                random_bytes: RandomBytes) -> ChatSend:
    """PROTOCOL.md 7.7 (hybrid v2): a fresh message key wrapped for every other member (*recipients*, whose
    verified encryption keys are *wrap_to*), a key commitment and the chain hash of our previous message, all
    under our signature."""
    message_key = random_bytes(32)
    wraps = tuple(wrap_key(key, message_key, random_bytes=random_bytes) for key in wrap_to)
    encryption_key, commitment = hybrid_message_keys(message_key, header)
    ciphertext = aead.seal(encryption_key, plaintext, aad=header, nonce=aead.nonce_from_counter(seq),
                           suite=aead.CipherSuite(chat.suite))
    prev_hash = chat.sent_hash
    signed = hybrid_signed_bytes(header, ciphertext, recipients, wraps, commitment, prev_hash)
    signature = sign(keys.scheme, keys.signing_key, signed, random_bytes=random_bytes)
    chat.sent_seq, chat.sent_hash = seq, hybrid_chain_hash(signed)
    return ChatSend(rid=rid, chat_id=chat.chat_id, epoch=chat.epoch, seq=seq, ciphertext=ciphertext,
                    signature=signature, wrap_recipients=recipients, wraps=wraps, key_commitment=commitment,
                    prev_hash=prev_hash)


def open_hybrid(chat: ClientChat, msg: ChatMessage, header: bytes, cert: Certificate, signing_key: VerifyKey, *,
                me: str, encryption_key: EncryptionPrivateKey, verify_key_commitment: bool) -> list[ev.Event]:
    """PROTOCOL.md 7.7, the receiver's order of checks for hybrid v2.

    Signature, then replay; from there the (sender, seq) is used up whatever follows, so a sender cannot
    show one member one message and another member a second one under the same seq. Then the hash chain,
    the wraps, the unwrap and the key commitment (constant time), and only then decryption: every member
    who accepts holds the same key and so reads the same plaintext.
    """
    if msg.wrap_recipients is None or msg.wraps is None or msg.key_commitment is None or msg.prev_hash is None:
        return [rejected(msg.chat_id, msg.sender, ErrorCode.BAD_FIELD,
                         "hybrid message without wraps, key commitment or chain hash")]
    signed = hybrid_signed_bytes(header, msg.ciphertext, msg.wrap_recipients, msg.wraps, msg.key_commitment,
                                 msg.prev_hash)
    try:
        verify(cert.signature_scheme, signing_key, signed, msg.signature)
    except SecureChatError:
        return [rejected(msg.chat_id, msg.sender, ErrorCode.BAD_SIGNATURE, "signature does not verify")]
    last = chat.last_seq.get(msg.sender, 0)
    if msg.seq <= last:
        return [rejected(msg.chat_id, msg.sender, ErrorCode.REPLAY, f"seq {msg.seq} already seen")]
    # From here on the message is the sender's, provably: its seq is used, and its hash is the chain's.
    chat.last_seq[msg.sender] = msg.seq
    expected = chat.last_hash.get(msg.sender, HYBRID_CHAIN_START)
    chat.last_hash[msg.sender] = hybrid_chain_hash(signed)
    events: list[ev.Event] = []
    if msg.seq == last + 1 and not constant_time_equal(msg.prev_hash, expected):
        events.append(_misbehaved(
            msg, ErrorCode.EQUIVOCATION, msg.seq - 1,
            f"{msg.sender}'s message {msg.seq - 1} as we received it is not the one {msg.sender} went on from: "
            "other members were shown a different message"))

    def unreadable(reason: str) -> list[ev.Event]:
        return events + [_misbehaved(msg, ErrorCode.UNREADABLE_MESSAGE, msg.seq, reason)]

    if set(msg.wrap_recipients) != set(chat.members) - {msg.sender}:
        # PROTOCOL.md 7.7: a wrap for every other member of the epoch, and for nobody else
        return events + [rejected(msg.chat_id, msg.sender, ErrorCode.NOT_MEMBER, "wraps do not match the members")]
    try:
        message_key = _message_key(msg, me, encryption_key)
    except SecureChatError:
        return unreadable(f"{msg.sender} signed a message whose key, wrapped for us, does not unwrap")
    key, commitment = hybrid_message_keys(message_key, header)
    if verify_key_commitment and not constant_time_equal(commitment, msg.key_commitment):
        return unreadable(f"{msg.sender} wrapped a key for us that is not the key committed to in the message: "
                          "members were given different keys")
    text = decrypt_text(key, msg, header, chat.suite)
    if text is None:
        return unreadable(f"{msg.sender} signed a message that does not decrypt under its committed key")
    return events + [ev.ChatReceived(chat_id=msg.chat_id, epoch=msg.epoch, sender=msg.sender, seq=msg.seq,
                                     text=text, signature_scheme=cert.signature_scheme.value,
                                     gap=msg.seq - last - 1)]


def _misbehaved(msg: ChatMessage, code: ErrorCode, seq: int, reason: str) -> ev.PeerMisbehaved:
    return ev.PeerMisbehaved(chat_id=msg.chat_id, sender=msg.sender, seq=seq, code=code, reason=reason)


def _message_key(msg: ChatMessage, me: str, encryption_key: EncryptionPrivateKey) -> bytes:
    """Our RSA-OAEP wrap of this message's own key."""
    recipients, wraps = msg.wrap_recipients or (), msg.wraps or ()
    if me not in recipients or len(recipients) != len(wraps):
        raise SecureChatError("no wrap for us", ErrorCode.KEY_UNWRAP_FAILED)
    return unwrap_key(encryption_key, wraps[recipients.index(me)], expected_length=32)
