"""Wire messages: one frozen dataclass per message of docs/PROTOCOL.md sections 4-7.

Owns: the message vocabulary (the chat membership messages live in ``messages_membership.py`` and the base in
``message_base.py``; both are re-exported here), each field's kind and limit, and the ``MESSAGE_TYPES`` table from the wire
``type`` string to its class. Must not: serialise (that is ``codec.py``), decide what is allowed when (that is
``states.py``), or do crypto. Ciphertext and keys are ``bytes`` here; base64 exists only on the wire.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..crypto.aead import CipherSuite
from ..crypto.certificates import Certificate
from ..crypto.signatures import SignatureScheme
from .fields import Blob, Boolean, Choice, Integer, ListOf, Name, Object, Optional, Text
from .message_base import (
    CHAT_ID as CHAT_ID, CHAT_MODES as CHAT_MODES, KEY_BLOB as KEY_BLOB, KEYLESS_MODES as KEYLESS_MODES,
    LOBBY_ID as LOBBY_ID, MAX_CHAT_BODY_BYTES as MAX_CHAT_BODY_BYTES, MAX_CHAT_MEMBERS as MAX_CHAT_MEMBERS,
    MAX_LIST_ITEMS as MAX_LIST_ITEMS, MAX_PASSWORD_CHARS as MAX_PASSWORD_CHARS, MAX_WRAP_PATH as MAX_WRAP_PATH,
    PROTOCOL_VERSION as PROTOCOL_VERSION, REKEY_REASONS as REKEY_REASONS, RID as RID, SCHEME_NAMES as SCHEME_NAMES,
    SIGNATURE_BLOB as SIGNATURE_BLOB, SUITE_NAMES as SUITE_NAMES, Message as Message, f as f,
)
from .messages_membership import (
    ChatOpen as ChatOpen,
    ChatOpened as ChatOpened,
    ChatInvite as ChatInvite,
    ChatInvited as ChatInvited,
    ChatInvitation as ChatInvitation,
    ChatAnswer as ChatAnswer,
    ChatAnswered as ChatAnswered,
    InvitationClosed as InvitationClosed,
    ChatRefused as ChatRefused,
    ChatRefusal as ChatRefusal,
    ChatLeave as ChatLeave,
    ChatLeft as ChatLeft,
)
from .vocabulary import ChatMode as ChatMode, KeyExchange as KeyExchange, RekeyReason as RekeyReason


# --- handshake, in clear (PROTOCOL.md 4) ---------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class ClientHello(Message):
    """First frame of a connection: the client's fresh random and ephemeral X25519 public key."""

    TYPE: ClassVar[str] = "client_hello"
    version: int = f(Integer(PROTOCOL_VERSION, PROTOCOL_VERSION), PROTOCOL_VERSION)
    random: bytes = f(Blob(exact=32))
    key_share: bytes = f(Blob(exact=32))
    key_exchange: KeyExchange = f(Choice.of(KeyExchange), KeyExchange.X25519)
    kem_key: bytes | None = f(Optional(Blob(exact=1184)), None)  # PROTOCOL.md 4.4: ML-KEM-768 encapsulation key


@dataclass(frozen=True, kw_only=True)
class ServerHello(Message):
    """The server's random, ephemeral key, long-term key and its signature over the transcript."""

    TYPE: ClassVar[str] = "server_hello"
    version: int = f(Integer(PROTOCOL_VERSION, PROTOCOL_VERSION), PROTOCOL_VERSION)
    random: bytes = f(Blob(exact=32))
    key_share: bytes = f(Blob(exact=32))
    server_key: bytes = f(KEY_BLOB)
    server_scheme: SignatureScheme = f(Choice.of(SignatureScheme))
    signature: bytes = f(SIGNATURE_BLOB)
    kem_ciphertext: bytes | None = f(Optional(Blob(exact=1088)), None)  # PROTOCOL.md 4.4


@dataclass(frozen=True, kw_only=True)
class Record(Message):
    """An AES-256-GCM record carrying one or more inner frames (PROTOCOL.md 5)."""

    TYPE: ClassVar[str] = "record"
    data: bytes = f(Blob(max_bytes=1024 * 1024))


@dataclass(frozen=True, kw_only=True)
class Error(Message):
    """An error report (PROTOCOL.md 9). ``rid`` echoes the request, ``ref`` names the offending type."""

    TYPE: ClassVar[str] = "error"
    code: str = f(Text(max_chars=64))
    message: str = f(Text(max_chars=512), "")
    rid: int | None = f(RID, None)
    ref: str | None = f(Optional(Text(max_chars=64)), None)


# --- accounts (PROTOCOL.md 6) -------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Register(Message):
    TYPE: ClassVar[str] = "register"
    rid: int | None = f(RID, None)
    username: str = f(Name())
    password: str = f(Text(max_chars=MAX_PASSWORD_CHARS))
    signature_scheme: SignatureScheme = f(Choice.of(SignatureScheme))
    encryption_key: bytes = f(KEY_BLOB)
    signing_key: bytes = f(KEY_BLOB)


@dataclass(frozen=True, kw_only=True)
class RegisterChallenge(Message):
    TYPE: ClassVar[str] = "register_challenge"
    rid: int | None = f(RID, None)
    wrapped_nonce: bytes = f(Blob(max_bytes=1024))


@dataclass(frozen=True, kw_only=True)
class RegisterProof(Message):
    TYPE: ClassVar[str] = "register_proof"
    rid: int | None = f(RID, None)
    nonce: bytes = f(Blob(exact=32))
    signature: bytes = f(SIGNATURE_BLOB)


@dataclass(frozen=True, kw_only=True)
class Registered(Message):
    TYPE: ClassVar[str] = "registered"
    rid: int | None = f(RID, None)
    certificate: Certificate = f(Object(Certificate))


@dataclass(frozen=True, kw_only=True)
class Login(Message):
    TYPE: ClassVar[str] = "login"
    rid: int | None = f(RID, None)
    username: str = f(Name())
    password: str = f(Text(max_chars=MAX_PASSWORD_CHARS))
    signature: bytes = f(SIGNATURE_BLOB)


@dataclass(frozen=True, kw_only=True)
class LoginOk(Message):
    TYPE: ClassVar[str] = "login_ok"
    rid: int | None = f(RID, None)
    username: str = f(Name())
    certificate: Certificate = f(Object(Certificate))
    online: tuple[str, ...] = f(ListOf(Name(), MAX_LIST_ITEMS))


@dataclass(frozen=True, kw_only=True)
class Logout(Message):
    TYPE: ClassVar[str] = "logout"
    rid: int | None = f(RID, None)


@dataclass(frozen=True, kw_only=True)
class Bye(Message):
    TYPE: ClassVar[str] = "bye"
    rid: int | None = f(RID, None)


# --- presence and directory (PROTOCOL.md 6.4) ----------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Who(Message):
    TYPE: ClassVar[str] = "who"
    rid: int | None = f(RID, None)


@dataclass(frozen=True, kw_only=True)
class WhoResult(Message):
    TYPE: ClassVar[str] = "who_result"
    rid: int | None = f(RID, None)
    online: tuple[str, ...] = f(ListOf(Name(), MAX_LIST_ITEMS))


@dataclass(frozen=True, kw_only=True)
class Status(Message):
    TYPE: ClassVar[str] = "status"
    rid: int | None = f(RID, None)
    username: str = f(Name())


@dataclass(frozen=True, kw_only=True)
class StatusResult(Message):
    TYPE: ClassVar[str] = "status_result"
    rid: int | None = f(RID, None)
    username: str = f(Name())
    online: bool = f(Boolean())


@dataclass(frozen=True, kw_only=True)
class Presence(Message):
    TYPE: ClassVar[str] = "presence"
    username: str = f(Name())
    online: bool = f(Boolean())


@dataclass(frozen=True, kw_only=True)
class GetCertificates(Message):
    TYPE: ClassVar[str] = "get_certificates"
    rid: int | None = f(RID, None)
    usernames: tuple[str, ...] = f(ListOf(Name(), MAX_CHAT_MEMBERS, unique=True))


@dataclass(frozen=True, kw_only=True)
class Certificates(Message):
    TYPE: ClassVar[str] = "certificates"
    rid: int | None = f(RID, None)
    certificates: tuple[Certificate, ...] = f(ListOf(Object(Certificate), MAX_CHAT_MEMBERS))
    unknown: tuple[str, ...] = f(ListOf(Name(), MAX_CHAT_MEMBERS))


# --- chats (PROTOCOL.md 7) -------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class ChatKey(Message):
    """The server-signed key distribution for one epoch, as received by one member (PROTOCOL.md 7.2)."""

    TYPE: ClassVar[str] = "chat_key"
    chat_id: str = f(CHAT_ID)
    epoch: int = f(Integer(1))
    mode: ChatMode = f(Choice.of(ChatMode))
    suite: CipherSuite = f(Choice.of(CipherSuite))
    reason: RekeyReason = f(Choice.of(RekeyReason))
    actor: str = f(Name())
    members: tuple[str, ...] = f(ListOf(Name(), MAX_CHAT_MEMBERS, unique=True))
    wrap_root: bytes = f(Blob(exact=32))  # PROTOCOL.md 7.2: Merkle root over every member's wrap
    wrap_path: tuple[bytes, ...] = f(ListOf(Blob(exact=32), MAX_WRAP_PATH))  # this member's audit path
    wrapped_key: bytes = f(Blob(max_bytes=1024))
    signature: bytes = f(SIGNATURE_BLOB)


@dataclass(frozen=True, kw_only=True)
class ChatSend(Message):
    """A member's encrypted, signed message, as sent to the server (PROTOCOL.md 7.3)."""

    TYPE: ClassVar[str] = "chat_send"
    rid: int | None = f(RID, None)
    chat_id: str = f(CHAT_ID)
    epoch: int = f(Integer(1))
    seq: int = f(Integer(1, 2**32 - 1))
    ciphertext: bytes = f(Blob(max_bytes=MAX_CHAT_BODY_BYTES + 64))
    signature: bytes = f(SIGNATURE_BLOB)
    wrap_recipients: tuple[str, ...] | None = f(Optional(ListOf(Name(), MAX_CHAT_MEMBERS)), None)
    wraps: tuple[bytes, ...] | None = f(Optional(ListOf(Blob(max_bytes=512), MAX_CHAT_MEMBERS)), None)
    # PROTOCOL.md 7.7 (hybrid v2): the key commitment and the previous message's hash, in hybrid chats only
    key_commitment: bytes | None = f(Optional(Blob(exact=32)), None)
    prev_hash: bytes | None = f(Optional(Blob(exact=32)), None)


@dataclass(frozen=True, kw_only=True)
class ChatMessage(Message):
    """A relayed chat message; ``sender`` is set by the server from the authenticated connection."""

    TYPE: ClassVar[str] = "chat_message"
    chat_id: str = f(CHAT_ID)
    epoch: int = f(Integer(1))
    sender: str = f(Name())
    seq: int = f(Integer(1, 2**32 - 1))
    ciphertext: bytes = f(Blob(max_bytes=MAX_CHAT_BODY_BYTES + 64))
    signature: bytes = f(SIGNATURE_BLOB)
    wrap_recipients: tuple[str, ...] | None = f(Optional(ListOf(Name(), MAX_CHAT_MEMBERS)), None)
    wraps: tuple[bytes, ...] | None = f(Optional(ListOf(Blob(max_bytes=512), MAX_CHAT_MEMBERS)), None)
    # PROTOCOL.md 7.7 (hybrid v2): the key commitment and the previous message's hash, in hybrid chats only
    key_commitment: bytes | None = f(Optional(Blob(exact=32)), None)
    prev_hash: bytes | None = f(Optional(Blob(exact=32)), None)


# --- keyless modes: signed membership, and the contributory rounds (PROTOCOL.md 7.6-7.8) --------------------

@dataclass(frozen=True, kw_only=True)
class ChatEpoch(Message):
    """The server-signed membership of an epoch in a mode where the server makes no key."""

    TYPE: ClassVar[str] = "chat_epoch"
    chat_id: str = f(CHAT_ID)
    epoch: int = f(Integer(1))
    mode: ChatMode = f(Choice.of(ChatMode))
    suite: CipherSuite = f(Choice.of(CipherSuite))
    reason: RekeyReason = f(Choice.of(RekeyReason))
    actor: str = f(Name())
    members: tuple[str, ...] = f(ListOf(Name(), MAX_CHAT_MEMBERS, unique=True))
    signature: bytes = f(SIGNATURE_BLOB)


@dataclass(frozen=True, kw_only=True)
class ShareCommit(Message):
    TYPE: ClassVar[str] = "share_commit"
    chat_id: str = f(CHAT_ID)
    epoch: int = f(Integer(1))
    commitment: bytes = f(Blob(exact=32))
    signature: bytes = f(SIGNATURE_BLOB)


@dataclass(frozen=True, kw_only=True)
class ShareCommitted(Message):
    TYPE: ClassVar[str] = "share_committed"
    chat_id: str = f(CHAT_ID)
    epoch: int = f(Integer(1))
    sender: str = f(Name())
    commitment: bytes = f(Blob(exact=32))
    signature: bytes = f(SIGNATURE_BLOB)


@dataclass(frozen=True, kw_only=True)
class KeyShare(Message):
    """One member's share for one recipient, RSA-OAEP-wrapped and signed (PROTOCOL.md 7.6)."""

    TYPE: ClassVar[str] = "key_share"
    chat_id: str = f(CHAT_ID)
    epoch: int = f(Integer(1))
    recipient: str = f(Name())
    wrapped_share: bytes = f(Blob(max_bytes=512))
    nonce: bytes = f(Blob(exact=16))
    timestamp: int = f(Integer())
    signature: bytes = f(SIGNATURE_BLOB)


@dataclass(frozen=True, kw_only=True)
class KeyShareDelivery(Message):
    TYPE: ClassVar[str] = "key_share_delivery"
    chat_id: str = f(CHAT_ID)
    epoch: int = f(Integer(1))
    sender: str = f(Name())
    recipient: str = f(Name())
    wrapped_share: bytes = f(Blob(max_bytes=512))
    nonce: bytes = f(Blob(exact=16))
    timestamp: int = f(Integer())
    signature: bytes = f(SIGNATURE_BLOB)


@dataclass(frozen=True, kw_only=True)
class KeyConfirm(Message):
    TYPE: ClassVar[str] = "key_confirm"
    chat_id: str = f(CHAT_ID)
    epoch: int = f(Integer(1))
    mac: bytes = f(Blob(exact=32))


@dataclass(frozen=True, kw_only=True)
class KeyConfirmed(Message):
    TYPE: ClassVar[str] = "key_confirmed"
    chat_id: str = f(CHAT_ID)
    epoch: int = f(Integer(1))
    sender: str = f(Name())
    mac: bytes = f(Blob(exact=32))


@dataclass(frozen=True, kw_only=True)
class CertRenew(Message):
    """PROTOCOL.md 6.6: renew the sender's certificate for the same keys, signed with the certified key."""

    TYPE: ClassVar[str] = "cert_renew"
    rid: int | None = f(RID, None)
    signature: bytes = f(SIGNATURE_BLOB)


@dataclass(frozen=True, kw_only=True)
class CertRenewed(Message):
    TYPE: ClassVar[str] = "cert_renewed"
    rid: int | None = f(RID, None)
    certificate: Certificate = f(Object(Certificate))


@dataclass(frozen=True, kw_only=True)
class RoundTimeout(Message):
    """PROTOCOL.md 7.6: the key agreement of a contributory epoch did not finish in time; *missing* are the
    members the server has no key confirmation from."""

    TYPE: ClassVar[str] = "round_timeout"
    chat_id: str = f(CHAT_ID)
    epoch: int = f(Integer(1))
    missing: tuple[str, ...] = f(ListOf(Name(), MAX_CHAT_MEMBERS, unique=True))


MESSAGE_CLASSES: tuple[type[Message], ...] = (
    ClientHello, ServerHello, Record, Error,
    Register, RegisterChallenge, RegisterProof, Registered, Login, LoginOk, Logout, Bye,
    Who, WhoResult, Status, StatusResult, Presence, GetCertificates, Certificates,
    ChatOpen, ChatOpened, ChatInvite, ChatInvited, ChatInvitation, ChatAnswer, ChatAnswered, InvitationClosed,
    ChatRefused, ChatRefusal,
    ChatLeave, ChatLeft, ChatKey, ChatSend, ChatMessage,
    ChatEpoch, ShareCommit, ShareCommitted, KeyShare, KeyShareDelivery, KeyConfirm, KeyConfirmed,
    RoundTimeout, CertRenew, CertRenewed,
)
MESSAGE_TYPES: dict[str, type[Message]] = {cls.TYPE: cls for cls in MESSAGE_CLASSES}

# PROTOCOL.md 4-5: which types may travel in clear and which only inside records, per direction.
CLEAR_TYPES = frozenset({"client_hello", "server_hello", "record", "error"})
CLIENT_TO_SERVER = frozenset({
    "register", "register_proof", "login", "logout", "who", "status", "get_certificates",
    "chat_open", "chat_invite", "chat_answer", "chat_leave", "chat_send", "chat_refused", "share_commit", "key_share",
    "key_confirm",
    "cert_renew",
})
SERVER_TO_CLIENT = frozenset(MESSAGE_TYPES) - CLIENT_TO_SERVER - {"client_hello", "record"}
