"""The client's chats: key installation, sending, and end-to-end checks on what arrives (PROTOCOL.md 7).

Owns: one ``ClientChat`` per chat (its ``ChatState``, epoch, key, sequence numbers) and the ``ChatBook`` that
verifies key distributions against the server's key and chat messages against the sender's certificate.
Must not: build frames or talk to the channel; ``ClientProtocol`` does that with what this returns.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..crypto import aead
from ..crypto.certificates import Certificate, verify_certificate
from ..crypto.encoding import RandomBytes, constant_time_equal
from ..crypto.key_types import EncryptionPublicKey, VerifyKey
from ..crypto.signatures import SignatureScheme, sign, verify
from ..crypto.wrap import unwrap_key, wrap_key
from ..errors import ErrorCode, LocalProtocolError, SecureChatError
from . import events as ev
from .constructions import (
    HYBRID_CHAIN_START, MAX_SEQ, chat_header, chat_key_signed_bytes, chat_signed_bytes, hybrid_chain_hash,
    hybrid_message_keys, hybrid_signed_bytes, root_from_path, sender_key, wrap_leaf,
)
from .agreement import Agreement
from .identity import UserKeys
from .messages import KEYLESS_MODES, ChatEpoch, ChatKey, ChatMessage, ChatSend
from .states import RECEIVE, SEND, ChatState, next_chat_state
from .vocabulary import ChatMode

MAX_PENDING_MESSAGES = 1000  # messages held while a sender's certificate is fetched; older ones are dropped
# PROTOCOL.md 7.10: a server may not make a client remember chats without end. The server's own limit is far
# lower (max_chats_per_user, 64 by default, plus the lobby); past this a new chat id is refused.
MAX_KNOWN_CHATS = 1024


@dataclass
class ClientChat:
    chat_id: str
    mode: ChatMode
    suite: str
    epoch: int
    members: tuple[str, ...]
    key: bytes | None  # None while a contributory agreement runs; unused in hybrid mode
    state: ChatState = ChatState.ACTIVE
    sent_seq: int = 0
    last_seq: dict[str, int] = field(default_factory=dict)
    sender_keys: dict[str, bytes] = field(default_factory=dict)
    # hybrid mode (PROTOCOL.md 7.7): the chain hash of our last message, and of each sender's last one
    sent_hash: bytes = HYBRID_CHAIN_START
    last_hash: dict[str, bytes] = field(default_factory=dict)
    # keyless modes (PROTOCOL.md 7.7): the signed chat_epoch that started this epoch, the members before it,
    # and (contributory modes) the key agreement running for it
    announcement: ChatEpoch | None = None
    before: tuple[str, ...] = ()
    agreement: Agreement | None = None

    def new_epoch(self, epoch: int, members: tuple[str, ...], key: bytes | None) -> None:
        """Move to a new epoch: its members and key, every counter and chain from the start.

        New dicts, not cleared ones: a held message's snapshot keeps the previous epoch's (PROTOCOL.md 7.4).
        """
        self.epoch, self.members, self.key = epoch, members, key
        self.sent_seq, self.last_seq, self.sender_keys = 0, {}, {}
        self.sent_hash, self.last_hash = HYBRID_CHAIN_START, {}
        self.announcement, self.agreement = None, None

    def key_for(self, sender: str) -> bytes:
        if self.key is None:
            raise LocalProtocolError("no key for this epoch yet", ErrorCode.STALE_EPOCH)
        if sender not in self.sender_keys:
            self.sender_keys[sender] = sender_key(self.key, chat_id=self.chat_id, epoch=self.epoch, sender=sender)
        return self.sender_keys[sender]


class ChatBook:
    """All chats of one logged-in user, plus the peer certificates verified so far."""

    def __init__(
        self,
        *,
        username: str,
        keys: UserKeys,
        server_key: VerifyKey,
        server_scheme: SignatureScheme,
        random_bytes: RandomBytes,
        pins: dict[str, str] | None = None,
        verify_key_commitment: bool = True,
    ) -> None:
        self.username = username
        # PROTOCOL.md 7.7: False only in the lab variant that shows the invisible-salamanders attack.
        self.verify_key_commitment = verify_key_commitment
        self.keys = keys  # UserKeys: ours, for signing, unwrapping and the key agreements (modes.py)
        self._server_key = server_key
        self._server_scheme = server_scheme
        self.random_bytes = random_bytes
        self.chats: dict[str, ClientChat] = {}
        # name -> (certificate, signing public key, encryption public key), each verified against the CA
        self.certificates: dict[str, tuple[Certificate, VerifyKey, EncryptionPublicKey]] = {}
        self.pending: list[tuple[ChatMessage, ClientChat | None]] = []
        # PROTOCOL.md 7.9: identity fingerprints pinned on first sight (or verified out of band); a change is
        # refused until the user accepts it. The driver persists this dict.
        self.pins: dict[str, str] = pins if pins is not None else {}
        self.refused: set[str] = set()            # names whose changed keys we have not accepted
        # PROTOCOL.md 7.9: the CA-valid certificate the server now presents for each refused name. It is
        # never trusted; it only lets the user compute the safety number of the OFFERED key and accept
        # exactly that key (accept_offered), never "whatever comes next".
        self.offered: dict[str, tuple[Certificate, VerifyKey, EncryptionPublicKey]] = {}
        # PROTOCOL.md 7.10: what the server may not change. chat id -> (mode, suite, highest epoch installed),
        # kept after we leave a chat, so a re-invitation cannot switch the mode or go back in epochs either.
        self._seen: dict[str, tuple[ChatMode, str, int]] = {}

    @property
    def agreements(self) -> dict[str, Agreement]:
        """The key agreements running now, by chat id (a view: each chat owns its own)."""
        return {cid: chat.agreement for cid, chat in self.chats.items() if chat.agreement is not None}

    def verify_server_signature(self, signed: bytes, signature: bytes) -> None:
        """Check a signature of the server's long-term key (raises SecureChatError, ``bad_signature``)."""
        verify(self._server_scheme, self._server_key, signed, signature)

    # --- what a server we do not trust may and may not do (PROTOCOL.md 7.10) --------------------------------

    def check_continuity(self, *, chat_id: str, epoch: int, mode: str, suite: str, keyed: bool) -> ev.MessageRejected | None:
        """Refuse a ``chat_key`` (*keyed*) or ``chat_epoch`` that changes what the chat was at first sight.

        A chat's mode and suite are fixed when it is opened: a server that could later send a ``chat_key`` for a
        contributory or hybrid chat would choose its key and read it, and a ``chat_epoch`` naming
        ``contributory-xor`` would hand the key to the last member to reveal. Epochs only increase.
        """
        if keyed == (mode in KEYLESS_MODES):
            what = "a server-made key" if keyed else "a keyless epoch"
            return _rejected(chat_id, "server", ErrorCode.MODE_CHANGED, f"{what} cannot be used for mode {mode}")
        seen = self._seen.get(chat_id)
        if seen is None:
            if len(self._seen) >= MAX_KNOWN_CHATS:
                return _rejected(chat_id, "server", ErrorCode.LIMIT_EXCEEDED, "too many chats announced")
            return None
        seen_mode, seen_suite, seen_epoch = seen
        if mode != seen_mode:
            return _rejected(chat_id, "server", ErrorCode.MODE_CHANGED,
                             f"the server tried to change this chat from {seen_mode} to {mode}")
        if suite != seen_suite:
            return _rejected(chat_id, "server", ErrorCode.MODE_CHANGED,
                             f"the server tried to change this chat's cipher suite from {seen_suite} to {suite}")
        if epoch <= seen_epoch:
            return _rejected(chat_id, "server", ErrorCode.STALE_EPOCH, "epoch did not increase")
        return None

    def record_epoch(self, chat_id: str, *, mode: str, suite: str, epoch: int) -> None:
        """Remember a verified epoch: its mode and suite are now fixed and later epochs must be higher."""
        self._seen[chat_id] = (ChatMode(mode), suite, epoch)

    @staticmethod
    def check_membership(*, chat_id: str, reason: str, actor: str, members: tuple[str, ...]) -> ev.MessageRejected | None:
        """A signed membership must agree with its own reason (PROTOCOL.md 7.10): whoever opened, invited or
        joined is a member; whoever left or disconnected is not."""
        present = actor in members
        if reason in ("leave", "disconnect") and present:
            return _rejected(chat_id, "server", ErrorCode.MEMBERSHIP_INCONSISTENT,
                             f"{actor} is said to have left but is still listed")
        if reason in ("open", "invite", "join") and not present:
            return _rejected(chat_id, "server", ErrorCode.MEMBERSHIP_INCONSISTENT,
                             f"{actor} is said to have acted ({reason}) but is not a member")
        return None

    # --- key distributions -------------------------------------------------------------------------------

    def install_key(self, msg: ChatKey) -> ev.Event:
        """Verify and install a chat_key; returns ChatKeyed, or MessageRejected if a check fails."""
        chat = self.chats.get(msg.chat_id)
        if chat is not None and chat.state is ChatState.LEFT:
            chat = None  # invited back after leaving: the chat starts afresh for us, at the new epoch
            del self.chats[msg.chat_id]
        refused = self.check_continuity(chat_id=msg.chat_id, epoch=msg.epoch, mode=msg.mode, suite=msg.suite,
                                        keyed=True)
        if refused is None and chat is not None and msg.epoch <= chat.epoch:
            refused = _rejected(msg.chat_id, "server", ErrorCode.STALE_EPOCH, "epoch did not increase")
        if refused is not None:
            return refused
        try:
            key = self._check_distribution(msg)
        except SecureChatError as exc:
            return _rejected(msg.chat_id, "server", exc.code, str(exc.args[0]))
        refused = self.check_membership(chat_id=msg.chat_id, reason=msg.reason, actor=msg.actor, members=msg.members)
        if refused is not None:
            return refused
        self.record_epoch(msg.chat_id, mode=msg.mode, suite=msg.suite, epoch=msg.epoch)
        before = chat.members if chat else ()
        if chat is None:
            chat = self.chats[msg.chat_id] = ClientChat(
                chat_id=msg.chat_id, mode=ChatMode(msg.mode), suite=msg.suite, epoch=msg.epoch, members=msg.members,
                key=key,
            )
        else:
            chat.state = next_chat_state(chat.state, RECEIVE, "chat_key")
            chat.new_epoch(msg.epoch, msg.members, key)
        return ev.ChatKeyed(
            chat_id=msg.chat_id, epoch=msg.epoch, members=msg.members, reason=msg.reason, actor=msg.actor,
            joined=tuple(m for m in msg.members if m not in before and before),
            left=tuple(m for m in before if m not in msg.members), suite=msg.suite, mode=msg.mode,
        )

    def _check_distribution(self, msg: ChatKey) -> bytes:
        """PROTOCOL.md 7.2 client checks: the server's signature over the members and the wraps' Merkle root,
        then our own wrap's audit path up to that root, then the unwrap."""
        signed = chat_key_signed_bytes(
            chat_id=msg.chat_id, epoch=msg.epoch, mode=msg.mode, suite=msg.suite, reason=msg.reason,
            actor=msg.actor, members=msg.members, wrap_root=msg.wrap_root,
        )
        verify(self._server_scheme, self._server_key, signed, msg.signature)
        if self.username not in msg.members:
            raise SecureChatError("distribution does not list us", ErrorCode.NOT_MEMBER)
        root = root_from_path(wrap_leaf(self.username, msg.wrapped_key), msg.members.index(self.username),
                              len(msg.members), msg.wrap_path)
        if root is None or not constant_time_equal(root, msg.wrap_root):
            raise SecureChatError("our wrap is not the one the server signed", ErrorCode.KEY_UNWRAP_FAILED)
        return unwrap_key(self.keys.encryption_key, msg.wrapped_key, expected_length=32)

    # --- sending --------------------------------------------------------------------------------------------

    def seal(self, chat_id: str, text: str, rid: int | None) -> ChatSend:
        """Encrypt and sign *text* for *chat_id* under our own sender key (PROTOCOL.md 7.3)."""
        chat = self.chats.get(chat_id)
        if chat is None:
            raise LocalProtocolError(f"no chat {chat_id}", ErrorCode.UNKNOWN_CHAT)
        next_chat_state(chat.state, SEND, "chat_send")
        if chat.sent_seq >= MAX_SEQ:
            raise LocalProtocolError("sequence numbers exhausted in this epoch", ErrorCode.LIMIT_EXCEEDED)
        try:
            plaintext = text.encode("utf-8")
        except UnicodeEncodeError:
            raise LocalProtocolError("text is not valid Unicode", ErrorCode.BAD_FIELD) from None
        if len(plaintext) > 64 * 1024:
            raise LocalProtocolError("message longer than 64 KiB", ErrorCode.LIMIT_EXCEEDED)
        seq = chat.sent_seq + 1
        header = chat_header(chat_id=chat_id, epoch=chat.epoch, sender=self.username, seq=seq, suite=chat.suite)
        if chat.mode == ChatMode.HYBRID:
            return self._seal_hybrid(chat, header, plaintext, seq, rid)
        ciphertext = aead.seal(chat.key_for(self.username), plaintext, aad=header, nonce=aead.nonce_from_counter(seq),
                               suite=aead.CipherSuite(chat.suite))
        signature = sign(self.keys.scheme, self.keys.signing_key, chat_signed_bytes(header, ciphertext),
                         random_bytes=self.random_bytes)
        chat.sent_seq = seq
        return ChatSend(rid=rid, chat_id=chat_id, epoch=chat.epoch, seq=seq, ciphertext=ciphertext,
                        signature=signature)

    def _seal_hybrid(self, chat: ClientChat, header: bytes, plaintext: bytes, seq: int, rid: int | None) -> ChatSend:
        """PROTOCOL.md 7.7 (hybrid v2): a fresh message key wrapped for every other member, a key commitment and
        the chain hash of our previous message, all under our signature."""
        recipients = tuple(n for n in chat.members if n != self.username)
        missing = self.uncertified(recipients)
        if missing:
            raise LocalProtocolError(f"certificates of {', '.join(missing)} not verified yet; retry",
                                     ErrorCode.BAD_CERTIFICATE)
        message_key = self.random_bytes(32)
        wraps = tuple(wrap_key(self.certificates[n][2], message_key, random_bytes=self.random_bytes)
                      for n in recipients)
        encryption_key, commitment = hybrid_message_keys(message_key, header)
        ciphertext = aead.seal(encryption_key, plaintext, aad=header, nonce=aead.nonce_from_counter(seq),
                               suite=aead.CipherSuite(chat.suite))
        prev_hash = chat.sent_hash
        signed = hybrid_signed_bytes(header, ciphertext, recipients, wraps, commitment, prev_hash)
        signature = sign(self.keys.scheme, self.keys.signing_key, signed,
                         random_bytes=self.random_bytes)
        chat.sent_seq, chat.sent_hash = seq, hybrid_chain_hash(signed)
        return ChatSend(rid=rid, chat_id=chat.chat_id, epoch=chat.epoch, seq=seq, ciphertext=ciphertext,
                        signature=signature, wrap_recipients=recipients, wraps=wraps, key_commitment=commitment,
                        prev_hash=prev_hash)

    # --- receiving ------------------------------------------------------------------------------------------

    def add_certificates(self, certs: tuple[Certificate, ...], now: float) -> list[ev.Event]:
        """Verify each certificate against the server CA before trusting its keys (PROTOCOL.md 6.3)."""
        out: list[ev.Event] = []
        for cert in certs:
            try:
                encryption, signing = verify_certificate(
                    cert, ca_public_key=self._server_key, ca_scheme=self._server_scheme, now=now,
                )
            except SecureChatError as exc:
                out.append(_rejected("", cert.username, exc.code, str(exc.args[0])))
                continue
            seen = cert.identity_fingerprint()
            pinned = self.pins.get(cert.username)
            if pinned is not None and pinned != seen:
                # docs/THREATS.md 46: a CA-valid key that is not the one we pinned: a substituted key until the
                # user compares the OFFERED key's safety number out of band and accepts exactly that key
                # (ClientProtocol.accept_key_change). One warning per offered key, however often it is fetched.
                previous = self.offered.get(cert.username)
                self.offered[cert.username] = (cert, signing, encryption)
                self.refused.add(cert.username)
                if previous is None or previous[0].identity_fingerprint() != seen:
                    out.append(ev.PeerKeyChanged(username=cert.username, pinned=pinned, seen=seen))
                continue
            self.refused.discard(cert.username)
            self.offered.pop(cert.username, None)
            if pinned is None:
                self.pins[cert.username] = seen
                out.append(ev.PeerKeyPinned(username=cert.username, fingerprint=seen))
            self.certificates[cert.username] = (cert, signing, encryption)
        return out

    def accept_offered(self, username: str, fingerprint: str) -> ev.PeerKeyPinned:
        """Pin *username*'s offered key, but only if its fingerprint is exactly *fingerprint*, the one the user
        compared out of band (PROTOCOL.md 7.9). Raises LocalProtocolError and changes nothing otherwise."""
        entry = self.offered.get(username)
        if entry is None:
            raise LocalProtocolError(f"no changed key of {username} is waiting for a decision",
                                     ErrorCode.BAD_CERTIFICATE)
        seen = entry[0].identity_fingerprint()
        if not constant_time_equal(canonical_fingerprint(fingerprint).encode(), seen.encode()):
            raise LocalProtocolError(
                f"the key the server now presents for {username} has fingerprint {seen}, not the one you "
                f"compared; nothing was pinned: compare safety numbers again", ErrorCode.KEY_CHANGED)
        self.pins[username] = seen
        self.certificates[username] = entry
        self.refused.discard(username)
        del self.offered[username]
        return ev.PeerKeyPinned(username=username, fingerprint=seen)

    def missing_certificates(self, msg: ChatMessage) -> bool:
        return msg.sender not in self.certificates

    def uncertified(self, members: tuple[str, ...]) -> tuple[str, ...]:
        """Members whose certificate we have not verified yet (fetched as soon as a key arrives)."""
        return tuple(m for m in members if m != self.username and m not in self.certificates)

    def hold(self, msg: ChatMessage) -> None:
        """Keep *msg* until its sender's certificate arrives, with the chat as it was on arrival, so a rekey
        in between does not make it look stale (PROTOCOL.md 7.4)."""
        chat = self.chats.get(msg.chat_id)
        snapshot = dataclasses.replace(chat) if chat is not None else None
        self.pending.append((msg, snapshot))
        del self.pending[:-MAX_PENDING_MESSAGES]

    def release(self, unknown: tuple[str, ...]) -> list[tuple[ChatMessage, ClientChat | None]]:
        """Messages whose sender's certificate has now arrived (or is known to be missing)."""
        ready = [p for p in self.pending if p[0].sender in self.certificates or p[0].sender in unknown]
        self.pending = [p for p in self.pending if p not in ready]
        return ready

    def open(self, msg: ChatMessage, snapshot: ClientChat | None = None) -> ev.Event:
        """The outcome of *msg* itself (the last event of ``receive``): ChatReceived or MessageRejected."""
        return self.receive(msg, snapshot)[-1]

    def receive(self, msg: ChatMessage, snapshot: ClientChat | None = None) -> list[ev.Event]:
        """Verify, then decrypt, a relayed message (PROTOCOL.md 7.4, hybrid 7.7).

        Returns the message's outcome last (ChatReceived, or MessageRejected for every failure), preceded by a
        PeerMisbehaved warning when the sender's hash chain shows it equivocated on an earlier message.
        *snapshot* is the chat as it was when a held message arrived; its sequence numbers are shared with
        the live chat while the epoch is the same, so a replay is caught either way.
        """
        chat = self.chats.get(msg.chat_id)
        if snapshot is not None and chat is not None and snapshot.epoch != chat.epoch:
            chat = snapshot
        if chat is None or chat.state is ChatState.LEFT:
            return [_rejected(msg.chat_id, msg.sender, ErrorCode.UNKNOWN_CHAT, "message for a chat we are not in")]
        if msg.epoch != chat.epoch:
            return [_rejected(msg.chat_id, msg.sender, ErrorCode.STALE_EPOCH,
                              f"epoch {msg.epoch} is not {chat.epoch}")]
        if msg.sender not in chat.members or msg.sender == self.username:
            return [_rejected(msg.chat_id, msg.sender, ErrorCode.NOT_MEMBER, "sender is not a member of this epoch")]
        entry = self.certificates.get(msg.sender)
        if entry is None:
            return [_rejected(msg.chat_id, msg.sender, ErrorCode.BAD_CERTIFICATE, "no valid certificate for sender")]
        cert, signing_key, _ = entry
        header = chat_header(chat_id=msg.chat_id, epoch=msg.epoch, sender=msg.sender, seq=msg.seq, suite=chat.suite)
        if chat.mode == ChatMode.HYBRID:
            return self._receive_hybrid(chat, msg, header, cert, signing_key)
        try:
            # PROTOCOL.md 7.4: the algorithm comes from the sender's certificate, never from the message.
            verify(cert.signature_scheme, signing_key, chat_signed_bytes(header, msg.ciphertext), msg.signature)
        except SecureChatError:
            return [_rejected(msg.chat_id, msg.sender, ErrorCode.BAD_SIGNATURE, "signature does not verify")]
        last = chat.last_seq.get(msg.sender, 0)
        if msg.seq <= last:
            return [_rejected(msg.chat_id, msg.sender, ErrorCode.REPLAY, f"seq {msg.seq} already seen")]
        try:
            key = chat.key_for(msg.sender)
        except SecureChatError as exc:
            return [_rejected(msg.chat_id, msg.sender, exc.code, "no usable key for this message")]
        text = _decrypt(key, msg, header, chat.suite)
        if text is None:
            return [_rejected(msg.chat_id, msg.sender, ErrorCode.BAD_RECORD, "message does not decrypt")]
        chat.last_seq[msg.sender] = msg.seq
        return [ev.ChatReceived(chat_id=msg.chat_id, epoch=msg.epoch, sender=msg.sender, seq=msg.seq, text=text,
                                signature_scheme=cert.signature_scheme.value, gap=msg.seq - last - 1)]

    def _receive_hybrid(self, chat: ClientChat, msg: ChatMessage, header: bytes, cert: Certificate,
                        signing_key: VerifyKey) -> list[ev.Event]:
        """PROTOCOL.md 7.7, the receiver's order of checks for hybrid v2.

        Signature, then replay; from there the (sender, seq) is used up whatever follows, so a sender cannot
        show one member one message and another member a second one under the same seq. Then the hash chain,
        the wraps, the unwrap and the key commitment (constant time), and only then decryption: every member
        who accepts holds the same key and so reads the same plaintext.
        """
        if msg.wrap_recipients is None or msg.wraps is None or msg.key_commitment is None or msg.prev_hash is None:
            return [_rejected(msg.chat_id, msg.sender, ErrorCode.BAD_FIELD,
                              "hybrid message without wraps, key commitment or chain hash")]
        signed = hybrid_signed_bytes(header, msg.ciphertext, msg.wrap_recipients, msg.wraps, msg.key_commitment,
                                     msg.prev_hash)
        try:
            verify(cert.signature_scheme, signing_key, signed, msg.signature)
        except SecureChatError:
            return [_rejected(msg.chat_id, msg.sender, ErrorCode.BAD_SIGNATURE, "signature does not verify")]
        last = chat.last_seq.get(msg.sender, 0)
        if msg.seq <= last:
            return [_rejected(msg.chat_id, msg.sender, ErrorCode.REPLAY, f"seq {msg.seq} already seen")]
        # From here on the message is the sender's, provably: its seq is used, and its hash is the chain's.
        chat.last_seq[msg.sender] = msg.seq
        expected = chat.last_hash.get(msg.sender, HYBRID_CHAIN_START)
        chat.last_hash[msg.sender] = hybrid_chain_hash(signed)
        events: list[ev.Event] = []
        if msg.seq == last + 1 and not constant_time_equal(msg.prev_hash, expected):
            events.append(self._misbehaved(
                msg, ErrorCode.EQUIVOCATION, msg.seq - 1,
                f"{msg.sender}'s message {msg.seq - 1} as we received it is not the one {msg.sender} went on from: "
                "other members were shown a different message"))

        def unreadable(reason: str) -> list[ev.Event]:
            return events + [self._misbehaved(msg, ErrorCode.UNREADABLE_MESSAGE, msg.seq, reason)]

        if set(msg.wrap_recipients) != set(chat.members) - {msg.sender}:
            # PROTOCOL.md 7.7: a wrap for every other member of the epoch, and for nobody else
            return events + [_rejected(msg.chat_id, msg.sender, ErrorCode.NOT_MEMBER, "wraps do not match the members")]
        try:
            message_key = self._message_key(msg)
        except SecureChatError:
            return unreadable(f"{msg.sender} signed a message whose key, wrapped for us, does not unwrap")
        encryption_key, commitment = hybrid_message_keys(message_key, header)
        if self.verify_key_commitment and not constant_time_equal(commitment, msg.key_commitment):
            return unreadable(f"{msg.sender} wrapped a key for us that is not the key committed to in the message: "
                              "members were given different keys")
        text = _decrypt(encryption_key, msg, header, chat.suite)
        if text is None:
            return unreadable(f"{msg.sender} signed a message that does not decrypt under its committed key")
        return events + [ev.ChatReceived(chat_id=msg.chat_id, epoch=msg.epoch, sender=msg.sender, seq=msg.seq,
                                         text=text, signature_scheme=cert.signature_scheme.value,
                                         gap=msg.seq - last - 1)]

    @staticmethod
    def _misbehaved(msg: ChatMessage, code: ErrorCode, seq: int, reason: str) -> ev.PeerMisbehaved:
        return ev.PeerMisbehaved(chat_id=msg.chat_id, sender=msg.sender, seq=seq, code=code, reason=reason)

    def _message_key(self, msg: ChatMessage) -> bytes:
        """Hybrid mode (PROTOCOL.md 7.7): our RSA-OAEP wrap of this message's own key."""
        recipients, wraps = msg.wrap_recipients or (), msg.wraps or ()
        if self.username not in recipients or len(recipients) != len(wraps):
            raise SecureChatError("no wrap for us", ErrorCode.KEY_UNWRAP_FAILED)
        wrap = wraps[recipients.index(self.username)]
        return unwrap_key(self.keys.encryption_key, wrap, expected_length=32)


def canonical_fingerprint(text: str) -> str:
    """A fingerprint as the user typed it (any case, with or without ':' or spaces) in the form
    ``crypto.encoding.fingerprint`` prints; "" if it is not 32 hex digits."""
    digits = "".join(ch for ch in text.lower() if ch not in ": ")
    if len(digits) != 32 or any(ch not in "0123456789abcdef" for ch in digits):
        return ""
    return ":".join(digits[i:i + 4] for i in range(0, 32, 4))


def _decrypt(key: bytes, msg: ChatMessage, header: bytes, suite: str) -> str | None:
    """The message's text, or None if it does not authenticate or is not UTF-8 (PROTOCOL.md 7.4 step 5)."""
    try:
        return aead.unseal(key, msg.ciphertext, aad=header, nonce=aead.nonce_from_counter(msg.seq),
                           suite=aead.CipherSuite(suite)).decode("utf-8")
    except (SecureChatError, UnicodeDecodeError):
        return None


def _rejected(chat_id: str, sender: str, code: ErrorCode | str, reason: str) -> ev.MessageRejected:
    return ev.MessageRejected(chat_id=chat_id, sender=sender, code=ErrorCode(code), reason=reason)
