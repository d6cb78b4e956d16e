"""The client's account: registration, login and certificate renewal (PROTOCOL.md 6).

Owns: our keys (``UserKeys``), the name being registered or logged in, and once logged in our name and our
certificate as the server's CA issued it. It builds the ``register``, ``login`` and ``cert_renew`` commands with
their proofs (each signed over this channel's transcript, ``constructions.py``), answers the registration
challenge, and checks every certificate the server issues us: the CA's signature, our name and exactly our keys.
Must not: trust a certificate or a login it has not checked, or keep the password.
"""

from __future__ import annotations

from ..crypto.certificates import Certificate, verify_certificate
from ..crypto.encoding import RandomBytes
from ..crypto.signatures import sign
from ..crypto.wrap import unwrap_key
from ..errors import ErrorCode, RemoteProtocolError, SecureChatError
from . import events as ev
from . import messages as m
from .client_handshake import ClientHandshake
from .client_lab import login_keys, login_transcript
from .client_link import ClientLink, local_username
from .constructions import login_proof_bytes, register_proof_bytes, renew_proof_bytes
from .identity import UserKeys
from .lab import LabMode


class Account:
    """Who we are on this connection."""

    def __init__(self, link: ClientLink, handshake: ClientHandshake, *, random_bytes: RandomBytes,
                 lab: LabMode | None = None) -> None:
        self._link = link
        self._handshake = handshake
        self._random_bytes = random_bytes
        self._lab = lab
        self.keys: UserKeys | None = None
        self.pending_name = ""                   # the name being registered or logged in
        self.username: str | None = None         # set by a checked login_ok
        self.certificate: Certificate | None = None

    # --- commands -----------------------------------------------------------------------------------------

    def register(self, username: str, password: str, keys: UserKeys) -> int:
        name = local_username(username)
        rid = self._link.request(m.Register(
            rid=self._link.next_rid, username=name, password=password, signature_scheme=keys.scheme,
            encryption_key=keys.encryption_public, signing_key=keys.signing_public,
        ))
        self.keys, self.pending_name = keys, name
        return rid

    def login(self, username: str, password: str, keys: UserKeys) -> int:
        """PROTOCOL.md 6.2: the password and a signature over this channel's transcript and our name."""
        name = local_username(username)
        self._link.check("login")  # check before doing anything else
        keys = login_keys(self._lab, keys)  # LAB ONLY (PROTOCOL.md 16.1, dsa-nonce-reuse)
        transcript = login_transcript(self._lab, self._handshake.transcript)  # LAB ONLY (unbound-login)
        signature = sign(keys.scheme, keys.signing_key, login_proof_bytes(transcript, name),
                         random_bytes=self._random_bytes)
        rid = self._link.request(m.Login(rid=self._link.next_rid, username=name, password=password,
                                         signature=signature))
        self.keys, self.pending_name = keys, name
        return rid

    def renew_certificate(self) -> int:
        """PROTOCOL.md 6.6: signed with our certified key over this channel's transcript and our serial."""
        self._link.check("cert_renew")  # ONLINE only; check before signing
        assert self.keys is not None and self.certificate is not None and self.username is not None
        signed = renew_proof_bytes(self._handshake.transcript, self.username, self.certificate.serial)
        signature = sign(self.keys.scheme, self.keys.signing_key, signed, random_bytes=self._random_bytes)
        return self._link.request(m.CertRenew(rid=self._link.next_rid, signature=signature))

    # --- what the server answers ------------------------------------------------------------------------------

    def on_register_challenge(self, msg: m.RegisterChallenge) -> None:
        """PROTOCOL.md 6.1: prove we hold both private keys: unwrap the nonce, sign it with the transcript."""
        assert self.keys is not None
        try:
            nonce = unwrap_key(self.keys.encryption_key, msg.wrapped_nonce, expected_length=32)
        except SecureChatError as exc:
            self._link.close(exc.code, "could not open the registration challenge")
            return
        signed = register_proof_bytes(self._handshake.transcript, self.pending_name, self.keys.scheme.value,
                                      self.keys.encryption_public, self.keys.signing_public, nonce)
        signature = sign(self.keys.scheme, self.keys.signing_key, signed, random_bytes=self._random_bytes)
        self._link.sent("register_proof")
        self._link.send(m.RegisterProof(rid=msg.rid, nonce=nonce, signature=signature))

    def on_registered(self, msg: m.Registered) -> None:
        self.check_own_certificate(msg.certificate)
        self._link.emit(ev.RegistrationSucceeded(rid=msg.rid, username=msg.certificate.username,
                                                 certificate=msg.certificate))

    def on_login_ok(self, msg: m.LoginOk) -> UserKeys:
        """Check a login_ok and take its name and certificate; returns the keys we are now logged in with."""
        assert self.keys is not None
        if msg.username != self.pending_name:
            # PROTOCOL.md 6.2: the server cannot log us in as somebody else (the certificate is checked too).
            raise RemoteProtocolError("login_ok names another user than the one logging in", ErrorCode.BAD_CERTIFICATE)
        self.check_own_certificate(msg.certificate)
        self.username, self.certificate = msg.username, msg.certificate
        return self.keys

    def on_cert_renewed(self, msg: m.CertRenewed) -> None:
        """PROTOCOL.md 6.6: the same keys, our name, the CA's signature, and no earlier expiry than before."""
        self.check_own_certificate(msg.certificate)
        if self.certificate is not None and msg.certificate.not_after < self.certificate.not_after:
            raise RemoteProtocolError("the renewed certificate expires earlier", ErrorCode.BAD_CERTIFICATE)
        self.certificate = msg.certificate
        self._link.emit(ev.CertificateRenewed(rid=msg.rid, certificate=msg.certificate))

    def check_own_certificate(self, cert: Certificate) -> None:
        """A certificate issued to us: signed by the server's CA key, valid now, our name, exactly our keys."""
        server_key, server_scheme = self._handshake.server_key, self._handshake.server_scheme
        assert self.keys is not None and server_key is not None and server_scheme is not None
        verify_certificate(cert, ca_public_key=server_key, ca_scheme=server_scheme, now=self._link.now,
                           username=self.pending_name)
        if cert.encryption_key != self.keys.encryption_public or cert.signing_key != self.keys.signing_public:
            raise RemoteProtocolError("certificate does not carry our keys", ErrorCode.BAD_CERTIFICATE)
