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
from .protocol.names import skeleton
from .protocol.registry import NameTaken, StorageFailed, UserRecord

SERVER_KEY_SCHEME = SignatureScheme.ED25519  # fast to sign (handshakes, certificates, distributions)
DEFAULT_PASSPHRASE = "securechat-dev-passphrase"  # set SECURECHAT_SERVER_PASSPHRASE for anything real

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    password_record TEXT NOT NULL,
    certificate TEXT NOT NULL,
    skeleton TEXT,
    last_login REAL
);
CREATE TABLE IF NOT EXISTS server_key (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    scheme TEXT NOT NULL,
    private_pem BLOB NOT NULL
);
"""


def lookalike_taken(username: str, other: str) -> NameTaken:
    """PROTOCOL.md 3.2: the error for a name whose skeleton is taken; it names the registered look-alike."""
    return NameTaken(f"{username} looks like the registered name {other}; choose another")


class MemoryRegistry:
    """The Registry contract in a dict, for simulations and tests."""

    def __init__(self) -> None:
        self._users: dict[str, UserRecord] = {}
        self._skeletons: dict[str, str] = {}  # skeleton -> the registered name (PROTOCOL.md 3.2)
        self.last_logins: dict[str, float] = {}
        self._lock = threading.Lock()
        self.fail_writes = False  # tests: behave like a full or read-only disk

    def get_user(self, username: str) -> UserRecord | None:
        with self._lock:
            return self._users.get(username)

    def find_lookalike(self, username: str) -> str | None:
        with self._lock:
            other = self._skeletons.get(skeleton(username))
        return other if other != username else None

    def add_user(self, record: UserRecord) -> None:
        with self._lock:
            if record.username in self._users:
                raise NameTaken(f"{record.username} is taken")
            other = self._skeletons.get(skeleton(record.username))
            if other is not None:
                raise lookalike_taken(record.username, other)
            if self.fail_writes:
                raise StorageFailed("registry write failed")
            self._users[record.username] = record
            self._skeletons[skeleton(record.username)] = record.username

    def count_users(self) -> int:
        with self._lock:
            return len(self._users)

    def replace_certificate(self, username: str, certificate: Certificate) -> None:
        with self._lock:
            record = self._users.get(username)
            if record is None or self.fail_writes:
                raise StorageFailed("registry write failed")
            self._users[username] = UserRecord(username=username, password_record=record.password_record,
                                               certificate=certificate)

    def record_login(self, username: str, now: float) -> None:
        with self._lock:
            if username in self._users:
                self.last_logins[username] = now

    def list_users(self) -> list[tuple[UserRecord, float | None]]:
        with self._lock:
            return [(self._users[name], self.last_logins.get(name)) for name in sorted(self._users)]

    def remove_user(self, username: str) -> bool:
        """Forget *username* (the admin tool's remove and reset); True if it existed."""
        with self._lock:
            self.last_logins.pop(username, None)
            record = self._users.pop(username, None)
            if record is not None and self._skeletons.get(skeleton(username)) == username:
                del self._skeletons[skeleton(username)]
            return record is not None



PRIVATE_FILE_MODE = 0o600  # the registry holds password records and (unless kept apart) the CA key


def _create_private(path: str) -> None:
    """Create *path* owner-only if it is missing, and tighten it if it exists (PROTOCOL.md 6.5)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
    finally:
        os.close(fd)


def _tighten_sidecars(path: str) -> None:
    """SQLite creates ``-wal`` and ``-shm`` with the database file's mode; tighten any left by older versions."""
    for suffix in ("-wal", "-shm", "-journal"):
        try:
            os.chmod(path + suffix, PRIVATE_FILE_MODE)
        except FileNotFoundError:
            pass


class SqliteRegistry:
    """The Registry contract in one SQLite file. Thread-safe: one connection behind a lock.

    The database and its WAL and shared-memory files are owner-only (0600): they hold password records and,
    unless ``key_file`` keeps it apart, the server's encrypted CA key (docs/THREATS.md 52, PROTOCOL.md 6.5)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        if self.path != ":memory:":
            _create_private(self.path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._migrate()
        if self.path != ":memory:":
            _tighten_sidecars(self.path)

    def _migrate(self) -> None:
        """Databases made before look-alike checks (PROTOCOL.md 6.5) get the ``skeleton`` column, filled in.
        Two existing names that look alike both stay (nobody is locked out); new ones are refused. Writes
        nothing when there is nothing to do (a read-only database still opens)."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(users)")}
        missing = [] if "skeleton" not in columns else self._db.execute(
            "SELECT username FROM users WHERE skeleton IS NULL").fetchall()
        indexed = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'users_skeleton'").fetchone()
        if "skeleton" in columns and "last_login" in columns and not missing and indexed:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if "last_login" not in columns:
                self._db.execute("ALTER TABLE users ADD COLUMN last_login REAL")
            if "skeleton" not in columns:
                self._db.execute("ALTER TABLE users ADD COLUMN skeleton TEXT")
                missing = self._db.execute("SELECT username FROM users WHERE skeleton IS NULL").fetchall()
            self._db.executemany("UPDATE users SET skeleton = ? WHERE username = ?",
                                 [(skeleton(name), name) for (name,) in missing])
            self._db.execute("CREATE INDEX IF NOT EXISTS users_skeleton ON users (skeleton)")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def find_lookalike(self, username: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT username FROM users WHERE skeleton = ? AND username != ? LIMIT 1",
                                   (skeleton(username), username)).fetchone()
        return None if row is None else str(row[0])

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
                    # PROTOCOL.md 3.2: checked in the same transaction as the insert, so two registrations
                    # of look-alike names cannot both succeed.
                    other = self._db.execute("SELECT username FROM users WHERE skeleton = ? AND username != ?",
                                             (skeleton(record.username), record.username)).fetchone()
                    if other is not None:
                        raise lookalike_taken(record.username, str(other[0]))
                    self._db.execute(
                        "INSERT INTO users (username, password_record, certificate, skeleton) VALUES (?, ?, ?, ?)",
                        (record.username, record.password_record, cert, skeleton(record.username)))
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

    def replace_certificate(self, username: str, certificate: Certificate) -> None:
        cert = json.dumps(certificate.to_dict(), sort_keys=True)
        with self._lock:
            try:
                cursor = self._db.execute("UPDATE users SET certificate = ? WHERE username = ?", (cert, username))
            except sqlite3.Error:
                raise StorageFailed("registry write failed") from None
        if cursor.rowcount != 1:
            raise StorageFailed(f"no user {username}")

    def has_server_key(self) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM server_key WHERE id = 1").fetchone() is not None

    def record_login(self, username: str, now: float) -> None:
        """Best effort (a busy or read-only database only loses the timestamp): never fails a login."""
        with self._lock:
            try:
                self._db.execute("UPDATE users SET last_login = ? WHERE username = ?", (now, username))
            except sqlite3.Error:
                pass

    def list_users(self) -> list[tuple[UserRecord, float | None]]:
        """Every user with its last login (None: never since the column existed), by name."""
        with self._lock:
            rows = self._db.execute(
                "SELECT username, password_record, certificate, last_login FROM users ORDER BY username").fetchall()
        return [(UserRecord(username=row[0], password_record=row[1],
                            certificate=Certificate.from_dict(json.loads(row[2]))), row[3]) for row in rows]

    def remove_user(self, username: str) -> bool:
        """Delete *username* in one transaction (the admin tool); True if it existed. Safe while a server
        uses the same database: WAL readers see the row until the commit, then never again."""
        with self._lock:
            try:
                cursor = self._db.execute("DELETE FROM users WHERE username = ?", (username,))
            except sqlite3.Error:
                raise StorageFailed("registry write failed") from None
            return cursor.rowcount > 0

    def load_or_create_server_key(self, passphrase: str, *, key_file: str | Path | None = None,
                                  random_bytes: RandomBytes = os.urandom) -> ServerKey:
        """The server's signing key survives restarts, so pinned clients keep trusting it (docs/THREATS.md 52).

        With *key_file* the key lives in its own owner-only file (encrypted PKCS#8 in JSON), so deleting or
        resetting the database keeps the server's identity: the file is read if it exists; otherwise the key
        already in the database (or a new one) is written to it. Raises ``AuthenticationError`` for a wrong
        passphrase and ``StorageFailed`` for an unreadable key file."""
        if key_file is not None and Path(key_file).exists():
            return read_server_key_file(key_file, passphrase)
        key = self._load_or_create_in_db(passphrase, random_bytes)
        if key_file is not None:
            write_private_server_key_file(key_file, key, passphrase, random_bytes=random_bytes)
        return key

    def _load_or_create_in_db(self, passphrase: str, random_bytes: RandomBytes) -> ServerKey:
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


def write_private_server_key_file(path: str | Path, key: ServerKey, passphrase: str, *,
                                  random_bytes: RandomBytes = os.urandom) -> None:
    """Write the server's private key (encrypted PKCS#8 PEM inside JSON) owner-only and atomically."""
    pem = private_key_pem(key.private_key, passphrase, random_bytes=random_bytes)
    body = json.dumps({"scheme": key.scheme.value, "private_key_pem": pem.decode("ascii")}, indent=2)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "w") as out:
        out.write(body)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def read_server_key_file(path: str | Path, passphrase: str) -> ServerKey:
    """Read a file written by ``write_private_server_key_file``."""
    try:
        value = json.loads(Path(path).read_text())
        scheme, pem = SignatureScheme(value["scheme"]), value["private_key_pem"].encode("ascii")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise StorageFailed(f"server key file {path} is unreadable") from None
    key = load_private_key(pem, passphrase)
    return ServerKey(private_key=key, scheme=scheme, public_der=public_key_der(key))


def new_server_key(*, random_bytes: RandomBytes = os.urandom) -> ServerKey:
    """An ephemeral server key, for simulations and tests that need no persistence."""
    key = generate_signing_key(SERVER_KEY_SCHEME, random_bytes=random_bytes)
    return ServerKey(private_key=key, scheme=SERVER_KEY_SCHEME, public_der=public_key_der(key))
