"""Our own mistakes are local errors: every message checks its fields when it is built (PROTOCOL.md 3.2,
protocol/message_base.py), so a bad value given to a command raises LocalProtocolError (BAD_FIELD), sends
nothing and changes nothing, the same way on every command; and a name in another case is normalised before it
travels, exactly as the server's decoder would. (tests/test_message_validation.py covers every field of every
message; these tests go through the client's commands.)"""

from __future__ import annotations

import pytest

from securechat.errors import ErrorCode, LocalProtocolError
from securechat.protocol import events as ev
from securechat.protocol.states import ClientState
from tests.helpers import connect, make_simulation, password_of, user_keys


def test_status_with_a_bad_name_is_a_local_error_and_sends_nothing() -> None:
    sim = make_simulation("alice")
    alice = sim.clients["alice"]
    sim.run_until_idle()
    before = len(sim.trace)
    with pytest.raises(LocalProtocolError) as bad:
        alice.status("Bad Name!")
    assert bad.value.code is ErrorCode.BAD_FIELD and "'username'" in str(bad.value)
    assert alice.data_to_send() == b"" and len(sim.trace) == before
    rid = alice.status("ALICE")  # another case of a good name is normalised, not refused
    sim.run_until_idle()
    answer = sim.last_event("alice", ev.StatusReported)
    assert (answer.rid, answer.username, answer.online) == (rid, "alice", True)


def test_invite_normalises_the_name_and_refuses_a_bad_one_locally() -> None:
    sim = make_simulation("alice", "bob", "carol")
    alice = sim.clients["alice"]
    alice.open_chat(["bob"])
    sim.run_until_idle()
    chat_id = sim.last_event("alice", ev.ChatOpened).chat_id
    with pytest.raises(LocalProtocolError):
        alice.invite(chat_id, "carol with spaces")
    sim.run_until_idle()
    alice.invite(chat_id, "CAROL")
    sim.run_until_idle()
    invited = sim.last_event("alice", ev.ChatInvited)
    assert invited.username == "carol"


def test_open_chat_refuses_a_bad_name_the_same_way() -> None:
    sim = make_simulation("alice", "bob")
    alice = sim.clients["alice"]
    before = len(sim.trace)
    with pytest.raises(LocalProtocolError) as bad:
        alice.open_chat(["bob", "Bad Name!"])
    assert bad.value.code is ErrorCode.BAD_FIELD
    assert alice.data_to_send() == b"" and len(sim.trace) == before


@pytest.mark.parametrize("password", ["p" * 1025, "pass\ud800word"])
def test_a_password_no_server_would_take_is_refused_before_it_is_sent(password: str) -> None:
    """PROTOCOL.md 3.2 (text <= 1024 characters, valid Unicode): the login is our mistake, so it never leaves;
    the client stays where it was and can log in properly right after."""
    sim = make_simulation("alice")
    bob = connect(sim, "bob")
    keys = user_keys("bob")
    before = len(sim.trace)
    for command in (bob.register, bob.login):
        with pytest.raises(LocalProtocolError) as bad:
            command("bob", password, keys)
        assert bad.value.code is ErrorCode.BAD_FIELD and "'password'" in str(bad.value)
    assert bob.data_to_send() == b"" and len(sim.trace) == before and bob.state is ClientState.CONNECTED
    bob.register("bob", password_of("bob"), keys)
    sim.run_until_idle()
    sim.last_event("bob", ev.RegistrationSucceeded)
