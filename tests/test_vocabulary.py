"""The protocol's vocabularies are types (securechat/protocol/vocabulary.py): field choices are built from them, decoding
yields their members, events carry ErrorCode, and one table says which codes are fatal (PROTOCOL.md 9.1)."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

from securechat import errors
from securechat.errors import ErrorCode
from securechat.protocol import events as ev
from securechat.protocol import messages as m
from securechat.protocol.codec import decode_message, encode_message
from securechat.protocol.fields import Choice
from securechat.protocol.vocabulary import (
    CONTRIBUTORY_MODES, KEYLESS_MODES, Availability, ChatMode, JobOutcome, KeyExchange, RekeyReason,
)
from securechat.protocol.states import PEER_JOB_TRANSITIONS

PACKAGE = Path(__file__).resolve().parent.parent / "securechat"
PROTOCOL = (PACKAGE.parent / "docs" / "PROTOCOL.md").read_text()


def _choice(cls: type[m.Message], name: str) -> Choice:
    kind = next(f.metadata["kind"] for f in dataclasses.fields(cls) if f.name == name)
    assert isinstance(kind, Choice)
    return kind


@pytest.mark.parametrize(("cls", "name", "names"), [
    (m.ChatOpen, "mode", ChatMode), (m.ChatKey, "mode", ChatMode), (m.ChatEpoch, "mode", ChatMode),
    (m.ChatKey, "reason", RekeyReason), (m.ChatEpoch, "reason", RekeyReason),
    (m.ClientHello, "key_exchange", KeyExchange),
])
def test_field_choices_are_built_from_the_enums(cls: type[m.Message], name: str, names: type) -> None:
    assert _choice(cls, name).values == tuple(member.value for member in names)
    assert _choice(cls, name).names is names


def test_decoding_yields_the_enum_member_and_encoding_the_wire_string() -> None:
    body = b'{"type":"chat_open","rid":1,"members":["bob"],"mode":"contributory","suite":"aes-256-gcm"}'
    message = decode_message(body)
    assert isinstance(message, m.ChatOpen) and message.mode is ChatMode.CONTRIBUTORY
    assert encode_message(message) == body
    with pytest.raises(errors.RemoteProtocolError) as bad:
        decode_message(body.replace(b'"contributory"', b'"Contributory"'))
    assert bad.value.code is ErrorCode.BAD_FIELD


def test_every_mode_and_exchange_is_documented() -> None:
    for value in [*ChatMode, *KeyExchange, *RekeyReason]:
        assert f"`{value}`" in PROTOCOL, value


def test_mode_properties_match_the_sets() -> None:
    assert {mode for mode in ChatMode if mode.contributory} == CONTRIBUTORY_MODES
    assert {mode for mode in ChatMode if mode.keyless} == KEYLESS_MODES
    assert ChatMode.SERVER_KEY not in KEYLESS_MODES and CONTRIBUTORY_MODES < KEYLESS_MODES


def test_job_transitions_are_keyed_by_outcomes() -> None:
    assert {outcome for _, outcome in PEER_JOB_TRANSITIONS} == {
        JobOutcome.REGISTERED, JobOutcome.LOGGED_IN, JobOutcome.FAILED}
    assert all(isinstance(outcome, JobOutcome) for _, outcome in PEER_JOB_TRANSITIONS)
    assert [a.value for a in Availability] == ["online", "offline", "unknown"]


def test_one_fatal_table_for_both_sides() -> None:
    from securechat.protocol import client, server
    assert client._FATAL_CODES is errors.FATAL_CODES
    assert server.FATAL_CODES is errors.CONNECTION_FATAL_CODES
    assert errors.FATAL_CODES < errors.CONNECTION_FATAL_CODES
    section = PROTOCOL[PROTOCOL.index("### 9.1"):PROTOCOL.index("### 9.2")]
    for code in errors.CONNECTION_FATAL_CODES:
        assert f"`{code.value}`" in section, code


def test_received_codes_become_error_codes_and_unknown_ones_stay_strings() -> None:
    assert errors.error_code("auth_failed") is ErrorCode.AUTH_FAILED
    assert errors.error_code("some_future_code") == "some_future_code"


@pytest.mark.parametrize("cls", [ev.MessageRejected, ev.ChatAborted, ev.PeerKeyChanged, ev.ErrorSent, ev.PeerMisbehaved])
def test_events_carry_error_codes(cls: type) -> None:
    field = next(f for f in dataclasses.fields(cls) if f.name == "code")
    assert field.type == "ErrorCode"


# Only vocabulary.py spells these wire strings; everywhere else uses the enum.
_WIRE_NAMES = re.compile(r'^(server-key|contributory|contributory-xor|hybrid|x25519|x25519\+mlkem768)$')


def test_no_module_spells_a_mode_or_key_exchange() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = str(path.relative_to(PACKAGE))
        if where == "protocol/vocabulary.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and _WIRE_NAMES.match(node.value):
                offenders.append(f"{where}:{node.lineno}: {node.value!r}")
    assert offenders == []


def test_every_choice_field_is_an_enum_and_annotated_with_it() -> None:
    """No field choice is a hand-written tuple of strings: each is ``Choice.of(SomeEnum)``, and the dataclass field
    says that enum, so what mypy sees is what construction and decoding give (``Choice.check`` returns members)."""
    import typing

    found = []
    for cls in m.MESSAGE_CLASSES:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kind = f.metadata.get("kind")
            if isinstance(kind, Choice):
                assert kind.names is not None, f"{cls.__name__}.{f.name} is a plain string tuple"
                assert hints[f.name] is kind.names, f"{cls.__name__}.{f.name} is annotated {hints[f.name]}"
                found.append((cls.__name__, f.name))
    assert ("InvitationClosed", "outcome") in found and ("Register", "signature_scheme") in found


def test_every_invitation_outcome_has_words_in_the_terminal() -> None:
    from securechat.protocol.vocabulary import InvitationOutcome
    from securechat.keystore import KeyStore
    from securechat.terminal.event_lines import EventLines
    from securechat.terminal.state import TerminalState

    state = TerminalState(KeyStore.__new__(KeyStore), emit=print, changed=lambda: None, clock=lambda: 0.0)
    texts = {EventLines(state).describe(ev.InvitationClosed(chat_id="c1", username="bob", outcome=outcome))
             for outcome in InvitationOutcome}
    assert len(texts) == len(InvitationOutcome) and all(t and "bob" in t for t in texts)


def test_a_public_api_string_becomes_the_member_or_a_local_error() -> None:
    from securechat.errors import LocalProtocolError
    from securechat.protocol.fields import member_of

    assert member_of(ChatMode, "mode", "hybrid") is ChatMode.HYBRID
    with pytest.raises(LocalProtocolError) as caught:
        member_of(ChatMode, "mode", "hybird")
    assert caught.value.code is ErrorCode.BAD_FIELD and "mode" in str(caught.value)
