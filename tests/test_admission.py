"""Connection slots (PROTOCOL.md 10.1): a per-address cap well below the global one, eviction of the oldest
connection that has not logged in from the busiest address when the server is full, and, under pressure, a
short deadline for the first request after the handshake. One or two addresses cannot lock everyone out."""

from __future__ import annotations

import dataclasses

from securechat.crypto.kdf import FAST_SCRYPT
from securechat.errors import ErrorCode
from securechat.protocol import codec
from securechat.protocol import messages as m
from securechat.protocol.limits import ServerConfig
from securechat.protocol.server import ServerProtocol
from tests.helpers import (
    assert_serves, connect, is_closed, make_pair, make_simulation, peer_of, send_inner_bodies, server_errors,
    user_keys,
)


def _server(**config: object) -> ServerProtocol:
    pair = make_pair(config=ServerConfig(scrypt=FAST_SCRYPT, **config))  # type: ignore[arg-type]
    return pair.server


def _refused(server: ServerProtocol) -> dict[int, str]:
    """Peers sent a clear error since the last call, with its message."""
    out: dict[int, str] = {}
    for peer, data in server.data_to_send():
        message = codec.decode_message(data[4:])
        if isinstance(message, m.Error):
            out[peer] = f"{message.code}: {message.message}"
    return out


def test_default_per_address_cap_is_well_below_the_global_one() -> None:
    cfg = ServerConfig()
    assert cfg.max_connections_per_address * 4 <= cfg.max_connections
    server = _server()
    for peer in range(10, 10 + cfg.max_connections_per_address - 1):  # the pair's client holds one already
        server.connection_made(peer, "192.0.2.1", 1_700_000_000.0)
    assert _refused(server) == {}
    server.connection_made(9999, "192.0.2.1", 1_700_000_000.0)
    assert _refused(server) == {9999: "server_busy: too many connections"}


def test_two_addresses_holding_every_slot_cannot_lock_a_third_out() -> None:
    """Two addresses fill the server with idle connections; a third address still gets in: the oldest idle
    connection of the busiest address makes room. A newcomer from the busiest address is refused instead."""
    server = _server(max_connections=20, max_connections_per_address=12)  # the pair's client: 192.0.2.1
    now = 1_700_000_100.0
    for i in range(10):
        server.connection_made(100 + i, "198.51.100.1", now + i)   # attacker A: 10 idle (oldest: peer 100)
    for i in range(9):
        server.connection_made(200 + i, "198.51.100.2", now + i)   # attacker B: 9 idle
    assert len(server.peers) == 20 and _refused(server) == {}
    server.connection_made(300, "203.0.113.5", now + 20)            # an honest user on a third address
    assert _refused(server) == {100: "server_busy: server full: an idle connection from your address was "
                                     "closed to make room"}
    assert server.peers_to_close() == [100] and 300 in server.peers
    server.connection_made(400, "198.51.100.1", now + 21)           # attacker A again: refused, evicts nobody
    assert list(_refused(server)) == [400]
    assert 101 in server.peers and server.peers_to_close() == [400]


def test_logged_in_connections_are_never_evicted() -> None:
    sim = make_simulation("alice", "bob", max_connections=3)
    connect(sim, "idle")
    sim.add_client("late")
    sim.run_until_idle()
    assert is_closed(sim, "idle") and not is_closed(sim, "late")
    assert not is_closed(sim, "alice") and not is_closed(sim, "bob")
    assert_serves(sim, "alice")


def test_a_busy_server_closes_connections_that_say_nothing_after_the_handshake() -> None:
    """Under pressure (more than half of the slots taken) a connection that sent no request within
    first_request_deadline_seconds is closed; one that spoke is kept until the login deadline."""
    sim = make_simulation(max_connections=6)
    for label in ("quiet1", "quiet2", "quiet3"):
        connect(sim, label)
    talker = connect(sim, "talker")
    bad = codec.encode_unchecked("register", {"username": "x" * 40, "password": "p", "signature_scheme": "ed25519",
                                              "encryption_key": b"k", "signing_key": b"k"})  # no Register holds it
    send_inner_bodies(sim, "talker", [bad[4:]])  # a bad request still speaks
    sim.advance(sim.server.config.first_request_deadline_seconds + 1)
    sim.run_until_idle()
    for label in ("quiet1", "quiet2", "quiet3"):
        assert is_closed(sim, label)
        assert server_errors(sim, label)[-1].code == ErrorCode.LIMIT_EXCEEDED.value
    assert not is_closed(sim, "talker") and not talker.closed
    # the same silence on a quiet server is allowed until the login deadline
    calm = make_simulation(max_connections=100)
    connect(calm, "quiet")
    calm.advance(calm.server.config.first_request_deadline_seconds + 1)
    calm.run_until_idle()
    assert not is_closed(calm, "quiet")
    calm.clients["quiet"].login("nobody", "pw", user_keys("nobody"))
    calm.run_until_idle()
    assert peer_of(calm, "quiet") in calm.server.peers
    assert dataclasses.is_dataclass(calm.server.config)
