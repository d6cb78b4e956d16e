"""One scenario, two runners: the in-memory Simulation and real sockets on 127.0.0.1 give EQUAL outcomes.

Keys are generated once per process (``securechat.scenario.user_keys``); every socket run stops its server and
clients in a finally, which the thread-count test checks.
"""

from __future__ import annotations

import threading
import time

import pytest

from securechat.crypto.signatures import SignatureScheme
from securechat.scenario import (
    Invite,
    Join,
    Leave,
    Logout,
    OpenChat,
    Outcome,
    ScenarioError,
    Send,
    Who,
    run_in_simulation,
    run_over_sockets,
)

RSA, DSA = SignatureScheme.RSA_PSS_SHA256, SignatureScheme.DSA_SHA256


def demo_story(mode: str = "server-key") -> list[object]:
    """alice (RSA-PSS) and bob (DSA) chat, carol (RSA-PSS) is invited and leaves, bob logs out."""
    return [
        Join("alice", "pw-alice", RSA), Join("bob", "pw-bob", DSA), Join("carol", "pw-carol", RSA),
        OpenChat("alice", ("bob",), mode=mode, label="c1"),
        Send("alice", "c1", "hi bob"), Send("bob", "c1", "hi alice"),
        Invite("alice", "c1", "carol"), Send("carol", "c1", "hello both"),
        Leave("carol", "c1"), Send("alice", "c1", "just us again"), Who("alice"), Logout("bob"),
    ]


def _settled_thread_count(target: int, limit: float = 5.0) -> int:
    deadline = time.monotonic() + limit
    while threading.active_count() > target and time.monotonic() < deadline:
        time.sleep(0.02)
    return threading.active_count()


def _both(steps: list[object]) -> tuple[Outcome, Outcome]:
    return run_in_simulation(steps, seed=7), run_over_sockets(steps, timeout=10)  # type: ignore[arg-type]


@pytest.mark.tcp
@pytest.mark.parametrize("mode", ["server-key", "contributory", "hybrid"])
def test_demo_story_gives_the_same_outcome_on_both_runners(mode: str) -> None:
    simulated, over_tcp = _both(demo_story(mode))
    assert simulated == over_tcp, "\n".join(simulated.differences(over_tcp))
    # and the outcome tells the story
    assert simulated.messages("bob") == [("message", "c1", "alice", "hi bob", "rsa-pss-sha256"),
                                         ("message", "c1", "carol", "hello both", "rsa-pss-sha256"),
                                         ("message", "c1", "alice", "just us again", "rsa-pss-sha256")]
    assert ("message", "c1", "bob", "hi alice", "dsa-2048-sha256") in simulated.of("alice")
    assert simulated.of("carol")[-2:] == (("left", "c1"), ("presence", "bob", False))
    keyed = [e for e in simulated.of("alice") if e[0] == "keyed"]
    assert [(e[2], e[3], e[4]) for e in keyed] == [
        (1, ("alice", "bob"), "open"), (2, ("alice", "bob", "carol"), "invite"),
        (3, ("alice", "bob"), "leave"), (4, ("alice",), "disconnect")]
    assert {e[8] for e in keyed} == {mode}
    assert ("who", ("alice", "bob", "carol")) in simulated.of("alice")
    assert simulated.of("bob")[-1] == ("logged_out",)


@pytest.mark.tcp
def test_a_request_the_server_refuses_is_the_same_failure_on_both_runners() -> None:
    steps = [Join("alice", "pw-alice", RSA), Join("bob", "pw-bob", DSA),
             OpenChat("alice", ("bob",), label="c1"), Invite("alice", "c1", "nobody"), Send("bob", "c1", "still here")]
    simulated, over_tcp = _both(steps)
    assert simulated == over_tcp, "\n".join(simulated.differences(over_tcp))
    assert any(e[0] == "failed" for e in simulated.of("alice"))


@pytest.mark.parametrize("runner", [run_in_simulation, pytest.param(run_over_sockets, marks=pytest.mark.tcp)],
                         ids=["simulation", "sockets"])
@pytest.mark.parametrize("bad, problem", [
    (Send("alice", "nope", "hi"), "unknown chat label 'nope'"),
    (Leave("carol", "c1"), "'carol' is not logged in"),
    (OpenChat("bob", ("alice",), label="c1"), "chat label 'c1' is already used"),
])
def test_a_scenario_error_is_clear_on_both_runners(runner, bad, problem) -> None:  # type: ignore[no-untyped-def]
    steps = [Join("alice", "pw-alice", RSA), Join("bob", "pw-bob", DSA), OpenChat("alice", ("bob",), label="c1"), bad]
    with pytest.raises(ScenarioError, match=problem) as caught:
        runner(steps)
    assert caught.value.index == 3 and caught.value.step == bad


@pytest.mark.tcp
def test_socket_runs_stop_every_thread_and_socket() -> None:
    run_in_simulation([Join("alice", "pw-alice", RSA)])  # keys made before the baseline
    baseline = threading.active_count()
    run_over_sockets(demo_story())
    with pytest.raises(ScenarioError):
        run_over_sockets([Join("alice", "pw-alice", RSA), Send("alice", "c9", "to nowhere")])
    assert _settled_thread_count(baseline) == baseline, [t.name for t in threading.enumerate()]


@pytest.mark.tcp
@pytest.mark.parametrize("transport", ["ws", "mixed"])
def test_demo_story_over_websocket_equals_tcp_and_the_simulation(transport: str) -> None:
    """PROTOCOL.md 15: the same story over WebSocket (every user, or TCP and WebSocket users in one chat)."""
    steps = demo_story("contributory")
    simulated = run_in_simulation(steps, seed=7)  # type: ignore[arg-type]
    over_tcp = run_over_sockets(steps, timeout=10)  # type: ignore[arg-type]
    over_ws = run_over_sockets(steps, timeout=10, transport=transport)  # type: ignore[arg-type]
    assert over_ws == simulated, "\n".join(simulated.differences(over_ws))
    assert over_ws == over_tcp, "\n".join(over_tcp.differences(over_ws))
    assert ("message", "c1", "alice", "hi bob", "rsa-pss-sha256") in over_ws.of("bob")


def test_an_unknown_transport_is_refused() -> None:
    with pytest.raises(ValueError, match="transport must be one of"):
        run_over_sockets([Join("alice", "pw-alice", RSA)], transport="udp")
