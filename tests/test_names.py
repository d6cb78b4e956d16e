"""Look-alike usernames (PROTOCOL.md 3.2): a name whose confusable skeleton is registered is refused."""

from __future__ import annotations

import json
import sqlite3
import string
from importlib import resources
from pathlib import Path

import pytest

from securechat.errors import ErrorCode
from securechat.protocol import events as ev
from securechat.protocol.registry import NameTaken
from securechat.protocol.states import ClientState
from securechat.store import MemoryRegistry, SqliteRegistry
from tests.helpers import assert_serves, connect, last_failure, make_simulation, user_keys

LOOKALIKES = [("alice", "a1ice"), ("bob", "b0b"), ("mallory", "rnallory"), ("carol", "carol."),
              ("dave", "_dave"), ("erin", "er.in"), ("frank", "frank--")]


@pytest.mark.parametrize(("name", "lookalike"), LOOKALIKES)
def test_skeletons_of_lookalikes_are_equal(name: str, lookalike: str) -> None:
    from securechat.protocol.names import skeleton

    assert skeleton(name) == skeleton(lookalike)


@pytest.mark.parametrize(("one", "other"), [("ian", "lan"), ("alice", "alicia"), ("bob", "bob2"),
                                            ("m", "n"), ("r-n", "mx"), ("carol", "caro")])
def test_names_that_do_not_look_alike_have_different_skeletons(one: str, other: str) -> None:
    from securechat.protocol.names import skeleton

    assert skeleton(one) != skeleton(other)


def test_the_table_is_uts39_restricted_to_the_username_alphabet() -> None:
    """UTS39_ASCII is the Unicode confusables data (as the confusable-homoglyphs package ships it) between
    strings of a-z 0-9 _ . - after casefolding, minus capital I ~ l (names are shown casefolded)."""
    from securechat.protocol.names import UTS39_ASCII

    data = json.loads(resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8"))
    alphabet = set(string.ascii_letters + string.digits + "_.-")
    pairs = set()
    for source, entries in data.items():
        for entry in entries:
            target = entry["c"]
            if set(source) <= alphabet and set(target) <= alphabet and source.casefold() != target.casefold():
                pairs.add(frozenset((source.casefold(), target.casefold())))
    pairs.discard(frozenset(("i", "l")))
    assert pairs == {frozenset(item) for item in UTS39_ASCII.items()}


@pytest.mark.parametrize(("name", "lookalike"), LOOKALIKES[:4])
def test_registering_a_lookalike_is_name_taken_with_a_clear_error(name: str, lookalike: str) -> None:
    """Finding: alice/a1ice, bob/b0b, mallory/rnallory and carol/carol. registered side by side."""
    sim = make_simulation()
    first = connect(sim, "first")
    first.register(name, "pw-first", user_keys("dave"))
    sim.run_until_idle()
    assert sim.events_of("first", ev.RegistrationSucceeded)
    copycat = connect(sim, "copycat")
    copycat.register(lookalike, "pw", user_keys("mallory"))
    sim.run_until_idle()
    failure = last_failure(sim, "copycat")
    assert (failure.code, failure.ref) == (ErrorCode.NAME_TAKEN, "register")
    assert failure.message == f"{lookalike} looks too much like the registered name {name}; choose another name"
    assert copycat.state is ClientState.CONNECTED
    assert sim.registry.get_user(lookalike) is None and sim.registry.count_users() == 1
    assert_serves(sim, "first") if sim.clients["first"].state is ClientState.ONLINE else None


def test_concurrent_registrations_of_lookalikes_give_one_account() -> None:
    """Both pass the check at register; the second job finds the first's skeleton and is refused."""
    sim = make_simulation("alice")
    first, second = connect(sim, "r1"), connect(sim, "r2")
    first.register("zed", "pw-1", user_keys("dave"))
    second.register("2ed", "pw-2", user_keys("mallory"))  # 2 is not a look-alike: a control
    sim.run_until_idle()
    assert sim.registry.get_user("2ed") is not None
    third, fourth = connect(sim, "r3"), connect(sim, "r4")
    third.register("oscar", "pw-3", user_keys("dave"))
    fourth.register("0scar", "pw-4", user_keys("mallory"))
    sim.run_until_idle()
    assert sim.last_event("r3", ev.RegistrationSucceeded).username == "oscar"
    failure = last_failure(sim, "r4")
    assert (failure.code, failure.ref) == (ErrorCode.NAME_TAKEN, "register_proof")
    assert "looks too much like the registered name oscar" in failure.message
    assert sim.registry.get_user("0scar") is None
    assert_serves(sim, "alice")


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_the_registry_refuses_a_lookalike_atomically(kind: str, tmp_path: Path) -> None:
    registry = MemoryRegistry() if kind == "memory" else SqliteRegistry(tmp_path / "r.db")
    sim = make_simulation("alice")
    record = sim.registry.get_user("alice")
    registry.add_user(record)
    assert registry.find_lookalike("a1ice") == "alice" and registry.find_lookalike("alice") is None
    with pytest.raises(NameTaken, match="looks like the registered name alice"):
        registry.add_user(type(record)(username="a1ice", password_record=record.password_record,
                                       certificate=record.certificate))
    assert registry.get_user("a1ice") is None and registry.count_users() == 1


def test_an_old_database_gets_skeletons_and_keeps_existing_lookalikes(tmp_path: Path) -> None:
    """Migration: a registry made before the check gets a skeleton column; two look-alikes already
    registered both keep their accounts, and a third is refused."""
    sim = make_simulation("alice")
    record = sim.registry.get_user("alice")
    cert = json.dumps(record.certificate.to_dict(), sort_keys=True)
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as old:
        old.execute("CREATE TABLE users (username TEXT PRIMARY KEY, password_record TEXT NOT NULL, "
                    "certificate TEXT NOT NULL)")
        for name in ("alice", "a1ice"):
            old.execute("INSERT INTO users VALUES (?, ?, ?)", (name, record.password_record, cert))
    old.close()
    registry = SqliteRegistry(db)
    try:
        skeletons = dict(registry._db.execute("SELECT username, skeleton FROM users").fetchall())
        assert skeletons == {"alice": "alice", "a1ice": "alice"}
        assert registry.get_user("a1ice") is not None and registry.get_user("alice") is not None
        with pytest.raises(NameTaken):
            registry.add_user(type(record)(username="a1ic.e", password_record=record.password_record,
                                           certificate=record.certificate))
    finally:
        registry.close()
