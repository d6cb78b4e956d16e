"""Fair admission of password work (PROTOCOL.md 6.1 and 6.2): one address cannot push everyone else's login
past the client's timeout, and parallel guesses are counted like sequential ones."""

from __future__ import annotations

from securechat.errors import ErrorCode
from securechat.protocol import events as ev
from securechat.protocol.jobs import Job, LoginJob
from securechat.protocol.states import ClientState
from tests.helpers import (
    assert_serves,
    connect,
    last_failure,
    make_simulation,
    password_of,
    peer_of,
    register_only,
    user_keys,
)

ATTACKER = "203.0.113.5"


def _parallel_logins(sim, count: int) -> list[str]:  # type: ignore[no-untyped-def]
    """*count* connections from ATTACKER, each guessing a different name; every login reaches the server
    before any scrypt job has run (as with worker threads)."""
    labels = [f"g{i}" for i in range(count)]
    for label in labels:
        connect(sim, label)
        sim.server.peers[peer_of(sim, label)].address = ATTACKER
    for i, label in enumerate(labels):
        sim.clients[label].login(f"name{i}", "guess", user_keys("mallory"))
    for label in labels:
        sim.server.receive_data(peer_of(sim, label), sim.clients[label].data_to_send(), sim.now)
    return labels


def _take_jobs(sim) -> list[Job]:  # type: ignore[no-untyped-def]
    """Every job the server queued, taken through its public queue (``_finish`` runs them as the simulation
    would): the admitted logins are the ``LoginJob``s among them."""
    jobs: list[Job] = []
    while (job := sim.server.next_job()) is not None:
        jobs.append(job)
    return jobs


def _finish(sim, jobs: list[Job]) -> None:  # type: ignore[no-untyped-def]
    for job in jobs:
        job.run()
        sim.server.job_done(job, sim.now)


def test_forty_parallel_logins_for_different_names_are_not_all_admitted() -> None:
    """Finding: the address window counted a failure only when its scrypt job finished, so 40 logins for 40
    names sent at once from one address were all admitted (the limit is 30 a minute) and filled the pool."""
    sim = make_simulation("alice")
    labels = _parallel_logins(sim, 40)
    jobs = _take_jobs(sim)
    admitted = [job for job in jobs if isinstance(job, LoginJob)]
    assert len(admitted) <= sim.config.max_pending_password_jobs_per_address
    assert sim.server.pending_by_address == {ATTACKER: len(admitted)}
    _finish(sim, jobs)
    sim.run_until_idle()
    codes = [last_failure(sim, label).code for label in labels]
    assert codes.count(ErrorCode.AUTH_FAILED) == len(admitted)
    assert set(codes) <= {ErrorCode.AUTH_FAILED, ErrorCode.SERVER_BUSY, ErrorCode.RATE_LIMITED}
    assert sim.server.pending_password_jobs == 0 and sim.server.pending_by_address == {}
    assert_serves(sim, "alice")


def test_logins_in_flight_count_against_the_address_window() -> None:
    """With a generous per-address job cap, the window still admits at most address_failures_allowed guesses:
    each admitted login counts as a failure until it ends."""
    sim = make_simulation("alice", max_pending_password_jobs_per_address=100)
    _parallel_logins(sim, 40)
    jobs = _take_jobs(sim)
    assert len([job for job in jobs if isinstance(job, LoginJob)]) == sim.config.address_failures_allowed
    _finish(sim, jobs)
    sim.run_until_idle()
    late = connect(sim, "late")
    sim.server.peers[peer_of(sim, "late")].address = ATTACKER
    late.login("name99", "guess", user_keys("mallory"))
    sim.run_until_idle()
    assert last_failure(sim, "late").code == ErrorCode.RATE_LIMITED  # 30 failures now in the window


def test_a_success_frees_its_place_in_the_address_window() -> None:
    """Honest users behind one address (a NAT): logins that succeed do not use up the failure window."""
    sim = make_simulation("alice", address_failures_allowed=2)
    for name in ("bob", "carol", "dave"):
        register_only(sim, f"reg-{name}", name)
    for name in ("bob", "carol", "dave"):
        client = connect(sim, f"in-{name}")
        sim.server.peers[peer_of(sim, f"in-{name}")].address = ATTACKER
        client.login(name, password_of(name), user_keys(name))
        sim.run_until_idle()
        assert client.state is ClientState.ONLINE
    assert sim.server.pending_by_address == {}


def test_an_honest_login_from_another_address_is_admitted_while_one_address_is_at_its_cap() -> None:
    sim = make_simulation("alice")
    register_only(sim, "b1", "bob")
    _parallel_logins(sim, 40)
    honest = connect(sim, "honest")
    honest.login("bob", password_of("bob"), user_keys("bob"))
    sim.run_until_idle()
    assert honest.state is ClientState.ONLINE


def test_registrations_are_throttled_per_address_when_admitted() -> None:
    """Finding: registration had no per-address throttle at all, so it could fill the password pool."""
    sim = make_simulation("alice", registration_burst_per_address=2, registrations_per_address_per_hour=1)
    codes = []
    for name in ("bob", "carol", "dave"):
        client = connect(sim, f"r-{name}")
        sim.server.peers[peer_of(sim, f"r-{name}")].address = ATTACKER
        client.register(name, password_of(name), user_keys(name))
        sim.run_until_idle()
        done = sim.events_of(f"r-{name}", ev.RegistrationSucceeded)
        codes.append("ok" if done else last_failure(sim, f"r-{name}").code)
    assert codes == ["ok", "ok", ErrorCode.RATE_LIMITED]
    assert sim.registry.get_user("dave") is None
    assert sim.server.pending_password_jobs == 0 and sim.server.pending_by_address == {}
    other = connect(sim, "other")  # another address is not affected
    other.register("dave", password_of("dave"), user_keys("dave"))
    sim.run_until_idle()
    assert sim.registry.get_user("dave") is not None
    assert_serves(sim, "alice")


def test_fair_queue_serves_addresses_round_robin() -> None:
    """The password workers take jobs round robin across addresses: 40 queued jobs of one address delay
    another address's job by one, not by 40."""
    from securechat.protocol.jobs import FairQueue

    queue: FairQueue[str] = FairQueue()
    for i in range(40):
        queue.push(ATTACKER, f"guess{i}")
    queue.push("198.51.100.7", "honest")
    queue.push("192.0.2.1", "other")
    order = [queue.pop() for _ in range(len(queue))]
    assert order[:4] == ["guess0", "honest", "other", "guess1"]
    assert order[4:] == [f"guess{i}" for i in range(2, 40)]
    assert queue.pop() is None and len(queue) == 0


def test_address_buckets_forget_the_oldest_addresses_first() -> None:
    from securechat.protocol.limits import AddressBuckets

    buckets = AddressBuckets(rate=0.0, burst=1.0, tracked_keys=2)
    assert buckets.take("a", 0.0) and not buckets.take("a", 1.0)
    assert buckets.take("b", 1.0) and buckets.take("c", 1.0)
    assert len(buckets) == 2
