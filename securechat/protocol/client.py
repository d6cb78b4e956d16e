"""ClientProtocol: the client side of securechat as a sans-I/O object (docs/STYLE.md section 1).

Owns: the client's public API (commands are method calls, received bytes go in through ``receive_data``, events
come out of ``next_event`` and bytes out of ``data_to_send``) and the dispatch of everything received to the part
that handles it. The parts, each in its own module with a narrow interface:

* ``client_link.ClientLink``: the connection's state, frames, records, request ids and events queue;
* ``client_handshake.ClientHandshake``: the handshake and the channel keys (PROTOCOL.md 4);
* ``client_account.Account``: registration, login and certificate renewal (PROTOCOL.md 6);
* ``client_certificates.CertificateFetches``: peers' certificate requests in flight (PROTOCOL.md 6.3, 7.4);
* ``client_chats.ClientChats``: the chat commands and pushes, over the ``ChatBook`` (PROTOCOL.md 7);
* ``client_lab``: the client's lab variants (PROTOCOL.md 16.1).

Must not: touch sockets, threads, clocks (``now`` is passed in) or the file system; it is not thread-safe (the
driver locks).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..crypto.aead import CipherSuite
from ..crypto.certificates import Certificate
from ..crypto.encoding import RandomBytes
from ..crypto.key_types import VerifyKey
from ..crypto.signatures import SignatureScheme
from ..errors import FATAL_CODES, ErrorCode, LocalProtocolError, RemoteProtocolError, SecureChatError, error_code
from . import events as ev
from . import messages as m
from .chats import ChatBook, ClientChat
from .client_account import Account
from .client_certificates import MAX_FETCHES_IN_FLIGHT, CertificateFetches
from .client_chats import MAX_OPEN_INVITATIONS, MAX_REFUSAL_NOTICES, ClientChats
from .client_handshake import ClientHandshake, KeyLog
from .client_lab import check_lab, checks_pin
from .client_link import ClientLink, Tracer, local_username
from .codec import decode_message, record_payload
from .identity import UserKeys
from .lab import LabMode
from .states import ClientState
from .vocabulary import ChatMode, KeyExchange

# PROTOCOL.md 9.1 (errors.FATAL_CODES): inside the channel only these end the connection; server_busy there is a
# reply to retry (a clear server_busy before the handshake is always fatal, see _receive_frame).
_FATAL_CODES = FATAL_CODES

__all__ = ["ClientProtocol", "MAX_FETCHES_IN_FLIGHT", "MAX_OPEN_INVITATIONS", "MAX_REFUSAL_NOTICES", "Tracer"]


class ClientProtocol:
    """One client connection. Not thread-safe.

    Args:
        server_key: the server's pinned SubjectPublicKeyInfo DER and scheme, or None to trust on first use
            (the HandshakeCompleted event then has ``first_use=True`` and the driver should pin it).
        random_bytes: the random source (os.urandom; a seeded one in simulations).
        trace: called with every frame sent and received, at every layer.
        pins: peers' identity fingerprints (PROTOCOL.md 7.9), kept up to date here; the driver persists them.
        key_exchange: ``KeyExchange.X25519`` or ``KeyExchange.X25519_MLKEM768`` (PROTOCOL.md 4.4).
        lab: a client ``LabMode`` (PROTOCOL.md 16); None, the default, weakens nothing.
        keylog: called once with (client_random, k_c2s, k_s2c), only when the user asked for a key log (16.3).
        verify_key_commitment: False only with the no-key-commitment lab variant (PROTOCOL.md 7.7, 16.1).
        auto_accept_invitations: accept every invitation (PROTOCOL.md 7.11); interactive clients ask instead.
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
        keylog: KeyLog | None = None,
        verify_key_commitment: bool = True,
        auto_accept_invitations: bool = True,
    ) -> None:
        # LAB ONLY (PROTOCOL.md 16.1): the no-key-commitment lab variant switches the check off
        self.verify_key_commitment = check_lab(lab, verify_key_commitment=verify_key_commitment)
        self.lab = lab  # PROTOCOL.md 16: None (the default) means no weakening at all
        self.pins = pins if pins is not None else {}  # PROTOCOL.md 7.9: peers' identity fingerprints
        self._random_bytes = random_bytes
        self.link = ClientLink(trace=trace)
        self.handshake = ClientHandshake(key_exchange=key_exchange, pinned=server_key, random_bytes=random_bytes,
                                         keylog=keylog, check_pin=checks_pin(lab))
        self.account = Account(self.link, self.handshake, random_bytes=random_bytes, lab=lab)
        self.fetches = CertificateFetches(self.link)
        self.messaging = ClientChats(self.link, self.fetches, auto_accept_invitations=auto_accept_invitations)
        # Each handler takes its own message class; the table is keyed by that class's TYPE, hence Any.
        self._handlers: dict[str, Callable[[Any], None]] = {
            "error": self._on_error,
            "bye": self._on_bye,
            "login_ok": self._on_login_ok,
            "register_challenge": self.account.on_register_challenge,
            "registered": self.account.on_registered,
            "cert_renewed": self.account.on_cert_renewed,
            "certificates": self.messaging.on_certificates,
            "chat_invitation": self.messaging.on_chat_invitation,
            "chat_left": self.messaging.on_chat_left,
            "chat_key": self.messaging.on_chat_key,
            "chat_message": self.messaging.on_chat_message,
            "chat_epoch": self.messaging.on_chat_epoch,
            "share_committed": self.messaging.on_round,
            "key_share_delivery": self.messaging.on_round,
            "key_confirmed": self.messaging.on_round,
            "round_timeout": self.messaging.on_round_timeout,
            **{kind: self._notice for kind in _NOTICES},
        }

    # --- driver API -------------------------------------------------------------------------------------------

    def connect(self) -> None:
        """Queue the client_hello that opens the handshake (PROTOCOL.md 4.1)."""
        self.link.sent("client_hello")
        self.link.send_clear(self.handshake.start())

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed bytes from the server; ``b""`` means end of stream. Never raises for what the peer sent:
        a fatal problem becomes a ConnectionClosed event and state CLOSED."""
        if self.closed:
            return
        self.link.now = now
        try:
            self.link.decoder.feed(data)
            while not self.closed and (body := self.link.decoder.next_frame()) is not None:
                self._receive_frame(body)
            if not data and not self.closed:
                self.link.close(ErrorCode.CONNECTION_LOST, "connection closed by server")
        except SecureChatError as exc:
            self.link.close(exc.code, str(exc.args[0]))

    @property
    def closed(self) -> bool:
        return self.link.closed

    def next_event(self) -> ev.Event | None:
        return self.link.events.popleft() if self.link.events else None

    def data_to_send(self) -> bytes:
        """All bytes to write now: inner frames queued since the last call travel in one record."""
        return self.link.data_to_send()

    # --- commands ------------------------------------------------------------------------------------------

    def register(self, username: str, password: str, keys: UserKeys) -> int:
        """Register *username* with *keys*; answered by RegistrationSucceeded or RequestFailed."""
        return self.account.register(username, password, keys)

    def login(self, username: str, password: str, keys: UserKeys) -> int:
        """Log in with the password and a signature over this channel's transcript (PROTOCOL.md 6.2)."""
        return self.account.login(username, password, keys)

    def logout(self) -> int:
        return self.link.request(m.Logout(rid=self.link.next_rid))

    def renew_certificate(self) -> int:
        """Ask for a new certificate for the same keys (PROTOCOL.md 6.6), signed with our certified key on this
        channel; answered by CertificateRenewed or RequestFailed. Allowed in the certificate's last 30 days."""
        return self.account.renew_certificate()

    def who(self) -> int:
        return self.link.request(m.Who(rid=self.link.next_rid))

    def status(self, username: str) -> int:
        return self.link.request(m.Status(rid=self.link.next_rid, username=username))  # normalised (or refused) by Status

    def open_chat(self, members: list[str] | tuple[str, ...], *, mode: ChatMode | str = ChatMode.SERVER_KEY,
                  suite: CipherSuite | str = CipherSuite.AES_256_GCM) -> int:
        return self.messaging.open_chat(members, mode=mode, suite=suite)

    def invite(self, chat_id: str, username: str) -> int:
        return self.messaging.invite(chat_id, username)

    def answer_invitation(self, chat_id: str, accept: bool) -> int:
        """Accept or decline an invitation we received (PROTOCOL.md 7.11)."""
        return self.messaging.answer_invitation(chat_id, accept)

    def leave(self, chat_id: str) -> int:
        return self.messaging.leave(chat_id)

    def send_chat(self, chat_id: str, text: str) -> int:
        """Encrypt, sign and queue *text* for every other member of *chat_id* (PROTOCOL.md 7.3)."""
        return self.messaging.send_chat(chat_id, text)

    # --- peers' keys (PROTOCOL.md 7.9) ------------------------------------------------------------------------

    def accept_key_change(self, username: str, fingerprint: str) -> None:
        """The user compared the OFFERED key's safety number out of band and accepts exactly the key whose
        identity fingerprint is *fingerprint* (PROTOCOL.md 7.9). Raises LocalProtocolError, and pins nothing,
        if no change of *username* is pending or the key the server presents has another fingerprint. The
        certificate is then fetched again: if the server now presents yet another key, that is a new change."""
        self.link.check("get_certificates")
        if self.book is None:
            raise LocalProtocolError("log in first", ErrorCode.BAD_CERTIFICATE)
        name = local_username(username)
        self.link.emit(self.book.accept_offered(name, fingerprint))
        self.fetches.fetch((name,))

    def pending_key_changes(self) -> dict[str, tuple[str, str]]:
        """Peers whose changed keys wait for a decision: name -> (pinned fingerprint, offered fingerprint)."""
        if self.book is None:
            return {}
        return {name: (self.pins.get(name, ""), entry[0].identity_fingerprint())
                for name, entry in sorted(self.book.offered.items())}

    def fetch_certificates(self, usernames: list[str] | tuple[str, ...]) -> int | None:
        """Ask for (and, on arrival, verify and pin) the certificates of *usernames*, e.g. to show fingerprints.
        Returns the request's rid, or None if every name was already being fetched."""
        self.link.check("get_certificates")
        return self.fetches.fetch(tuple(dict.fromkeys(local_username(n) for n in usernames)))

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

    # --- what the parts know, read-only ------------------------------------------------------------------------

    @property
    def state(self) -> ClientState:
        return self.link.state

    @property
    def key_exchange(self) -> KeyExchange:
        return self.handshake.key_exchange

    @property
    def transcript(self) -> bytes:
        return self.handshake.transcript

    @property
    def server_key(self) -> VerifyKey | None:
        return self.handshake.server_key

    @property
    def server_scheme(self) -> SignatureScheme | None:
        return self.handshake.server_scheme

    @property
    def username(self) -> str | None:
        return self.account.username

    @property
    def certificate(self) -> Certificate | None:
        return self.account.certificate

    @property
    def book(self) -> ChatBook | None:
        return self.messaging.book

    @property
    def chats(self) -> dict[str, ClientChat]:
        return dict(self.book.chats) if self.book else {}

    @property
    def invitations(self) -> dict[str, ev.InvitationReceived]:
        """Open invitations to us, by chat id (PROTOCOL.md 7.11)."""
        return self.messaging.invitations

    @property
    def auto_accept_invitations(self) -> bool:
        return self.messaging.auto_accept_invitations

    @auto_accept_invitations.setter
    def auto_accept_invitations(self, value: bool) -> None:
        self.messaging.auto_accept_invitations = value

    # --- receiving ---------------------------------------------------------------------------------------------

    def _receive_frame(self, body: bytes) -> None:
        if self.link.records is not None and (data := record_payload(body)) is not None:
            self.link.traced("receive", "record", "record", body)  # the record hot path (codec.record_payload)
            self._receive_record(data)
            return
        message = decode_message(body)
        self.link.traced("receive", "record" if message.TYPE == "record" else "clear", message.TYPE, body)
        if isinstance(message, m.Error) and self.link.records is None:
            # PROTOCOL.md 9.1: before the channel is up an error is always fatal (e.g. server_busy).
            self.link.close(message.code, message.message)
        elif isinstance(message, m.ServerHello):
            self.link.received("server_hello")
            records, completed = self.handshake.finish(message)
            self.link.open_channel(records)
            self.link.emit(completed)
        elif isinstance(message, m.Record) and self.link.records is not None:
            self._receive_record(message.data)
        else:
            raise RemoteProtocolError(f"{message.TYPE} is not allowed here", ErrorCode.UNEXPECTED_MESSAGE)

    def _receive_record(self, sealed: bytes) -> None:
        for inner in self.link.open_record(sealed):
            self.link.traced("receive", "inner", "", inner)
            self._receive_inner(decode_message(inner))
            if self.closed:
                return

    def _receive_inner(self, message: m.Message) -> None:
        if message.TYPE in m.CLEAR_TYPES - {"error"} or message.TYPE in m.CLIENT_TO_SERVER:
            raise RemoteProtocolError(f"{message.TYPE} cannot travel to a client", ErrorCode.UNEXPECTED_MESSAGE)
        if isinstance(message, m.Error) and message.code in _FATAL_CODES:
            self.link.close(message.code, message.message)
            return
        self.link.received(message.TYPE)
        if self.link.state is ClientState.CLOSING and message.TYPE != "bye":
            return  # PROTOCOL.md 8.1: pushes in flight after logout are ignored
        self._handlers[message.TYPE](message)

    def _on_error(self, msg: m.Error) -> None:
        self.fetches.refused(msg.rid)  # the next message from those senders asks again; reported below anyway
        self.messaging.request_failed(msg.rid)
        self.link.emit(ev.RequestFailed(rid=msg.rid, code=error_code(msg.code), message=msg.message, ref=msg.ref))

    def _on_login_ok(self, msg: m.LoginOk) -> None:
        keys = self.account.on_login_ok(msg)
        assert self.handshake.server_key is not None and self.handshake.server_scheme is not None
        self.messaging.start(ChatBook(
            username=msg.username, keys=keys, server_key=self.handshake.server_key,
            server_scheme=self.handshake.server_scheme, random_bytes=self._random_bytes, pins=self.pins,
            verify_key_commitment=self.verify_key_commitment))
        self.link.emit(ev.LoggedIn(rid=msg.rid, username=msg.username, online=msg.online,
                                   certificate=msg.certificate))

    def _on_bye(self, msg: m.Bye) -> None:
        self.link.emit(ev.LoggedOut(rid=msg.rid))
        self.link.close(None, "logged out")

    def _notice(self, msg: m.Message) -> None:
        """A push that only informs (PROTOCOL.md 8.1): it becomes an event and changes nothing else."""
        self.link.emit(_NOTICES[msg.TYPE](msg))


# Each builder takes its own message class; the table is keyed by that class's TYPE, hence Any.
_NOTICES: dict[str, Callable[[Any], ev.Event]] = {
    "presence": lambda msg: ev.PresenceChanged(username=msg.username, online=msg.online),
    "who_result": lambda msg: ev.WhoListed(rid=msg.rid, online=msg.online),
    "status_result": lambda msg: ev.StatusReported(rid=msg.rid, username=msg.username, online=msg.online),
    "chat_opened": lambda msg: ev.ChatOpened(
        rid=msg.rid, chat_id=msg.chat_id, members=msg.members, offline=msg.offline, unknown=msg.unknown,
        declined=msg.declined, pending=msg.pending),
    "chat_answered": lambda msg: ev.InvitationAnswered(rid=msg.rid, chat_id=msg.chat_id, accepted=msg.accepted),
    "chat_refusal": lambda msg: ev.MessageRefused(
        chat_id=msg.chat_id, epoch=msg.epoch, recipient=msg.recipient, seq=msg.seq, code=msg.code),
    "invitation_closed": lambda msg: ev.InvitationClosed(
        chat_id=msg.chat_id, username=msg.username, outcome=msg.outcome),
    "chat_invited": lambda msg: ev.ChatInvited(rid=msg.rid, chat_id=msg.chat_id, username=msg.username),
}
