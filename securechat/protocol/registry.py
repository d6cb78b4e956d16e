"""The registry interface the server protocol reads and writes (its implementations live in ``securechat.store``).

Owns: ``UserRecord`` (what the server stores per user: never a private key, never a password, only its
scrypt record) and the ``Registry`` protocol. Must not: do file I/O; ``securechat.store.SqliteRegistry`` is the
persistent implementation and ``securechat.store.MemoryRegistry`` the in-memory one; the same tests run on both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..crypto.certificates import Certificate
from ..errors import ErrorCode, SecureChatError


@dataclass(frozen=True)
class UserRecord:
    username: str
    password_record: str  # "scrypt$N$r$p$salt$hash" (PROTOCOL.md 6.1)
    certificate: Certificate


class NameTaken(SecureChatError):
    code = ErrorCode.NAME_TAKEN


class StorageFailed(SecureChatError):
    code = ErrorCode.STORAGE_FAILED


class Registry(Protocol):
    """Thread-safe storage of registered users. ``add_user`` is atomic: a user is stored whole or not at all."""

    def get_user(self, username: str) -> UserRecord | None: ...

    def find_lookalike(self, username: str) -> str | None:
        """A registered name other than *username* with the same skeleton (``names.skeleton``), or None."""
        ...

    def add_user(self, record: UserRecord) -> None:
        """Raises NameTaken if the name or a look-alike exists (PROTOCOL.md 3.2), StorageFailed if the write
        failed (nothing is stored)."""
        ...

    def count_users(self) -> int: ...

    def replace_certificate(self, username: str, certificate: Certificate) -> None:
        """Store a renewed certificate (PROTOCOL.md 6.6); StorageFailed if the user is gone or the write fails."""
        ...

    def record_login(self, username: str, now: float) -> None:
        """Note a successful login (the admin tool's "last login"); best effort, never raises."""
        ...
