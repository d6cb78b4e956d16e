"""Certificate renewal before expiry, with proof of possession (PROTOCOL.md 6.6), and the recovery of an
expired account (securechat-admin renew)."""

from __future__ import annotations

from pathlib import Path

import pytest

from securechat.crypto.certificates import CLOCK_SKEW_SECONDS, issue_certificate
from securechat.crypto.kdf import FAST_SCRYPT
from securechat.errors import ErrorCode, LocalProtocolError
from securechat.net.tcp_client import TcpClient
from securechat.net.tcp_server import TcpServer
from securechat.protocol import events as ev
from securechat.protocol import messages as m
from securechat.protocol.limits import ServerConfig
from securechat.protocol.states import ClientState
from securechat.store import SqliteRegistry
from tests.helpers import (
    server_push,
    assert_serves,
    connect,
    is_closed,
    last_failure,
    make_simulation,
    password_of,
    peer_of,
    relogin,
    request,
    user_keys,
)

DAY = 86400


def near_expiry(sim, name: str, days_left: float) -> None:  # type: ignore[no-untyped-def]
    """Move the virtual clock to *days_left* before *name*'s certificate expires (no timers run)."""
    sim.now = sim.registry.get_user(name).certificate.not_after - days_left * DAY


def test_renewal_before_expiry_keeps_the_account_alive() -> None:
    """Finding: certificates expired after a year with no renewal, locking the account out."""
    sim = make_simulation("alice", "bob")
    old = sim.registry.get_user("alice").certificate
    near_expiry(sim, "alice", 10)
    rid = sim.clients["alice"].renew_certificate()
    sim.run_until_idle()
    renewed = sim.last_event("alice", ev.CertificateRenewed)
    cert = renewed.certificate
    assert renewed.rid == rid and sim.clients["alice"].certificate == cert
    assert (cert.username, cert.encryption_key, cert.signing_key) == ("alice", old.encryption_key, old.signing_key)
    assert cert.not_after > old.not_after and cert.serial != old.serial
    assert sim.registry.get_user("alice").certificate == cert
    assert any(isinstance(e, ev.CertificateRenewedFor) and e.username == "alice" for e in sim.server_events)
    sim.now = old.not_after + DAY  # a day after the old certificate expired
    sim.clients["alice"].logout()
    sim.run_until_idle()
    assert relogin(sim, "alice-again", "alice").state is ClientState.ONLINE
    bob_late = relogin(sim, "bob-again", "bob")  # bob did not renew: his account is locked out
    assert bob_late.state is not ClientState.ONLINE and last_failure(sim, "bob-again").code == ErrorCode.AUTH_FAILED


def test_renewal_is_refused_long_before_expiry() -> None:
    sim = make_simulation("alice")
    before = sim.registry.get_user("alice").certificate
    sim.clients["alice"].renew_certificate()
    sim.run_until_idle()
    failure = last_failure(sim, "alice")
    assert (failure.code, failure.ref) == (ErrorCode.LIMIT_EXCEEDED, "cert_renew")
    assert "last 30 days" in failure.message and sim.registry.get_user("alice").certificate == before
    assert sim.server.pending_password_jobs == 0
    assert_serves(sim, "alice")


def test_renewal_without_the_certified_key_is_auth_failed() -> None:
    """The proof of possession: a signature by another key (or over another channel) renews nothing."""
    sim = make_simulation("alice")
    before = sim.registry.get_user("alice").certificate
    near_expiry(sim, "alice", 5)
    request(sim, "alice", m.CertRenew(signature=b"\x01" * 256))
    failure = last_failure(sim, "alice")
    assert (failure.code, failure.ref) == (ErrorCode.AUTH_FAILED, "cert_renew")
    assert sim.registry.get_user("alice").certificate == before and sim.clients["alice"].certificate == before
    assert_serves(sim, "alice")


def test_renewal_before_login_is_refused() -> None:
    sim = make_simulation("alice")
    guest = connect(sim, "guest")
    with pytest.raises(LocalProtocolError):
        guest.renew_certificate()  # the client refuses to send it outside ONLINE
    request(sim, "guest", m.CertRenew(signature=b"\x01" * 64))  # a raw one: out of state before login
    assert is_closed(sim, "guest")
    assert_serves(sim, "alice")


def test_the_client_refuses_a_renewal_that_would_shorten_its_certificate() -> None:
    """A server (or anyone holding the CA key) cannot shorten a user's certificate through a renewal."""
    sim = make_simulation("alice")
    current = sim.clients["alice"].certificate
    ca = sim.server.server_key
    shorter = issue_certificate(
        username="alice", signature_scheme=current.signature_scheme, encryption_key=current.encryption_key,
        signing_key=current.signing_key, serial=7, now=int(sim.now) - 1, validity_seconds=DAY,
        ca_private_key=ca.private_key, ca_scheme=ca.scheme)
    server_push(sim, "alice", m.CertRenewed(rid=None, certificate=shorter))
    assert not sim.events_of("alice", ev.CertificateRenewed)
    assert sim.clients["alice"].certificate == current


@pytest.mark.tcp
def test_renewal_over_tcp_and_admin_recovery_of_an_expired_account(tmp_path: Path, monkeypatch,  # type: ignore[no-untyped-def]
                                                                    capsys) -> None:
    db = tmp_path / "r.db"
    registry = SqliteRegistry(db)
    key = registry.load_or_create_server_key("renewal test")
    # certificates valid 60 s: always inside the 30-day renewal window
    server = TcpServer(server_key=key, registry=registry, config=ServerConfig(
        scrypt=FAST_SCRYPT, certificate_validity_seconds=60)).start()
    keys = user_keys("erin")
    try:
        client = TcpClient(*server.address, server_key=(key.public_der, key.scheme.value), timeout=10)
        try:
            first = client.register("erin", password_of("erin"), keys).certificate
            client.login("erin", password_of("erin"), keys)
            renewed = client.renew_certificate().certificate
            assert renewed.not_after >= first.not_after and renewed.serial != first.serial
            assert registry.get_user("erin").certificate == renewed
        finally:
            client.close()
        # recovery: the instructor re-certifies an expired account's same keys
        from securechat import admin

        monkeypatch.setenv("SECURECHAT_SERVER_PASSPHRASE", "renewal test")
        assert admin.main(["--db", str(db), "renew", "erin", "--yes", "--days", "30"]) == 0
        assert "certificate renewed for the same keys" in capsys.readouterr().out
        cert = registry.get_user("erin").certificate
        # issued backdated by the clock tolerance (PROTOCOL.md 6.3)
        assert cert.not_after - cert.not_before == 30 * DAY + CLOCK_SKEW_SECONDS
        assert cert.signing_key == keys.signing_public
    finally:
        server.stop()
        registry.close()


def test_cli_renew_command_says_until_when() -> None:
    import types

    from securechat.terminal import Shell

    lines: list[str] = []
    renewed = types.SimpleNamespace(certificate=types.SimpleNamespace(not_after=2_000_000_000))
    client = types.SimpleNamespace(renew_certificate=lambda: renewed)
    shell = Shell(lambda on_event: client, store=None, emit=lines.append, ask_password=lambda q: "")  # type: ignore[arg-type, return-value]
    shell.attach(client)  # type: ignore[arg-type]
    shell.handle("/renew")
    assert lines == ["certificate renewed for the same keys: valid until 2033-05-18 UTC"]
