"""ClientProtocol: the client side of securechat as a sans-I/O object (docs/STYLE.md section 1).

Owns: the client's connection state machine, the handshake and record layer, registration and login proofs,
and the dispatch of everything received to events. Commands are method calls, received bytes go in through
``receive_data``, events come out of ``next_event`` and bytes out of ``data_to_send``. Must not: touch sockets,
threads, clocks (``now`` is passed in) or the file system; it is not thread-safe (the driver locks).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from typing import Any

from ..crypto.certificates import Certificate, verify_certificate
from ..crypto.encoding import RandomBytes, constant_time_equal, fingerprint
from ..crypto.exchange import generate_ephemeral, shared_secret
from ..crypto.keys import load_public_key, public_key_der
from ..crypto.signatures import SignatureScheme, sign, verify
from ..crypto.wrap import unwrap_key
from ..errors import FATAL_CODES, ErrorCode, error_code, LocalProtocolError, RemoteProtocolError, SecureChatError
from . import events as ev
from . import messages as m
from . import modes
from ..crypto.kem import decapsulate, generate_kem_key
from .vocabulary import ChatMode, KeyExchange
from .channel import (
    HYBRID_KEM, KEM_CONTEXT, X25519, RecordLayer, derive_channel_keys, handshake_secret, server_signed_bytes,
    transcript_hash,
)
from .chats import ChatBook
from .codec import (
    MAX_FRAME_BYTES, FrameDecoder, decode_message, encode_frame, encode_record_frame, pack_records, record_payload,
    split_frames,
)
from .constructions import login_proof_bytes, register_proof_bytes, renew_proof_bytes
from .identity import UserKeys
from .lab import LabMode, LabVariant, lab_has
from .fields import Name

_NAME = Name()


def normalize_username(raw: str) -> str:
    """A bad name given to a command is the caller's mistake: LocalProtocolError (BAD_FIELD), nothing sent. The
    rule is the message field's own (PROTOCOL.md 3.2); commands that put a name straight into a message leave it
    to the message's construction."""
    return _NAME.check("username", raw)
from .states import RECEIVE, SEND, ChatState, ClientState, next_chat_state, next_client_state

Tracer = Callable[[ev.TraceEntry], None]
# Certificate requests a server may leave unanswered; beyond this the oldest is forgotten (bounded memory against
# a malicious server, docs/SECURITY.md).
MAX_FETCHES_IN_FLIGHT = 64


class ClientProtocol:
    """One client connection. Not thread-safe.

    Args:
        server_key: the server's pinned SubjectPublicKeyInfo DER and scheme, or None to trust on first use
            (the HandshakeCompleted event then has ``first_use=True`` and the driver should pin it).
        random_bytes: the random source (os.urandom; a seeded one in simulations).
        trace: called with every frame sent and received, at every layer.
    """

    def __init__(
        self,
        *,
        server_key: tuple[bytes, str] | None = None,
        random_bytes: RandomBytes = os.urandom,
        trace: Tracer | None = None,
        pins: dict[str, str] | None = None,
        key_exchange: str = KeyExchange.X25519,
        lab: LabMode | None = None,
        keylog: Callable[[bytes, bytes, bytes], None] | None = None,
        verify_key_commitment: bool = True,
        auto_accept_invitations: bool = True,
    ) -> None:
        if lab is not None and (not isinstance(lab, LabMode) or lab.side != "client"):
            raise LocalProtocolError("lab must be a client LabMode (securechat.protocol.lab)", ErrorCode.BAD_FIELD)
        self.lab = lab  # PROTOCOL.md 16: None (the default) means no weakening at all
        # PROTOCOL.md 15.3: called once with (client_random, k_c2s, k_s2c) when the driver asked for a key log
        self._keylog = keylog
        self.state = ClientState.IDLE
        # PROTOCOL.md 7.7: turned off only by the lab variant that demonstrates the attack it stops
        if not verify_key_commitment and not lab_has(lab, LabVariant.NO_KEY_COMMITMENT):
            raise LocalProtocolError("verify_key_commitment=False is the no-key-commitment lab variant: it needs "
                                     "lab=LabMode({no-key-commitment}, 'client', ...)", ErrorCode.BAD_FIELD)
        # LAB ONLY (PROTOCOL.md 16.1, no-key-commitment): the lab variant switches the check off
        self.verify_key_commitment = verify_key_commitment and not lab_has(lab, LabVariant.NO_KEY_COMMITMENT)
        # PROTOCOL.md 7.11: the server adds nobody without an answer. A program may accept every invitation
        # (its policy); the terminal client and the GUI set False and ask the user.
        self.auto_accept_invitations = auto_accept_invitations
        self.invitations: dict[str, ev.InvitationReceived] = {}  # open invitations to us, by chat id
        self._refusals_sent: set[tuple[str, int, str]] = set()    # (chat, epoch, sender) told already (7.9) and not lab_has(lab, LabVariant.NO_KEY_COMMITMENT)
        self.pins = pins if pins is not None else {}  # PROTOCOL.md 7.9: peers' identity fingerprints
        if key_exchange not in (X25519, HYBRID_KEM):
            raise LocalProtocolError(f"unknown key exchange {key_exchange}", ErrorCode.BAD_FIELD)
        self.key_exchange = key_exchange  # PROTOCOL.md 4.4: KeyExchange.X25519_MLKEM768 adds ML-KEM-768
        self._kem_private: object = None
        self._pinned = server_key
        self._random_bytes = random_bytes
        self._trace = trace
        self._decoder = FrameDecoder()
        self._events: deque[ev.Event] = deque()
        self._out = bytearray()
        self._inner: list[bytes] = []
        self._records: RecordLayer | None = None
        self._hello: m.ClientHello | None = None
        self._ephemeral: object = None
        self.transcript = b""
        self.server_key: object = None
        self.server_scheme: SignatureScheme | None = None
        self._next_rid = 1
        self._keys: UserKeys | None = None
        self._pending_name = ""
        self.username: str | None = None
        self.certificate: Certificate | None = None
        self.book: ChatBook | None = None
        self._now = 0.0
        self._leaving: dict[int, str] = {}  # rid of a chat_leave in flight -> its chat
        self._fetching: set[str] = set()    # names whose certificate request is in flight
        self._fetch_requests: dict[int, tuple[str, ...]] = {}

    # --- driver API -------------------------------------------------------------------------------------------

    def connect(self) -> None:
        """Queue the client_hello that opens the handshake (PROTOCOL.md 4.1)."""
        self.state = next_client_state(self.state, SEND, "client_hello")
        self._ephemeral, share = generate_ephemeral(random_bytes=self._random_bytes)
        kem_key = None
        if self.key_exchange == HYBRID_KEM:
            self._kem_private, kem_key = generate_kem_key(random_bytes=self._random_bytes)
        self._hello = m.ClientHello(random=self._random_bytes(32), key_share=share, key_exchange=self.key_exchange,
                                    kem_key=kem_key)
        self._send_clear(self._hello)

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed bytes from the server; ``b""`` means end of stream. Never raises for what the peer sent:
        a fatal problem becomes a ConnectionClosed event and state CLOSED."""
        if self.state is ClientState.CLOSED:
            return
        self._now = now
        try:
            self._decoder.feed(data)
            while not self.closed and (body := self._decoder.next_frame()) is not None:
                self._receive_frame(body)
            if not data and not self.closed:
                self._close(ErrorCode.CONNECTION_LOST, "connection closed by server")
        except SecureChatError as exc:
            self._close(exc.code, str(exc.args[0]))

    @property
    def closed(self) -> bool:
        return self.state is ClientState.CLOSED

    def next_event(self) -> ev.Event | None:
        return self._events.popleft() if self._events else None

    def data_to_send(self) -> bytes:
        """All bytes to write now: inner frames queued since the last call travel in one record."""
        if self._inner and self._records is not None:
            self._flush_records()
        out, self._out = bytes(self._out), bytearray()
        return out

    # --- commands ------------------------------------------------------------------------------------------

    def register(self, username: str, password: str, keys: UserKeys) -> int:
        """Register *username* with *keys*; answered by RegistrationSucceeded or RequestFailed."""
        name = normalize_username(username)
        rid = self._request(m.Register(
            rid=self._next_rid, username=name, password=password, signature_scheme=keys.scheme.value,
            encryption_key=keys.encryption_public, signing_key=keys.signing_public,
        ))
        self._keys, self._pending_name = keys, name
        return rid

    def login(self, username: str, password: str, keys: UserKeys) -> int:
        """Log in with the password and a signature over this channel's transcript (PROTOCOL.md 6.2)."""
        name = normalize_username(username)
        next_client_state(self.state, SEND, "login")  # check before doing anything else
        if lab_has(self.lab, LabVariant.DSA_NONCE_REUSE):  # LAB ONLY (PROTOCOL.md 16.1): one nonce for all
            keys = lab_weak_keys(keys)
        # LAB ONLY (PROTOCOL.md 16.1, unbound-login): the proof signs an empty transcript instead of this channel's
        transcript = b"" if lab_has(self.lab, LabVariant.UNBOUND_LOGIN) else self.transcript
        signature = sign(keys.scheme, keys.signing_key, login_proof_bytes(transcript, name),
                         random_bytes=self._random_bytes)
        rid = self._request(m.Login(rid=self._next_rid, username=name, password=password, signature=signature))
        self._keys, self._pending_name = keys, name
        return rid

    def logout(self) -> int:
        return self._request(m.Logout(rid=self._next_rid))

    def renew_certificate(self) -> int:
        """Ask for a new certificate for the same keys (PROTOCOL.md 6.6), signed with our certified key on this
        channel; answered by CertificateRenewed or RequestFailed. Allowed in the certificate's last 30 days."""
        next_client_state(self.state, SEND, "cert_renew")  # ONLINE only; check before signing
        assert self._keys is not None and self.certificate is not None and self.username is not None
        signed = renew_proof_bytes(self.transcript, self.username, self.certificate.serial)
        signature = sign(self._keys.scheme, self._keys.signing_key, signed, random_bytes=self._random_bytes)
        return self._request(m.CertRenew(rid=self._next_rid, signature=signature))

    def who(self) -> int:
        return self._request(m.Who(rid=self._next_rid))

    def status(self, username: str) -> int:
        return self._request(m.Status(rid=self._next_rid, username=username))  # normalised (or refused) by Status

    def open_chat(self, members: list[str] | tuple[str, ...], *, mode: str = ChatMode.SERVER_KEY,
                  suite: str = "aes-256-gcm") -> int:
        names = tuple(dict.fromkeys(normalize_username(n) for n in members if n))
        return self._request(m.ChatOpen(rid=self._next_rid, members=names, mode=mode, suite=suite))

    def invite(self, chat_id: str, username: str) -> int:
        self._chat_command(chat_id, "chat_invite")
        # PROTOCOL.md 3.2: ChatInvite normalises the name, or refuses it with LocalProtocolError (nothing sent)
        return self._request(m.ChatInvite(rid=self._next_rid, chat_id=chat_id, username=username))

    def answer_invitation(self, chat_id: str, accept: bool) -> int:
        """Accept or decline an invitation we received (PROTOCOL.md 7.11)."""
        next_client_state(self.state, SEND, "chat_answer")
        if chat_id not in self.invitations:
            raise LocalProtocolError(f"no open invitation to chat {chat_id}", ErrorCode.UNKNOWN_CHAT)
        del self.invitations[chat_id]
        return self._request(m.ChatAnswer(rid=self._next_rid, chat_id=chat_id, accept=accept))

    def _on_chat_invitation(self, msg: m.ChatInvitation) -> None:
        event = ev.InvitationReceived(chat_id=msg.chat_id, inviter=msg.inviter, mode=msg.mode, suite=msg.suite,
                                      expires_in=msg.expires_in, accepted=self.auto_accept_invitations)
        self.invitations[msg.chat_id] = event
        del_oldest = len(self.invitations) - MAX_OPEN_INVITATIONS
        for stale in list(self.invitations)[:max(0, del_oldest)]:
            del self.invitations[stale]  # the server caps them too; a lying server cannot grow this
        self._events.append(event)
        if self.auto_accept_invitations:
            self.answer_invitation(msg.chat_id, True)

    def leave(self, chat_id: str) -> int:
        chat = self._chat_command(chat_id, "chat_leave")
        rid = self._request(m.ChatLeave(rid=self._next_rid, chat_id=chat_id))
        chat.state = next_chat_state(chat.state, SEND, "chat_leave")
        chat.agreement = None  # no more round messages for a chat we leave
        self._leaving[rid] = chat_id  # an error names the request, not the chat: remember which one
        return rid

    def send_chat(self, chat_id: str, text: str) -> int:
        """Encrypt, sign and queue *text* for every other member of *chat_id* (PROTOCOL.md 7.3)."""
        next_client_state(self.state, SEND, "chat_send")
        assert self.book is not None
        if not modes.can_send(self.book, chat_id):
            raise LocalProtocolError("the members have not all confirmed this epoch's key yet", ErrorCode.STALE_EPOCH)
        message = self.book.seal(chat_id, text, self._next_rid)
        return self._request(message)

    def accept_key_change(self, username: str, fingerprint: str) -> None:
        """The user compared the OFFERED key's safety number out of band and accepts exactly the key whose
        identity fingerprint is *fingerprint* (PROTOCOL.md 7.9). Raises LocalProtocolError, and pins nothing,
        if no change of *username* is pending or the key the server presents has another fingerprint. The
        certificate is then fetched again: if the server now presents yet another key, that is a new change."""
        next_client_state(self.state, SEND, "get_certificates")
        if self.book is None:
            raise LocalProtocolError("log in first", ErrorCode.BAD_CERTIFICATE)
        name = normalize_username(username)
        self._events.append(self.book.accept_offered(name, fingerprint))
        self._fetch_certificates((name,))

    def pending_key_changes(self) -> dict[str, tuple[str, str]]:
        """Peers whose changed keys wait for a decision: name -> (pinned fingerprint, offered fingerprint)."""
        if self.book is None:
            return {}
        return {name: (self.pins.get(name, ""), entry[0].identity_fingerprint())
                for name, entry in sorted(self.book.offered.items())}

    def fetch_certificates(self, usernames: list[str] | tuple[str, ...]) -> int | None:
        """Ask for (and, on arrival, verify and pin) the certificates of *usernames*, e.g. to show fingerprints.
        Returns the request's rid, or None if every name was already being fetched."""
        next_client_state(self.state, SEND, "get_certificates")
        return self._fetch_certificates(tuple(dict.fromkeys(normalize_username(n) for n in usernames)))

    def safety_number(self, username: str, *, offered: bool = False) -> str:
        """The fingerprints both users read aloud to each other: ours and theirs, in a fixed order.

        With *offered*, *username*'s part is the key the server presents now but we have not accepted
        (PROTOCOL.md 7.9): that is the number to compare before ``accept_key_change``; the pinned one
        cannot match the peer's screen after a change, and it vouches for nothing new."""
        if self.certificate is None:
            raise LocalProtocolError(f"no verified certificate for {username} yet", ErrorCode.BAD_CERTIFICATE)
        if offered:
            entry = self.book.offered.get(username) if self.book is not None else None
            if entry is None:
                raise LocalProtocolError(f"no changed key of {username} is pending", ErrorCode.BAD_CERTIFICATE)
            theirs = entry[0].identity_fingerprint()
        elif username in self.pins:
            theirs = self.pins[username]
        else:
            raise LocalProtocolError(f"no verified certificate for {username} yet", ErrorCode.BAD_CERTIFICATE)
        pair = sorted([(self.certificate.username, self.certificate.identity_fingerprint()), (username, theirs)])
        return " / ".join(f"{name} {fp}" for name, fp in pair)

    @property
    def chats(self) -> dict[str, object]:
        return dict(self.book.chats) if self.book else {}

    # --- internals: sending -----------------------------------------------------------------------------------

    def _request(self, message: m.Message) -> int:
        """Check, encode, then commit: if any step fails nothing is sent and the state is unchanged. *message* was
        validated when it was built (a lone surrogate in a password is already a LocalProtocolError there)."""
        state = next_client_state(self.state, SEND, message.TYPE)
        data = encode_frame(message)
        self.state = state
        rid = self._next_rid
        self._next_rid += 1
        self._tracing("send", "inner", message.TYPE, data)
        self._inner.append(data)
        return rid

    def _chat_command(self, chat_id: str, kind: str):  # type: ignore[no-untyped-def]
        next_client_state(self.state, SEND, kind)
        chat = self.book.chats.get(chat_id) if self.book else None
        if chat is None:
            raise LocalProtocolError(f"no chat {chat_id}", ErrorCode.UNKNOWN_CHAT)
        next_chat_state(chat.state, SEND, kind)
        return chat

    def _send_clear(self, message: m.Message) -> None:
        data = encode_frame(message)
        self._tracing("send", "clear", message.TYPE, data)
        self._out += data

    def _send_inner(self, message: m.Message) -> None:
        data = encode_frame(message)
        self._tracing("send", "inner", message.TYPE, data)
        self._inner.append(data)

    def _flush_records(self) -> None:
        assert self._records is not None
        for plaintext in pack_records(self._inner):
            record = encode_record_frame(self._records.seal(plaintext))
            self._tracing("send", "record", "record", record)
            self._out += record
        self._inner = []

    def _tracing(self, direction: str, layer: str, kind: str, data: bytes) -> None:
        if self._trace is not None:
            self._trace(ev.TraceEntry(direction=direction, peer=None, layer=layer, type=kind, size=len(data),
                                      data=data))

    def _close(self, code: ErrorCode | str | None, message: str) -> None:
        self.state = ClientState.CLOSED
        self._events.append(ev.ConnectionClosed(code=None if code is None else error_code(code), message=message))

    # --- internals: receiving ---------------------------------------------------------------------------------

    def _receive_frame(self, body: bytes) -> None:
        if self._records is not None and (data := record_payload(body)) is not None:
            self._tracing("receive", "record", "record", body)  # the record hot path (codec.record_payload)
            self._receive_record(data)
            return
        message = decode_message(body)
        self._tracing("receive", "record" if message.TYPE == "record" else "clear", message.TYPE, body)
        if isinstance(message, m.Error) and self._records is None:
            # PROTOCOL.md 9.1: before the channel is up an error is always fatal (e.g. server_busy).
            self._close(message.code, message.message)
        elif isinstance(message, m.ServerHello):
            self._on_server_hello(message)
        elif isinstance(message, m.Record) and self._records is not None:
            self._receive_record(message.data)
        else:
            raise RemoteProtocolError(f"{message.TYPE} is not allowed here", ErrorCode.UNEXPECTED_MESSAGE)

    def _receive_record(self, sealed: bytes) -> None:
        assert self._records is not None
        for inner in split_frames(self._records.open(sealed)):
            self._tracing("receive", "inner", "", inner)
            self._receive_inner(decode_message(inner))
            if self.closed:
                return

    def _on_server_hello(self, hello: m.ServerHello) -> None:
        self.state = next_client_state(self.state, RECEIVE, "server_hello")
        assert self._hello is not None
        pinned = None if lab_has(self.lab, LabVariant.UNPINNED_CLIENT) else self._pinned  # LAB ONLY (PROTOCOL.md 16.1)
        if pinned is not None and not (
            constant_time_equal(pinned[0], hello.server_key) and pinned[1] == hello.server_scheme
        ):
            raise RemoteProtocolError("server key differs from the pinned key", ErrorCode.HANDSHAKE_FAILED)
        scheme = SignatureScheme(pinned[1] if pinned else hello.server_scheme)
        try:
            server_key = load_public_key(hello.server_key)
        except SecureChatError:
            raise RemoteProtocolError("server key unreadable", ErrorCode.HANDSHAKE_FAILED) from None
        hybrid = self._hello.key_exchange == HYBRID_KEM
        if hybrid != (hello.kem_ciphertext is not None):
            raise RemoteProtocolError("server did not answer the key exchange we offered", ErrorCode.HANDSHAKE_FAILED)
        self.transcript = transcript_hash(
            version=hello.version, key_exchange=self._hello.key_exchange, client_random=self._hello.random,
            client_share=self._hello.key_share, server_random=hello.random, server_share=hello.key_share,
            server_key=hello.server_key, server_scheme=scheme.value,
            kem_key=self._hello.kem_key or b"", kem_ciphertext=hello.kem_ciphertext or b"",
        )
        try:
            verify(scheme, server_key, server_signed_bytes(self.transcript), hello.signature)
        except SecureChatError:
            # docs/THREATS.md 27-28: a substituted or replayed server_hello fails here; no credential was sent.
            raise RemoteProtocolError("server signature over the handshake failed", ErrorCode.HANDSHAKE_FAILED) from None
        secret = shared_secret(self._ephemeral, hello.key_share)
        if hello.kem_ciphertext is not None:
            secret = handshake_secret(secret, decapsulate(self._kem_private, hello.kem_ciphertext,
                                                          context=KEM_CONTEXT))
            self._kem_private = None
        keys = derive_channel_keys(secret, self.transcript)
        if self._keylog is not None:  # PROTOCOL.md 16.3: only when the user asked for a key log
            self._keylog(self._hello.random, keys.client_to_server, keys.server_to_client)
        self._records = RecordLayer(send_key=keys.client_to_server, receive_key=keys.server_to_client)
        self._ephemeral = None  # forward secrecy: the ephemeral private key is no longer needed
        self._decoder.max_frame_bytes = MAX_FRAME_BYTES
        self.server_key, self.server_scheme = server_key, scheme
        self._events.append(ev.HandshakeCompleted(
            server_fingerprint=fingerprint(hello.server_key), server_key=hello.server_key,
            server_scheme=scheme.value, first_use=self._pinned is None, key_exchange=self._hello.key_exchange,
        ))

    def _receive_inner(self, message: m.Message) -> None:
        if message.TYPE in m.CLEAR_TYPES - {"error"} or message.TYPE in m.CLIENT_TO_SERVER:
            raise RemoteProtocolError(f"{message.TYPE} cannot travel to a client", ErrorCode.UNEXPECTED_MESSAGE)
        if isinstance(message, m.Error) and message.code in _FATAL_CODES:
            self._close(message.code, message.message)
            return
        self.state = next_client_state(self.state, RECEIVE, message.TYPE)
        if self.state is ClientState.CLOSING and message.TYPE != "bye":
            return  # PROTOCOL.md 8.1: pushes in flight after logout are ignored
        handler = _HANDLERS[message.TYPE]
        handler(self, message)

    def _on_error(self, msg: m.Error) -> None:
        if msg.rid is not None and msg.rid in self._fetch_requests:
            # the next message from that sender asks again; the refusal is still reported below
            self._fetching.difference_update(self._fetch_requests.pop(msg.rid))
        chat_id = self._leaving.pop(msg.rid, None) if msg.rid is not None else None
        chat = self.book.chats.get(chat_id) if self.book and chat_id else None
        if chat is not None and chat.state is ChatState.LEAVING:
            chat.state = next_chat_state(chat.state, RECEIVE, "error")
        self._events.append(ev.RequestFailed(rid=msg.rid, code=error_code(msg.code), message=msg.message, ref=msg.ref))

    def _on_register_challenge(self, msg: m.RegisterChallenge) -> None:
        assert self._keys is not None
        try:
            nonce = unwrap_key(self._keys.encryption_key, msg.wrapped_nonce, expected_length=32)
        except SecureChatError as exc:
            self._close(exc.code, "could not open the registration challenge")
            return
        signed = register_proof_bytes(self.transcript, self._pending_name, self._keys.scheme.value,
                                      self._keys.encryption_public, self._keys.signing_public, nonce)
        signature = sign(self._keys.scheme, self._keys.signing_key, signed, random_bytes=self._random_bytes)
        self.state = next_client_state(self.state, SEND, "register_proof")
        self._send_inner(m.RegisterProof(rid=msg.rid, nonce=nonce, signature=signature))

    def _on_cert_renewed(self, msg: m.CertRenewed) -> None:
        """PROTOCOL.md 6.6: the same keys, our name, the CA's signature, and no earlier expiry than before."""
        self._check_own_certificate(msg.certificate)
        if self.certificate is not None and msg.certificate.not_after < self.certificate.not_after:
            raise RemoteProtocolError("the renewed certificate expires earlier", ErrorCode.BAD_CERTIFICATE)
        self.certificate = msg.certificate
        self._events.append(ev.CertificateRenewed(rid=msg.rid, certificate=msg.certificate))

    def _check_own_certificate(self, cert: Certificate) -> None:
        assert self._keys is not None and self.server_scheme is not None
        verify_certificate(cert, ca_public_key=self.server_key, ca_scheme=self.server_scheme, now=self._now,
                           username=self._pending_name)
        if cert.encryption_key != self._keys.encryption_public or cert.signing_key != self._keys.signing_public:
            raise RemoteProtocolError("certificate does not carry our keys", ErrorCode.BAD_CERTIFICATE)

    def _on_registered(self, msg: m.Registered) -> None:
        self._check_own_certificate(msg.certificate)
        self._events.append(ev.RegistrationSucceeded(rid=msg.rid, username=msg.certificate.username,
                                                     certificate=msg.certificate))

    def _on_login_ok(self, msg: m.LoginOk) -> None:
        assert self._keys is not None and self.server_scheme is not None
        if msg.username != self._pending_name:
            # PROTOCOL.md 6.2: the server cannot log us in as somebody else (the certificate is checked too).
            raise RemoteProtocolError("login_ok names another user than the one logging in", ErrorCode.BAD_CERTIFICATE)
        self._check_own_certificate(msg.certificate)
        self.username, self.certificate = msg.username, msg.certificate
        self.book = ChatBook(username=msg.username, keys=self._keys, server_key=self.server_key,
                             server_scheme=self.server_scheme, random_bytes=self._random_bytes, pins=self.pins,
                             verify_key_commitment=self.verify_key_commitment)
        self._events.append(ev.LoggedIn(rid=msg.rid, username=msg.username, online=msg.online,
                                        certificate=msg.certificate))

    def _on_chat_message(self, msg: m.ChatMessage) -> None:
        assert self.book is not None
        if msg.sender == self.username:
            # our own message reflected back (we never receive our own): refused before any certificate fetch
            self._events.append(ev.MessageRejected(chat_id=msg.chat_id, sender=msg.sender, code=ErrorCode.NOT_MEMBER,
                                                   reason="a message under our own name"))
            return
        chat = self.book.chats.get(msg.chat_id)
        member = chat is not None and msg.sender in chat.members
        if member and msg.sender in self.book.refused:
            self._refuse(msg)  # PROTOCOL.md 7.9: its changed key is not accepted: no fetch, no hold
            return
        if member and self.book.missing_certificates(msg):
            # PROTOCOL.md 7.4: fetch the sender's certificate once, hold its messages until it arrives.
            self._fetch_certificates((msg.sender,))
            self.book.hold(msg)
            return
        # not a member of the chat's current epoch (or no such chat): judged now, nothing fetched or held
        self._events.extend(self.book.receive(msg))

    def _on_certificates(self, msg: m.Certificates) -> None:
        assert self.book is not None
        asked = self._fetch_requests.pop(msg.rid, ()) if msg.rid is not None else ()
        self._fetching.difference_update(asked)
        # PROTOCOL.md 6.3: only an answer to our own request, and only for the names asked, is looked at; a
        # server cannot push certificates nobody asked for into the pin store (which the driver persists).
        certificates = tuple(c for c in msg.certificates if c.username in asked)
        unknown = tuple(n for n in msg.unknown if n in asked)
        self._events.extend(self.book.add_certificates(certificates, self._now))
        for held, snapshot in self.book.release(unknown + tuple(c.username for c in certificates)):
            if held.sender in self.book.refused:
                self._refuse(held)
            else:
                self._events.extend(self.book.receive(held, snapshot))
        self._apply(modes.advance_all(self.book, self._now))

    def _refuse(self, msg: m.ChatMessage) -> None:
        """Drop a message whose sender's changed key we have not accepted, and tell the sender once per chat and
        epoch (PROTOCOL.md 7.9, refusal notices), so it learns why its messages go unread."""
        self._events.append(ev.MessageRejected(
            chat_id=msg.chat_id, sender=msg.sender, code=ErrorCode.KEY_CHANGED,
            reason=f"{msg.sender}'s keys changed and you have not accepted the new ones (/fingerprint)"))
        notice = (msg.chat_id, msg.epoch, msg.sender)
        if notice in self._refusals_sent or len(self._refusals_sent) >= MAX_REFUSAL_NOTICES:
            return
        self._refusals_sent.add(notice)
        self._send_inner(m.ChatRefused(chat_id=msg.chat_id, epoch=msg.epoch, sender=msg.sender, seq=msg.seq,
                                       code=ErrorCode.KEY_CHANGED.value))

    def _on_chat_epoch(self, msg: m.ChatEpoch) -> None:
        assert self.book is not None
        step = modes.install_epoch(self.book, msg, self._now)
        if self.book.chats.get(msg.chat_id) is not None and msg.epoch == self.book.chats[msg.chat_id].epoch:
            self._fetch_certificates(self.book.uncertified(msg.members))
        self._apply(step)

    def _on_round(self, msg: m.ShareCommitted | m.KeyShareDelivery | m.KeyConfirmed) -> None:
        assert self.book is not None
        self._apply(modes.on_round(self.book, msg, self._now))

    def _on_round_timeout(self, msg: m.RoundTimeout) -> None:
        """PROTOCOL.md 7.6: reported only for a chat we are in, at its current epoch (anything else is stale)."""
        assert self.book is not None
        chat = self.book.chats.get(msg.chat_id)
        if chat is not None and chat.epoch == msg.epoch:
            self._events.append(ev.RoundTimedOut(chat_id=msg.chat_id, epoch=msg.epoch, missing=msg.missing))

    def _apply(self, step: modes.Step) -> None:
        """Deliver a keyless-mode step: its events to the application, its round messages to the server."""
        self._events.extend(step.events)
        for message in step.send:
            self._send_inner(message)

    def _on_chat_key(self, msg: m.ChatKey) -> None:
        assert self.book is not None
        event = self.book.install_key(msg)
        self._events.append(event)
        missing = self.book.uncertified(msg.members) if isinstance(event, ev.ChatKeyed) else ()
        # PROTOCOL.md 7.4: fetch members' certificates now, so their first messages need not wait.
        self._fetch_certificates(missing)

    def _fetch_certificates(self, names: tuple[str, ...]) -> int | None:
        """Ask for the certificates of *names* not already asked for; a refused fetch is retried on the next
        message from that sender (its names are forgotten in _on_error)."""
        wanted = tuple(n for n in names if n not in self._fetching)
        if not wanted:
            return None
        while len(self._fetch_requests) >= MAX_FETCHES_IN_FLIGHT:
            # bounded memory: a server that never answers forgets our oldest request (its answer would now be
            # ignored, and the next message from one of its names asks again)
            self._fetching.difference_update(self._fetch_requests.pop(next(iter(self._fetch_requests))))
        rid = self._next_rid
        self._next_rid += 1
        self._fetching.update(wanted)
        self._fetch_requests[rid] = wanted
        self._send_inner(m.GetCertificates(rid=rid, usernames=wanted))
        return rid

    def _on_chat_left(self, msg: m.ChatLeft) -> None:
        assert self.book is not None
        if msg.rid is not None:
            self._leaving.pop(msg.rid, None)
        chat = self.book.chats.get(msg.chat_id)
        if chat is not None:
            chat.state = next_chat_state(chat.state, RECEIVE, "chat_left")
            chat.key = b""  # PROTOCOL.md 7.5: forget the key of a chat we left
        self._events.append(ev.ChatLeft(rid=msg.rid, chat_id=msg.chat_id))

    def _on_bye(self, msg: m.Bye) -> None:
        self._events.append(ev.LoggedOut(rid=msg.rid))
        self._close(None, "logged out")


def lab_weak_keys(keys: UserKeys) -> UserKeys:
    """LAB ONLY (PROTOCOL.md 16.1, dsa-nonce-reuse): the same keys, signing with one repeated DSA nonce."""
    from dataclasses import replace

    from ..crypto.lab_weak import repeated_nonce_dsa_key
    if keys.scheme is not SignatureScheme.DSA_SHA256:
        raise LocalProtocolError("lab variant dsa-nonce-reuse needs a dsa-2048-sha256 signing key",
                                 ErrorCode.BAD_FIELD)
    return replace(keys, signing_key=repeated_nonce_dsa_key(keys.signing_key))  # type: ignore[arg-type]


# PROTOCOL.md 9.1 (errors.FATAL_CODES): inside the channel only these end the connection; server_busy there is a
# reply to retry (a clear server_busy before the handshake is always fatal, see _receive_frame).
_FATAL_CODES = FATAL_CODES

MAX_REFUSAL_NOTICES = 256  # PROTOCOL.md 7.9: one per (chat, epoch, sender) and session, at most this many
MAX_OPEN_INVITATIONS = 64  # PROTOCOL.md 7.11: the server keeps at most 32 per user; more is a lying server

# Each handler takes its own message class; the table is keyed by that class's TYPE, hence Any.
_HANDLERS: dict[str, Callable[[ClientProtocol, Any], None]] = {
    "error": ClientProtocol._on_error,
    "register_challenge": ClientProtocol._on_register_challenge,
    "registered": ClientProtocol._on_registered,
    "login_ok": ClientProtocol._on_login_ok,
    "bye": ClientProtocol._on_bye,
    "presence": lambda self, msg: self._events.append(ev.PresenceChanged(username=msg.username, online=msg.online)),
    "who_result": lambda self, msg: self._events.append(ev.WhoListed(rid=msg.rid, online=msg.online)),
    "status_result": lambda self, msg: self._events.append(
        ev.StatusReported(rid=msg.rid, username=msg.username, online=msg.online)),
    "certificates": ClientProtocol._on_certificates,
    "chat_opened": lambda self, msg: self._events.append(ev.ChatOpened(
        rid=msg.rid, chat_id=msg.chat_id, members=msg.members, offline=msg.offline, unknown=msg.unknown,
        declined=msg.declined, pending=msg.pending)),
    "chat_invitation": ClientProtocol._on_chat_invitation,
    "chat_answered": lambda self, msg: self._events.append(
        ev.InvitationAnswered(rid=msg.rid, chat_id=msg.chat_id, accepted=msg.accepted)),
    "chat_refusal": lambda self, msg: self._events.append(ev.MessageRefused(
        chat_id=msg.chat_id, epoch=msg.epoch, recipient=msg.recipient, seq=msg.seq, code=msg.code)),
    "invitation_closed": lambda self, msg: self._events.append(
        ev.InvitationClosed(chat_id=msg.chat_id, username=msg.username, outcome=msg.outcome)),
    "chat_invited": lambda self, msg: self._events.append(
        ev.ChatInvited(rid=msg.rid, chat_id=msg.chat_id, username=msg.username)),
    "chat_left": ClientProtocol._on_chat_left,
    "chat_key": ClientProtocol._on_chat_key,
    "chat_message": ClientProtocol._on_chat_message,
    "chat_epoch": ClientProtocol._on_chat_epoch,
    "share_committed": ClientProtocol._on_round,
    "key_share_delivery": ClientProtocol._on_round,
    "key_confirmed": ClientProtocol._on_round,
    "round_timeout": ClientProtocol._on_round_timeout,
    "cert_renewed": ClientProtocol._on_cert_renewed,
}
