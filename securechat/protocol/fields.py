"""Field kinds of the wire schema: how one JSON value becomes one typed Python value, strictly.

Owns: the validators that docs/PROTOCOL.md section 3 names (string, name, integer, boolean, base64 bytes, lists
and certificate objects) and the limits they enforce. Must not: know any message type or any state; import
sockets, threads or clocks.

Every failure raises RemoteProtocolError with ErrorCode.BAD_FIELD naming the field, so a malformed value is
answered the same way wherever it appears (docs/THREATS.md entries 5, 6 and 9).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..crypto.encoding import b64d, b64e
from ..errors import ErrorCode, RemoteProtocolError

# PROTOCOL.md 3.2: a username is NFKC-normalised and casefolded, then must match this pattern. The restricted
# set (ASCII letters, digits, '_', '-', '.') is what makes look-alikes such as Cyrillic 'а' impossible.
USERNAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
MAX_USERNAME_CHARS = 32
MAX_INT = 2**63 - 1  # JSON integers beyond this are refused: they cannot be counters or times here


def bad(field: str, why: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"field {field!r}: {why}", ErrorCode.BAD_FIELD)


def normalize_username(raw: str, field: str = "username") -> str:
    """Return the canonical form of *raw* (NFKC then casefold) or raise BAD_FIELD.

    PROTOCOL.md 3.2: ``Alice``, ``ALICE`` and fullwidth ``ａｌｉｃｅ`` all become ``alice``; zero-width and
    non-ASCII letters are refused rather than mapped, so no two distinct accepted names look alike.
    """
    if not isinstance(raw, str) or len(raw) > 4 * MAX_USERNAME_CHARS:
        raise bad(field, "must be a short string")
    name = unicodedata.normalize("NFKC", raw).casefold()
    if not USERNAME_PATTERN.fullmatch(name):
        raise bad(field, "1-32 of a-z 0-9 _ . - starting with a letter or digit")
    return name


@dataclass(frozen=True)
class Kind:
    """Base field kind: decode a JSON value, encode it back."""

    def decode(self, name: str, value: Any) -> Any:
        raise NotImplementedError

    def encode(self, value: Any) -> Any:
        return value


@dataclass(frozen=True)
class Text(Kind):
    max_chars: int = 256

    def decode(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or len(value) > self.max_chars:
            raise bad(name, f"must be a string of at most {self.max_chars} characters")
        try:
            value.encode("utf-8")  # docs/THREATS.md 5: a lone surrogate parses but cannot be re-encoded
        except UnicodeEncodeError:
            raise bad(name, "not valid Unicode") from None
        return value


@dataclass(frozen=True)
class Name(Kind):
    """A username as it travels; the server normalises it itself (PROTOCOL.md 3.2)."""

    def decode(self, name: str, value: Any) -> str:
        return normalize_username(value, name)


@dataclass(frozen=True)
class Choice(Kind):
    values: tuple[str, ...] = ()
    names: type[StrEnum] | None = None  # when built with ``of``: decode to that enum's member

    @classmethod
    def of(cls, names: type[StrEnum]) -> Choice:
        """The choice of one of *names*' values (securechat.protocol.vocabulary), decoded to the enum member."""
        return cls(values=tuple(member.value for member in names), names=names)

    def decode(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or value not in self.values:
            raise bad(name, f"must be one of {', '.join(self.values)}")
        return value if self.names is None else self.names(value)

    def encode(self, value: Any) -> Any:
        return str(value)  # a StrEnum member travels as its plain value


@dataclass(frozen=True)
class Integer(Kind):
    minimum: int = 0
    maximum: int = MAX_INT

    def decode(self, name: str, value: Any) -> int:
        # docs/THREATS.md 6: bool is a subclass of int in Python, and `true` is not an integer.
        if type(value) is not int or not self.minimum <= value <= self.maximum:
            raise bad(name, f"must be an integer in {self.minimum}..{self.maximum}")
        return value


@dataclass(frozen=True)
class Boolean(Kind):
    def decode(self, name: str, value: Any) -> bool:
        if type(value) is not bool:
            raise bad(name, "must be true or false")
        return value


@dataclass(frozen=True)
class Blob(Kind):
    """Bytes travel as standard base64 with padding (PROTOCOL.md 3.1)."""

    max_bytes: int = 4096
    exact: int | None = None

    def decode(self, name: str, value: Any) -> bytes:
        if not isinstance(value, str) or len(value) > 4 * ((self.max_bytes + 2) // 3):
            raise bad(name, f"must be base64 of at most {self.max_bytes} bytes")
        try:
            data = b64d(value)
        except RemoteProtocolError:
            raise bad(name, "not canonical base64") from None
        if self.exact is not None and len(data) != self.exact:
            raise bad(name, f"must be exactly {self.exact} bytes")
        if len(data) > self.max_bytes:
            raise bad(name, f"must be at most {self.max_bytes} bytes")
        return data

    def encode(self, value: Any) -> str:
        return b64e(value)


@dataclass(frozen=True)
class ListOf(Kind):
    item: Kind = Text()
    max_items: int = 256
    unique: bool = False

    def decode(self, name: str, value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list) or len(value) > self.max_items:
            raise bad(name, f"must be a list of at most {self.max_items} items")
        items = tuple(self.item.decode(name, v) for v in value)
        if self.unique and len(set(items)) != len(items):
            raise bad(name, "items must be unique")
        return items

    def encode(self, value: Any) -> list[Any]:
        return [self.item.encode(v) for v in value]


@dataclass(frozen=True)
class Object(Kind):
    """A nested JSON object handled by a class with ``from_dict``/``to_dict`` (certificates, unavailable users)."""

    cls: Any = None

    def decode(self, name: str, value: Any) -> Any:
        try:
            return self.cls.from_dict(value)
        except RemoteProtocolError as exc:
            raise bad(name, str(exc.args[0])) from None

    def encode(self, value: Any) -> Any:
        return value.to_dict()


@dataclass(frozen=True)
class Optional(Kind):
    """A field that may be absent or null; decodes to None."""

    inner: Kind = Text()

    def decode(self, name: str, value: Any) -> Any:
        return None if value is None else self.inner.decode(name, value)

    def encode(self, value: Any) -> Any:
        return None if value is None else self.inner.encode(value)
