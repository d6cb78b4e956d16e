"""Fixtures of the hostile-server harness: one CA key and cached user keys per session, a fresh world per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from securechat.protocol.identity import UserKeys
from securechat.store import ServerKey, new_server_key
from tests.helpers import seeded, user_keys

from .world import HostileServer


@pytest.fixture(scope="session")
def ca() -> ServerKey:
    return new_server_key(random_bytes=seeded("hostile/ca"))


@pytest.fixture(scope="session")
def people() -> dict[str, UserKeys]:
    """alice, bob, carol (RSA-PSS, seeded and cached) and mallory (the server's own impostor keys)."""
    return {name: user_keys(name) for name in ("alice", "bob", "carol", "mallory")}


@pytest.fixture
def world(ca: ServerKey, people: dict[str, UserKeys]) -> Iterator[HostileServer]:
    server = HostileServer(ca)
    for name in ("alice", "bob", "carol"):
        server.enroll(name, people[name])
    yield server
    assert not server.crashes, server.crashes
