"""Accounts on the server: registration with proof of possession, login, logout (PROTOCOL.md 6).

Owns: the handlers of ``register``, ``register_proof``, ``login`` and ``logout`` and the application of the
slow jobs they hand out (``jobs.RegisterJob``, ``jobs.LoginJob``). These are parts of ``ServerProtocol`` split
out for size: they use its internals on purpose and run on the thread that owns it. Must not: do slow crypto
here (it belongs in the jobs) or touch sockets and clocks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..crypto.keys import load_public_key
from ..crypto.signatures import SCHEMES, SignatureScheme
from ..crypto.wrap import wrap_key
from ..errors import ErrorCode, RemoteProtocolError, SecureChatError
from . import events as ev
from . import messages as m
from . import server_invitations, server_modes
from .jobs import Job, LoginJob, RegisterJob, RenewJob
from .lab import LabVariant, lab_has
from .limits import TokenBucket
from .states import PeerState, next_peer_state, next_peer_state_on_job

if TYPE_CHECKING:
    from .server import Peer, ServerProtocol

_REGISTER_FAILURES = {
    ErrorCode.AUTH_FAILED: "proof of possession failed",
    ErrorCode.NAME_TAKEN: "that name is taken",
    ErrorCode.STORAGE_FAILED: "the registry could not store the account; nothing was saved",
    ErrorCode.INTERNAL_ERROR: "registration failed on the server; nothing was saved",
}


def on_register(server: ServerProtocol, p: Peer, msg: m.Register) -> None:
    """PROTOCOL.md 6.1 step 2, cheapest check first: nothing expensive for a stranger (docs/THREATS.md 14)."""
    if p.register_budget is None:
        p.register_budget = server._preauth.connection_budget(server._now)
    if not server._preauth.register_allowed(p.register_budget, p.address, server._now):
        server._reply_error(p, ErrorCode.RATE_LIMITED, "too many registrations, wait and retry", msg)
        return
    if server.registry.get_user(msg.username) is not None:  # looked up before any key is imported
        server._preauth.name_taken(p.address, server._now)
        server._reply_error(p, ErrorCode.NAME_TAKEN, "that name is taken", msg)
        return
    lookalike = server.registry.find_lookalike(msg.username)
    if lookalike is not None:  # PROTOCOL.md 3.2: a name whose skeleton is taken is taken
        server._preauth.name_taken(p.address, server._now)
        server._reply_error(p, ErrorCode.NAME_TAKEN, lookalike_text(msg.username, lookalike), msg)
        return
    scheme = SignatureScheme(msg.signature_scheme)
    try:
        # Before login only the reference DSA domain: another domain's primality proof costs tens of ms.
        encryption_key = load_public_key(msg.encryption_key, reference_dsa_domain=True)
        signing_key = load_public_key(msg.signing_key, reference_dsa_domain=True)
    except SecureChatError as exc:
        raise RemoteProtocolError(str(exc.args[0]) if "DSA" in str(exc.args[0]) else "public key unreadable",
                                  ErrorCode.BAD_FIELD) from None
    if not SCHEMES[scheme].key_check(signing_key) or not SCHEMES[SignatureScheme.RSA_PSS_SHA256].key_check(
            encryption_key):
        raise RemoteProtocolError("key does not fit its declared use", ErrorCode.BAD_FIELD)
    p.state = next_peer_state(p.state, "register")
    p.register, p.register_nonce = msg, server._random_bytes(32)
    # PROTOCOL.md 6.1: only the holder of the private key can read this nonce back.
    wrapped = wrap_key(encryption_key, p.register_nonce, random_bytes=server._random_bytes)
    server._send(p, m.RegisterChallenge(rid=msg.rid, wrapped_nonce=wrapped))


def on_register_proof(server: ServerProtocol, p: Peer, msg: m.RegisterProof) -> None:
    assert p.register is not None
    if not admit_password_job(server, p, msg):
        p.state, p.register = PeerState.CONNECTED, None
        return
    if not server._registrations.take(p.address, server._now):
        # PROTOCOL.md 6.1: registrations per address are counted when admitted (each costs an scrypt hash).
        release_password_job(server, p.address)
        p.state, p.register = PeerState.CONNECTED, None
        server._reply_error(p, ErrorCode.RATE_LIMITED, "too many registrations from your address, retry later",
                            msg)
        return
    p.state = next_peer_state(p.state, "register_proof")
    server._jobs.append(RegisterJob(
        peer=p.id, address=p.address, registry=server.registry, request=p.register, proof=msg, expected_nonce=p.register_nonce,
        transcript=p.transcript, params=server.config.scrypt, ca=server.server_key,
        validity_seconds=server.config.certificate_validity_seconds,
        serial=int.from_bytes(server._random_bytes(8), "big") >> 1, now=server._now, random_bytes=server._random_bytes,
    ))


def register_done(server: ServerProtocol, p: Peer, job: RegisterJob) -> None:
    p.state = next_peer_state_on_job(p.state, job.outcome)
    request, p.register = p.register, None
    if job.outcome == "registered" and job.certificate is not None:
        server._send(p, m.Registered(rid=job.proof.rid, certificate=job.certificate))
        server._events.append(ev.UserRegistered(peer=p.id, username=job.certificate.username,
                                              signature_scheme=job.certificate.signature_scheme.value))
    else:
        assert job.code is not None and request is not None
        text = job.lookalike and lookalike_text(request.username, job.lookalike)
        server._reply_error(p, job.code, text or _REGISTER_FAILURES.get(job.code, "registration failed"), job.proof)


def lookalike_text(username: str, registered: str) -> str:
    """PROTOCOL.md 3.2: the plain-words refusal of a look-alike name, naming the registered one."""
    return f"{username} looks too much like the registered name {registered}; choose another name"


def admit_password_job(server: ServerProtocol, p: Peer, msg: m.Message) -> bool:
    """docs/THREATS.md 14: bounded scrypt work, refused before any hashing, in total and per address (PROTOCOL.md
    6.2: one address cannot hold the whole queue)."""
    mine = server.pending_by_address.get(p.address, 0)
    if (server.pending_password_jobs >= server.config.max_pending_password_jobs
            or mine >= server.config.max_pending_password_jobs_per_address):
        server._reply_error(p, ErrorCode.SERVER_BUSY, "server busy, try again shortly", msg, fatal=False)
        return False
    server.pending_password_jobs += 1
    server.pending_by_address[p.address] = mine + 1
    return True


def release_password_job(server: ServerProtocol, job_or_address: Job | str) -> None:
    """A password job finished (or was refused after admission): its slot is free again."""
    address = job_or_address if isinstance(job_or_address, str) else job_or_address.address
    server.pending_password_jobs -= 1
    left = server.pending_by_address.get(address, 0) - 1
    if left > 0:
        server.pending_by_address[address] = left
    else:
        server.pending_by_address.pop(address, None)


def on_login(server: ServerProtocol, p: Peer, msg: m.Login) -> None:
    # PROTOCOL.md 6.2 step 1: logins still in flight from this address count as failures until they end.
    in_flight = server.pending_by_address.get(p.address, 0)
    if not server._throttle.allowed(msg.username, p.address, server._now, in_flight):
        server._reply_error(p, ErrorCode.RATE_LIMITED, "too many failed logins, wait and retry", msg)
        return
    if not admit_password_job(server, p, msg):
        return
    server._throttle.attempt(msg.username, p.address, server._now)
    p.state = next_peer_state(p.state, "login")
    server._jobs.append(LoginJob(
        peer=p.id, address=p.address, registry=server.registry, username=msg.username, password=msg.password,
        signature=msg.signature, transcript=p.transcript, dummy_record=server._dummy_record,
        lab_unbound=lab_has(server.config.lab, LabVariant.UNBOUND_LOGIN),  # LAB ONLY (PROTOCOL.md 15.1)
        ca=server.server_key, now=server._now, rid=msg.rid, decoys=server._decoys,
    ))


def login_done(server: ServerProtocol, p: Peer, job: LoginJob) -> None:
    if job.outcome == "logged_in" and job.username in server.online:
        job.outcome, job.code = "failed", ErrorCode.LIMIT_EXCEEDED
        server._throttle.succeeded(job.username, p.address)
        p.state = next_peer_state_on_job(p.state, "failed")
        server._reply_error(p, ErrorCode.LIMIT_EXCEEDED, "already logged in on another connection", job,
                          fatal=False, ref="login")
        return
    p.state = next_peer_state_on_job(p.state, job.outcome)
    if job.outcome != "logged_in" or job.record is None:
        server._throttle.failed(job.username, p.address, server._now)
        # docs/THREATS.md 17: one message for unknown user, wrong password and bad proof alike.
        server._reply_error(p, ErrorCode.AUTH_FAILED, "login failed", job, ref="login")
        return
    server._throttle.succeeded(job.username, p.address)
    p.username = job.username
    p.bucket = TokenBucket(server.config.messages_per_second, server.config.message_burst, server._now)
    server.online[job.username] = p.id
    server._encryption_keys[job.username] = job.encryption_key
    server._send(p, m.LoginOk(rid=job.rid, username=job.username, certificate=job.record.certificate,
                            online=tuple(sorted(server.online))))
    server._broadcast_presence(job.username, True)
    server_modes.on_login(server, p, job.username)
    server_invitations.on_login(server, job.username)
    server._events.append(ev.UserLoggedIn(peer=p.id, username=job.username))


def on_cert_renew(server: ServerProtocol, p: Peer, msg: m.CertRenew) -> None:
    """PROTOCOL.md 6.6: renewal of the same keys, in the certificate's last ``renewal_window_seconds``."""
    assert p.username is not None
    record = server.registry.get_user(p.username)
    if record is None:
        server._reply_error(p, ErrorCode.AUTH_FAILED, "your account no longer exists", msg)
        return
    opens = record.certificate.not_after - server.config.renewal_window_seconds
    if server._now < opens:
        days = server.config.renewal_window_seconds // 86400
        server._reply_error(p, ErrorCode.LIMIT_EXCEEDED, f"your certificate can be renewed in its last {days} days "
                            f"(from unix time {opens})", msg)
        return
    if not admit_password_job(server, p, msg):
        return
    server._jobs.append(RenewJob(
        peer=p.id, address=p.address, rid=msg.rid, registry=server.registry, username=p.username,
        signature=msg.signature, transcript=p.transcript, ca=server.server_key,
        validity_seconds=server.config.certificate_validity_seconds,
        serial=int.from_bytes(server._random_bytes(8), "big") >> 1, now=server._now, random_bytes=server._random_bytes,
    ))


def renew_done(server: ServerProtocol, p: Peer, job: RenewJob) -> None:
    if p.username != job.username:  # logged out meanwhile: nobody to tell (the renewal is stored all the same)
        return
    if job.outcome == "renewed" and job.certificate is not None:
        server._send(p, m.CertRenewed(rid=job.rid, certificate=job.certificate))
        server._events.append(ev.CertificateRenewedFor(peer=p.id, username=job.username,
                                                       not_after=job.certificate.not_after))
        return
    assert job.code is not None
    text = {ErrorCode.AUTH_FAILED: "renewal proof failed", ErrorCode.STORAGE_FAILED:
            "the registry could not store the certificate; nothing changed"}.get(job.code, "renewal failed")
    server._reply_error(p, job.code, text, job, ref="cert_renew")


def on_logout(server: ServerProtocol, p: Peer, msg: m.Logout) -> None:
    server._send(p, m.Bye(rid=msg.rid))
    server._drop(p, "logout", close=True)
