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
from ..crypto.encoding import RandomBytes, constant_time_equal, sha256
from ..crypto.signatures import SignatureScheme, sign, verify
from ..crypto.wrap import unwrap_key, wrap_key
from ..errors import ErrorCode, LocalProtocolError, SecureChatError
from . import events as ev
from .constructions import (
    MAX_SEQ, chat_header, chat_key_signed_bytes, chat_signed_bytes, hybrid_signed_bytes, sender_key,
)
from .messages import KEYLESS_MODES, ChatKey, ChatMessage, ChatSend
from .states import RECEIVE, SEND, ChatState, next_chat_state

MAX_PENDING_MESSAGES = 1000  # messages held while a sender's certificate is fetched; older ones are dropped


@dataclass
class ClientChat:
    chat_id: str
    mode: str
    suite: str
    epoch: int
    members: tuple[str, ...]
    key: bytes | None  # None while a contributory agreement runs; unused in hybrid mode
    state: ChatState = ChatState.ACTIVE
    sent_seq: int = 0
    last_seq: dict[str, int] = field(default_factory=dict)
    sender_keys: dict[str, bytes] = field(default_factory=dict)

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
        keys: object,
        server_key: object,
        server_scheme: SignatureScheme,
        random_bytes: RandomBytes,
        pins: dict[str, str] | None = None,
    ) -> None:
        self.username = username
        self._keys = keys  # UserKeys
        self._server_key = server_key
        self._server_scheme = server_scheme
        self._random_bytes = random_bytes
        self.chats: dict[str, ClientChat] = {}
        # name -> (certificate, signing public key, encryption public key), each verified against the CA
        self.certificates: dict[str, tuple[Certificate, object, object]] = {}
        self.pending: list[tuple[ChatMessage, ClientChat | None]] = []
        # PROTOCOL.md 7.9: identity fingerprints pinned on first sight (or verified out of band); a change is
        # refused until the user accepts it. The driver persists this dict.
        self.pins: dict[str, str] = pins if pins is not None else {}
        self.agreements: dict[str, object] = {}   # chat id -> Agreement of its current epoch (modes.py)
        self.epoch_info: dict[str, object] = {}   # chat id -> the ChatEpoch that started the current epoch
        self.outbox: list[object] = []            # round messages for ClientProtocol to send
        self.refused: set[str] = set()            # names whose changed keys we have not accepted
        # PROTOCOL.md 7.10: what the server may not change. chat id -> (mode, suite, highest epoch installed),
        # kept after we leave a chat, so a re-invitation cannot switch the mode or go back in epochs either.
        self._seen: dict[str, tuple[str, str, int]] = {}

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
        self._seen[chat_id] = (mode, suite, epoch)

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
                chat_id=msg.chat_id, mode=msg.mode, suite=msg.suite, epoch=msg.epoch, members=msg.members, key=key
            )
        else:
            chat.state = next_chat_state(chat.state, RECEIVE, "chat_key")
            # New dicts, not cleared ones: a held message's snapshot keeps the previous epoch's.
            chat.epoch, chat.members, chat.key = msg.epoch, msg.members, key
            chat.sent_seq, chat.last_seq, chat.sender_keys = 0, {}, {}
        return ev.ChatKeyed(
            chat_id=msg.chat_id, epoch=msg.epoch, members=msg.members, reason=msg.reason, actor=msg.actor,
            joined=tuple(m for m in msg.members if m not in before and before),
            left=tuple(m for m in before if m not in msg.members), suite=msg.suite, mode=msg.mode,
        )

    def _check_distribution(self, msg: ChatKey) -> bytes:
        signed = chat_key_signed_bytes(
            chat_id=msg.chat_id, epoch=msg.epoch, mode=msg.mode, suite=msg.suite, reason=msg.reason,
            actor=msg.actor, members=msg.members, wrap_digests=msg.wrap_digests,
        )
        verify(self._server_scheme, self._server_key, signed, msg.signature)
        if self.username not in msg.members or len(msg.wrap_digests) != len(msg.members):
            raise SecureChatError("distribution does not list us", ErrorCode.NOT_MEMBER)
        mine = msg.wrap_digests[msg.members.index(self.username)]
        if not constant_time_equal(mine, sha256(msg.wrapped_key)):
            raise SecureChatError("our wrap is not the one the server signed", ErrorCode.KEY_UNWRAP_FAILED)
        return unwrap_key(self._keys.encryption_key, msg.wrapped_key, expected_length=32)  # type: ignore[attr-defined]

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
        recipients: tuple[str, ...] | None = None
        wraps: tuple[bytes, ...] | None = None
        if chat.mode == "hybrid":
            # PROTOCOL.md 7.7: a fresh key per message, wrapped for every other member.
            recipients = tuple(n for n in chat.members if n != self.username)
            missing = self.uncertified(recipients)
            if missing:
                raise LocalProtocolError(f"certificates of {', '.join(missing)} not verified yet; retry",
                                         ErrorCode.BAD_CERTIFICATE)
            key = self._random_bytes(32)
            wraps = tuple(wrap_key(self.certificates[n][2], key, random_bytes=self._random_bytes) for n in recipients)
        else:
            key = chat.key_for(self.username)
        ciphertext = aead.seal(key, plaintext, aad=header, nonce=aead.nonce_from_counter(seq),
                               suite=aead.CipherSuite(chat.suite))
        signed = (hybrid_signed_bytes(header, ciphertext, recipients, wraps) if recipients is not None and wraps
                  is not None else chat_signed_bytes(header, ciphertext))
        signature = sign(self._keys.scheme, self._keys.signing_key, signed,  # type: ignore[attr-defined]
                         random_bytes=self._random_bytes)
        chat.sent_seq = seq
        return ChatSend(rid=rid, chat_id=chat_id, epoch=chat.epoch, seq=seq, ciphertext=ciphertext,
                        signature=signature, wrap_recipients=recipients, wraps=wraps)

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
                # user compares fingerprints out of band and accepts it (ClientProtocol.accept_key_change).
                out.append(ev.PeerKeyChanged(username=cert.username, pinned=pinned, seen=seen))
                self.refused.add(cert.username)
                continue
            self.refused.discard(cert.username)
            if pinned is None:
                self.pins[cert.username] = seen
                out.append(ev.PeerKeyPinned(username=cert.username, fingerprint=seen))
            self.certificates[cert.username] = (cert, signing, encryption)
        return out

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
        """Verify, then decrypt, a relayed message; every failure is a MessageRejected event (PROTOCOL.md 7.4).

        *snapshot* is the chat as it was when a held message arrived; its sequence numbers are shared with
        the live chat while the epoch is the same, so a replay is caught either way.
        """
        chat = self.chats.get(msg.chat_id)
        if snapshot is not None and chat is not None and snapshot.epoch != chat.epoch:
            chat = snapshot
        if chat is None or chat.state is ChatState.LEFT:
            return _rejected(msg.chat_id, msg.sender, ErrorCode.UNKNOWN_CHAT, "message for a chat we are not in")
        if msg.epoch != chat.epoch:
            return _rejected(msg.chat_id, msg.sender, ErrorCode.STALE_EPOCH, f"epoch {msg.epoch} is not {chat.epoch}")
        if msg.sender not in chat.members or msg.sender == self.username:
            return _rejected(msg.chat_id, msg.sender, ErrorCode.NOT_MEMBER, "sender is not a member of this epoch")
        entry = self.certificates.get(msg.sender)
        if entry is None:
            return _rejected(msg.chat_id, msg.sender, ErrorCode.BAD_CERTIFICATE, "no valid certificate for sender")
        cert, signing_key, _ = entry
        header = chat_header(chat_id=msg.chat_id, epoch=msg.epoch, sender=msg.sender, seq=msg.seq, suite=chat.suite)
        hybrid = chat.mode == "hybrid"
        signed = (hybrid_signed_bytes(header, msg.ciphertext, msg.wrap_recipients or (), msg.wraps or ()) if hybrid
                  else chat_signed_bytes(header, msg.ciphertext))
        try:
            # PROTOCOL.md 7.4: the algorithm comes from the sender's certificate, never from the message.
            verify(cert.signature_scheme, signing_key, signed, msg.signature)
        except SecureChatError:
            return _rejected(msg.chat_id, msg.sender, ErrorCode.BAD_SIGNATURE, "signature does not verify")
        last = chat.last_seq.get(msg.sender, 0)
        if msg.seq <= last:
            return _rejected(msg.chat_id, msg.sender, ErrorCode.REPLAY, f"seq {msg.seq} already seen")
        if hybrid and set(msg.wrap_recipients or ()) != set(chat.members) - {msg.sender}:
            # PROTOCOL.md 7.7: a wrap for every other member of the epoch, and for nobody else
            return _rejected(msg.chat_id, msg.sender, ErrorCode.NOT_MEMBER, "wraps do not match the members")
        try:
            key = self._message_key(msg) if hybrid else chat.key_for(msg.sender)
        except SecureChatError as exc:
            return _rejected(msg.chat_id, msg.sender, exc.code, "no usable key for this message")
        try:
            plaintext = aead.unseal(
                key, msg.ciphertext, aad=header, nonce=aead.nonce_from_counter(msg.seq),
                suite=aead.CipherSuite(chat.suite),
            )
            text = plaintext.decode("utf-8")
        except (SecureChatError, UnicodeDecodeError):
            return _rejected(msg.chat_id, msg.sender, ErrorCode.BAD_RECORD, "message does not decrypt")
        chat.last_seq[msg.sender] = msg.seq
        return ev.ChatReceived(
            chat_id=msg.chat_id, epoch=msg.epoch, sender=msg.sender, seq=msg.seq, text=text,
            signature_scheme=cert.signature_scheme.value, gap=msg.seq - last - 1,
        )


    def _message_key(self, msg: ChatMessage) -> bytes:
        """Hybrid mode (PROTOCOL.md 7.7): our RSA-OAEP wrap of this message's own key."""
        recipients, wraps = msg.wrap_recipients or (), msg.wraps or ()
        if self.username not in recipients or len(recipients) != len(wraps):
            raise SecureChatError("no wrap for us", ErrorCode.KEY_UNWRAP_FAILED)
        wrap = wraps[recipients.index(self.username)]
        return unwrap_key(self._keys.encryption_key, wrap, expected_length=32)  # type: ignore[attr-defined]


def _rejected(chat_id: str, sender: str, code: ErrorCode | str, reason: str) -> ev.MessageRejected:
    return ev.MessageRejected(chat_id=chat_id, sender=sender, code=str(code), reason=reason)
