"""No silent waits and no silent caps (PROTOCOL.md 7.6, 7.8): a contributory round that does not finish is
reported, on the simulation's virtual clock; a full lobby is said."""

from __future__ import annotations

import pytest

from securechat.errors import ErrorCode
from securechat.protocol import events as ev
from securechat.protocol import messages as m
from tests.helpers import make_simulation, peer_of, server_push

SECURE = "contributory"


def timeouts(sim, label: str) -> list[ev.RoundTimedOut]:  # type: ignore[no-untyped-def]
    return sim.events_of(label, ev.RoundTimedOut)


def wait(sim, seconds: float) -> None:  # type: ignore[no-untyped-def]
    """Move the virtual clock (the server's timer runs) and deliver what it sent."""
    sim.advance(seconds)
    sim.run_until_idle()


def keyed(sim, label: str, chat_id: str) -> bool:  # type: ignore[no-untyped-def]
    return any(e.chat_id == chat_id for e in sim.events_of(label, ev.ChatKeyed))


def test_a_round_waiting_for_a_silent_member_times_out_with_a_clear_event() -> None:
    """Finding: a contributory round waited forever for a member who never took part (an offline member, or
    one whose client stalls): nobody was told anything. Here carol accepts, then her client goes silent."""
    sim = make_simulation("alice", "bob", "carol", seed=7)
    carol = sim.clients["carol"]
    held = bytearray()
    real_data_to_send = carol.data_to_send

    def silent() -> bytes:  # carol's client stalls: what it sends is held back
        held.extend(real_data_to_send())
        return b""

    carol.data_to_send = silent  # type: ignore[method-assign]
    sim.clients["alice"].open_chat(["bob", "carol"], mode=SECURE)
    sim.run_until_idle()
    # consent to join (PROTOCOL.md 7.11): carol's acceptance goes through, then her client stalls
    sim.server.receive_data(peer_of(sim, "carol"), bytes(held), sim.now)
    held.clear()
    sim.flush()
    sim.run_until_idle()
    cid = sim.last_event("alice", ev.ChatOpened).chat_id
    assert "carol" in sim.server.chats.get(cid).members and not keyed(sim, "alice", cid)
    epoch = sim.server.chats.get(cid).epoch
    wait(sim, sim.config.round_timeout_seconds - 1)
    assert not timeouts(sim, "alice") and not timeouts(sim, "bob")
    wait(sim, 2)
    for name in ("alice", "bob"):
        assert timeouts(sim, name) == [ev.RoundTimedOut(chat_id=cid, epoch=epoch, missing=("carol",))]
    sent = [e for e in sim.server_events if isinstance(e, ev.RoundTimeoutSent)]
    assert [(e.chat_id, e.epoch, e.missing) for e in sent] == [(cid, epoch, ("carol",))]
    wait(sim, sim.config.round_timeout_seconds * 3)
    assert len(timeouts(sim, "alice")) == 1  # told once, not every tick
    # the chat stays: carol's client wakes up and the round still completes for everyone
    carol.data_to_send = real_data_to_send  # type: ignore[method-assign]
    sim.server.receive_data(peer_of(sim, "carol"), bytes(held), sim.now)
    sim.flush()
    sim.run_until_idle()
    assert all(keyed(sim, name, cid) for name in ("alice", "bob", "carol"))


def test_a_round_that_finishes_is_never_reported() -> None:
    sim = make_simulation("alice", "bob", seed=7)
    sim.clients["alice"].open_chat(["bob"], mode=SECURE)
    sim.run_until_idle()
    cid = sim.last_event("alice", ev.ChatOpened).chat_id
    assert keyed(sim, "alice", cid) and keyed(sim, "bob", cid)
    wait(sim, sim.config.round_timeout_seconds * 2)
    assert not timeouts(sim, "alice") and not timeouts(sim, "bob")
    assert cid not in sim.server.open_rounds


def test_a_stale_round_timeout_is_ignored_by_the_client() -> None:
    """A notice for an epoch the client has moved past (or a chat it is not in) is not shown."""
    sim = make_simulation("alice", "bob", seed=7)
    sim.clients["alice"].open_chat(["bob"], mode=SECURE)
    sim.run_until_idle()
    cid = sim.last_event("alice", ev.ChatOpened).chat_id
    server_push(sim, "alice", m.RoundTimeout(chat_id=cid, epoch=7, missing=("bob",)),
                m.RoundTimeout(chat_id="not-a-chat", epoch=1, missing=("bob",)))
    assert not timeouts(sim, "alice")


def test_a_full_lobby_tells_the_user_who_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding: the lobby silently stopped adding users past 256 members."""
    from securechat.protocol import server_chats, server_relay

    monkeypatch.setattr(server_chats, "MAX_CHAT_MEMBERS", 2)
    monkeypatch.setattr(server_relay, "MAX_CHAT_MEMBERS", 2)
    sim = make_simulation("alice", "bob", "carol", lobby=True)
    assert set(sim.server.chats.get(m.LOBBY_ID).members) == {"alice", "bob"}
    told = [e for e in sim.events_of("carol", ev.RequestFailed) if e.ref == "lobby"]
    assert len(told) == 1 and told[0].rid is None and told[0].code == ErrorCode.LIMIT_EXCEEDED
    assert "the lobby is full (2 members)" in told[0].message
    assert not [e for e in sim.events_of("alice", ev.RequestFailed) if e.ref == "lobby"]
