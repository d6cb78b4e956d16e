"""Consent to join (PROTOCOL.md 7.11): an invitation is a request the invitee answers.

Until accepted it takes no chat slot and reveals only the inviter and the chat's mode; open invitations are
capped per invitee and per inviter and expire; a chat_open waits a bounded time for its online invitees. Before
this, one user could lock anyone out of every chat: invitees were added without consent, so 64 opens filled a
victim's quota (max_chats_per_user), offline members were held in chats that never ended.
"""

from __future__ import annotations

from typing import Any

import pytest

from securechat.protocol import events as ev
from tests.helpers import make_simulation, password_of, register_only, user_keys
from tests.live import connect, pinned, start_server


def manual(sim: Any, *names: str) -> None:
    """These users answer invitations themselves (the terminal client's and the GUI's policy)."""
    for name in names:
        sim.clients[name].auto_accept_invitations = False


def test_invitee_is_nobody_until_it_accepts() -> None:
    sim = make_simulation("alice", "bob", "carol", seed=41)
    manual(sim, "carol")
    sim.clients["alice"].open_chat(["bob", "carol"])
    sim.run_until_idle()
    # the chat waits for carol's answer: nothing started, nobody's slot taken, carol told only who and how
    assert not sim.events_of("alice", ev.ChatOpened) and len(sim.server.chats) == 0
    invitation = sim.last_event("carol", ev.InvitationReceived)
    assert (invitation.inviter, invitation.mode, invitation.accepted) == ("alice", "server-key", False)
    assert set(vars(invitation)) == {"chat_id", "inviter", "mode", "suite", "expires_in", "accepted"}
    assert sim.clients["carol"].invitations.keys() == {invitation.chat_id}
    sim.clients["carol"].answer_invitation(invitation.chat_id, True)
    sim.run_until_idle()
    opened = sim.last_event("alice", ev.ChatOpened)
    assert set(opened.members) == {"alice", "bob", "carol"} and opened.declined == ()
    for name in ("alice", "bob", "carol"):
        assert sim.clients[name].book.chats[opened.chat_id].epoch == 1


def test_declined_invitation_leaves_the_invitee_out() -> None:
    sim = make_simulation("alice", "bob", "carol", seed=42)
    manual(sim, "carol")
    sim.clients["alice"].open_chat(["bob", "carol"])
    sim.run_until_idle()
    cid = sim.last_event("carol", ev.InvitationReceived).chat_id
    sim.clients["carol"].answer_invitation(cid, False)
    sim.run_until_idle()
    opened = sim.last_event("alice", ev.ChatOpened)
    assert set(opened.members) == {"alice", "bob"} and opened.declined == ("carol",)
    assert sim.last_event("carol", ev.InvitationAnswered).accepted is False
    assert cid not in sim.clients["carol"].book.chats and sim.server.chats.chats_of("carol") == set()


def test_invite_to_a_running_chat_waits_for_the_answer() -> None:
    sim = make_simulation("alice", "bob", "carol", "dave", seed=43)
    manual(sim, "dave")
    sim.clients["alice"].open_chat(["bob", "carol"], mode="contributory")
    sim.run_until_idle()
    cid = sim.last_event("alice", ev.ChatOpened).chat_id
    sim.clients["alice"].invite(cid, "dave")
    sim.run_until_idle()
    assert sim.last_event("alice", ev.ChatInvited).username == "dave"
    assert sim.server.chats.get(cid).epoch == 1 and "dave" not in sim.server.chats.get(cid).members
    sim.clients["dave"].answer_invitation(cid, True)
    sim.run_until_idle()
    for name in ("alice", "bob", "carol", "dave"):
        keyed = [e for e in sim.events_of(name, ev.ChatKeyed) if e.chat_id == cid and e.epoch == 2]
        assert keyed and (keyed[0].reason, keyed[0].actor) == ("invite", "alice"), name
    # a declined invitation is told to the inviter, and nothing else
    sim.clients["bob"].leave(cid)
    sim.run_until_idle()
    manual(sim, "bob")
    sim.clients["alice"].invite(cid, "bob")
    sim.run_until_idle()
    sim.clients["bob"].answer_invitation(cid, False)
    sim.run_until_idle()
    closed = sim.last_event("alice", ev.InvitationClosed)
    assert (closed.chat_id, closed.username, closed.outcome) == (cid, "bob", "declined")


def test_one_user_can_no_longer_fill_everyones_quota() -> None:
    """The lock-out of the server review: mallory opened 64 chats with alice, bob and an offline dave and
    left them all, and none of them could open a chat any more. Invitations take no slot and are capped."""
    sim = make_simulation("alice", "bob", "mallory", seed=44, max_chats_per_user=4, max_invitations_per_user=3)
    register_only(sim, "d1", "dave")
    manual(sim, "alice", "bob")
    for _ in range(8):
        sim.clients["mallory"].open_chat(["alice", "bob", "dave"])
        sim.run_until_idle()
        sim.advance(sim.server.config.open_wait_seconds + 1)  # nobody answers: each chat starts with mallory
        sim.run_until_idle()
    for name in ("alice", "bob", "dave"):
        assert sim.server.chats.chats_of(name) == set()
        # one inviter holds at most max_invitations_per_pair (2) of the 3 a user may have open
        assert len(sim.server.invitations.of_invitee(name)) == 2
    refused = [e for e in sim.events_of("mallory", ev.ChatOpened) if "alice" in e.declined]
    assert refused, "the per-pair cap was never reached"
    # alice and bob still open and use chats, and dave joins one when it logs in
    sim.clients["alice"].auto_accept_invitations = sim.clients["bob"].auto_accept_invitations = True
    sim.clients["alice"].open_chat(["bob"])
    sim.run_until_idle()
    cid = sim.last_event("alice", ev.ChatOpened).chat_id
    assert set(sim.last_event("alice", ev.ChatOpened).members) == {"alice", "bob"}
    sim.clients["alice"].send_chat(cid, "still here")
    sim.run_until_idle()
    assert [e.text for e in sim.events_of("bob", ev.ChatReceived)] == ["still here"]


def test_invitations_expire_and_an_opening_does_not_wait_forever() -> None:
    sim = make_simulation("alice", "bob", "carol", seed=45, invitation_seconds=60, open_wait_seconds=10)
    manual(sim, "bob", "carol")
    sim.clients["alice"].open_chat(["bob", "carol"])
    sim.run_until_idle()
    cid = sim.last_event("bob", ev.InvitationReceived).chat_id
    sim.clients["bob"].answer_invitation(cid, True)
    sim.run_until_idle()
    assert not sim.events_of("alice", ev.ChatOpened)  # still waiting for carol
    sim.advance(11)
    sim.run_until_idle()
    opened = sim.last_event("alice", ev.ChatOpened)
    assert set(opened.members) == {"alice", "bob"} and opened.pending == ("carol",) and opened.declined == ()
    sim.clients["carol"].answer_invitation(cid, True)  # late, but the invitation is still open: carol joins
    sim.run_until_idle()
    assert sim.clients["alice"].book.chats[cid].epoch == 2 and "carol" in sim.clients["alice"].book.chats[cid].members
    # an invitation that nobody answers expires, and the inviter is told
    sim.clients["bob"].leave(cid)
    sim.run_until_idle()
    sim.clients["alice"].invite(cid, "bob")
    sim.run_until_idle()
    sim.advance(61)
    sim.run_until_idle()
    closed = sim.last_event("alice", ev.InvitationClosed)
    assert (closed.username, closed.outcome) == ("bob", "expired")
    assert not sim.server.invitations.open


def test_opener_leaving_cancels_the_opening() -> None:
    sim = make_simulation("alice", "bob", seed=46)
    manual(sim, "bob")
    sim.clients["alice"].open_chat(["bob"])
    sim.run_until_idle()
    cid = sim.last_event("bob", ev.InvitationReceived).chat_id
    sim.disconnect("alice")
    sim.run_until_idle()
    assert not sim.server.invitations.openings and not sim.server.invitations.open
    sim.clients["bob"].answer_invitation(cid, True)
    sim.run_until_idle()
    assert sim.last_event("bob", ev.RequestFailed).code == "unknown_chat"
    assert len(sim.server.chats) == 0


def test_offline_invitee_gets_the_invitation_at_login() -> None:
    sim = make_simulation("alice", "bob", seed=47)
    carol = register_only(sim, "carol")
    sim.clients["alice"].open_chat(["bob", "carol"])
    sim.run_until_idle()
    cid = sim.last_event("alice", ev.ChatOpened).chat_id
    carol.auto_accept_invitations = False
    carol.login("carol", password_of("carol"), user_keys("carol"))
    sim.run_until_idle()
    assert sim.last_event("carol", ev.InvitationReceived).chat_id == cid
    carol.answer_invitation(cid, True)
    sim.run_until_idle()
    assert set(sim.clients["alice"].book.chats[cid].members) == {"alice", "bob", "carol"}


def test_answering_without_an_invitation_is_refused_locally_and_by_the_server() -> None:
    import pytest

    from securechat.errors import LocalProtocolError
    from securechat.protocol import messages as m
    from tests.helpers import request
    sim = make_simulation("alice", "bob", seed=48)
    with pytest.raises(LocalProtocolError):
        sim.clients["bob"].answer_invitation("c-nothing", True)
    rid = request(sim, "bob", m.ChatAnswer(chat_id="c-nothing", accept=True))
    failure = sim.last_event("bob", ev.RequestFailed)
    assert (failure.rid, failure.code, failure.ref) == (rid, "unknown_chat", "chat_answer")


@pytest.mark.tcp
def test_invitation_over_real_sockets() -> None:
    server = start_server()
    try:
        alice = connect(server, server_key=pinned(server))
        bob = connect(server, server_key=pinned(server), auto_accept_invitations=False)
        for client, name in ((alice, "alice"), (bob, "bob")):
            client.register(name, password_of(name), user_keys(name))
            client.login(name, password_of(name), user_keys(name))
        import threading
        opened: list[ev.ChatOpened] = []
        opener = threading.Thread(target=lambda: opened.append(alice.open_chat(["bob"])), daemon=True)
        opener.start()
        invitation = bob.wait_for(ev.InvitationReceived)
        assert invitation.inviter == "alice" and not opened  # alice's chat waits for bob's answer
        assert bob.answer_invitation(invitation.chat_id, True).accepted
        opener.join(timeout=10)
        assert opened and set(opened[0].members) == {"alice", "bob"}
        bob.wait_for_key(invitation.chat_id, 1)
        alice.wait_for_key(invitation.chat_id, 1)
        alice.send(invitation.chat_id, "over TCP, by consent")
        assert bob.wait_for(ev.ChatReceived).text == "over TCP, by consent"
        alice.close()
        bob.close()
    finally:
        server.stop()
