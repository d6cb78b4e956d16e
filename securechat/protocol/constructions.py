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
CHAT_KEY_LABEL = "securechat v1 chat key tree"
WRAP_LEAF_LABEL = "securechat v1 wrap leaf"
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
    wrap_root: bytes,
) -> bytes:
    """PROTOCOL.md 7.2: one server signature covers the whole distribution, so every member sees the same
    member list and can tell if its wrap was swapped (docs/THREATS.md 44). The wraps enter through the root of
    a Merkle tree over them (``wrap_tree``): each member gets only its own wrap and its audit path, so a
    distribution costs O(N log N) bytes of hashes instead of N digests to each of N members."""
    return encode_fields(
        CHAT_KEY_LABEL, chat_id, epoch, mode, suite, reason, actor,
        encode_fields("members", *members), wrap_root,
    )


def wrap_leaf(member: str, wrapped_key: bytes) -> bytes:
    """PROTOCOL.md 7.2: the leaf hash of *member*'s wrap (RFC 9162 2.1.1: SHA-256(0x00 || leaf data))."""
    return sha256(b"\x00" + encode_fields(WRAP_LEAF_LABEL, member, wrapped_key))


def _node(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


def _tree(leaves: list[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """RFC 9162 2.1.1 and 2.1.3.1: the tree hash of *leaves* (leaf hashes) and each leaf's audit path."""
    if len(leaves) == 1:
        return leaves[0], [[]]
    split = 1 << ((len(leaves) - 1).bit_length() - 1)  # the largest power of two below len(leaves)
    left, left_paths = _tree(leaves[:split])
    right, right_paths = _tree(leaves[split:])
    return _node(left, right), [p + [right] for p in left_paths] + [p + [left] for p in right_paths]


def wrap_tree(members: tuple[str, ...], wraps: tuple[bytes, ...]) -> tuple[bytes, tuple[tuple[bytes, ...], ...]]:
    """The Merkle root over every member's wrap, in member order, and each member's audit path (PROTOCOL.md 7.2).
    Needs at least one member and one wrap per member."""
    if not members or len(members) != len(wraps):
        raise ValueError("one wrap per member, at least one member")
    root, paths = _tree([wrap_leaf(member, wrap) for member, wrap in zip(members, wraps)])
    return root, tuple(tuple(path) for path in paths)


def root_from_path(leaf: bytes, index: int, size: int, path: tuple[bytes, ...]) -> bytes | None:
    """RFC 9162 2.1.3.2: the root that *leaf* at *index* of a tree of *size* leaves and its audit *path* lead to,
    or None if the path cannot belong to such a leaf (wrong length, index out of range)."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = _node(r, p)
        fn, sn = fn >> 1, sn >> 1
    return r if sn == 0 else None


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
