"""securechat-admin against the database of a running server (PROTOCOL.md 6.5)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from securechat import admin
from securechat.crypto.encoding import fingerprint
from securechat.crypto.kdf import FAST_SCRYPT
from securechat.crypto.signatures import SignatureScheme
from securechat.keystore import read_server_key_file
from securechat.net.tcp_client import RequestError, TcpClient
from securechat.net.tcp_server import TcpServer
from securechat.protocol.identity import UserKeys, generate_user_keys
from securechat.protocol.limits import ServerConfig
from securechat.store import SqliteRegistry

pytestmark = pytest.mark.tcp  # a live server and the admin command (tests/guard.py)

ROOT = Path(__file__).resolve().parent.parent
PASSPHRASE = "admin test passphrase"


@pytest.fixture(scope="module")
def akeys() -> list[UserKeys]:
    return [generate_user_keys(SignatureScheme.ED25519) for _ in range(3)]


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[TcpServer, Path]]:
    db = tmp_path / "registry.db"
    registry = SqliteRegistry(db)
    key = registry.load_or_create_server_key(PASSPHRASE)
    server = TcpServer(server_key=key, registry=registry, config=ServerConfig(scrypt=FAST_SCRYPT)).start()
    try:
        yield server, db
    finally:
        server.stop()
        registry.close()


def client(server: TcpServer) -> TcpClient:
    key = server.protocol.server_key
    return TcpClient(*server.address, server_key=(key.public_der, key.scheme.value), timeout=10)


def run(capsys: pytest.CaptureFixture[str], *argv: str, answer: str = "") -> tuple[int, str, str]:
    code = admin.main(list(argv), ask=lambda prompt: answer)
    out, err = capsys.readouterr()
    return code, out, err


def test_list_and_counts_while_the_server_runs(running, akeys, capsys) -> None:  # type: ignore[no-untyped-def]
    server, db = running
    alice, bob = client(server), client(server)
    try:
        alice.register("alice", "pw-alice", akeys[0])
        alice.login("alice", "pw-alice", akeys[0])
        bob.register("bob", "pw-bob", akeys[1])
        code, out, _ = run(capsys, "--db", str(db), "list")
        assert code == 0
        rows = {line.split()[0]: line for line in out.splitlines()[1:-1]}
        assert set(rows) == {"alice", "bob"} and out.splitlines()[-1] == "2 users"
        assert "ed25519" in rows["alice"] and "UTC" in rows["alice"].split("ed25519")[1]
        assert rows["alice"].rstrip().endswith("UTC") and rows["bob"].rstrip().endswith("never")
        assert "scrypt$" not in out and "PRIVATE" not in out
        code, out, _ = run(capsys, "--db", str(db), "counts")
        assert code == 0 and "users: 2" in out and "ed25519: 2" in out and "never logged in: 1" in out
        assert "certificates expired: 0" in out
        assert alice.who() == ("alice",)  # the server kept serving throughout
    finally:
        alice.close()
        bob.close()


def test_reset_frees_the_name_of_a_user_who_lost_their_keys(running, akeys, capsys) -> None:  # type: ignore[no-untyped-def]
    server, db = running
    first = client(server)
    first.register("carol", "pw-carol", akeys[0])
    first.close()
    code, _, err = run(capsys, "--db", str(db), "reset", "carol", answer="carl")  # a typo: nothing happens
    assert code == 1 and "nothing changed" in err
    code, out, _ = run(capsys, "--db", str(db), "reset", "carol", answer="carol")
    assert code == 0 and "free to register again" in out and "key-change warning" in out
    again = client(server)  # the running server sees the reset at once: carol registers with new keys
    try:
        again.register("carol", "pw-new", akeys[2])
        assert again.login("carol", "pw-new", akeys[2]).username == "carol"
    finally:
        again.close()


def test_remove_takes_effect_on_the_running_server(running, akeys, capsys) -> None:  # type: ignore[no-untyped-def]
    server, db = running
    dave = client(server)
    dave.register("dave", "pw-dave", akeys[1])
    dave.close()
    code, out, _ = run(capsys, "--db", str(db), "remove", "dave", "--yes")
    assert code == 0 and "removed" in out
    late = client(server)
    try:
        with pytest.raises(RequestError) as failed:
            late.login("dave", "pw-dave", akeys[1])
        assert failed.value.failure.code == "auth_failed"
    finally:
        late.close()
    code, _, err = run(capsys, "--db", str(db), "remove", "dave", "--yes")
    assert code == 1 and "no user dave" in err


def test_key_shows_and_exports_the_server_key(running, tmp_path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    server, db = running
    monkeypatch.delenv("SECURECHAT_SERVER_PASSPHRASE", raising=False)
    code, _, err = run(capsys, "--db", str(db), "key")
    assert code == 2 and "SECURECHAT_SERVER_PASSPHRASE" in err
    monkeypatch.setenv("SECURECHAT_SERVER_PASSPHRASE", PASSPHRASE)
    exported = tmp_path / "public.json"
    code, out, _ = run(capsys, "--db", str(db), "key", "--export", str(exported))
    key = server.protocol.server_key
    assert code == 0 and f"server key fingerprint: {fingerprint(key.public_der)}" in out
    assert read_server_key_file(exported) == (key.public_der, key.scheme.value)
    monkeypatch.setenv("SECURECHAT_SERVER_PASSPHRASE", "wrong")
    code, _, err = run(capsys, "--db", str(db), "key")
    assert code == 1 and "Traceback" not in err


def test_missing_database_and_module_entry_point(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "securechat.admin", "--db", str(tmp_path / "none.db"), "list"],
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "no registry at" in proc.stderr and not (tmp_path / "none.db").exists()
