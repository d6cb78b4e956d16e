"""Messages are valid from the moment they exist (protocol/message_base.py, PROTOCOL.md 3.2).

For every message class, every field and every way its kind can be broken: building the message raises
LocalProtocolError (BAD_FIELD, naming the field, nothing built), and the same value on the wire raises
RemoteProtocolError with the code and text the field's kind gives on its own (``Kind.decode``, the rule decoding
always applied). Valid values are normalised at construction exactly as the receiver normalises them, so what a
sender builds equals what its peer decodes.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securechat.crypto.certificates import Certificate
from securechat.crypto.encoding import b64e
from securechat.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from securechat.protocol import messages as m
from securechat.protocol.codec import decode_message, encode_frame, encode_unchecked, message_to_dict
from securechat.protocol.fields import Blob, Boolean, Choice, Integer, Kind, ListOf, Name, Object, Optional, Text
from securechat.protocol.message_base import wire_fields
from securechat.protocol.vocabulary import ChatMode
from tests.helpers import sample_messages

SAMPLES = sample_messages()


def wire(value: Any) -> Any:
    """The JSON form of a Python field value, valid or not."""
    if isinstance(value, bytes):
        return b64e(value)
    if isinstance(value, tuple):
        return [wire(v) for v in value]
    if isinstance(value, Certificate):
        return value.to_dict()
    return value


def valid_items(kind: Kind, n: int) -> tuple[Any, ...]:
    """*n* distinct valid values of *kind* (to overfill a list)."""
    if isinstance(kind, Name):
        return tuple(f"u{i}" for i in range(n))
    if isinstance(kind, Blob):
        size = kind.exact if kind.exact is not None else min(kind.max_bytes, 8)
        return tuple(i.to_bytes(4, "big").rjust(size, b"\0")[-size:] for i in range(n))
    if isinstance(kind, Object):
        return (SAMPLES["registered"].certificate,) * n  # type: ignore[attr-defined]
    if isinstance(kind, Text):
        return tuple(f"t{i}" for i in range(n))
    raise AssertionError(f"no list of {kind} in the schema")


def bad_values(kind: Kind) -> list[tuple[str, Any, Any]]:
    """(label, Python value, its wire form) for every way *kind* can be broken."""
    if isinstance(kind, Optional):
        return bad_values(kind.inner)
    if isinstance(kind, Text):
        return [("too-long", "x" * (kind.max_chars + 1), "x" * (kind.max_chars + 1)),
                ("not-text", 7, 7), ("lone-surrogate", "a\ud800", "a\ud800")]
    if isinstance(kind, Name):
        return [("space", "Bad Name!", "Bad Name!"), ("cyrillic", "\u0430lice", "\u0430lice"),
                ("zero-width", "alice\u200b", "alice\u200b"), ("too-long", "a" * 33, "a" * 33),
                ("empty", "", ""), ("huge", "a" * 10_000, "a" * 10_000), ("not-text", 7, 7)]
    if isinstance(kind, Choice):
        return [("unknown", "rot13", "rot13"), ("not-text", 1, 1)]
    if isinstance(kind, Integer):
        out = [("bool", True, True), ("float", 1.5, 1.5), ("text", "1", "1"), ("above", kind.maximum + 1,
                                                                              kind.maximum + 1)]
        return out + [("below", kind.minimum - 1, kind.minimum - 1)]
    if isinstance(kind, Boolean):
        return [("int", 1, 1), ("text", "true", "true")]
    if isinstance(kind, Blob):
        out = [("too-long", b"\x01" * (kind.max_bytes + 1), b64e(b"\x01" * (kind.max_bytes + 1))),
               ("text", "AAAA", 7)]  # a str is no bytes here; on the wire a number is no base64
        if kind.exact is not None:
            out += [("short", b"\x01" * (kind.exact - 1), b64e(b"\x01" * (kind.exact - 1))),
                    ("long", b"\x01" * (kind.exact + 1), b64e(b"\x01" * (kind.exact + 1)))]
        return out
    if isinstance(kind, ListOf):
        over = valid_items(kind.item, kind.max_items + 1)
        out = [("not-a-list", "x", "x"), ("too-many", over, wire(over))]
        label, bad_item, bad_wire = bad_values(kind.item)[0]
        out.append((f"item-{label}", (bad_item,), [bad_wire]))
        if kind.unique:
            twice = valid_items(kind.item, 1) * 2
            out.append(("duplicate", twice, wire(twice)))
            if isinstance(kind.item, Name):
                out.append(("duplicate-after-normalising", ("bob", "BOB"), ["bob", "BOB"]))
        return out
    if isinstance(kind, Object):
        return [("not-an-object", {"serial": 1}, {"serial": 1})]
    raise AssertionError(f"kind {kind} has no bad values here: add them")


def fields_of(message: m.Message) -> dict[str, Any]:
    return {fld.name: getattr(message, fld.name) for fld in dataclasses.fields(message)}


CASES = [
    pytest.param(kind_name, fld, label, py, wire_value, id=f"{kind_name}.{fld.name}.{label}")
    for kind_name, sample in sorted(SAMPLES.items())
    for fld in wire_fields(type(sample))
    for label, py, wire_value in bad_values(fld.kind)
]


def test_every_field_kind_has_bad_values() -> None:
    """Every message class's every field is covered below (a new kind must say how it can be broken)."""
    covered = {(values[0], values[1].name) for values in (case.values for case in CASES)}
    assert covered == {(k, fld.name) for k, s in SAMPLES.items() for fld in wire_fields(type(s))}


@pytest.mark.parametrize("kind_name, fld, label, py, wire_value", CASES)
def test_a_bad_field_is_a_local_error_when_built_and_a_remote_error_when_received(
        kind_name: str, fld: Any, label: str, py: Any, wire_value: Any) -> None:
    sample = SAMPLES[kind_name]
    with pytest.raises(LocalProtocolError) as local:
        type(sample)(**{**fields_of(sample), fld.name: py})
    assert local.value.code is ErrorCode.BAD_FIELD and repr(fld.name) in str(local.value)
    with pytest.raises(LocalProtocolError):
        dataclasses.replace(sample, **{fld.name: py})  # no way around the check
    body = json.dumps({**message_to_dict(sample), fld.name: wire_value}).encode()
    with pytest.raises(RemoteProtocolError) as remote:
        decode_message(body)
    with pytest.raises(RemoteProtocolError) as alone:
        fld.kind.decode(fld.name, wire_value)  # the field's rule on its own: what decoding always answered
    assert remote.value.code is ErrorCode.BAD_FIELD and str(remote.value) == str(alone.value)
    if not fld.kind.loads() and wire_value == py:  # the wire form is the Python form
        assert str(local.value) == str(remote.value)  # one rule, one sentence, whoever broke it


@pytest.mark.parametrize("kind_name", sorted(SAMPLES))
def test_valid_samples_build_round_trip_and_match_the_unchecked_encoder(kind_name: str) -> None:
    sample = SAMPLES[kind_name]
    assert type(sample)(**fields_of(sample)) == sample
    frame = encode_frame(sample)
    assert decode_message(frame[4:]) == sample
    present = {name: value for name, value in fields_of(sample).items() if value is not None}
    assert encode_unchecked(sample.TYPE, present) == frame


def _shout(kind: Kind, value: Any) -> Any:
    """*value* as a careless sender writes it: names in capitals, lists as lists, choices as plain text."""
    if isinstance(kind, Optional):
        return None if value is None else _shout(kind.inner, value)
    if isinstance(kind, Name):
        return value.upper()
    if isinstance(kind, ListOf):
        return [_shout(kind.item, v) for v in value]
    if isinstance(kind, Choice):
        return str(value)
    return value


@pytest.mark.parametrize("kind_name", sorted(SAMPLES))
def test_what_is_built_equals_what_the_peer_decodes(kind_name: str) -> None:
    """PROTOCOL.md 3.2: construction normalises as the receiver does (names casefolded, lists to tuples, choices
    to their enum), so a message built from careless values is the one its peer decodes, and travels canonical."""
    sample = SAMPLES[kind_name]
    careless = {fld.name: _shout(fld.kind, getattr(sample, fld.name)) for fld in wire_fields(type(sample))}
    built = type(sample)(**careless)
    assert built == sample
    body = json.dumps({"type": sample.TYPE, **{k: wire(tuple(v) if isinstance(v, list) else v)
                                               for k, v in careless.items() if v is not None}}).encode()
    assert decode_message(body) == built
    assert encode_frame(built) == encode_frame(sample)


def test_construction_normalises_names_lists_and_choices() -> None:
    assert m.Status(username="ALICE").username == "alice"
    opened = m.ChatOpen(members=["Bob", "\uff43\uff41\uff52\uff4f\uff4c"], mode="hybrid")  # type: ignore[arg-type]
    assert opened.members == ("bob", "carol") and opened.mode is ChatMode.HYBRID
    with pytest.raises(LocalProtocolError, match="'members': items must be unique"):
        m.ChatOpen(members=("bob", "BOB"))


def test_a_member_tuple_checked_for_one_field_is_checked_again_for_another() -> None:
    """The server builds one ChatKey per member around the same member tuple, which is checked once
    (fields.ListOf); that shortcut never lets a tuple that passed one field's rules skip another field's."""
    twice = ("bob", "bob")
    assert m.WhoResult(online=twice).online is twice and m.WhoResult(online=twice).online is twice
    with pytest.raises(LocalProtocolError, match="'members': items must be unique"):
        m.ChatOpen(members=twice)
    names = tuple(f"u{i}" for i in range(256))
    assert m.RoundTimeout(chat_id="c", epoch=1, missing=names).missing is names
    with pytest.raises(LocalProtocolError, match="'members': must be a list of at most 255 items"):
        m.ChatOpen(members=names)


# --- several bad fields: the first one in the schema's order is named, as it always was ---------------------------

def _reference(cls: type[m.Message], body: dict[str, Any]) -> str:
    """PROTOCOL.md 3.2's field-by-field validation, one field's kind at a time (what decoding did before messages
    checked themselves): the text of the first failure."""
    for fld in wire_fields(cls):
        if fld.name not in body:
            if not fld.optional:
                return f"[bad_field] field {fld.name!r}: missing"
            continue
        try:
            fld.kind.decode(fld.name, body[fld.name])
        except RemoteProtocolError as exc:
            return str(exc)
    raise AssertionError("no bad field")


BROKEN = [(k, fld.name, wire_value) for k, s in SAMPLES.items() for fld in wire_fields(type(s))
          for _, _, wire_value in bad_values(fld.kind)
          if not (isinstance(wire_value, (str, list)) and len(wire_value) > 300)]  # keep examples small


@settings(max_examples=300, deadline=None, database=None)
@given(st.data())
def test_the_first_bad_field_is_reported(data: st.DataObject) -> None:
    kind_name = data.draw(st.sampled_from(sorted(SAMPLES)))
    sample = SAMPLES[kind_name]
    body = {k: v for k, v in message_to_dict(sample).items() if k != "type"}
    options = [(name, value) for k, name, value in BROKEN if k == kind_name]
    for name, value in data.draw(st.lists(st.sampled_from(options), min_size=1, max_size=4)):
        body[name] = value
    for name in data.draw(st.lists(st.sampled_from(sorted(body)), max_size=2)):
        body.pop(name, None)
    try:
        expected = _reference(type(sample), body)
    except AssertionError:
        return  # the only broken field was removed again, and it was optional: nothing to report
    with pytest.raises(RemoteProtocolError) as info:
        decode_message(json.dumps({"type": sample.TYPE, **body}).encode())
    assert str(info.value) == expected


def test_an_earlier_item_is_reported_before_a_later_undecodable_one() -> None:
    """Inside a list too: a 31-byte path element before a non-base64 one is the reported failure."""
    body = {**message_to_dict(SAMPLES["chat_key"]), "wrap_path": [b64e(b"\0" * 31), "not base64!"]}
    with pytest.raises(RemoteProtocolError, match="'wrap_path': must be exactly 32 bytes"):
        decode_message(json.dumps(body).encode())


def test_encode_unchecked_writes_what_no_message_class_would() -> None:
    """The escape hatch for tests and attack tools: anything goes onto the wire, and the decoder refuses it."""
    raw = encode_unchecked("status", {"username": "Bad Name!", "rid": -1})
    assert raw[4:] == b'{"type":"status","username":"Bad Name!","rid":-1}'
    with pytest.raises(RemoteProtocolError) as info:
        decode_message(raw[4:])
    assert info.value.code is ErrorCode.BAD_FIELD
    huge = encode_unchecked("record", {"data": b"\0" * (1024 * 1024 + 1)})
    with pytest.raises(LocalProtocolError):
        m.Record(data=b"\0" * (1024 * 1024 + 1))
    with pytest.raises(RemoteProtocolError, match="'data'"):
        decode_message(huge[4:])
