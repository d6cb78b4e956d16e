"""Accounts on the server: registration with proof of possession, login, logout (PROTOCOL.md 6).

Owns: the handlers of ``register``, ``register_proof``, ``login`` and ``logout`` and the application of the
slow jobs they hand out (``jobs.RegisterJob``, ``jobs.LoginJob``), with the admission rules in front of them:
the login throttle, the registration budget per address and the bound on queued password jobs (PROTOCOL.md
6.1, 6.2). ``ServerProtocol`` owns one ``Accounts`` and runs it on its own thread; its collaborators are narrow:
the ``Outbox`` it sends through, ``Presence`` (who is online), the registry, a job queue, the current time, and
two callbacks for what a login or logout means to the rest of the server. Must not: do slow crypto here (it
belongs in the jobs) or touch sockets and clocks.
"""

from __future__ import annotations

from collections.abc import Callable

from ..crypto import kdf
from ..crypto.encoding import RandomBytes
from ..crypto.keys import is_encryption_key, load_public_key
from ..crypto.signatures import SCHEMES, SignatureScheme
from ..crypto.wrap import wrap_key
from ..errors import ErrorCode, RemoteProtocolError, SecureChatError
from . import events as ev
from . import messages as m
from .jobs import Job, LoginJob, RegisterJob, RenewJob, ServerKey, make_decoys
from .lab import LabVariant, lab_has
from .limits import AddressBuckets, LoginThrottle, ServerConfig, TokenBucket
from .vocabulary import JobOutcome
from .preauth import PreAuthLimits
from .registry import Registry
from .server_outbox import Outbox, Peer
from .server_presence import Presence
from .states import PeerState, next_peer_state, next_peer_state_on_job

_REGISTER_FAILURES = {
    ErrorCode.AUTH_FAILED: "proof of possession failed",
    ErrorCode.NAME_TAKEN: "that name is taken",
    ErrorCode.STORAGE_FAILED: "the registry could not store the account; nothing was saved",
    ErrorCode.INTERNAL_ERROR: "registration failed on the server; nothing was saved",
}


class Accounts:
    """Registration, login and logout for every connection of one server."""

    def __init__(self, *, outbox: Outbox, presence: Presence, registry: Registry, config: ServerConfig,
                 server_key: ServerKey, random_bytes: RandomBytes, submit: Callable[[Job], None],
                 now: Callable[[], float], on_online: Callable[[Peer, str], None],
                 drop: Callable[[Peer, str], None]) -> None:
        self._outbox = outbox
        self._presence = presence
        self.registry = registry
        self.config = config
        self.server_key = server_key
        self._random_bytes = random_bytes
        self._submit = submit
        self._clock = now
        self._on_online = on_online
        self._drop = drop
        self.throttle = LoginThrottle(config)
        self.preauth = PreAuthLimits(config)  # PROTOCOL.md 6.1: register budgets before login
        self.dummy_record = kdf.dummy_password_record(config.scrypt, random_bytes=random_bytes)
        self._decoys = make_decoys(server_key)  # docs/THREATS.md 17: equal proof-checking work for every login
        self.pending_password_jobs = 0
        self.pending_by_address: dict[str, int] = {}  # PROTOCOL.md 6.2: admitted password jobs per address
        self._registrations = AddressBuckets(config.registrations_per_address_per_hour / 3600.0,
                                             config.registration_burst_per_address, config.tracked_keys)

    def on_register(self, p: Peer, msg: m.Register) -> None:
        """PROTOCOL.md 6.1 step 2, cheapest check first: nothing expensive for a stranger (docs/THREATS.md 14)."""
        if p.register_budget is None:
            p.register_budget = self.preauth.connection_budget(self._clock())
        if not self.preauth.register_allowed(p.register_budget, p.address, self._clock()):
            self._outbox.reply_error(p, ErrorCode.RATE_LIMITED, "too many registrations, wait and retry", msg)
            return
        if self.registry.get_user(msg.username) is not None:  # looked up before any key is imported
            self.preauth.name_taken(p.address, self._clock())
            self._outbox.reply_error(p, ErrorCode.NAME_TAKEN, "that name is taken", msg)
            return
        lookalike = self.registry.find_lookalike(msg.username)
        if lookalike is not None:  # PROTOCOL.md 3.2: a name whose skeleton is taken is taken
            self.preauth.name_taken(p.address, self._clock())
            self._outbox.reply_error(p, ErrorCode.NAME_TAKEN, lookalike_text(msg.username, lookalike), msg)
            return
        scheme = SignatureScheme(msg.signature_scheme)
        try:
            # Before login only the reference DSA domain: another domain's primality proof costs tens of ms.
            encryption_key = load_public_key(msg.encryption_key, reference_dsa_domain=True)
            signing_key = load_public_key(msg.signing_key, reference_dsa_domain=True)
        except SecureChatError as exc:
            raise RemoteProtocolError(str(exc.args[0]) if "DSA" in str(exc.args[0]) else "public key unreadable",
                                      ErrorCode.BAD_FIELD) from None
        if not SCHEMES[scheme].key_check(signing_key) or not is_encryption_key(encryption_key):
            raise RemoteProtocolError("key does not fit its declared use", ErrorCode.BAD_FIELD)
        p.state = next_peer_state(p.state, "register")
        p.register, p.register_nonce = msg, self._random_bytes(32)
        # PROTOCOL.md 6.1: only the holder of the private key can read this nonce back.
        wrapped = wrap_key(encryption_key, p.register_nonce, random_bytes=self._random_bytes)
        self._outbox.send(p, m.RegisterChallenge(rid=msg.rid, wrapped_nonce=wrapped))

    def on_register_proof(self, p: Peer, msg: m.RegisterProof) -> None:
        assert p.register is not None
        if not self.admit_password_job(p, msg):
            p.state, p.register = PeerState.CONNECTED, None
            return
        if not self._registrations.take(p.address, self._clock()):
            # PROTOCOL.md 6.1: registrations per address are counted when admitted (each costs an scrypt hash).
            self.release_password_job(p.address)
            p.state, p.register = PeerState.CONNECTED, None
            self._outbox.reply_error(p, ErrorCode.RATE_LIMITED,
                                     "too many registrations from your address, retry later", msg)
            return
        p.state = next_peer_state(p.state, "register_proof")
        self._submit(RegisterJob(
            peer=p.id, address=p.address, registry=self.registry, request=p.register, proof=msg,
            expected_nonce=p.register_nonce, transcript=p.transcript, params=self.config.scrypt, ca=self.server_key,
            validity_seconds=self.config.certificate_validity_seconds,
            serial=int.from_bytes(self._random_bytes(8), "big") >> 1, now=self._clock(),
            random_bytes=self._random_bytes,
        ))

    def register_done(self, p: Peer, job: RegisterJob) -> None:
        p.state = next_peer_state_on_job(p.state, job.outcome)
        request, p.register = p.register, None
        if job.outcome is JobOutcome.REGISTERED and job.certificate is not None:
            self._outbox.send(p, m.Registered(rid=job.proof.rid, certificate=job.certificate))
            self._outbox.emit(ev.UserRegistered(peer=p.id, username=job.certificate.username,
                                                signature_scheme=job.certificate.signature_scheme.value))
        else:
            assert job.code is not None and request is not None
            text = job.lookalike and lookalike_text(request.username, job.lookalike)
            self._outbox.reply_error(p, job.code, text or _REGISTER_FAILURES.get(job.code, "registration failed"),
                                     job.proof)

    def admit_password_job(self, p: Peer, msg: m.Message) -> bool:
        """docs/THREATS.md 14: bounded scrypt work, refused before any hashing, in total and per address
        (PROTOCOL.md 6.2: one address cannot hold the whole queue)."""
        mine = self.pending_by_address.get(p.address, 0)
        if (self.pending_password_jobs >= self.config.max_pending_password_jobs
                or mine >= self.config.max_pending_password_jobs_per_address):
            self._outbox.reply_error(p, ErrorCode.SERVER_BUSY, "server busy, try again shortly", msg,
                                     fatal=False)
            return False
        self.pending_password_jobs += 1
        self.pending_by_address[p.address] = mine + 1
        return True

    def release_password_job(self, job_or_address: Job | str) -> None:
        """A password job finished (or was refused after admission): its slot is free again."""
        address = job_or_address if isinstance(job_or_address, str) else job_or_address.address
        self.pending_password_jobs -= 1
        left = self.pending_by_address.get(address, 0) - 1
        if left > 0:
            self.pending_by_address[address] = left
        else:
            self.pending_by_address.pop(address, None)

    def on_login(self, p: Peer, msg: m.Login) -> None:
        # PROTOCOL.md 6.2 step 1: logins still in flight from this address count as failures until they end.
        in_flight = self.pending_by_address.get(p.address, 0)
        if not self.throttle.allowed(msg.username, p.address, self._clock(), in_flight):
            self._outbox.reply_error(p, ErrorCode.RATE_LIMITED, "too many failed logins, wait and retry", msg)
            return
        if not self.admit_password_job(p, msg):
            return
        self.throttle.attempt(msg.username, p.address, self._clock())
        p.state = next_peer_state(p.state, "login")
        self._submit(LoginJob(
            peer=p.id, address=p.address, registry=self.registry, username=msg.username, password=msg.password,
            signature=msg.signature, transcript=p.transcript, dummy_record=self.dummy_record,
            lab_unbound=lab_has(self.config.lab, LabVariant.UNBOUND_LOGIN),  # LAB ONLY (PROTOCOL.md 16.1)
            ca=self.server_key, now=self._clock(), rid=msg.rid, decoys=self._decoys,
        ))

    def login_done(self, p: Peer, job: LoginJob) -> None:
        if job.outcome is JobOutcome.LOGGED_IN and job.username in self._presence:
            job.outcome, job.code = JobOutcome.FAILED, ErrorCode.LIMIT_EXCEEDED
            self.throttle.succeeded(job.username, p.address)
            p.state = next_peer_state_on_job(p.state, JobOutcome.FAILED)
            self._outbox.reply_error(p, ErrorCode.LIMIT_EXCEEDED, "already logged in on another connection", job,
                                     fatal=False, ref="login")
            return
        p.state = next_peer_state_on_job(p.state, job.outcome)
        if job.outcome is not JobOutcome.LOGGED_IN or job.record is None or job.encryption_key is None:
            self.throttle.failed(job.username, p.address, self._clock())
            # docs/THREATS.md 17: one message for unknown user, wrong password and bad proof alike.
            self._outbox.reply_error(p, ErrorCode.AUTH_FAILED, "login failed", job, ref="login")
            return
        self.throttle.succeeded(job.username, p.address)
        p.username = job.username
        p.bucket = TokenBucket(self.config.messages_per_second, self.config.message_burst, self._clock())
        self._presence.arrive(job.username, p.id, job.encryption_key)
        self._outbox.send(p, m.LoginOk(rid=job.rid, username=job.username, certificate=job.record.certificate,
                                       online=self._presence.names()))
        self._presence.broadcast(job.username, True)
        self._on_online(p, job.username)
        self._outbox.emit(ev.UserLoggedIn(peer=p.id, username=job.username))

    def on_cert_renew(self, p: Peer, msg: m.CertRenew) -> None:
        """PROTOCOL.md 6.6: renewal of the same keys, in the certificate's last ``renewal_window_seconds``."""
        assert p.username is not None
        record = self.registry.get_user(p.username)
        if record is None:
            self._outbox.reply_error(p, ErrorCode.AUTH_FAILED, "your account no longer exists", msg)
            return
        opens = record.certificate.not_after - self.config.renewal_window_seconds
        if self._clock() < opens:
            days = self.config.renewal_window_seconds // 86400
            self._outbox.reply_error(p, ErrorCode.LIMIT_EXCEEDED, f"your certificate can be renewed in its last "
                                     f"{days} days (from unix time {opens})", msg)
            return
        if not self.admit_password_job(p, msg):
            return
        self._submit(RenewJob(
            peer=p.id, address=p.address, rid=msg.rid, registry=self.registry, username=p.username,
            signature=msg.signature, transcript=p.transcript, ca=self.server_key,
            validity_seconds=self.config.certificate_validity_seconds,
            serial=int.from_bytes(self._random_bytes(8), "big") >> 1, now=self._clock(),
            random_bytes=self._random_bytes,
        ))

    def renew_done(self, p: Peer, job: RenewJob) -> None:
        if p.username != job.username:  # logged out meanwhile: nobody to tell (the renewal is stored all the same)
            return
        if job.outcome is JobOutcome.RENEWED and job.certificate is not None:
            self._outbox.send(p, m.CertRenewed(rid=job.rid, certificate=job.certificate))
            self._outbox.emit(ev.CertificateRenewedFor(peer=p.id, username=job.username,
                                                       not_after=job.certificate.not_after))
            return
        assert job.code is not None
        text = {ErrorCode.AUTH_FAILED: "renewal proof failed", ErrorCode.STORAGE_FAILED:
                "the registry could not store the certificate; nothing changed"}.get(job.code, "renewal failed")
        self._outbox.reply_error(p, job.code, text, job, ref="cert_renew")

    def on_logout(self, p: Peer, msg: m.Logout) -> None:
        self._outbox.send(p, m.Bye(rid=msg.rid))
        self._drop(p, "logout")


def lookalike_text(username: str, registered: str) -> str:
    """PROTOCOL.md 3.2: the plain-words refusal of a look-alike name, naming the registered one."""
    return f"{username} looks too much like the registered name {registered}; choose another name"
