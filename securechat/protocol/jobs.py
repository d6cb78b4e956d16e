"""Slow work the server protocol hands to its driver: scrypt, proof checks, database writes, key wraps.

Owns: one class per kind of slow work. ``ServerProtocol`` creates a job with everything it needs, the driver
calls ``job.run()`` wherever it likes (a worker thread, or inline in a simulation) and hands it back with
``ServerProtocol.job_done(job, now)``. ``run()`` reads no protocol state, so no lock is held while it works
(docs/STYLE.md section 1.3; docs/PERF-NOTES.md: slow one-off work stays off the relay). Must not: touch sockets or clocks
(``now`` is captured when the job is made).
"""

from __future__ import annotations

import random
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ..crypto import kdf
from ..crypto.aead import CipherSuite
from ..crypto.certificates import Certificate, issue_certificate, verify_certificate
from ..crypto.encoding import RandomBytes, constant_time_equal
from ..crypto.key_types import EncryptionPrivateKey, EncryptionPublicKey, SigningKey
from ..crypto.keys import generate_encryption_key, load_public_key, public_key_der
from ..crypto.signatures import SignatureScheme, generate_signing_key, sign, verify
from ..crypto.wrap import wrap_key
from ..errors import ErrorCode, SecureChatError
from .vocabulary import ChatMode, JobOutcome, RekeyReason
from . import messages as m
from .constructions import (
    chat_key_signed_bytes, login_proof_bytes, register_proof_bytes, renew_proof_bytes, wrap_tree,
)
from .registry import Registry, UserRecord


@dataclass
class ServerKey:
    """The server's long-term signing key: it signs handshakes, certificates and key distributions."""

    private_key: SigningKey
    scheme: SignatureScheme
    public_der: bytes


@dataclass(eq=False)
class Job:
    peer: int
    rid: int | None = None         # the request this job answers
    address: str = ""              # the peer's address: password jobs are queued and counted per address
    outcome: JobOutcome = JobOutcome.PENDING  # set by run(): a PEER_JOB_TRANSITIONS outcome or DONE
    code: ErrorCode | None = None  # set by run() on failure

    def run(self) -> None:
        raise NotImplementedError


T = TypeVar("T")


class FairQueue(Generic[T]):
    """Password jobs served round robin across addresses (PROTOCOL.md 6.2, "fair admission").

    One queue per address; ``pop`` takes the oldest job of the address served longest ago, so 40 jobs from one
    address delay another address's login by at most one job per busy address, not by 40. Not thread-safe: the
    driver holds its own lock around it."""

    def __init__(self) -> None:
        self._queues: OrderedDict[str, deque[T]] = OrderedDict()
        self._size = 0

    def push(self, address: str, item: T) -> None:
        queue = self._queues.get(address)
        if queue is None:
            queue = self._queues[address] = deque()  # a new address joins the back of the round
        queue.append(item)
        self._size += 1

    def pop(self) -> T | None:
        if not self._queues:
            return None
        address, queue = next(iter(self._queues.items()))
        item = queue.popleft()
        del self._queues[address]
        if queue:
            self._queues[address] = queue  # served: to the back of the round
        self._size -= 1
        return item

    def clear(self) -> None:
        self._queues.clear()
        self._size = 0

    def __len__(self) -> int:
        return self._size


# The jobs below are made by keyword only; a field without a default (the registry, the server key, the request,
# the randomness source) is one the job cannot run without, so leaving it out fails where the job is made.


@dataclass(eq=False, kw_only=True)
class LoginJob(Job):
    """PROTOCOL.md 6.2: password and transcript signature checked together, at the same cost for unknown users."""

    registry: Registry
    username: str = ""
    password: str = ""
    signature: bytes = b""
    transcript: bytes = b""
    dummy_record: str = ""
    ca: ServerKey
    now: float = 0.0
    lab_unbound: bool = False  # LAB ONLY (PROTOCOL.md 16.1, unbound-login): also accept a proof over no transcript
    record: UserRecord | None = None
    encryption_key: EncryptionPublicKey | None = None

    decoys: dict[SignatureScheme, Decoy] = field(default_factory=dict)

    def run(self) -> None:
        record = self.registry.get_user(self.username)
        # docs/THREATS.md 17: an unknown user costs one scrypt too, against a dummy record, and fails the same way.
        password_ok = kdf.verify_password(self.password, record.password_record if record else self.dummy_record)
        proof_ok = self._check_proof(record)
        if password_ok and proof_ok and record is not None:
            self.outcome, self.record = JobOutcome.LOGGED_IN, record
            self.registry.record_login(self.username, self.now)  # the admin tool's "last login"
        else:
            self.outcome, self.code = JobOutcome.FAILED, ErrorCode.AUTH_FAILED

    def _check_proof(self, record: UserRecord | None) -> bool:
        """Verify one certificate and one signature of EVERY scheme: the user's own for its scheme, decoys for
        the others (all decoys for an unknown name). The work is then the same whether the name exists and
        whichever scheme it uses, so timing tells an attacker nothing (docs/THREATS.md 17, PROTOCOL.md 6.2)."""
        ca_key = load_public_key(self.ca.public_der)
        real_scheme = record.certificate.signature_scheme if record is not None else None
        proof_ok = False
        for scheme, decoy in self.decoys.items():
            real = record is not None and scheme is real_scheme
            cert = record.certificate if real and record is not None else decoy.certificate
            signed = login_proof_bytes(self.transcript, self.username) if real else DECOY_SIGNED_BYTES
            try:
                encryption_key, signing_key = verify_certificate(
                    cert, ca_public_key=ca_key, ca_scheme=self.ca.scheme, now=self.now, username=cert.username)
                try:
                    verify(cert.signature_scheme, signing_key, signed, self.signature if real else decoy.signature)
                except SecureChatError:
                    if not (real and self.lab_unbound):
                        raise
                    # LAB ONLY (PROTOCOL.md 16.1, unbound-login): a proof over no transcript is accepted too
                    verify(cert.signature_scheme, signing_key, login_proof_bytes(b"", self.username), self.signature)
                ok = True
            except SecureChatError:
                ok = False
            if real:
                proof_ok, self.encryption_key = ok, encryption_key if ok else None
        return proof_ok


DECOY_USERNAME = "~decoy"  # not a valid username (PROTOCOL.md 3.2), so nobody can register it
DECOY_SIGNED_BYTES = b"securechat v1 decoy login"
_DECOY_KEYS: dict[SignatureScheme, tuple[EncryptionPrivateKey, SigningKey]] = {}  # scheme -> (encryption key, signing key)


@dataclass(frozen=True)
class Decoy:
    """A certificate and signature that cost what a real user's cost to verify; they authorise nothing."""

    certificate: Certificate
    signature: bytes


def make_decoys(ca: ServerKey) -> dict[SignatureScheme, Decoy]:
    """One decoy per signature scheme, certified by *ca*. The decoy keys are made once per process from a
    fixed seed: they protect nothing (they only spend CPU), and a fixed seed keeps simulations replayable."""
    if not _DECOY_KEYS:
        seeded = random.Random(17).randbytes
        encryption_key = generate_encryption_key(random_bytes=seeded)
        for scheme in SignatureScheme:
            _DECOY_KEYS[scheme] = (encryption_key, generate_signing_key(scheme, random_bytes=seeded))
    decoys: dict[SignatureScheme, Decoy] = {}
    for scheme, (encryption_key, signing_key) in _DECOY_KEYS.items():
        cert = issue_certificate(
            username=DECOY_USERNAME, signature_scheme=scheme, encryption_key=public_key_der(encryption_key),
            signing_key=public_key_der(signing_key), serial=0, now=0, validity_seconds=2**62,
            ca_private_key=ca.private_key, ca_scheme=ca.scheme, random_bytes=random.Random(0).randbytes)
        signature = sign(scheme, signing_key, DECOY_SIGNED_BYTES, random_bytes=random.Random(1).randbytes)
        decoys[scheme] = Decoy(certificate=cert, signature=signature)
    return decoys


@dataclass(eq=False, kw_only=True)
class RegisterJob(Job):
    """PROTOCOL.md 6.1: check both proofs of possession, hash the password, issue the certificate, store."""

    registry: Registry
    request: m.Register
    proof: m.RegisterProof
    expected_nonce: bytes = b""
    transcript: bytes = b""
    params: kdf.ScryptParams = kdf.OWASP_SCRYPT
    ca: ServerKey
    validity_seconds: int = 0
    serial: int = 0
    now: float = 0.0
    random_bytes: RandomBytes
    certificate: Certificate | None = None
    lookalike: str = ""  # set by run(): the registered name this one looks like (PROTOCOL.md 3.2)

    def run(self) -> None:
        req, scheme = self.request, SignatureScheme(self.request.signature_scheme)
        try:
            signing_key = load_public_key(req.signing_key)
            signed = register_proof_bytes(self.transcript, req.username, req.signature_scheme,
                                          req.encryption_key, req.signing_key, self.proof.nonce)
            if not constant_time_equal(self.proof.nonce, self.expected_nonce):
                raise SecureChatError("nonce mismatch", ErrorCode.AUTH_FAILED)
            verify(scheme, signing_key, signed, self.proof.signature)
        except SecureChatError:
            # docs/THREATS.md 25: copied public keys cannot produce either proof.
            self.outcome, self.code = JobOutcome.FAILED, ErrorCode.AUTH_FAILED
            return
        if self.registry.get_user(req.username) is not None:
            self.outcome, self.code = JobOutcome.FAILED, ErrorCode.NAME_TAKEN
            return
        lookalike = self.registry.find_lookalike(req.username)
        if lookalike is not None:  # registered meanwhile; add_user checks again in its transaction
            self.outcome, self.code, self.lookalike = JobOutcome.FAILED, ErrorCode.NAME_TAKEN, lookalike
            return
        cert = issue_certificate(
            username=req.username, signature_scheme=scheme, encryption_key=req.encryption_key,
            signing_key=req.signing_key, serial=self.serial, now=int(self.now),
            validity_seconds=self.validity_seconds, ca_private_key=self.ca.private_key, ca_scheme=self.ca.scheme,
            random_bytes=self.random_bytes,
        )
        record = UserRecord(username=req.username,
                            password_record=kdf.hash_password(req.password, self.params, random_bytes=self.random_bytes),
                            certificate=cert)
        try:
            self.registry.add_user(record)
        except SecureChatError as exc:  # NameTaken (a race with another registration) or StorageFailed
            self.outcome, self.code = JobOutcome.FAILED, exc.code
            if exc.code is ErrorCode.NAME_TAKEN:
                self.lookalike = self.registry.find_lookalike(req.username) or ""
            return
        self.outcome, self.certificate = JobOutcome.REGISTERED, cert


@dataclass(eq=False, kw_only=True)
class RenewJob(Job):
    """PROTOCOL.md 6.6: check the renewal signature with the certified key, then certify the same keys anew."""

    registry: Registry
    username: str = ""
    signature: bytes = b""
    transcript: bytes = b""
    ca: ServerKey
    validity_seconds: int = 0
    serial: int = 0
    now: float = 0.0
    random_bytes: RandomBytes
    certificate: Certificate | None = None

    def run(self) -> None:
        record = self.registry.get_user(self.username)
        if record is None:  # the account was removed meanwhile (securechat-admin)
            self.outcome, self.code = JobOutcome.FAILED, ErrorCode.AUTH_FAILED
            return
        old = record.certificate
        try:
            _, signing_key = verify_certificate(old, ca_public_key=load_public_key(self.ca.public_der),
                                                ca_scheme=self.ca.scheme, now=self.now, username=self.username)
            verify(old.signature_scheme, signing_key, renew_proof_bytes(self.transcript, self.username, old.serial),
                   self.signature)
        except SecureChatError:
            self.outcome, self.code = JobOutcome.FAILED, ErrorCode.AUTH_FAILED
            return
        cert = issue_certificate(
            username=self.username, signature_scheme=old.signature_scheme, encryption_key=old.encryption_key,
            signing_key=old.signing_key, serial=self.serial, now=int(self.now),
            validity_seconds=self.validity_seconds, ca_private_key=self.ca.private_key, ca_scheme=self.ca.scheme,
            random_bytes=self.random_bytes)
        try:
            self.registry.replace_certificate(self.username, cert)
        except SecureChatError as exc:
            self.outcome, self.code = JobOutcome.FAILED, exc.code
            return
        self.outcome, self.certificate = JobOutcome.RENEWED, cert


@dataclass(eq=False, kw_only=True)
class ChatKeyJob(Job):
    """PROTOCOL.md 7.2: a fresh 256-bit key wrapped for every member, one server signature over it all."""

    chat_id: str = ""
    epoch: int = 0
    mode: ChatMode
    suite: CipherSuite
    reason: RekeyReason
    actor: str = ""
    members: tuple[str, ...] = ()
    encryption_keys: tuple[EncryptionPublicKey, ...] = ()
    ca: ServerKey
    random_bytes: RandomBytes
    messages: dict[str, m.ChatKey] = field(default_factory=dict)

    def run(self) -> None:
        chat_key = self.random_bytes(32)
        wraps = tuple(wrap_key(k, chat_key, random_bytes=self.random_bytes) for k in self.encryption_keys)
        root, paths = wrap_tree(self.members, wraps)
        signature = sign(self.ca.scheme, self.ca.private_key, chat_key_signed_bytes(
            chat_id=self.chat_id, epoch=self.epoch, mode=self.mode, suite=self.suite, reason=self.reason,
            actor=self.actor, members=self.members, wrap_root=root,
        ), random_bytes=self.random_bytes)
        # PROTOCOL.md 7.2: the server forgets chat_key here; in this mode it could have kept it (trust model).
        # Each member gets its own wrap and audit path: O(log N) hashes each, not the N digests of every wrap.
        self.messages = {
            member: m.ChatKey(chat_id=self.chat_id, epoch=self.epoch, mode=self.mode, suite=self.suite,
                              reason=self.reason, actor=self.actor, members=self.members, wrap_root=root,
                              wrap_path=path, wrapped_key=wrap, signature=signature)
            for member, wrap, path in zip(self.members, wraps, paths)
        }
        self.outcome = JobOutcome.DONE
