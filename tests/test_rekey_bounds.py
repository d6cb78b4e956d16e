"""Bounded rekey (PROTOCOL.md 7.2 and 7.5): membership churn costs work and bytes bounded by the number of chats,
not the number of changes. One key job per chat at a time, changes merged into the newest epoch, a cap on key
jobs at once, an invitation rate per chat, and a distribution whose size grows with log N hashes, not N digests.
"""

from __future__ import annotations

import os

from securechat.crypto.keys import load_public_key
from securechat.errors import ErrorCode
from securechat.protocol import events as ev
from securechat.protocol import messages as m
from securechat.protocol.codec import encode_message
from securechat.protocol.constructions import root_from_path, wrap_leaf, wrap_tree
from securechat.protocol.jobs import ChatKeyJob
from securechat.simulation import Simulation
from tests.helpers import failures, make_simulation, open_chat, request, user_keys


class _HeldJobs:
    """The driver is slow: key jobs wait until the test runs them."""

    def __init__(self, sim: Simulation) -> None:
        self.sim, self.real = sim, sim.server.next_job
        self.handed: list[ChatKeyJob] = []
        sim.server.next_job = lambda: None  # type: ignore[method-assign]

    def take(self) -> list[ChatKeyJob]:
        new = []
        while (job := self.real()) is not None:
            assert isinstance(job, ChatKeyJob)
            new.append(job)
        self.handed += new
        return new

    def finish(self, job: ChatKeyJob) -> None:
        job.run()
        self.sim.server.job_done(job, self.sim.now)
        self.sim.flush()

    def release(self) -> None:
        self.sim.server.next_job = self.real  # type: ignore[method-assign]
        self.sim.run_until_idle()


def test_churn_while_a_key_job_runs_costs_one_more_job_not_one_per_change() -> None:
    """20 invitations and leaves while the first rekey runs: one merged job follows, for the newest epoch
    (before: 20 jobs, each N wraps and N messages)."""
    users = ("alice", "bob", "carol", "dave", "erin")
    sim = make_simulation(*users)
    cid = open_chat(sim, "alice", "bob", "carol")
    held = _HeldJobs(sim)
    try:
        for _ in range(10):
            for name in ("dave", "erin"):
                sim.clients["alice"].invite(cid, name)
                sim.run_until_idle()
            for name in ("dave", "erin"):  # their clients have no key yet: the request goes out raw
                request(sim, name, m.ChatLeave(rid=None, chat_id=cid))
        chat = sim.server.chats.get(cid)
        assert chat is not None and chat.epoch == 1 + 40
        first = held.take()
        assert len(first) == 1  # the first change's job; the 39 others wait, merged
        held.finish(first[0])
        second = held.take()
        assert len(second) == 1 and second[0].epoch == chat.epoch
        assert second[0].members == ("alice", "bob", "carol") and second[0].reason == "leave"
        held.finish(second[0])
        assert held.take() == []
    finally:
        held.release()
    assert [e.epoch for e in sim.events_of("bob", ev.ChatKeyed) if e.chat_id == cid] == [1, 41]
    assert sum(len(j.members) for j in held.handed) == 4 + 3  # wraps made: 7, not 40 rekeys' worth
    sim.clients["carol"].send_chat(cid, "after the churn")
    sim.run_until_idle()
    assert [e.text for e in sim.events_of("alice", ev.ChatReceived) if e.chat_id == cid] == ["after the churn"]


def test_key_jobs_at_once_are_capped_and_waiting_chats_are_served_in_turn() -> None:
    sim = make_simulation("alice", "bob", "carol", max_key_jobs=2)
    held = _HeldJobs(sim)
    try:
        for _ in range(5):
            sim.clients["alice"].open_chat(["bob", "carol"])
            sim.run_until_idle()
        assert len(held.take()) == 2
        assert len(sim.server.key_waiting) == 3
        while running := [j for j in held.handed if not j.messages]:
            held.finish(running[0])
            held.take()
            assert sim.server.key_jobs <= 2
        assert len(held.handed) == 5 and not sim.server.key_waiting and sim.server.key_jobs == 0
    finally:
        held.release()
    keyed = {e.chat_id for e in sim.events_of("bob", ev.ChatKeyed)}
    assert len(keyed) == 5


def test_invitations_into_one_chat_are_rate_limited() -> None:
    sim = make_simulation("alice", "bob", "carol", invite_burst_per_chat=2, invites_per_chat_per_second=0.5)
    cid = open_chat(sim, "alice", "bob")
    for _ in range(2):  # the burst is 2 invitations: both go through, the third is refused
        sim.clients["alice"].invite(cid, "carol")
        sim.run_until_idle()
        sim.clients["carol"].leave(cid)
        sim.run_until_idle()
    codes = [f.code for f in failures(sim, "alice")]
    assert codes == [] and sim.server.chats.get(cid).epoch == 5  # type: ignore[union-attr]
    sim.clients["alice"].invite(cid, "carol")
    sim.run_until_idle()
    refused = failures(sim, "alice")[-1]
    assert (refused.code, refused.ref) == (ErrorCode.RATE_LIMITED.value, "chat_invite")
    assert sim.server.chats.get(cid).epoch == 5 and "carol" not in sim.server.chats.get(cid).members  # type: ignore[union-attr]
    sim.advance(2.5)
    sim.clients["alice"].invite(cid, "carol")
    sim.run_until_idle()
    assert "carol" in sim.server.chats.get(cid).members  # type: ignore[union-attr]
    sim.clients["bob"].leave(cid)  # leaving is never refused
    sim.run_until_idle()
    assert not [f for f in failures(sim, "bob")]


def test_a_distribution_carries_log_n_hashes_not_n_digests() -> None:
    """Each member's chat_key grows with the member list (names) and log2(N) hashes, not with N wrap digests:
    the part that is not the member list stays under 1.5 KiB for 256 members (it was over 12 KiB)."""
    key = load_public_key(user_keys("alice").encryption_public)
    sizes = {}
    for n in (2, 256):
        members = tuple(f"user{i:03d}" for i in range(n))
        job = ChatKeyJob(peer=-1, chat_id="c" + "0" * 32, epoch=7, mode="server-key", suite="aes-256-gcm",
                         reason="invite", actor="user000", members=members, encryption_keys=(key,) * n,
                         ca=make_simulation().server_key, random_bytes=os.urandom)
        job.run()
        message = job.messages[members[-1]]
        assert len(message.wrap_path) == (n - 1).bit_length()
        names = len(encode_message(m.ChatKey(**{**vars(message), "members": ()})))  # everything but the names
        sizes[n] = names
    assert sizes[256] < 1536 and sizes[256] - sizes[2] <= 8 * 48


def test_merkle_paths_bind_each_member_to_its_own_wrap_and_place() -> None:
    """RFC 9162 paths for every tree size up to 40: for the (index, size) the signed member list gives, a path
    verifies only for that member's own leaf (its name and its wrap); another place or a cut path fails."""
    for n in range(1, 41):
        members = tuple(f"m{i}" for i in range(n))
        wraps = tuple(os.urandom(16) for _ in range(n))
        root, paths = wrap_tree(members, wraps)
        for i in range(n):
            leaf = wrap_leaf(members[i], wraps[i])
            assert root_from_path(leaf, i, n, paths[i]) == root
            assert root_from_path(wrap_leaf(members[i], wraps[i - 1]), i, n, paths[i]) != root or n == 1
            if n > 1:
                assert root_from_path(leaf, (i + 1) % n, n, paths[i]) != root
                assert root_from_path(wrap_leaf(members[i - 1], wraps[i]), i, n, paths[i]) != root
                assert root_from_path(leaf, i, n, paths[i][:-1]) != root
    assert root_from_path(b"\0" * 32, 3, 3, ()) is None
