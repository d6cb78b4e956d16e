"""The Registry contract (protocol/registry.py), run on both MemoryRegistry and SqliteRegistry, plus what only the
SQLite store promises: durability across reopen, the persistent server key and StorageFailed on a failing disk
(docs/THREATS.md 51-53).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from securechat.errors import AuthenticationError, ErrorCode, SecureChatError
from securechat.protocol.registry import NameTaken, StorageFailed, UserRecord
from securechat.store import MemoryRegistry, SqliteRegistry
from tests.helpers import sample_certificate, seeded

PASSPHRASE = "test passphrase"


def record(name: str, password_record: str = "scrypt$1024$8$1$c2FsdA==$aGFzaA==") -> UserRecord:
    return UserRecord(username=name, password_record=password_record, certificate=sample_certificate(name))


@pytest.fixture(params=["memory", "sqlite"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MemoryRegistry | SqliteRegistry]:
    if request.param == "memory":
        yield MemoryRegistry()
    else:
        store = SqliteRegistry(tmp_path / "registry.db")
        yield store
        store.close()


def make_writes_fail(registry: MemoryRegistry | SqliteRegistry, how: str = "read-only") -> None:
    """Make the next writes really fail: a read-only or full database for SQLite, the flag for memory."""
    if isinstance(registry, MemoryRegistry):
        registry.fail_writes = True
    elif how == "read-only":
        registry._db.execute("PRAGMA query_only=ON")
    else:  # a full disk: the database may not grow by a single page
        pages = registry._db.execute("PRAGMA page_count").fetchone()[0]
        registry._db.execute(f"PRAGMA max_page_count={pages}")


def make_writes_work(registry: MemoryRegistry | SqliteRegistry) -> None:
    if isinstance(registry, MemoryRegistry):
        registry.fail_writes = False
    else:
        registry._db.execute("PRAGMA query_only=OFF")
        registry._db.execute("PRAGMA max_page_count=1073741823")


# --- the contract, on both implementations --------------------------------------------------------------------


def test_empty_registry(registry: MemoryRegistry | SqliteRegistry) -> None:
    assert registry.count_users() == 0 and registry.get_user("alice") is None


def test_add_and_get_round_trip_including_the_certificate(registry: MemoryRegistry | SqliteRegistry) -> None:
    alice = record("alice")
    registry.add_user(alice)
    got = registry.get_user("alice")
    assert got == alice
    assert got is not None and got.certificate == alice.certificate
    assert got.certificate.signature == alice.certificate.signature
    assert registry.get_user("bob") is None and registry.get_user("Alice") is None  # names arrive normalised


def test_duplicate_name_is_name_taken_and_keeps_the_original(registry: MemoryRegistry | SqliteRegistry) -> None:
    registry.add_user(record("alice"))
    with pytest.raises(NameTaken) as info:
        registry.add_user(record("alice", password_record="scrypt$other"))
    assert info.value.code is ErrorCode.NAME_TAKEN
    assert registry.get_user("alice") == record("alice") and registry.count_users() == 1


def test_count_follows_additions(registry: MemoryRegistry | SqliteRegistry) -> None:
    for i, name in enumerate(["alice", "bob", "carol"], start=1):
        registry.add_user(record(name))
        assert registry.count_users() == i


@pytest.mark.parametrize("how", ["read-only", "disk-full"])
def test_failed_write_is_storage_failed_and_stores_nothing(registry: MemoryRegistry | SqliteRegistry,
                                                           how: str) -> None:
    registry.add_user(record("alice"))
    make_writes_fail(registry, how)
    big = record("bob", password_record="scrypt$" + "x" * 50_000)  # needs new pages
    with pytest.raises(StorageFailed) as info:
        registry.add_user(big)
    assert info.value.code is ErrorCode.STORAGE_FAILED and isinstance(info.value, SecureChatError)
    assert registry.get_user("bob") is None and registry.count_users() == 1
    assert registry.get_user("alice") == record("alice")  # existing users are unaffected (docs/THREATS.md 53)
    make_writes_work(registry)
    registry.add_user(big)  # the store recovers: no transaction was left open
    assert registry.get_user("bob") == big and registry.count_users() == 2


def test_concurrent_registrations_of_one_name_store_exactly_one(registry: MemoryRegistry | SqliteRegistry) -> None:
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt(i: int) -> None:
        try:
            registry.add_user(record("alice", password_record=f"scrypt${i}"))
            result = "stored"
        except NameTaken:
            result = "taken"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["stored"] + ["taken"] * 7
    assert registry.count_users() == 1


# --- SQLite only -------------------------------------------------------------------------------------------------


def test_sqlite_survives_close_and_reopen(tmp_path: Path) -> None:
    """docs/THREATS.md 52: users and the server key survive a restart; the key is stored encrypted only."""
    path = tmp_path / "server.db"
    store = SqliteRegistry(path)
    store.add_user(record("alice"))
    key = store.load_or_create_server_key(PASSPHRASE, random_bytes=seeded("server-key"))
    pem = store._db.execute("SELECT private_pem FROM server_key").fetchone()[0]
    assert bytes(pem).lstrip().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    store.close()
    reopened = SqliteRegistry(path)
    try:
        assert reopened.get_user("alice") == record("alice") and reopened.count_users() == 1
        again = reopened.load_or_create_server_key(PASSPHRASE)  # loaded, not created anew
        assert (again.public_der, again.scheme) == (key.public_der, key.scheme)  # pinned clients still trust it
        with pytest.raises(AuthenticationError):
            reopened.load_or_create_server_key("wrong passphrase")  # never silently replaced by a new key
        with pytest.raises(NameTaken):
            reopened.add_user(record("alice"))
        assert reopened._db.execute("SELECT COUNT(*) FROM server_key").fetchone()[0] == 1
    finally:
        reopened.close()


def test_sqlite_two_connections_see_each_others_writes(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    first, second = SqliteRegistry(path), SqliteRegistry(path)
    try:
        first.add_user(record("alice"))
        assert second.get_user("alice") == record("alice")
        with pytest.raises(NameTaken):
            second.add_user(record("alice"))
    finally:
        first.close()
        second.close()


def test_sqlite_read_only_file_is_storage_failed(tmp_path: Path) -> None:
    """A database opened read-only by SQLite itself (as a read-only mount would be)."""
    path = tmp_path / "ro.db"
    SqliteRegistry(path).close()
    store = SqliteRegistry(path)
    store._db.close()
    store._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None)
    try:
        with pytest.raises(StorageFailed):
            store.add_user(record("alice"))
        assert store.count_users() == 0
    finally:
        store.close()


def test_certificates_round_trip_through_sqlite_exactly(tmp_path: Path) -> None:
    store = SqliteRegistry(tmp_path / "c.db")
    try:
        original = record("carol")
        changed = replace(original, certificate=replace(original.certificate, serial=2**63 - 1))
        store.add_user(changed)
        assert store.get_user("carol") == changed
    finally:
        store.close()
