"""A scripted, malicious securechat server that drives the REAL client library (the tlsfuzzer idea turned around).

``HostileServer`` is a sans-I/O server written only from our codec, channel and construction modules: it performs
the server side of the handshake with the CA key it owns, answers the honest requests (login, certificates, chat
open, relay of messages and contributory rounds) the way the real server would, and lets a test script put ANY
bytes in front of a victim at every layer: a clear frame, a record with arbitrary plaintext, an inner frame with
arbitrary bytes, or a message that is validly signed by the server key (the attacker owns it). It never imports
``ServerProtocol``: what the client accepts is tested against the protocol as documented (PROTOCOL.md 4-7), not
against our own server's habits.

Every connection is a real ``ClientProtocol``; ``Conn.feed`` hands it bytes the way a driver does and records
every event the application would see. An exception escaping ``receive_data`` is a crash: the harness counts it
(``HostileServer.crashes``) and re-raises, so a test fails on the spot.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from securechat.crypto.certificates import Certificate, issue_certificate
from securechat.crypto.exchange import generate_ephemeral, shared_secret
from securechat.crypto.keys import load_public_key
from securechat.crypto.kem import encapsulate
from securechat.crypto.signatures import SignatureScheme, sign
from securechat.crypto.wrap import wrap_key
from securechat.protocol import events as ev
from securechat.protocol import messages as m
from securechat.protocol.channel import (
    HYBRID_KEM, KEM_CONTEXT, RecordLayer, derive_channel_keys, handshake_secret, server_signed_bytes,
    transcript_hash,
)
from securechat.protocol.client import ClientProtocol
from securechat.protocol.codec import (
    MAX_FRAME_BYTES, FrameDecoder, decode_message, encode_frame, encode_message, frame, record_data, split_frames,
)
from securechat.protocol.constructions import chat_epoch_signed_bytes, chat_key_signed_bytes, wrap_tree
from securechat.protocol.identity import UserKeys
from securechat.store import ServerKey

NOW = 1_800_000_000.0  # the clock every party of a scripted world reads (certificates are valid around it)
CERT_LIFETIME = 30 * 86400


class ClientCrashed(AssertionError):
    """An exception escaped ClientProtocol.receive_data: the client library crashed on what the server sent."""


@dataclass
class Conn:
    """One victim (or honest peer) connection: the real ClientProtocol and the server's side of its channel."""

    label: str
    client: ClientProtocol
    world: HostileServer
    decoder: FrameDecoder = field(default_factory=FrameDecoder)
    records: RecordLayer | None = None
    transcript: bytes = b""
    username: str | None = None
    events: list[ev.Event] = field(default_factory=list)
    received: list[m.Message] = field(default_factory=list)  # what the client sent, decoded (inner messages)

    # --- what reaches the client --------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[ev.Event]:
        """Give *data* to the client as a driver would; returns the events it produced (also kept in events)."""
        self.world.frames_sent += 1
        try:
            self.client.receive_data(data, self.world.now)
        except Exception as exc:  # noqa: BLE001 - the whole point: nothing may escape
            self.world.crashes.append((self.label, repr(exc)))
            raise ClientCrashed(f"{type(exc).__name__}: {exc}") from exc
        new = list(iter(self.client.next_event, None))
        self.events.extend(new)
        return new

    def seal(self, plaintext: bytes) -> bytes:
        """One record frame (s2c) whose plaintext is exactly *plaintext*."""
        assert self.records is not None, "handshake first"
        return encode_frame(m.Record(data=self.records.seal(plaintext)))

    def inner(self, body: bytes) -> bytes:
        return self.seal(frame(body))

    def message(self, message: m.Message) -> bytes:
        return self.inner(encode_message(message))

    def obj(self, value: dict[str, Any]) -> bytes:
        return self.inner(json.dumps(value, separators=(",", ":")).encode())

    def push(self, *messages: m.Message) -> list[ev.Event]:
        """Send *messages* in one record and deliver it; returns the client's events."""
        return self.feed(self.seal(b"".join(encode_frame(msg) for msg in messages)))

    def push_obj(self, value: dict[str, Any]) -> list[ev.Event]:
        return self.feed(self.obj(value))

    # --- what the client sends ------------------------------------------------------------------------------

    def pump(self) -> None:
        """Read what the client queued and let the server answer it (honestly unless the script intervenes)."""
        self.world.pump()

    def take_outgoing(self) -> list[m.Message]:
        data = self.client.data_to_send()
        if not data:
            return []
        self.decoder.feed(data)
        out: list[m.Message] = []
        while (body := self.decoder.next_frame()) is not None:
            if self.records is None:
                out.append(decode_message(body))
                continue
            sealed, _ = record_data(body)
            for inner in split_frames(self.records.open(sealed)):
                out.append(decode_message(inner))
        self.received.extend(out)
        return out

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def chat(self) -> Callable[[str], Any]:
        return lambda chat_id: self.client.chats.get(chat_id)


@dataclass
class ScriptedChat:
    chat_id: str
    mode: str
    suite: str
    epoch: int
    members: tuple[str, ...]
    key: bytes | None = None


class HostileServer:
    """The malicious server: owns the CA key, answers honestly by default, forges on demand.

    ``hooks`` lets a script replace the honest answer to a client request: ``hooks[type] = fn(conn, msg)``
    returning the list of (conn, message) to deliver instead (or None to keep the honest answer).
    """

    def __init__(self, ca: ServerKey, *, random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self.ca = ca
        self.now = NOW
        self.random_bytes = random_bytes
        self.keys: dict[str, UserKeys] = {}
        self.certs: dict[str, Certificate] = {}
        self.conns: list[Conn] = []
        self.online: dict[str, Conn] = {}
        self.chats: dict[str, ScriptedChat] = {}
        self.crashes: list[tuple[str, str]] = []
        self.frames_sent = 0
        self.hooks: dict[str, Callable[[Conn, m.Message], list[tuple[Conn, m.Message]] | None]] = {}
        self.relayed: list[m.ChatMessage] = []  # every chat_message built from an honest chat_send
        self._serial = itertools.count(1)
        self._chat_ids = itertools.count(1)

    @property
    def pinned(self) -> tuple[bytes, str]:
        return self.ca.public_der, self.ca.scheme.value

    # --- identities --------------------------------------------------------------------------------------

    def certify(self, name: str, keys: UserKeys, *, now: float | None = None,
                lifetime: int = CERT_LIFETIME, scheme: SignatureScheme | None = None) -> Certificate:
        """A CA-valid certificate for *keys* under *name* (the malicious server can certify anything)."""
        start = int(self.now if now is None else now) - 300
        return issue_certificate(
            username=name, signature_scheme=scheme or keys.scheme, encryption_key=keys.encryption_public,
            signing_key=keys.signing_public, serial=next(self._serial), now=start, validity_seconds=lifetime,
            ca_private_key=self.ca.private_key, ca_scheme=self.ca.scheme, random_bytes=self.random_bytes,
        )

    def enroll(self, name: str, keys: UserKeys) -> None:
        self.keys[name] = keys
        self.certs[name] = self.certify(name, keys)

    # --- connections -------------------------------------------------------------------------------------

    def connect(self, label: str, *, pins: dict[str, str] | None = None, key_exchange: str = "x25519") -> Conn:
        client = ClientProtocol(server_key=self.pinned, pins=pins, key_exchange=key_exchange,
                                random_bytes=self.random_bytes)
        conn = Conn(label=label, client=client, world=self)
        self.conns.append(conn)
        client.connect()
        self.pump()
        return conn

    def login(self, name: str, keys: UserKeys, **kw: Any) -> Conn:
        """A connected, logged-in client for *name* (enrolled with *keys* if new)."""
        if name not in self.keys:
            self.enroll(name, keys)
        conn = self.connect(name, **kw)
        conn.client.login(name, "pw", keys)
        self.pump()
        assert conn.client.username == name, conn.events
        return conn

    def pump(self, limit: int = 200) -> None:
        """Move bytes both ways until nobody has anything to say (bounded)."""
        for _ in range(limit):
            moved = False
            for conn in list(self.conns):
                if conn.client.closed:
                    continue
                for msg in conn.take_outgoing():
                    moved = True
                    self._answer(conn, msg)
            if not moved:
                return
        raise AssertionError("pump did not settle")

    def handshake_reply(self, conn: Conn, hello: m.ClientHello, *, tamper: Callable[[m.ServerHello], m.ServerHello]
                        | None = None) -> bytes:
        """The server_hello bytes for *hello* (optionally tampered after signing), keys installed on *conn*."""
        ephemeral, share = generate_ephemeral(random_bytes=self.random_bytes)
        secret = shared_secret(ephemeral, hello.key_share)
        kem_ciphertext = None
        if hello.key_exchange == HYBRID_KEM and hello.kem_key is not None:
            kem_ciphertext, kem_secret = encapsulate(hello.kem_key, context=KEM_CONTEXT,
                                                     random_bytes=self.random_bytes)
            secret = handshake_secret(secret, kem_secret)
        server_random = self.random_bytes(32)
        conn.transcript = transcript_hash(
            version=hello.version, key_exchange=hello.key_exchange, client_random=hello.random,
            client_share=hello.key_share, server_random=server_random, server_share=share,
            server_key=self.ca.public_der, server_scheme=self.ca.scheme.value,
            kem_key=hello.kem_key or b"", kem_ciphertext=kem_ciphertext or b"",
        )
        signature = sign(self.ca.scheme, self.ca.private_key, server_signed_bytes(conn.transcript),
                         random_bytes=self.random_bytes)
        reply = m.ServerHello(random=server_random, key_share=share, server_key=self.ca.public_der,
                              server_scheme=self.ca.scheme.value, signature=signature, kem_ciphertext=kem_ciphertext)
        if tamper is not None:
            reply = tamper(reply)
        keys = derive_channel_keys(secret, conn.transcript)
        conn.records = RecordLayer(send_key=keys.server_to_client, receive_key=keys.client_to_server)
        conn.decoder.max_frame_bytes = MAX_FRAME_BYTES
        return encode_frame(reply)

    # --- the honest answers ------------------------------------------------------------------------------

    def _answer(self, conn: Conn, msg: m.Message) -> None:
        hook = self.hooks.get(msg.TYPE)
        if hook is not None:
            replies = hook(conn, msg)
            if replies is not None:
                for target, reply in replies:
                    target.push(reply)
                return
        handler = getattr(self, f"_on_{msg.TYPE}", None)
        if handler is not None:
            handler(conn, msg)

    def _on_client_hello(self, conn: Conn, msg: m.ClientHello) -> None:
        conn.feed(self.handshake_reply(conn, msg))

    def _on_register(self, conn: Conn, msg: m.Register) -> None:
        conn.username = msg.username
        self._pending_register = msg
        nonce = self.random_bytes(32)
        self._register_nonce = nonce
        wrapped = wrap_key(load_public_key(msg.encryption_key), nonce, random_bytes=self.random_bytes)
        conn.push(m.RegisterChallenge(rid=msg.rid, wrapped_nonce=wrapped))

    def _on_register_proof(self, conn: Conn, msg: m.RegisterProof) -> None:
        reg = self._pending_register
        cert = issue_certificate(
            username=reg.username, signature_scheme=SignatureScheme(reg.signature_scheme),
            encryption_key=reg.encryption_key, signing_key=reg.signing_key, serial=next(self._serial),
            now=int(self.now) - 300, validity_seconds=CERT_LIFETIME, ca_private_key=self.ca.private_key,
            ca_scheme=self.ca.scheme, random_bytes=self.random_bytes)
        conn.push(m.Registered(rid=msg.rid, certificate=cert))

    def _on_login(self, conn: Conn, msg: m.Login) -> None:
        conn.username = msg.username
        self.online[msg.username] = conn
        conn.push(m.LoginOk(rid=msg.rid, username=msg.username, certificate=self.certs[msg.username],
                            online=tuple(sorted(self.online))))

    def _on_logout(self, conn: Conn, msg: m.Logout) -> None:
        conn.push(m.Bye(rid=msg.rid))

    def _on_who(self, conn: Conn, msg: m.Who) -> None:
        conn.push(m.WhoResult(rid=msg.rid, online=tuple(sorted(self.online))))

    def _on_status(self, conn: Conn, msg: m.Status) -> None:
        conn.push(m.StatusResult(rid=msg.rid, username=msg.username, online=msg.username in self.online))

    def _on_get_certificates(self, conn: Conn, msg: m.GetCertificates) -> None:
        known = tuple(self.certs[n] for n in msg.usernames if n in self.certs)
        unknown = tuple(n for n in msg.usernames if n not in self.certs)
        conn.push(m.Certificates(rid=msg.rid, certificates=known, unknown=unknown))

    def _on_chat_open(self, conn: Conn, msg: m.ChatOpen) -> None:
        assert conn.username is not None
        chat_id = f"c{next(self._chat_ids):04d}"
        members = (conn.username, *msg.members)
        chat = self.chats[chat_id] = ScriptedChat(chat_id, msg.mode, msg.suite, 0, members)
        conn.push(m.ChatOpened(rid=msg.rid, chat_id=chat_id, members=members, offline=(), unknown=()))
        self.rekey(chat, "open", conn.username)

    def _on_chat_send(self, conn: Conn, msg: m.ChatSend) -> None:
        assert conn.username is not None
        out = as_relayed(msg, conn.username)
        self.relayed.append(out)
        chat = self.chats.get(msg.chat_id)
        for name in chat.members if chat else ():
            if name != conn.username and name in self.online:
                self.online[name].push(out)

    def _on_chat_leave(self, conn: Conn, msg: m.ChatLeave) -> None:
        conn.push(m.ChatLeft(rid=msg.rid, chat_id=msg.chat_id))

    def _relay_round(self, conn: Conn, out: m.Message, recipients: tuple[str, ...]) -> None:
        for name in recipients:
            if name in self.online and name != conn.username:
                self.online[name].push(out)

    def _on_share_commit(self, conn: Conn, msg: m.ShareCommit) -> None:
        chat = self.chats[msg.chat_id]
        self._relay_round(conn, m.ShareCommitted(chat_id=msg.chat_id, epoch=msg.epoch, sender=conn.username or "",
                                                 commitment=msg.commitment, signature=msg.signature), chat.members)

    def _on_key_share(self, conn: Conn, msg: m.KeyShare) -> None:
        self._relay_round(conn, m.KeyShareDelivery(
            chat_id=msg.chat_id, epoch=msg.epoch, sender=conn.username or "", recipient=msg.recipient,
            wrapped_share=msg.wrapped_share, nonce=msg.nonce, timestamp=msg.timestamp, signature=msg.signature),
            (msg.recipient,))

    def _on_key_confirm(self, conn: Conn, msg: m.KeyConfirm) -> None:
        chat = self.chats[msg.chat_id]
        self._relay_round(conn, m.KeyConfirmed(chat_id=msg.chat_id, epoch=msg.epoch, sender=conn.username or "",
                                               mac=msg.mac), chat.members)

    # --- forging (the server key signs whatever the script wants) ----------------------------------------

    def rekey(self, chat: ScriptedChat, reason: str, actor: str) -> None:
        """Honestly start the chat's next epoch for its online members."""
        chat.epoch += 1
        if chat.mode not in m.KEYLESS_MODES:
            chat.key = self.random_bytes(32)
        for name in chat.members:
            if name not in self.online:
                continue
            if chat.mode in m.KEYLESS_MODES:
                msg: m.Message = self.chat_epoch(chat.chat_id, chat.epoch, chat.mode, chat.members, suite=chat.suite,
                                                 reason=reason, actor=actor)
            else:
                assert chat.key is not None
                msg = self.chat_key(chat.chat_id, chat.epoch, chat.mode, chat.members, chat.key, recipient=name,
                                    suite=chat.suite, reason=reason, actor=actor)
            self.online[name].push(msg)
        self.pump()

    def chat_key(self, chat_id: str, epoch: int, mode: str, members: tuple[str, ...], key: bytes, *,
                 recipient: str | None = None, suite: str = "aes-256-gcm", reason: str = "open",
                 actor: str | None = None) -> m.ChatKey:
        """A validly signed server-key distribution of *key*; the wrap is for *recipient* (default: each member
        in turn is not possible in one message, so the first online member is used)."""
        wraps = [wrap_key(load_public_key(self.keys[n].encryption_public), key, random_bytes=self.random_bytes)
                 if n in self.keys else self.random_bytes(256) for n in members]
        root, paths = wrap_tree(members, tuple(wraps))
        who = recipient if recipient is not None else next((n for n in members if n in self.online), members[0])
        actor = actor or members[0]
        signature = sign(self.ca.scheme, self.ca.private_key, chat_key_signed_bytes(
            chat_id=chat_id, epoch=epoch, mode=mode, suite=suite, reason=reason, actor=actor, members=members,
            wrap_root=root), random_bytes=self.random_bytes)
        mine = members.index(who) if who in members else 0
        return m.ChatKey(chat_id=chat_id, epoch=epoch, mode=mode, suite=suite, reason=reason, actor=actor,
                         members=members, wrap_root=root, wrap_path=paths[mine], wrapped_key=wraps[mine],
                         signature=signature)

    def chat_key_for(self, name: str, chat_id: str, epoch: int, mode: str, members: tuple[str, ...], key: bytes,
                     **kw: Any) -> m.ChatKey:
        return self.chat_key(chat_id, epoch, mode, members, key, recipient=name, **kw)

    def chat_epoch(self, chat_id: str, epoch: int, mode: str, members: tuple[str, ...], *,
                   suite: str = "aes-256-gcm", reason: str = "open", actor: str | None = None) -> m.ChatEpoch:
        actor = actor or members[0]
        signature = sign(self.ca.scheme, self.ca.private_key, chat_epoch_signed_bytes(
            chat_id=chat_id, epoch=epoch, mode=mode, suite=suite, reason=reason, actor=actor, members=members),
            random_bytes=self.random_bytes)
        return m.ChatEpoch(chat_id=chat_id, epoch=epoch, mode=mode, suite=suite, reason=reason, actor=actor,
                           members=members, signature=signature)

    def open_chat(self, opener: Conn, members: tuple[str, ...], mode: str = "server-key") -> str:
        """*opener* opens a chat with *members* through the client API; returns its id once every member is keyed."""
        rid = opener.client.open_chat(list(members), mode=mode)
        self.pump()
        opened = [e for e in opener.events if isinstance(e, ev.ChatOpened) and e.rid == rid]
        assert opened, opener.events
        return opened[0].chat_id


def as_relayed(send: m.ChatSend, sender: str) -> m.ChatMessage:
    """The chat_message an honest server makes of *sender*'s chat_send: every field but rid, plus the sender."""
    fields = {f.name: getattr(send, f.name) for f in dataclasses.fields(m.ChatMessage) if f.name != "sender"}
    return m.ChatMessage(sender=sender, **fields)


def resign(message: m.Message, ca: ServerKey, **changes: Any) -> m.Message:
    """*message* with *changes* applied and a fresh server signature (chat_key or chat_epoch)."""
    new = replace(message, **changes)  # type: ignore[type-var]
    if isinstance(new, m.ChatKey):
        signed = chat_key_signed_bytes(chat_id=new.chat_id, epoch=new.epoch, mode=new.mode, suite=new.suite,
                                       reason=new.reason, actor=new.actor, members=new.members,
                                       wrap_root=new.wrap_root)
    elif isinstance(new, m.ChatEpoch):
        signed = chat_epoch_signed_bytes(chat_id=new.chat_id, epoch=new.epoch, mode=new.mode, suite=new.suite,
                                         reason=new.reason, actor=new.actor, members=new.members)
    else:
        return new
    return replace(new, signature=sign(ca.scheme, ca.private_key, signed))
