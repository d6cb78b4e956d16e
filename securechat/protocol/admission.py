"""Connection slots: who gets one when the server is full (PROTOCOL.md 10.1).

Owns: the per-address counts, the choice of which connection to evict when every slot is taken, and when the
server is "under pressure" (then a connection that has not sent its first request soon after connecting is
closed). Pure functions over the server's peers; ``ServerProtocol`` applies the result. Must not: read a clock,
close anything itself, or know about frames.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from .limits import ServerConfig
from .server_outbox import Peer
from .states import PeerState


def live(peers: Iterable[Peer]) -> list[Peer]:
    """The connections that hold a slot (those being closed no longer do)."""
    return [p for p in peers if not p.closing]


def per_address(peers: Iterable[Peer]) -> Counter[str]:
    return Counter(p.address for p in peers)


def eviction_victim(peers: list[Peer], newcomer: Peer, counts: Counter[str]) -> Peer | None:
    """When every slot is taken: the oldest connection that has not logged in, from the address holding the
    most connections, if that address holds at least as many as the newcomer's address (counting the newcomer)
    and is not the newcomer's. So one or two addresses that fill the server with idle connections lose them to
    everyone else, while a newcomer from the busiest address itself is refused (None)."""
    holders = {p.address for p in peers if p is not newcomer and p.state is not PeerState.ONLINE}
    if not holders:
        return None
    busiest = max(holders, key=lambda a: (counts[a], a != newcomer.address))
    if busiest == newcomer.address or counts[busiest] < counts[newcomer.address]:
        return None
    idle = [p for p in peers if p.address == busiest and p is not newcomer and p.state is not PeerState.ONLINE]
    return min(idle, key=lambda p: (p.opened_at, p.id))


def under_pressure(config: ServerConfig, total: int, same_address: int) -> bool:
    """More than half of all slots, or of the address's slots, are taken: idle newcomers must speak quickly."""
    return total * 2 > config.max_connections or same_address * 2 > config.max_connections_per_address
