"""A private registry (PROTOCOL.md 6.5): owner-only files, no silent default passphrase, a server key that
survives a database reset."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from securechat import server as server_cli
from securechat.errors import SecureChatError
from securechat.store import DEFAULT_PASSPHRASE, SqliteRegistry
from tests.helpers import make_simulation


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The usual umask of a lab machine: files readable by everyone unless created otherwise."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_database_wal_and_shm_are_owner_only(tmp_path: Path, loose_umask: None) -> None:
    """Finding: the registry (password records, the CA key) and its WAL/SHM were created 0644."""
    db = tmp_path / "registry.db"
    registry = SqliteRegistry(db)
    try:
        registry.load_or_create_server_key("a passphrase for this test")
        sim = make_simulation("alice")
        registry.add_user(sim.registry.get_user("alice"))  # a write: the WAL and SHM exist now
        for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            assert path.exists() and mode(path) == 0o600, (path, oct(mode(path)))
    finally:
        registry.close()


def test_an_existing_world_readable_database_is_tightened(tmp_path: Path, loose_umask: None) -> None:
    db = tmp_path / "old.db"
    SqliteRegistry(db).close()
    for path in tmp_path.iterdir():
        path.chmod(0o644)
    registry = SqliteRegistry(db)
    try:
        assert all(mode(path) == 0o600 for path in tmp_path.iterdir())
    finally:
        registry.close()


def test_server_refuses_the_default_passphrase_unless_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Finding: with SECURECHAT_SERVER_PASSPHRASE unset the server only logged a warning and protected the CA
    key with a passphrase published in the source."""
    monkeypatch.delenv("SECURECHAT_SERVER_PASSPHRASE", raising=False)
    db = tmp_path / "s.db"
    assert server_cli.main(["--port", "0", "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert "SECURECHAT_SERVER_PASSPHRASE" in err and "--allow-default-passphrase" in err
    assert "Traceback" not in err and not db.exists()  # refused before anything was created
    monkeypatch.setenv("SECURECHAT_SERVER_PASSPHRASE", DEFAULT_PASSPHRASE)  # the default, spelled out
    assert server_cli.main(["--port", "0", "--db", str(db)]) == 2


def test_a_wrong_passphrase_is_a_plain_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    db, key_file = tmp_path / "s.db", tmp_path / "server-key.json"
    registry = SqliteRegistry(db)
    registry.load_or_create_server_key("the right one", key_file=key_file)
    registry.close()
    monkeypatch.setenv("SECURECHAT_SERVER_PASSPHRASE", "a wrong one")
    assert server_cli.main(["--port", "0", "--db", str(db), "--server-key-file", str(key_file)]) == 2
    err = capsys.readouterr().err
    assert "cannot load the server key" in err and "Traceback" not in err


def test_server_key_file_keeps_the_identity_across_a_database_reset(tmp_path: Path, loose_umask: None) -> None:
    """Finding: deleting the database silently changed the server's identity (every pinned client failed)."""
    key_file = tmp_path / "server-key.json"
    first = SqliteRegistry(tmp_path / "one.db")
    key = first.load_or_create_server_key("pass phrase", key_file=key_file)
    first.close()
    assert mode(key_file) == 0o600 and b"PRIVATE" in key_file.read_bytes()
    for path in tmp_path.glob("one.db*"):
        path.unlink()  # the instructor resets the registry
    second = SqliteRegistry(tmp_path / "one.db")
    try:
        assert second.load_or_create_server_key("pass phrase", key_file=key_file).public_der == key.public_der
    finally:
        second.close()


def test_a_key_already_in_the_database_moves_to_the_key_file(tmp_path: Path) -> None:
    """An existing deployment keeps its identity when it starts using --server-key-file."""
    registry = SqliteRegistry(tmp_path / "r.db")
    try:
        old = registry.load_or_create_server_key("pass phrase")
        key_file = tmp_path / "k.json"
        assert registry.load_or_create_server_key("pass phrase", key_file=key_file).public_der == old.public_der
        assert registry.load_or_create_server_key("pass phrase", key_file=key_file).public_der == old.public_der
        key_file.write_text("{not json")
        with pytest.raises(SecureChatError):
            registry.load_or_create_server_key("pass phrase", key_file=key_file)
    finally:
        registry.close()
