"""State tables (protocol/states.py): every (state, direction, type) of every table, in and out of the table.

h2's tests/test_state_machines.py pattern: each allowed triple reaches the table's next state; every other
triple raises the matching ProtocolError with the table's code and no state is invented.
"""

from __future__ import annotations

import itertools

import pytest

from securechat.errors import ErrorCode, LocalProtocolError, ProtocolError, RemoteProtocolError
from securechat.protocol.messages import CLIENT_TO_SERVER, MESSAGE_TYPES, SERVER_TO_CLIENT
from securechat.protocol.states import (
    CHAT_TRANSITIONS,
    CLIENT_TRANSITIONS,
    PEER_JOB_TRANSITIONS,
    PEER_TRANSITIONS,
    SEND,
    ChatState,
    ClientState,
    Direction,
    PeerState,
    next_chat_state,
    next_client_state,
    next_peer_state,
    next_peer_state_on_job,
)

TYPES = sorted(MESSAGE_TYPES)
JOB_OUTCOMES = ["registered", "logged_in", "failed", "done", ""]


def expected_error(direction: Direction) -> type[ProtocolError]:
    return LocalProtocolError if direction is SEND else RemoteProtocolError


# --- client connection -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(CLIENT_TRANSITIONS, key=str), ids=str)
def test_client_table_entry_reaches_its_next_state(key: tuple[ClientState, Direction, str]) -> None:
    assert next_client_state(*key) is CLIENT_TRANSITIONS[key]


@pytest.mark.parametrize("state", list(ClientState), ids=lambda s: s.name)
def test_client_combinations_outside_the_table_raise(state: ClientState) -> None:
    checked = 0
    for direction, kind in itertools.product(Direction, TYPES):
        if (state, direction, kind) in CLIENT_TRANSITIONS:
            continue
        with pytest.raises(expected_error(direction)) as info:
            next_client_state(state, direction, kind)
        assert type(info.value) is expected_error(direction)
        assert info.value.code is ErrorCode.UNEXPECTED_MESSAGE
        checked += 1
    assert checked > 0


def test_client_table_only_names_real_types_in_the_right_direction() -> None:
    for state, direction, kind in CLIENT_TRANSITIONS:
        assert kind in MESSAGE_TYPES
        if direction is SEND:
            assert kind in CLIENT_TO_SERVER | {"client_hello"}
        else:
            assert kind in SERVER_TO_CLIENT


def test_client_closed_is_terminal() -> None:
    assert not [k for k in CLIENT_TRANSITIONS if k[0] is ClientState.CLOSED]


def test_every_client_state_is_reachable() -> None:
    reachable = {ClientState.IDLE} | set(CLIENT_TRANSITIONS.values())
    assert reachable == set(ClientState)


# --- server view of a peer ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(PEER_TRANSITIONS, key=str), ids=str)
def test_peer_table_entry_reaches_its_next_state(key: tuple[PeerState, str]) -> None:
    assert next_peer_state(*key) is PEER_TRANSITIONS[key]


@pytest.mark.parametrize("state", list(PeerState), ids=lambda s: s.name)
def test_peer_combinations_outside_the_table_raise(state: PeerState) -> None:
    for kind in TYPES:
        if (state, kind) in PEER_TRANSITIONS:
            continue
        with pytest.raises(RemoteProtocolError) as info:
            next_peer_state(state, kind)
        assert info.value.code is ErrorCode.UNEXPECTED_MESSAGE


def test_peer_table_only_accepts_client_to_server_types() -> None:
    for _state, kind in PEER_TRANSITIONS:
        assert kind in CLIENT_TO_SERVER | {"client_hello"}


@pytest.mark.parametrize("key", sorted(PEER_JOB_TRANSITIONS, key=str), ids=str)
def test_peer_job_entry_reaches_its_next_state(key: tuple[PeerState, str]) -> None:
    assert next_peer_state_on_job(*key) is PEER_JOB_TRANSITIONS[key]


@pytest.mark.parametrize("state", list(PeerState), ids=lambda s: s.name)
def test_peer_job_outcomes_outside_the_table_raise_local(state: PeerState) -> None:
    for outcome in JOB_OUTCOMES:
        if (state, outcome) in PEER_JOB_TRANSITIONS:
            continue
        with pytest.raises(LocalProtocolError):
            next_peer_state_on_job(state, outcome)


def test_pending_states_accept_no_message() -> None:
    # docs/THREATS.md 8: nothing may arrive while scrypt runs; only the job outcome moves these states.
    for state in (PeerState.REGISTER_PENDING, PeerState.LOGIN_PENDING, PeerState.CLOSED):
        assert not [k for k in PEER_TRANSITIONS if k[0] is state]


# --- chats -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(CHAT_TRANSITIONS, key=str), ids=str)
def test_chat_table_entry_reaches_its_next_state(key: tuple[ChatState, Direction, str]) -> None:
    assert next_chat_state(*key) is CHAT_TRANSITIONS[key]


@pytest.mark.parametrize("state", list(ChatState), ids=lambda s: s.name)
def test_chat_combinations_outside_the_table_raise_not_member(state: ChatState) -> None:
    for direction, kind in itertools.product(Direction, TYPES):
        if (state, direction, kind) in CHAT_TRANSITIONS:
            continue
        with pytest.raises(expected_error(direction)) as info:
            next_chat_state(state, direction, kind)
        assert type(info.value) is expected_error(direction)
        assert info.value.code is ErrorCode.NOT_MEMBER


def test_left_chat_accepts_nothing() -> None:
    assert not [k for k in CHAT_TRANSITIONS if k[0] is ChatState.LEFT]
