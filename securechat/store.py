"""Persistent server state: the user registry and the server's long-term key, in SQLite (PROTOCOL.md 6.5).

Owns: the database schema, atomic registration writes, and loading or creating the server key. Must not:
store private keys of users (it never receives them), passwords (only scrypt records) or any message.

Durability (docs/THREATS.md 51-53): WAL journal with ``synchronous=FULL``, so an acknowledged registration has
reached the disk before ``registered`` is sent; every write is one transaction, so a server killed at any
instant leaves each user fully registered or absent. A write that fails (disk full, read-only file) raises
StorageFailed and changes nothing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path

from .crypto.certificates import Certificate
from .crypto.encoding import RandomBytes
from .crypto.keys import load_private_key, private_key_pem, public_key_der
from .crypto.signatures import SignatureScheme, generate_signing_key
from .protocol.jobs import ServerKey
from .protocol.registry import NameTaken, StorageFailed, UserRecord

SERVER_KEY_SCHEME = SignatureScheme.ED25519  # fast to sign (handshakes, certificates, distributions)
DEFAULT_PASSPHRASE = "securechat-dev-passphrase"  # set SECURECHAT_SERVER_PASSPHRASE for anything real

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    password_record TEXT NOT NULL,
    certificate TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS server_key (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    scheme TEXT NOT NULL,
    private_pem BLOB NOT NULL
);
"""


class MemoryRegistry:
    """The Registry contract in a dict, for simulations and tests."""

    def __init__(self) -> None:
        self._users: dict[str, UserRecord] = {}
        self._lock = threading.Lock()
        self.fail_writes = False  # tests: behave like a full or read-only disk

    def get_user(self, username: str) -> UserRecord | None:
        with self._lock:
            return self._users.get(username)

    def add_user(self, record: UserRecord) -> None:
        with self._lock:
            if record.username in self._users:
                raise NameTaken(f"{record.username} is taken")
            if self.fail_writes:
                raise StorageFailed("registry write failed")
            self._users[record.username] = record

    def count_users(self) -> int:
        with self._lock:
            return len(self._users)


class SqliteRegistry:
    """The Registry contract in one SQLite file. Thread-safe: one connection behind a lock."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def get_user(self, username: str) -> UserRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT username, password_record, certificate FROM users WHERE username = ?", (username,)
            ).fetchone()
        if row is None:
            return None
        return UserRecord(username=row[0], password_record=row[1],
                          certificate=Certificate.from_dict(json.loads(row[2])))

    def add_user(self, record: UserRecord) -> None:
        cert = json.dumps(record.certificate.to_dict(), sort_keys=True)
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.execute("INSERT INTO users VALUES (?, ?, ?)",
                                     (record.username, record.password_record, cert))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.IntegrityError:
                raise NameTaken(f"{record.username} is taken") from None
            except sqlite3.Error:
                raise StorageFailed("registry write failed") from None

    def count_users(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM users").fetchone()[0])

    def load_or_create_server_key(self, passphrase: str, *, random_bytes: RandomBytes = os.urandom) -> ServerKey:
        """The server's signing key survives restarts, so pinned clients keep trusting it (docs/THREATS.md 52)."""
        with self._lock:
            row = self._db.execute("SELECT scheme, private_pem FROM server_key WHERE id = 1").fetchone()
            if row is None:
                key = generate_signing_key(SERVER_KEY_SCHEME, random_bytes=random_bytes)
                pem = private_key_pem(key, passphrase, random_bytes=random_bytes)
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("INSERT INTO server_key VALUES (1, ?, ?)", (SERVER_KEY_SCHEME.value, pem))
                self._db.execute("COMMIT")
                scheme = SERVER_KEY_SCHEME
            else:
                scheme, key = SignatureScheme(row[0]), load_private_key(bytes(row[1]), passphrase)
        return ServerKey(private_key=key, scheme=scheme, public_der=public_key_der(key))


def new_server_key(*, random_bytes: RandomBytes = os.urandom) -> ServerKey:
    """An ephemeral server key, for simulations and tests that need no persistence."""
    key = generate_signing_key(SERVER_KEY_SCHEME, random_bytes=random_bytes)
    return ServerKey(private_key=key, scheme=SERVER_KEY_SCHEME, public_der=public_key_der(key))
