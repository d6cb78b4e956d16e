"""Member-contributed chat keys through a blind relay (PROTOCOL.md 7.6): one ``Agreement`` per epoch.

Owns: the rounds a member runs so that the members, and never the server, derive the chat key:

* ``contributory`` (the real design): every member commits to a random 32-byte share (a hash binding chat,
  epoch, sender and share), reveals it only after every commitment is in, as an RSA-OAEP envelope per
  recipient signed over (chat, epoch, sender, recipient, nonce, timestamp); the key is HKDF over every
  (member, share) pair and the transcript of commitments; a key-confirmation round (HMAC of the transcript
  under the new key) makes any split group abort instead of chatting on different keys.
* ``contributory-xor`` (the XOR derivation, **insecure**, kept to be attacked): no commitments; the key is
  the XOR of the shares, so the last member to reveal can force any key it likes (docs/THREATS.md 47).

Every failure aborts the epoch with one specific code: ``commitment_mismatch``, ``duplicate_share``,
``stale_epoch``, ``replay``, ``bad_signature``, ``key_unwrap_failed``, ``key_confirmation_failed``.
Must not: send anything itself (it returns messages), read clocks (``now`` is passed in) or trust the server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..crypto.certificates import CLOCK_SKEW_SECONDS
from ..crypto.encoding import RandomBytes, constant_time_equal, encode_fields, hmac_sha256, sha256
from ..crypto.kdf import hkdf_sha256
from ..crypto.key_types import EncryptionPrivateKey, EncryptionPublicKey, SigningKey, VerifyKey
from ..crypto.signatures import SignatureScheme, sign, verify
from ..crypto.wrap import unwrap_key, wrap_key
from ..errors import ErrorCode, SecureChatError
from . import messages as m
from .states import AgreementState, next_agreement_state
from .vocabulary import ChatMode

SHARE_BYTES = 32
NONCE_BYTES = 16
# PROTOCOL.md 7.6: an envelope's timestamp must be within this of the receiver's clock (docs/THREATS.md 49).
TIMESTAMP_WINDOW_SECONDS = CLOCK_SKEW_SECONDS  # the one clock tolerance (PROTOCOL.md 6.3)
SECURE, XOR = ChatMode.CONTRIBUTORY, ChatMode.CONTRIBUTORY_XOR
# An honest member sends each other member at most a commitment, an envelope and a confirmation per epoch.
MAX_INBOX_PER_MEMBER = 4


class AgreementFailed(SecureChatError):
    """The epoch's key agreement was aborted; ``code`` says which rule failed."""


@dataclass(frozen=True)
class Peer:
    """What the agreement needs of a member: its verified keys (from its certificate)."""

    scheme: SignatureScheme
    signing_key: VerifyKey
    encryption_key: EncryptionPublicKey


def commitment(chat_id: str, epoch: int, sender: str, share: bytes) -> bytes:
    return sha256(encode_fields("securechat v1 share commitment", chat_id, epoch, sender, share))


def commit_signed_bytes(chat_id: str, epoch: int, sender: str, value: bytes) -> bytes:
    return encode_fields("securechat v1 share commit", chat_id, epoch, sender, value)


def envelope_signed_bytes(chat_id: str, epoch: int, sender: str, recipient: str, wrapped: bytes, nonce: bytes,
                          timestamp: int) -> bytes:
    return encode_fields("securechat v1 key share", chat_id, epoch, sender, recipient, sha256(wrapped), nonce,
                         timestamp)


def derive_key(variant: ChatMode, chat_id: str, epoch: int, shares: dict[str, bytes], transcript: bytes) -> bytes:
    """PROTOCOL.md 7.6: HKDF over sorted (member, share) pairs and the transcript; XOR for the insecure variant."""
    if variant == XOR:
        key = bytes(SHARE_BYTES)
        for share in shares.values():
            key = bytes(a ^ b for a, b in zip(key, share))
        return key
    ikm = encode_fields("securechat v1 contributory shares", *(x for name in sorted(shares)
                                                              for x in (name, shares[name])))
    return hkdf_sha256(ikm, salt=transcript, info=encode_fields("securechat v1 contributory key", chat_id, epoch))


def confirmation(key: bytes, transcript: bytes, sender: str) -> bytes:
    """HMAC of the transcript and the confirming member's name: a relay cannot echo a member's own MAC back
    to it as someone else's (PROTOCOL.md 7.6)."""
    return hmac_sha256(hkdf_sha256(key, salt=b"", info=b"securechat v1 key confirmation"),
                       encode_fields("securechat v1 key confirmation mac", transcript, sender))


@dataclass
class Agreement:
    """One member's side of one epoch's key agreement."""

    chat_id: str
    epoch: int
    variant: ChatMode  # SECURE or XOR
    members: tuple[str, ...]
    me: str
    my_scheme: SignatureScheme
    my_signing_key: SigningKey
    my_encryption_key: EncryptionPrivateKey
    random_bytes: RandomBytes
    state: AgreementState = AgreementState.COMMITTING
    share: bytes = b""
    key: bytes | None = None
    commitments: dict[str, bytes] = field(default_factory=dict)
    shares: dict[str, bytes] = field(default_factory=dict)
    confirms: dict[str, bytes] = field(default_factory=dict)
    nonces: set[bytes] = field(default_factory=set)
    inbox: list[m.Message] = field(default_factory=list)  # inputs waiting for certificates or a round
    revealed: bool = False
    confirmed: bool = False

    @property
    def others(self) -> tuple[str, ...]:
        return tuple(n for n in self.members if n != self.me)

    def start(self) -> list[m.Message]:
        """Pick our share; in the secure variant, commit to it first."""
        self.share = self.random_bytes(SHARE_BYTES)
        if self.variant == XOR:
            return []  # no commitments: the reveal follows as soon as every certificate is in
        value = commitment(self.chat_id, self.epoch, self.me, self.share)
        self.commitments[self.me] = value
        return [m.ShareCommit(chat_id=self.chat_id, epoch=self.epoch, commitment=value, signature=sign(
            self.my_scheme, self.my_signing_key, commit_signed_bytes(self.chat_id, self.epoch, self.me, value),
            random_bytes=self.random_bytes))]

    def advance(self, peers: Callable[[str], Peer | None], now: float) -> list[m.Message]:
        """Process what has arrived as far as the certificates we hold allow; returns messages to send.

        Raises AgreementFailed (and moves to ABORTED) on the first failed check.
        """
        if self.state in (AgreementState.DONE, AgreementState.ABORTED):
            return []
        if any(peers(n) is None for n in self.others):
            return []  # certificates still being fetched: PROTOCOL.md 7.4
        out: list[m.Message] = []
        try:
            pending, self.inbox = self.inbox, []
            for message in pending:
                self._accept(message, peers, now)
            out += self.maybe_reveal(peers, now)
            out += self._maybe_confirm()
            self._maybe_finish()
        except AgreementFailed:
            self.state = next_agreement_state(self.state, "fail")
            raise
        return out

    def receive(self, message: m.Message) -> None:
        """Keep a round message until ``advance`` can check it. A server that floods a member with round
        messages (say, for a member whose certificate it never delivers) ends the epoch rather than the
        client's memory: an honest round sends at most three messages per other member."""
        if len(self.inbox) >= MAX_INBOX_PER_MEMBER * max(1, len(self.others)):
            self.abort(f"more round messages than {len(self.others)} members can send", ErrorCode.LIMIT_EXCEEDED)
        self.inbox.append(message)

    def abort(self, reason: str, code: ErrorCode) -> None:
        """End this epoch's agreement with *code* (raises AgreementFailed)."""
        if self.state not in (AgreementState.DONE, AgreementState.ABORTED):
            self.state = next_agreement_state(self.state, "fail")
        raise AgreementFailed(reason, code)

    # --- inputs -------------------------------------------------------------------------------------------

    def _accept(self, message: m.Message, peers: Callable[[str], Peer | None], now: float) -> None:
        sender = getattr(message, "sender")
        if sender not in self.others:
            raise AgreementFailed(f"{sender} is not a member of epoch {self.epoch}", ErrorCode.NOT_MEMBER)
        peer = peers(sender)
        assert peer is not None
        if isinstance(message, m.ShareCommitted):
            self._accept_commit(message, peer)
        elif isinstance(message, m.KeyShareDelivery):
            self._accept_share(message, peer, now)
        elif isinstance(message, m.KeyConfirmed):
            if sender in self.confirms:
                raise AgreementFailed(f"second confirmation from {sender}", ErrorCode.REPLAY)
            self.confirms[sender] = message.mac

    def _accept_commit(self, msg: m.ShareCommitted, peer: Peer) -> None:
        if self.variant == XOR or msg.sender in self.commitments:
            raise AgreementFailed(f"unexpected commitment from {msg.sender}", ErrorCode.REPLAY)
        try:
            verify(peer.scheme, peer.signing_key, commit_signed_bytes(msg.chat_id, msg.epoch, msg.sender,
                                                                      msg.commitment), msg.signature)
        except SecureChatError:
            raise AgreementFailed(f"commitment of {msg.sender} is not signed by them", ErrorCode.BAD_SIGNATURE) from None
        self.commitments[msg.sender] = msg.commitment

    def _accept_share(self, msg: m.KeyShareDelivery, peer: Peer, now: float) -> None:
        if msg.recipient != self.me:
            raise AgreementFailed("envelope addressed to someone else", ErrorCode.NOT_MEMBER)
        if msg.sender in self.shares or msg.nonce in self.nonces:
            raise AgreementFailed(f"second share from {msg.sender}", ErrorCode.REPLAY)
        if abs(now - msg.timestamp) > TIMESTAMP_WINDOW_SECONDS:
            raise AgreementFailed("envelope timestamp outside the window", ErrorCode.REPLAY)
        if self.variant == SECURE and len(self.commitments) < len(self.members):
            # PROTOCOL.md 7.6: a reveal before every commitment is in breaks the rule that makes the key fair.
            raise AgreementFailed(f"{msg.sender} revealed before all commitments", ErrorCode.COMMITMENT_MISMATCH)
        try:
            verify(peer.scheme, peer.signing_key, envelope_signed_bytes(
                msg.chat_id, msg.epoch, msg.sender, msg.recipient, msg.wrapped_share, msg.nonce, msg.timestamp),
                msg.signature)
        except SecureChatError:
            raise AgreementFailed(f"envelope of {msg.sender} is not signed by them", ErrorCode.BAD_SIGNATURE) from None
        try:
            share = unwrap_key(self.my_encryption_key, msg.wrapped_share, expected_length=SHARE_BYTES)
        except SecureChatError:
            raise AgreementFailed("share does not unwrap", ErrorCode.KEY_UNWRAP_FAILED) from None
        if self.variant == SECURE and not constant_time_equal(
                commitment(self.chat_id, self.epoch, msg.sender, share), self.commitments[msg.sender]):
            raise AgreementFailed(f"share of {msg.sender} does not match its commitment", ErrorCode.COMMITMENT_MISMATCH)
        if any(constant_time_equal(share, s) for s in (*self.shares.values(), self.share)):
            # docs/THREATS.md 48: an echoed share would cancel another one under XOR.
            raise AgreementFailed(f"{msg.sender} sent a share already used", ErrorCode.DUPLICATE_SHARE)
        self.nonces.add(msg.nonce)
        self.shares[msg.sender] = share

    # --- rounds ---------------------------------------------------------------------------------------------

    def maybe_reveal(self, peers: Callable[[str], Peer | None], now: float) -> list[m.Message]:
        """Reveal this member's share once every commitment is in (PROTOCOL.md 7.6), else nothing.

        Public because it is the one hook the notebooks, lab 05 and tests override to play a malicious member
        (reveal late, reveal last, wait for the others' shares); the checks on what others send stay private."""
        if self.revealed or (self.variant == SECURE and len(self.commitments) < len(self.members)):
            return []
        self.revealed, self.state = True, next_agreement_state(self.state, "reveal")
        out: list[m.Message] = []
        for name in self.others:
            peer = peers(name)
            assert peer is not None
            wrapped = wrap_key(peer.encryption_key, self.share, random_bytes=self.random_bytes)
            nonce, stamp = self.random_bytes(NONCE_BYTES), int(now)
            signature = sign(self.my_scheme, self.my_signing_key, envelope_signed_bytes(
                self.chat_id, self.epoch, self.me, name, wrapped, nonce, stamp), random_bytes=self.random_bytes)
            out.append(m.KeyShare(chat_id=self.chat_id, epoch=self.epoch, recipient=name, wrapped_share=wrapped,
                                  nonce=nonce, timestamp=stamp, signature=signature))
        return out

    def transcript(self) -> bytes:
        """What every member must agree on: chat, epoch, members and (secure variant) every commitment."""
        commits = [self.commitments.get(n, b"") for n in self.members]
        return sha256(encode_fields("securechat v1 agreement transcript", self.chat_id, self.epoch,
                                    self.variant, encode_fields("members", *self.members),
                                    encode_fields("commitments", *commits)))

    def _maybe_confirm(self) -> list[m.Message]:
        if self.confirmed or not self.revealed or len(self.shares) < len(self.others):
            return []
        self.key = derive_key(self.variant, self.chat_id, self.epoch, {**self.shares, self.me: self.share},
                              self.transcript())
        self.confirmed, self.state = True, next_agreement_state(self.state, "derive")
        return [m.KeyConfirm(chat_id=self.chat_id, epoch=self.epoch, mac=confirmation(self.key, self.transcript(), self.me))]

    def _maybe_finish(self) -> None:
        if self.state is not AgreementState.CONFIRMING or len(self.confirms) < len(self.others):
            return
        assert self.key is not None
        transcript = self.transcript()
        for name, mac in self.confirms.items():
            if not constant_time_equal(mac, confirmation(self.key, transcript, name)):
                # docs/THREATS.md 48: someone holds a different key (equivocation): abort, never split the group.
                raise AgreementFailed(f"{name} confirmed a different key", ErrorCode.KEY_CONFIRMATION_FAILED)
        self.state = next_agreement_state(self.state, "confirm")
