"""Property-based hostile sequences (hypothesis): any interleaving of honest messages and server lies.

For each mode, hypothesis draws a sequence of actions from tests/hostile/campaign.py (replay, reorder, bit flip,
sender swap, wrong epoch, re-signed by mallory, mode switch, noise, unknown senders, garbage, honest rekeys) and
checks after every step: no exception escapes the client, no forged or replayed message is ever received, and
what the client keeps stays bounded. Honest messages that were not tampered with are still received.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from securechat.protocol import events as ev
from securechat.protocol.identity import UserKeys
from securechat.store import ServerKey

from .campaign import ACTIONS, MAX_FETCHES_IN_FLIGHT, MODE_SWITCH, Campaign, bounded_state
from .world import HostileServer

STEP = st.tuples(st.sampled_from(ACTIONS), st.integers(min_value=0, max_value=2**16))


def _world(ca: ServerKey, people: dict[str, UserKeys]) -> HostileServer:
    world = HostileServer(ca)
    for name in ("alice", "bob", "carol"):
        world.enroll(name, people[name])
    return world


@pytest.mark.parametrize("mode", ["server-key", "contributory", "hybrid"])
@settings(max_examples=15, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(STEP, min_size=1, max_size=20))
def test_no_sequence_of_lies_gets_a_forgery_accepted(ca: ServerKey, people: dict[str, UserKeys], mode: str,
                                                     steps: list[tuple[str, int]]) -> None:
    world = _world(ca, people)
    campaign = Campaign(world, people, mode)
    for action, arg in steps:
        campaign.apply(action, arg)
    assert world.crashes == [] and campaign.stats.accepted_forgeries == 0
    sizes = bounded_state(campaign.alice)
    assert sizes["fetch_requests"] <= MAX_FETCHES_IN_FLIGHT, sizes
    if not campaign.closed:
        # the channel survived: an honest message sent now is received (the lies did not wedge the chat)
        before = len(campaign.alice.of(ev.ChatReceived))
        if campaign._bob_can_send():
            campaign.apply("honest", 0)
            assert len(campaign.alice.of(ev.ChatReceived)) == before + 1, campaign.alice.events[-4:]


def test_honest_sequence_is_all_received(ca: ServerKey, people: dict[str, UserKeys]) -> None:
    """The control: with no lies, every message bob sends is received once, in order, under his name."""
    world = _world(ca, people)
    campaign = Campaign(world, people, "server-key")
    for i in range(5):
        campaign.apply("honest", i)
    assert [e.text for e in campaign.alice.of(ev.ChatReceived)] == [f"honest {i}" for i in range(1, 6)]
    assert campaign.stats.accepted_honest == 5


@pytest.mark.parametrize("mode", ["contributory", "hybrid"])
def test_mode_switch_lies_leave_the_mode_unchanged(ca: ServerKey, people: dict[str, UserKeys], mode: str) -> None:
    """Signed distributions and epochs naming every other mode, interleaved with honest messages."""
    world = _world(ca, people)
    campaign = Campaign(world, people, mode)
    for arg in range(6):
        campaign.apply(MODE_SWITCH, arg)
        campaign.apply("honest", arg)
    assert campaign.stats.accepted_honest == 6
