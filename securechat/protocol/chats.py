"""The client's chats: key installation, sending, and end-to-end checks on what arrives (PROTOCOL.md 7).

Owns: the ``ChatBook`` of a logged-in user: its chats (one ``client_chat.ClientChat`` each), the peer
certificates verified so far with their pins (PROTOCOL.md 7.9), what the server may not change about a chat
(7.10), messages held until their sender's certificate arrives (7.4); it verifies key distributions against the
server's key and chat messages against the sender's certificate (hybrid mode's checks in ``hybrid.py``).
Must not: build frames or talk to the channel; ``ClientProtocol`` does that with what this returns.
"""

from __future__ import annotations

import dataclasses

from ..crypto import aead
from ..crypto.certificates import Certificate, verify_certificate
from ..crypto.encoding import RandomBytes, constant_time_equal
from ..crypto.key_types import EncryptionPublicKey, VerifyKey
from ..crypto.signatures import SignatureScheme, sign, verify
from ..crypto.wrap import unwrap_key
from ..errors import ErrorCode, LocalProtocolError, SecureChatError
from . import events as ev
from .agreement import Agreement
from .client_chat import ClientChat as ClientChat, decrypt_text, keyed_event as keyed_event, rejected
from .constructions import MAX_SEQ, chat_header, chat_key_signed_bytes, chat_signed_bytes, root_from_path, wrap_leaf
from .hybrid import open_hybrid, seal_hybrid
from .identity import UserKeys
from .messages import KEYLESS_MODES, ChatEpoch, ChatKey, ChatMessage, ChatSend
from .states import ChatState
from .vocabulary import ChatMode, RekeyReason

MAX_PENDING_MESSAGES = 1000  # messages held while a sender's certificate is fetched; older ones are dropped
# PROTOCOL.md 7.10: a server may not make a client remember chats without end. The server's own limit is far
# lower (max_chats_per_user, 64 by default, plus the lobby); past this a new chat id is refused.
MAX_KNOWN_CHATS = 1024


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
            return rejected(chat_id, "server", ErrorCode.MODE_CHANGED, f"{what} cannot be used for mode {mode}")
        seen = self._seen.get(chat_id)
        if seen is None:
            if len(self._seen) >= MAX_KNOWN_CHATS:
                return rejected(chat_id, "server", ErrorCode.LIMIT_EXCEEDED, "too many chats announced")
            return None
        seen_mode, seen_suite, seen_epoch = seen
        if mode != seen_mode:
            return rejected(chat_id, "server", ErrorCode.MODE_CHANGED,
                            f"the server tried to change this chat from {seen_mode} to {mode}")
        if suite != seen_suite:
            return rejected(chat_id, "server", ErrorCode.MODE_CHANGED,
                            f"the server tried to change this chat's cipher suite from {seen_suite} to {suite}")
        if epoch <= seen_epoch:
            return rejected(chat_id, "server", ErrorCode.STALE_EPOCH, "epoch did not increase")
        return None

    def record_epoch(self, chat_id: str, *, mode: str, suite: str, epoch: int) -> None:
        """Remember a verified epoch: its mode and suite are now fixed and later epochs must be higher."""
        self._seen[chat_id] = (ChatMode(mode), suite, epoch)

    def admit(self, msg: ChatKey | ChatEpoch, *, keyed: bool) -> tuple[ClientChat | None, ev.MessageRejected | None]:
        """The first checks of a ``chat_key`` (*keyed*) or ``chat_epoch``, before its signature: the chat it
        moves to a new epoch (None for a new chat), and a rejection if the server may not do that now.

        A chat we left is forgotten first: invited back, it starts afresh for us at the new epoch.
        """
        chat = self.chats.get(msg.chat_id)
        if chat is not None and chat.state is ChatState.LEFT:
            chat = None
            del self.chats[msg.chat_id]
        refused = self.check_continuity(chat_id=msg.chat_id, epoch=msg.epoch, mode=msg.mode, suite=msg.suite,
                                        keyed=keyed)
        if refused is None and chat is not None and msg.epoch <= chat.epoch:
            refused = rejected(msg.chat_id, "server", ErrorCode.STALE_EPOCH, "epoch did not increase")
        return chat, refused

    def enter(self, chat: ClientChat | None, msg: ChatKey | ChatEpoch,
              key: bytes | None) -> tuple[ClientChat, tuple[str, ...]]:
        """Move *chat* (or a new chat) to the epoch *msg* announced, once every check passed, with *key* (None
        while a contributory agreement runs, and in hybrid mode). Returns the chat and its members before."""
        self.record_epoch(msg.chat_id, mode=msg.mode, suite=msg.suite, epoch=msg.epoch)
        before = chat.members if chat else ()
        if chat is None:
            chat = self.chats[msg.chat_id] = ClientChat(
                chat_id=msg.chat_id, mode=ChatMode(msg.mode), suite=msg.suite, epoch=msg.epoch, members=msg.members,
                key=key,
            )
        else:
            chat.enter_epoch(msg.TYPE, msg.epoch, msg.members, key)  # chat_key or chat_epoch
        return chat, before

    @staticmethod
    def check_membership(*, chat_id: str, reason: str, actor: str, members: tuple[str, ...]) -> ev.MessageRejected | None:
        """A signed membership must agree with its own reason (PROTOCOL.md 7.10): whoever opened, invited or
        joined is a member; whoever left or disconnected is not."""
        present = actor in members
        if reason in (RekeyReason.LEAVE, RekeyReason.DISCONNECT) and present:
            return rejected(chat_id, "server", ErrorCode.MEMBERSHIP_INCONSISTENT,
                            f"{actor} is said to have left but is still listed")
        if reason in (RekeyReason.OPEN, RekeyReason.INVITE, RekeyReason.JOIN) and not present:
            return rejected(chat_id, "server", ErrorCode.MEMBERSHIP_INCONSISTENT,
                            f"{actor} is said to have acted ({reason}) but is not a member")
        return None

    # --- key distributions -------------------------------------------------------------------------------

    def install_key(self, msg: ChatKey) -> ev.Event:
        """Verify and install a chat_key; returns ChatKeyed, or MessageRejected if a check fails."""
        chat, refused = self.admit(msg, keyed=True)
        if refused is not None:
            return refused
        try:
            key = self._check_distribution(msg)
        except SecureChatError as exc:
            return rejected(msg.chat_id, "server", exc.code, str(exc.args[0]))
        refused = self.check_membership(chat_id=msg.chat_id, reason=msg.reason, actor=msg.actor, members=msg.members)
        if refused is not None:
            return refused
        _, before = self.enter(chat, msg, key)
        return keyed_event(msg, before)

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
        chat.check("chat_send")
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
            recipients = tuple(n for n in chat.members if n != self.username)
            missing = self.uncertified(recipients)
            if missing:
                raise LocalProtocolError(f"certificates of {', '.join(missing)} not verified yet; retry",
                                         ErrorCode.BAD_CERTIFICATE)
            return seal_hybrid(chat, header, plaintext, seq, rid, recipients=recipients,
                               wrap_to=[self.certificates[n][2] for n in recipients], keys=self.keys,
                               random_bytes=self.random_bytes)
        ciphertext = aead.seal(chat.key_for(self.username), plaintext, aad=header, nonce=aead.nonce_from_counter(seq),
                               suite=aead.CipherSuite(chat.suite))
        signature = sign(self.keys.scheme, self.keys.signing_key, chat_signed_bytes(header, ciphertext),
                         random_bytes=self.random_bytes)
        chat.sent_seq = seq
        return ChatSend(rid=rid, chat_id=chat_id, epoch=chat.epoch, seq=seq, ciphertext=ciphertext,
                        signature=signature)

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
                out.append(rejected("", cert.username, exc.code, str(exc.args[0])))
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
            return [rejected(msg.chat_id, msg.sender, ErrorCode.UNKNOWN_CHAT, "message for a chat we are not in")]
        if msg.epoch != chat.epoch:
            return [rejected(msg.chat_id, msg.sender, ErrorCode.STALE_EPOCH,
                             f"epoch {msg.epoch} is not {chat.epoch}")]
        if msg.sender not in chat.members or msg.sender == self.username:
            return [rejected(msg.chat_id, msg.sender, ErrorCode.NOT_MEMBER, "sender is not a member of this epoch")]
        entry = self.certificates.get(msg.sender)
        if entry is None:
            return [rejected(msg.chat_id, msg.sender, ErrorCode.BAD_CERTIFICATE, "no valid certificate for sender")]
        cert, signing_key, _ = entry
        header = chat_header(chat_id=msg.chat_id, epoch=msg.epoch, sender=msg.sender, seq=msg.seq, suite=chat.suite)
        if chat.mode == ChatMode.HYBRID:
            return open_hybrid(chat, msg, header, cert, signing_key, me=self.username,
                               encryption_key=self.keys.encryption_key,
                               verify_key_commitment=self.verify_key_commitment)
        try:
            # PROTOCOL.md 7.4: the algorithm comes from the sender's certificate, never from the message.
            verify(cert.signature_scheme, signing_key, chat_signed_bytes(header, msg.ciphertext), msg.signature)
        except SecureChatError:
            return [rejected(msg.chat_id, msg.sender, ErrorCode.BAD_SIGNATURE, "signature does not verify")]
        last = chat.last_seq.get(msg.sender, 0)
        if msg.seq <= last:
            return [rejected(msg.chat_id, msg.sender, ErrorCode.REPLAY, f"seq {msg.seq} already seen")]
        try:
            key = chat.key_for(msg.sender)
        except SecureChatError as exc:
            return [rejected(msg.chat_id, msg.sender, exc.code, "no usable key for this message")]
        text = decrypt_text(key, msg, header, chat.suite)
        if text is None:
            return [rejected(msg.chat_id, msg.sender, ErrorCode.BAD_RECORD, "message does not decrypt")]
        chat.last_seq[msg.sender] = msg.seq
        return [ev.ChatReceived(chat_id=msg.chat_id, epoch=msg.epoch, sender=msg.sender, seq=msg.seq, text=text,
                                signature_scheme=cert.signature_scheme.value, gap=msg.seq - last - 1)]

def canonical_fingerprint(text: str) -> str:
    """A fingerprint as the user typed it (any case, with or without ':' or spaces) in the form
    ``crypto.encoding.fingerprint`` prints; "" if it is not 32 hex digits."""
    digits = "".join(ch for ch in text.lower() if ch not in ": ")
    if len(digits) != 32 or any(ch not in "0123456789abcdef" for ch in digits):
        return ""
    return ":".join(digits[i:i + 4] for i in range(0, 32, 4))
