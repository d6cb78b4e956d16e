"""ServerProtocol: accounts, presence, chats, key distribution and relay as one sans-I/O object.

Owns: the server's view of every connection (``PeerState`` machine, channel, outbox), who is online, every
chat and its epoch, and the admission rules of PROTOCOL.md 10. The driver feeds bytes with ``receive_data``,
runs the slow ``Job``s it gets from ``next_job`` wherever it likes and returns them with ``job_done``, writes
what ``data_to_send`` returns and closes what ``peers_to_close`` names. Must not: touch sockets, threads,
clocks or files (the registry is injected); it is not thread-safe: one driver thread owns it.

It is the connection half of h2's connection/stream split: this class owns the connections (handshake,
records, admission, deadlines, closing) and the directory requests, and hands the rest to collaborators with
narrow interfaces, none of which reaches into another: ``Outbox`` (server_outbox.py: everything sent, the
events), ``Presence`` (server_presence.py: who is online), ``Accounts`` (server_accounts.py: registration,
login, logout) and ``ChatRelay`` (server_relay.py: the chats, their epochs and keys, the relay, and through
``KeylessModes`` the contributory rounds and mailboxes).
"""

from __future__ import annotations

import os
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..crypto.encoding import RandomBytes
from ..crypto.exchange import generate_ephemeral, shared_secret
from ..crypto.kem import encapsulate
from ..crypto.signatures import sign
from ..errors import CONNECTION_FATAL_CODES, ErrorCode, RemoteProtocolError, SecureChatError
from . import events as ev
from . import messages as m
from .channel import (
    HYBRID_KEM, KEM_CONTEXT, RecordLayer, derive_channel_keys, handshake_secret, server_signed_bytes,
    transcript_hash,
)
from .codec import MAX_FRAME_BYTES, decode_message, message_from_dict, parse_json, peek, record_data, split_frames
from .jobs import ChatKeyJob, Job, LoginJob, RegisterJob, RenewJob, ServerKey
from .lab import lab_replay_window
from .limits import ServerConfig
from . import admission
from .registry import Registry
from .server_accounts import Accounts
from .server_chats import ChatDirectory
from .server_invitations import Invitations
from .server_outbox import Outbox, Peer, Tracer
from .server_presence import Presence
from .server_relay import ChatRelay
from .states import PeerState, next_peer_state

__all__ = ["FATAL_CODES", "Peer", "ServerProtocol", "Tracer"]

# PROTOCOL.md 9.1: after these the channel cannot be trusted or the peer is not worth serving: close.
FATAL_CODES = CONNECTION_FATAL_CODES


# PROTOCOL.md 10: a record plaintext of 256 KiB holds about 400 chat messages; 1024 frames is generous.
MAX_INNER_FRAMES_PER_RECORD = 1024
# PROTOCOL.md 10: before login a connection needs a few KiB per record (register carries two public keys); a
# larger record is refused from its length prefix, before any decryption (frame_too_large, fatal).
MAX_PRELOGIN_FRAME_BYTES = 64 * 1024
# PROTOCOL.md 9.2: bad frames are answered and the connection kept, but not without end (docs/THREATS.md 12, 15).
MAX_ERRORS_PER_CONNECTION = 64


class ServerProtocol:
    """The whole server as a state machine over many peers. Not thread-safe: one driver thread owns it."""

    def __init__(
        self,
        *,
        server_key: ServerKey,
        registry: Registry,
        config: ServerConfig = ServerConfig(),
        random_bytes: RandomBytes = os.urandom,
        trace: Tracer | None = None,
        relay_events: bool = True,
    ) -> None:
        self._config = config
        self.registry = registry
        self.server_key = server_key
        self._random_bytes = random_bytes
        self._trace = trace
        self.peers: dict[int, Peer] = {}
        self._jobs: deque[Job] = deque()
        self._to_close: list[int] = []
        self._now = 0.0
        self._outbox = outbox = Outbox(self.peers, trace, after_error=self._count_refusal)
        self.presence = presence = Presence(outbox)
        self.relay = ChatRelay(outbox=outbox, presence=presence, registry=registry, config=config,
                               server_key=server_key, random_bytes=random_bytes, submit=self._jobs.append,
                               now=lambda: self._now, relay_events=relay_events)
        self.accounts = Accounts(outbox=outbox, presence=presence, registry=registry, config=config,
                                 server_key=server_key, random_bytes=random_bytes, submit=self._jobs.append,
                                 now=lambda: self._now, on_online=self.relay.member_online,
                                 drop=lambda p, reason: self._drop(p, reason, close=True))
        self._dispatch = self._handlers()

    # --- the parts' state, read by drivers, tests and notebooks ---------------------------------------------------

    @property
    def config(self) -> ServerConfig:
        return self._config

    @config.setter
    def config(self, config: ServerConfig) -> None:
        """New limits take effect at once, in every part (an operator's change, or a test's)."""
        self._config = self.accounts.config = self.relay.config = self.relay.modes.config = config
        self.relay.invitations.config = config

    @property
    def now(self) -> float:
        """The driver's clock at the last input (time is passed in, never read)."""
        return self._now

    @property
    def invitations(self) -> Invitations:
        """Open invitations and chats being opened (PROTOCOL.md 7.11)."""
        return self.relay.invitations

    @property
    def online(self) -> dict[str, int]:
        """username -> peer id of every logged-in user."""
        return self.presence.online

    @property
    def chats(self) -> ChatDirectory:
        return self.relay.chats

    @property
    def mailboxes(self) -> dict[str, list[tuple[str, int, bytes, str]]]:
        return self.relay.modes.mailboxes

    @property
    def open_rounds(self) -> set[str]:
        """Contributory chats whose current round has not finished (PROTOCOL.md 7.6)."""
        return self.relay.modes.open_rounds

    @property
    def key_jobs(self) -> int:
        """ChatKeyJobs handed out and not back yet (PROTOCOL.md 7.2)."""
        return self.relay.key_jobs

    @property
    def key_waiting(self) -> OrderedDict[str, None]:
        return self.relay.key_waiting

    @property
    def pending_password_jobs(self) -> int:
        return self.accounts.pending_password_jobs

    @property
    def pending_by_address(self) -> dict[str, int]:
        return self.accounts.pending_by_address

    # --- driver API -----------------------------------------------------------------------------------------

    def connection_made(self, peer: int, address: str, now: float) -> None:
        """Admit a new connection, or queue server_busy and close it (docs/THREATS.md 11, PROTOCOL.md 10.1).

        A full server makes room by evicting the oldest connection that has not logged in from the address
        holding the most connections (``admission.eviction_victim``), so a few addresses cannot lock others out.
        """
        self._now = now
        self.peers[peer] = p = Peer(id=peer, address=address, opened_at=now)
        self._outbox.emit(ev.PeerConnected(peer=peer, address=address))
        if not self.accounts.preauth.admit(address, now):
            # PROTOCOL.md 10.1: this address spent its budget of refusals before login: no handshake work for it.
            self._fail(p, RemoteProtocolError("too many refused requests from your address, retry later",
                                              ErrorCode.SERVER_BUSY), None)
            return
        peers = admission.live(self.peers.values())
        counts = admission.per_address(peers)
        if counts[address] > self.config.max_connections_per_address:
            self._fail(p, RemoteProtocolError("too many connections", ErrorCode.SERVER_BUSY), None)
        elif len(peers) > self.config.max_connections:
            victim = admission.eviction_victim(peers, p, counts)
            if victim is None:
                self._fail(p, RemoteProtocolError("too many connections", ErrorCode.SERVER_BUSY), None)
            else:
                self._fail(victim, RemoteProtocolError("server full: an idle connection from your address was "
                                                       "closed to make room", ErrorCode.SERVER_BUSY), None)

    def receive_data(self, peer: int, data: bytes, now: float) -> None:
        """Feed bytes received from *peer*; ``b""`` is end of stream. Never raises for what the peer sent."""
        p = self.peers.get(peer)
        if p is None or p.closing:
            return
        self._now = now
        if not data:
            self._drop(p, "connection closed" if not p.decoder.buffered else "closed inside a frame")
            return
        try:
            p.decoder.feed(data)
            while not p.closing and (body := p.decoder.next_frame()) is not None:
                self._receive_frame(p, body)
            p.frame_started = (p.frame_started or now) if p.decoder.buffered else None
        except SecureChatError as exc:
            self._fail(p, exc, None)

    def connection_lost(self, peer: int, now: float) -> None:
        self.receive_data(peer, b"", now)

    def handle_timer(self, now: float) -> None:
        """Enforce deadlines (docs/THREATS.md 1, 10): call about once a second."""
        self._now = now
        self.relay.start_openings(self.relay.invitations.expire())
        cfg = self.config
        peers = admission.live(self.peers.values())
        counts = admission.per_address(peers)
        for p in peers:
            if p.closing:
                continue
            if p.state is PeerState.AWAIT_HELLO and now - p.opened_at > cfg.handshake_deadline_seconds:
                self._fail(p, RemoteProtocolError("handshake deadline passed", ErrorCode.HANDSHAKE_FAILED), None)
            elif (p.state is PeerState.CONNECTED and not p.spoke
                  and now - p.opened_at > cfg.first_request_deadline_seconds
                  and admission.under_pressure(cfg, len(peers), counts[p.address])):
                # PROTOCOL.md 10.1: a busy server does not hold a slot for a connection that says nothing.
                self._fail(p, RemoteProtocolError("no request after the handshake", ErrorCode.LIMIT_EXCEEDED), None)
            elif p.state is not PeerState.ONLINE and now - p.opened_at > cfg.auth_deadline_seconds:
                self._fail(p, RemoteProtocolError("login deadline passed", ErrorCode.LIMIT_EXCEEDED), None)
            elif p.frame_started is not None and now - p.frame_started > cfg.frame_deadline_seconds:
                self._fail(p, RemoteProtocolError("frame not completed in time", ErrorCode.BAD_FRAME), None)
        self.relay.modes.check_rounds(now)

    def next_job(self) -> Job | None:
        return self._jobs.popleft() if self._jobs else None

    def job_done(self, job: Job, now: float) -> None:
        """Apply the result of a job the driver ran (see ``jobs.py``)."""
        self._now = now
        if isinstance(job, ChatKeyJob):
            self.relay.distribute(job)
            return
        self.accounts.release_password_job(job)
        p = self.peers.get(job.peer)
        if p is None or p.closing:
            return
        if isinstance(job, LoginJob):
            self.accounts.login_done(p, job)
            if p.state is PeerState.ONLINE:
                p.decoder.max_frame_bytes = MAX_FRAME_BYTES
                self.accounts.preauth.logged_in(p.address, now)  # PROTOCOL.md 10.1: its admission is given back
        elif isinstance(job, RegisterJob):
            self.accounts.register_done(p, job)
        elif isinstance(job, RenewJob):
            self.accounts.renew_done(p, job)

    def next_event(self) -> ev.ServerEvent | None:
        return self._outbox.next_event()

    def data_to_send(self) -> list[tuple[int, bytes]]:
        """Bytes to write, per peer. Every inner frame queued for a peer since the last call travels in one
        record (docs/PERF-NOTES.md: one AEAD operation per recipient per round, whatever the fan-out)."""
        out: list[tuple[int, bytes]] = []
        while dirty := self._outbox.take_dirty():  # dropping a peer below can queue presence frames: go again
            out.extend(self._drain(dirty))
        return out

    def _drain(self, dirty: set[int]) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        for peer in dirty:
            p = self.peers.get(peer)
            if p is None:
                continue
            if p.inner and p.records is not None:
                try:
                    self._outbox.seal(p)
                except SecureChatError as exc:  # PROTOCOL.md 5.2: counter exhausted; this peer must reconnect
                    p.inner.clear()
                    self._drop(p, f"error {exc.code.value}", close=True)
                    continue
            if p.out:
                out.append((peer, bytes(p.out)))
                p.out.clear()
        return out

    def peers_to_close(self) -> list[int]:
        """Peers to close once the bytes already returned by ``data_to_send`` are written."""
        closing, self._to_close = self._to_close, []
        for peer in closing:
            self.peers.pop(peer, None)
        return closing

    # --- receiving ------------------------------------------------------------------------------------------

    def _receive_frame(self, p: Peer, body: bytes) -> None:
        if p.records is None:
            message = decode_message(body)
            self._outbox.trace(p, "receive", "clear", message.TYPE, body)
            if not isinstance(message, m.ClientHello):
                raise RemoteProtocolError(f"{message.TYPE} before the handshake", ErrorCode.UNEXPECTED_MESSAGE)
            self._on_client_hello(p, message)
            return
        data, kind = record_data(body)
        self._outbox.trace(p, "receive", "record", kind, body)
        frames = split_frames(p.records.open(data))
        p.spoke = True  # PROTOCOL.md 10.1: its first request arrived
        if len(frames) > MAX_INNER_FRAMES_PER_RECORD:
            raise RemoteProtocolError("too many frames in one record", ErrorCode.BAD_FRAME)
        for inner in frames:
            if p.closing:
                return
            try:
                value = parse_json(inner)
                # docs/THREATS.md 8: whether a type is allowed now is decided before its fields are validated.
                self._check_allowed(p, value["type"])
                message = message_from_dict(value)
                if self._trace is not None:
                    self._outbox.trace(p, "receive", "inner", message.TYPE, inner)
                self._receive_inner(p, message)
            except RemoteProtocolError as exc:
                # docs/THREATS.md 4-9: a bad frame inside a valid record is answered; the connection stays, except
                # for out-of-state messages before login (entry 8).
                keep = exc.code is not ErrorCode.UNEXPECTED_MESSAGE or p.state is PeerState.ONLINE
                p.errors += 1
                if p.errors > self._error_cap(p) or not self._address_can_be_refused(p):
                    # No amplification: a peer that keeps sending bad frames is closed, not answered forever.
                    exc = RemoteProtocolError("too many malformed frames", ErrorCode.BAD_FRAME)
                    keep = False
                rid, ref = peek(inner)
                self._fail(p, exc, rid, keep=keep, ref=ref, counted=True)

    def _on_client_hello(self, p: Peer, hello: m.ClientHello) -> None:
        """PROTOCOL.md 4.2: answer with our share and a signature over the transcript, then switch to records."""
        p.state = next_peer_state(p.state, "client_hello")
        hybrid = hello.key_exchange == HYBRID_KEM
        if hybrid != (hello.kem_key is not None):
            raise RemoteProtocolError("kem_key must come with, and only with, the hybrid exchange",
                                      ErrorCode.HANDSHAKE_FAILED)
        if self.config.require_post_quantum and not hybrid:
            raise RemoteProtocolError("this server requires the x25519+mlkem768 exchange", ErrorCode.HANDSHAKE_FAILED)
        ephemeral, share = generate_ephemeral(random_bytes=self._random_bytes)
        secret = shared_secret(ephemeral, hello.key_share)  # docs/THREATS.md 29: low-order shares raise here
        kem_ciphertext: bytes | None = None
        if hello.kem_key is not None:
            # PROTOCOL.md 4.4: ML-KEM-768 encapsulation to the client's key, combined with X25519 in HKDF.
            kem_ciphertext, kem_secret = encapsulate(hello.kem_key, context=KEM_CONTEXT,
                                                     random_bytes=self._random_bytes)
            secret = handshake_secret(secret, kem_secret)
        server_random = self._random_bytes(32)
        key = self.server_key
        p.transcript = transcript_hash(
            version=hello.version, key_exchange=hello.key_exchange, client_random=hello.random,
            client_share=hello.key_share, server_random=server_random, server_share=share,
            server_key=key.public_der, server_scheme=key.scheme,
            kem_key=hello.kem_key or b"", kem_ciphertext=kem_ciphertext or b"",
        )
        signature = sign(key.scheme, key.private_key, server_signed_bytes(p.transcript),
                         random_bytes=self._random_bytes)
        self._outbox.send_clear(p, m.ServerHello(random=server_random, key_share=share, server_key=key.public_der,
                                          server_scheme=key.scheme, signature=signature,
                                          kem_ciphertext=kem_ciphertext))
        keys = derive_channel_keys(secret, p.transcript)
        p.records = RecordLayer(send_key=keys.server_to_client, receive_key=keys.client_to_server,
                                lab_replay_window=lab_replay_window(self.config.lab))  # LAB ONLY when set
        p.decoder.max_frame_bytes = MAX_PRELOGIN_FRAME_BYTES  # PROTOCOL.md 10: MAX_FRAME_BYTES once logged in
        self._outbox.emit(ev.PeerHandshakeCompleted(peer=p.id))

    def _check_allowed(self, p: Peer, kind: str) -> None:
        if kind not in m.CLIENT_TO_SERVER:
            raise RemoteProtocolError(f"{kind} cannot travel to the server", ErrorCode.UNEXPECTED_MESSAGE)
        next_peer_state(p.state, kind)  # check only; handlers move the state once their checks pass

    def _receive_inner(self, p: Peer, message: m.Message) -> None:
        if (p.state is PeerState.ONLINE and p.bucket is not None and message.TYPE != "logout"
                and not p.bucket.take(self._now)):  # leaving is never rate limited
            self._outbox.reply_error(p, ErrorCode.RATE_LIMITED, "too many requests", message)
            return
        self._dispatch[message.TYPE](p, message)

    # --- directory (PROTOCOL.md 6.4) -------------------------------------------------------------------------------

    def _on_who(self, p: Peer, msg: m.Who) -> None:
        self._outbox.send(p, m.WhoResult(rid=msg.rid, online=self.presence.names()))

    def _on_status(self, p: Peer, msg: m.Status) -> None:
        if msg.username not in self.presence and self.registry.get_user(msg.username) is None:
            self._outbox.reply_error(p, ErrorCode.UNKNOWN_USER, f"no user {msg.username}", msg)
            return
        self._outbox.send(p, m.StatusResult(rid=msg.rid, username=msg.username, online=msg.username in self.presence))

    def _on_get_certificates(self, p: Peer, msg: m.GetCertificates) -> None:
        records = {name: self.registry.get_user(name) for name in msg.usernames}
        self._outbox.send(p, m.Certificates(
            rid=msg.rid, certificates=tuple(r.certificate for r in records.values() if r is not None),
            unknown=tuple(name for name, r in records.items() if r is None),
        ))

    # --- failing and closing -------------------------------------------------------------------------------

    def _count_refusal(self, p: Peer, fatal: bool, counted: bool) -> None:
        if not fatal and not counted and not p.closing and p.state is not PeerState.ONLINE:
            # PROTOCOL.md 10: before login EVERY refusal (name_taken, rate_limited, auth_failed, server_busy ...)
            # counts toward the error cap, so no stranger is answered for ever (docs/THREATS.md 14).
            p.errors += 1
            if p.errors > self._error_cap(p) or not self._address_can_be_refused(p):
                self._fail(p, RemoteProtocolError("too many refused requests", ErrorCode.LIMIT_EXCEEDED), None,
                           counted=True)

    def _address_can_be_refused(self, p: Peer) -> bool:
        """PROTOCOL.md 10.1: a refusal before login also takes one from its address's budget; False once that
        budget is spent (the connection is then closed, and new ones from the address refused at admission)."""
        return p.state is PeerState.ONLINE or self.accounts.preauth.refused(p.address, self._now)

    def _error_cap(self, p: Peer) -> int:
        """PROTOCOL.md 10: answered errors a connection may cause before it is closed."""
        if p.state is PeerState.ONLINE:
            return MAX_ERRORS_PER_CONNECTION
        return self.config.max_refusals_before_login

    def _fail(self, p: Peer, exc: SecureChatError, rid: int | None, *, keep: bool = False,
              ref: str | None = None, counted: bool = False) -> None:
        fatal = not keep or exc.code in FATAL_CODES
        self._outbox.reply_error(p, exc.code, str(exc.args[0]), _Rid(rid), fatal=fatal, ref=ref, counted=counted)
        if fatal:
            self._drop(p, f"error {exc.code.value}", close=True)

    def _drop(self, p: Peer, reason: str, *, close: bool = False) -> None:
        """Take *p* offline and out of its chats (docs/THREATS.md 35); the others' chats are rekeyed."""
        p.closing = True
        p.state = PeerState.CLOSED
        name = p.username
        if name is not None and self.presence.leave(name, p.id):
            self.relay.member_offline(name)
            self.presence.broadcast(name, False)
            self._outbox.emit(ev.UserLoggedOut(peer=p.id, username=name, reason=reason))
        self._outbox.emit(ev.PeerClosed(peer=p.id, reason=reason))
        if close:
            self._outbox.mark(p)
        else:
            self.peers.pop(p.id, None)
        self._to_close.append(p.id)

    def _handlers(self) -> dict[str, Callable[[Peer, Any], None]]:
        """Each handler takes its own message class; the table is keyed by that class's TYPE, hence Any. The
        round handlers are looked up at call time (tests replace them to play a malicious relay)."""
        accounts, relay = self.accounts, self.relay
        return {
            "register": accounts.on_register,
            "register_proof": accounts.on_register_proof,
            "login": accounts.on_login,
            "logout": accounts.on_logout,
            "cert_renew": accounts.on_cert_renew,
            "who": self._on_who,
            "status": self._on_status,
            "get_certificates": self._on_get_certificates,
            "chat_open": relay.on_chat_open,
            "chat_invite": relay.on_chat_invite,
            "chat_answer": relay.on_chat_answer,
            "chat_leave": relay.on_chat_leave,
            "chat_send": relay.on_chat_send,
            "chat_refused": relay.on_chat_refused,
            "share_commit": lambda p, msg: relay.on_round(p, msg, relay.modes.on_share_commit),
            "key_share": lambda p, msg: relay.on_round(p, msg, relay.modes.on_key_share),
            "key_confirm": lambda p, msg: relay.on_round(p, msg, relay.modes.on_key_confirm),
        }


@dataclass(frozen=True)
class _Rid:
    rid: int | None
