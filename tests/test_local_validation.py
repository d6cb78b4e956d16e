"""Names given to commands are checked locally, the same way on every command (PROTOCOL.md 3.2): a bad name is
the caller's mistake (LocalProtocolError, nothing sent), and a name in another case is normalised before it
travels, exactly as the server's decoder would."""

from __future__ import annotations

import pytest

from securechat.errors import ErrorCode, LocalProtocolError
from securechat.protocol import events as ev
from tests.helpers import make_simulation


def test_status_with_a_bad_name_is_a_local_error_and_sends_nothing() -> None:
    sim = make_simulation("alice")
    alice = sim.clients["alice"]
    sim.run_until_idle()
    before = len(sim.trace)
    with pytest.raises(LocalProtocolError) as bad:
        alice.status("Bad Name!")
    assert bad.value.code is ErrorCode.BAD_FIELD
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
