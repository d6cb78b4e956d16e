"""Field kinds (protocol/fields.py): each kind accepts exactly its values and refuses the rest with BAD_FIELD."""

from __future__ import annotations

from typing import Any

import pytest

from securechat.crypto.encoding import b64e
from securechat.errors import ErrorCode, RemoteProtocolError
from securechat.protocol.fields import (
    MAX_INT,
    Blob,
    Boolean,
    Choice,
    Integer,
    ListOf,
    Name,
    Object,
    Optional,
    Text,
    normalize_username,
)
from tests.helpers import sample_certificate


def bad_field(kind: Any, value: Any, field: str = "f") -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        kind.decode(field, value)
    assert info.value.code is ErrorCode.BAD_FIELD
    return info.value


@pytest.mark.parametrize("kind, value", [
    (Text(max_chars=3), "abcd"), (Choice(("a",)), "b"), (Integer(), -1), (Boolean(), 1), (Blob(), "QR=="),
    (ListOf(Text()), "x"), (Optional(Integer()), "3"),
])
def test_every_kind_names_the_offending_field(kind: Any, value: Any) -> None:
    assert "'members'" in str(bad_field(kind, value, "members"))


def test_name_errors_name_the_offending_field() -> None:
    """PROTOCOL.md 3.2: "the error message names the field", for names inside lists too."""
    assert "'actor'" in str(bad_field(Name(), None, "actor"))
    assert "'members'" in str(bad_field(ListOf(Name()), ["\u0430lice"], "members"))


# --- usernames (PROTOCOL.md 3.2, docs/THREATS.md 24) ---------------------------------------------------------------


@pytest.mark.parametrize("raw", ["alice", "Alice", "ALICE", "aLiCe", "\uff41\uff4c\uff49\uff43\uff45"])
def test_username_variants_normalise_to_one_name(raw: str) -> None:
    assert normalize_username(raw) == "alice"


def test_username_fullwidth_and_kelvin_sign_fold_to_ascii() -> None:
    assert normalize_username("\uff41\uff4c\uff49\uff43\uff45") == "alice"
    assert normalize_username("\u212aate") == "kate"  # KELVIN SIGN -> k


@pytest.mark.parametrize("raw", [
    "alice\u200b",            # zero-width space
    "\u0430lice",             # Cyrillic a
    "al ice", "", "-alice", ".alice", "_alice", "a" * 33, "x" * 10_000, "al/ice", "alice\n",
    "\ud800", "\u00e9mile",
])
def test_confusable_or_malformed_username_is_bad_field(raw: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        normalize_username(raw)
    assert info.value.code is ErrorCode.BAD_FIELD


@pytest.mark.parametrize("value", [None, 7, ["alice"], {"a": 1}, True])
def test_name_kind_refuses_non_strings(value: Any) -> None:
    bad_field(Name(), value)


def test_name_kind_accepts_every_allowed_character() -> None:
    assert Name().decode("f", "a0_.-z9") == "a0_.-z9"
    assert Name().decode("f", "9" * 32) == "9" * 32


# --- text --------------------------------------------------------------------------------------------------


def test_text_accepts_unicode_up_to_the_limit() -> None:
    assert Text(max_chars=3).decode("f", "\u4e2d\u6587!") == "\u4e2d\u6587!"
    assert Text().decode("f", "") == ""


@pytest.mark.parametrize("value", ["abcd", None, 5, b"abc", ["a"], "\ud800", "a\udfffb"])
def test_text_refuses_long_non_string_and_lone_surrogates(value: Any) -> None:
    bad_field(Text(max_chars=3), value)


# --- choice, integer, boolean --------------------------------------------------------------------------------


def test_choice_accepts_only_listed_values() -> None:
    kind = Choice(("x25519",))
    assert kind.decode("f", "x25519") == "x25519"
    for value in ["X25519", "x448", "", None, 1]:
        bad_field(kind, value)


def test_integer_range_and_exact_type() -> None:
    kind = Integer(1, 10)
    assert kind.decode("f", 1) == 1 and kind.decode("f", 10) == 10
    for value in [0, 11, -1, "7", True, False, 1.0, None, 2**64]:
        bad_field(kind, value)
    assert Integer().decode("f", MAX_INT) == MAX_INT
    bad_field(Integer(), MAX_INT + 1)


def test_boolean_refuses_integers_and_strings() -> None:
    assert Boolean().decode("f", True) is True and Boolean().decode("f", False) is False
    for value in [0, 1, "true", None]:
        bad_field(Boolean(), value)


# --- blobs -----------------------------------------------------------------------------------------------------


def test_blob_round_trip_and_limits() -> None:
    kind = Blob(max_bytes=4)
    assert kind.decode("f", kind.encode(b"\x00\xff\x10\x20")) == b"\x00\xff\x10\x20"
    bad_field(kind, b64e(b"1234567"))
    bad_field(Blob(exact=3), b64e(b"ab"))
    assert Blob(exact=3).decode("f", b64e(b"abc")) == b"abc"


@pytest.mark.parametrize("value", ["QR==", "QQ", "QQ==\n", " QQ==", "QQ=", "Q$==", "\u00e9\u00e9==", None, 5, [1]])
def test_blob_refuses_non_canonical_base64(value: Any) -> None:
    bad_field(Blob(), value)


def test_blob_refuses_one_byte_over_its_limit() -> None:
    """PROTOCOL.md 3.2: the text length is checked before decoding, then the decoded length (the text bound
    alone, 4 * ceil(N/3) characters, would let up to 2 bytes over N through)."""
    for max_bytes in (4, 2048, 1024 * 1024):
        assert len(Blob(max_bytes=max_bytes).decode("f", b64e(b"\x01" * max_bytes))) == max_bytes
        bad_field(Blob(max_bytes=max_bytes), b64e(b"\x01" * (max_bytes + 1)))


def test_blob_length_is_checked_before_decoding() -> None:
    # 2 MB of text is refused on its length, without decoding (docs/THREATS.md 9).
    bad_field(Blob(max_bytes=16), "A" * 2_000_000)


# --- lists, objects, optional ---------------------------------------------------------------------------------


def test_list_of_names_normalises_each_item_and_returns_a_tuple() -> None:
    assert ListOf(Name()).decode("f", ["Alice", "bob"]) == ("alice", "bob")
    assert ListOf(Name()).encode(("alice",)) == ["alice"]


def test_list_refuses_scalars_too_many_items_and_duplicates() -> None:
    bad_field(ListOf(Name()), "alice")  # docs/THREATS.md 6: "members":"alice"
    bad_field(ListOf(Name(), max_items=2), ["a", "b", "c"])
    bad_field(ListOf(Name(), unique=True), ["alice", "Alice"])  # duplicates after normalisation
    bad_field(ListOf(Name()), ["alice", None])


def test_object_certificate_round_trip_and_refusal() -> None:
    cert = sample_certificate()
    kind = Object(type(cert))
    assert kind.decode("f", kind.encode(cert)) == cert
    broken = kind.encode(cert) | {"serial": True}
    bad_field(kind, broken)
    bad_field(kind, {**kind.encode(cert), "extra": 1})
    bad_field(kind, "not an object")


def test_optional_accepts_null_and_checks_the_rest() -> None:
    kind = Optional(Integer())
    assert kind.decode("f", None) is None and kind.decode("f", 3) == 3
    assert kind.encode(None) is None
    bad_field(kind, "3")
