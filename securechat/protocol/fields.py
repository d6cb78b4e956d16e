"""Field kinds of the wire schema: how one JSON value becomes one typed Python value, strictly.

Owns: the validators that docs/PROTOCOL.md section 3 names (string, name, integer, boolean, base64 bytes, lists
and certificate objects) and the limits they enforce. Must not: know any message type or any state; import
sockets, threads or clocks.

Each kind does two things, and every rule lives in exactly one of them (one source of truth for both directions):

* ``load(name, json_value)`` turns the wire form into the Python form: base64 text into ``bytes``, a JSON list of
  such items into a tuple, a certificate object into a ``Certificate``. Only kinds whose wire form differs load
  (``loads()`` says which); a failure is the peer's: RemoteProtocolError.
* ``check(name, python_value)`` enforces the kind's rules on the Python form and returns the canonical value (a
  name NFKC-casefolded, a choice as its enum member, a list as a tuple). ``Message.__post_init__`` runs it on every
  field, so a failure is the caller's own mistake: LocalProtocolError.

``decode`` is ``check(load(...))`` for one value, with a check failure re-raised as the peer's. The codec decodes a
whole message by loading its fields and constructing it, re-raising the construction's LocalProtocolError as a
RemoteProtocolError (as h11 does). Either way the code is ErrorCode.BAD_FIELD and the text names the field, so a
malformed value is answered the same way wherever it appears (docs/THREATS.md entries 5, 6 and 9).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from typing import TypeVar

from ..crypto.encoding import b64d, b64e
from ..errors import ErrorCode, LocalProtocolError, RemoteProtocolError

# PROTOCOL.md 3.2: a username is NFKC-normalised and casefolded, then must match this pattern. The restricted
# set (ASCII letters, digits, '_', '-', '.') is what makes look-alikes such as Cyrillic 'а' impossible.
USERNAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
MAX_USERNAME_CHARS = 32
# Names that already match USERNAME_PATTERN are their own NFKC casefold (ASCII lowercase, digits, _ . -), so a list
# of them is canonical when its lines match, one name per line.
_CANONICAL_LINES = re.compile(rf"{USERNAME_PATTERN.pattern}(?:\n{USERNAME_PATTERN.pattern})*")
MAX_INT = 2**63 - 1  # JSON integers beyond this are refused: they cannot be counters or times here


def bad(field: str, why: str) -> RemoteProtocolError:
    """The peer sent a malformed *field* (decoding)."""
    return RemoteProtocolError(f"field {field!r}: {why}", ErrorCode.BAD_FIELD)


def refused(field: str, why: str) -> LocalProtocolError:
    """We tried to build a message with a malformed *field* (construction): the same text as ``bad``."""
    return LocalProtocolError(f"field {field!r}: {why}", ErrorCode.BAD_FIELD)


def as_remote(error: LocalProtocolError) -> RemoteProtocolError:
    """A check failure met while decoding: the same text and code, blamed on the peer."""
    return RemoteProtocolError(str(error.args[0]), error.code)


def _canonical_name(raw: Any, field: str) -> str:
    if type(raw) is str and USERNAME_PATTERN.fullmatch(raw):
        return raw  # already canonical (the usual case): ASCII a-z 0-9 _ . - is its own NFKC casefold
    if not isinstance(raw, str) or len(raw) > 4 * MAX_USERNAME_CHARS:
        raise refused(field, "must be a short string")
    name = unicodedata.normalize("NFKC", raw).casefold()
    if not USERNAME_PATTERN.fullmatch(name):
        raise refused(field, "1-32 of a-z 0-9 _ . - starting with a letter or digit")
    return name


def normalize_username(raw: str, field: str = "username") -> str:
    """Return the canonical form of a received *raw* name (NFKC then casefold) or raise BAD_FIELD
    (RemoteProtocolError; ``Name().check`` is the same rule raising LocalProtocolError).

    PROTOCOL.md 3.2: ``Alice``, ``ALICE`` and fullwidth ``ａｌｉｃｅ`` all become ``alice``; zero-width and
    non-ASCII letters are refused rather than mapped, so no two distinct accepted names look alike.
    """
    try:
        return _canonical_name(raw, field)
    except LocalProtocolError as exc:
        raise as_remote(exc) from None


@dataclass(frozen=True)
class Kind:
    """Base field kind: load a JSON value into its Python form, check a Python value, encode it back."""

    def loads(self) -> bool:
        """True if the wire form differs from the Python form (``load`` is not the identity)."""
        return False

    def load(self, name: str, value: Any) -> Any:
        """The Python form of the JSON *value* (RemoteProtocolError if it cannot have one)."""
        return value

    def check(self, name: str, value: Any) -> Any:
        """*value* in canonical form if it obeys the kind's rules, else LocalProtocolError (BAD_FIELD)."""
        raise NotImplementedError

    def check_all(self, name: str, values: list[Any] | tuple[Any, ...]) -> tuple[Any, ...]:
        """``check`` on every item of a list field, in order."""
        return tuple([self.check(name, value) for value in values])

    def check_received(self, name: str, value: Any) -> Any:
        """``check`` on a value that came from the peer: a failure is RemoteProtocolError (BAD_FIELD)."""
        try:
            return self.check(name, value)
        except LocalProtocolError as exc:
            raise as_remote(exc) from None

    def decode(self, name: str, value: Any) -> Any:
        """One received JSON value, loaded and checked; every failure is RemoteProtocolError (BAD_FIELD)."""
        return self.check_received(name, self.load(name, value))

    def encode(self, value: Any) -> Any:
        return value


@dataclass(frozen=True)
class Text(Kind):
    max_chars: int = 256

    def check(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or len(value) > self.max_chars:
            raise refused(name, f"must be a string of at most {self.max_chars} characters")
        try:
            value.encode("utf-8")  # docs/THREATS.md 5: a lone surrogate parses but cannot be re-encoded
        except UnicodeEncodeError:
            raise refused(name, "not valid Unicode") from None
        return value


@dataclass(frozen=True)
class Name(Kind):
    """A username as it travels, normalised by whoever builds or receives it (PROTOCOL.md 3.2)."""

    def check(self, name: str, value: Any) -> str:
        return _canonical_name(value, name)

    def check_all(self, name: str, values: list[Any] | tuple[Any, ...]) -> tuple[Any, ...]:
        # A member list is checked in every key distribution the server builds (one per member): names already in
        # canonical form, the usual case, pass with one scan of the joined list (no item can hold a newline).
        if type(values) is tuple and all(type(v) is str for v in values) and (
                not values or _CANONICAL_LINES.fullmatch("\n".join(values))):
            return values
        return super().check_all(name, values)


@dataclass(frozen=True)
class Choice(Kind):
    values: tuple[str, ...] = ()
    names: type[StrEnum] | None = None  # when built with ``of``: decode to that enum's member

    @classmethod
    def of(cls, names: type[StrEnum]) -> Choice:
        """The choice of one of *names*' values (securechat.protocol.vocabulary), decoded to the enum member."""
        return cls(values=tuple(member.value for member in names), names=names)

    def check(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or value not in self.values:
            raise refused(name, f"must be one of {', '.join(self.values)}")
        return value if self.names is None else self.names(value)

    def encode(self, value: Any) -> Any:
        return str(value)  # a StrEnum member travels as its plain value


@dataclass(frozen=True)
class Integer(Kind):
    minimum: int = 0
    maximum: int = MAX_INT

    def check(self, name: str, value: Any) -> int:
        # docs/THREATS.md 6: bool is a subclass of int in Python, and `true` is not an integer.
        if type(value) is not int or not self.minimum <= value <= self.maximum:
            raise refused(name, f"must be an integer in {self.minimum}..{self.maximum}")
        return value


@dataclass(frozen=True)
class Boolean(Kind):
    def check(self, name: str, value: Any) -> bool:
        if type(value) is not bool:
            raise refused(name, "must be true or false")
        return value


@dataclass(frozen=True)
class Blob(Kind):
    """Bytes travel as standard base64 with padding (PROTOCOL.md 3.1)."""

    max_bytes: int = 4096
    exact: int | None = None

    def loads(self) -> bool:
        return True

    def load(self, name: str, value: Any) -> bytes:
        # PROTOCOL.md 3.2: the length of the text is checked before decoding it
        if not isinstance(value, str) or len(value) > 4 * ((self.max_bytes + 2) // 3):
            raise bad(name, f"must be base64 of at most {self.max_bytes} bytes")
        try:
            return b64d(value)
        except RemoteProtocolError:
            raise bad(name, "not canonical base64") from None

    def check(self, name: str, value: Any) -> bytes:
        if type(value) is bytes:
            data: bytes = value
        elif isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)  # a frozen message holds immutable bytes
        else:
            raise refused(name, f"must be bytes (at most {self.max_bytes})")
        if self.exact is not None and len(data) != self.exact:
            raise refused(name, f"must be exactly {self.exact} bytes")
        if len(data) > self.max_bytes:
            raise refused(name, f"must be at most {self.max_bytes} bytes")
        return data

    def encode(self, value: Any) -> str:
        return b64e(value)


# The last canonical tuple of names a ListOf passed, with that kind: the server builds one key distribution per
# member around the same member tuple (jobs.ChatKeyJob), which is then checked once, not once per member (256x
# 256 names). Identity is safe: this global holds the tuple, so its id cannot be reused while it is compared; the
# pair is replaced as one object, so a reader never sees one kind's tuple with another kind.
_last_canonical_list: tuple[Kind | None, tuple[Any, ...] | None] = (None, None)


@dataclass(frozen=True)
class ListOf(Kind):
    item: Kind = Text()
    max_items: int = 256
    unique: bool = False

    def loads(self) -> bool:
        return self.item.loads()

    def load(self, name: str, value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list) or len(value) > self.max_items:
            raise bad(name, f"must be a list of at most {self.max_items} items")
        items: list[Any] = []
        for item in value:
            try:
                items.append(self.item.load(name, item))
            except RemoteProtocolError:
                # PROTOCOL.md 3.2 checks item by item: an earlier item's failure is the one reported
                for earlier in items:
                    self.item.check_received(name, earlier)
                raise
        return tuple(items)

    def check(self, name: str, value: Any) -> tuple[Any, ...]:
        global _last_canonical_list
        kind, last = _last_canonical_list
        given: object = value
        if kind is self and last is not None and given is last:
            return last  # the very tuple this kind just passed (held there, so not a reused id)
        if not isinstance(value, (list, tuple)) or len(value) > self.max_items:
            raise refused(name, f"must be a list of at most {self.max_items} items")
        items = self.item.check_all(name, value)
        if self.unique and len(set(items)) != len(items):
            raise refused(name, "items must be unique")
        if items is value and isinstance(self.item, Name):  # canonical, and immutable all the way down (str)
            _last_canonical_list = (self, items)
        return items

    def encode(self, value: Any) -> list[Any]:
        return [self.item.encode(v) for v in value]


@dataclass(frozen=True)
class Object(Kind):
    """A nested JSON object handled by a class with ``from_dict``/``to_dict`` (certificates, unavailable users)."""

    cls: Any = None

    def loads(self) -> bool:
        return True

    def load(self, name: str, value: Any) -> Any:
        try:
            return self.cls.from_dict(value)
        except RemoteProtocolError as exc:
            raise bad(name, str(exc.args[0])) from None

    def check(self, name: str, value: Any) -> Any:
        if not isinstance(value, self.cls):
            raise refused(name, f"must be a {self.cls.__name__}")
        return value

    def encode(self, value: Any) -> Any:
        return value.to_dict()


@dataclass(frozen=True)
class Optional(Kind):
    """A field that may be absent or null; decodes to None."""

    inner: Kind = Text()

    def loads(self) -> bool:
        return self.inner.loads()

    def load(self, name: str, value: Any) -> Any:
        return None if value is None else self.inner.load(name, value)

    def check(self, name: str, value: Any) -> Any:
        return None if value is None else self.inner.check(name, value)

    def encode(self, value: Any) -> Any:
        return None if value is None else self.inner.encode(value)


_Names = TypeVar("_Names", bound=StrEnum)


def member_of(names: type[_Names], name: str, value: Any) -> _Names:
    """*value* (a member or its wire string) as a member of *names*; else the ``LocalProtocolError`` that building
    the message would raise (``bad_field`` naming *name*). For public APIs that accept plain strings."""
    member = Choice.of(names).check(name, value)
    assert isinstance(member, names)
    return member
