"""What a connection that has not logged in may cost the server (PROTOCOL.md 6.1 and 10).

Owns: the budgets for ``register`` requests (per connection and per address), for ``name_taken`` replies (per
address) and for refusals before login (per address: once spent, new connections from the address are refused
at admission, before any handshake work), each a token bucket. A stranger gets cheap, bounded answers: the name is looked up before any key
is imported, DSA keys must use the reference domain, and every refusal before login counts toward the
connection's error cap (``server.MAX_ERRORS_PER_CONNECTION``). Must not: read a clock (``now`` is passed in),
know about frames, or do crypto.
"""

from __future__ import annotations

from collections import OrderedDict

from .limits import ServerConfig, TokenBucket


def _available(bucket: TokenBucket, now: float) -> bool:
    """Is a token there, without taking it (the bucket is refilled to *now*)."""
    bucket.tokens = min(bucket.burst, bucket.tokens + max(0.0, now - bucket.updated) * bucket.rate)
    bucket.updated = max(bucket.updated, now)
    return bucket.tokens >= 1.0


class AddressBudgets:
    """One TokenBucket per address; memory bounded by ``tracked`` (the least recently seen are forgotten, which
    only ever gives them a full budget again)."""

    def __init__(self, rate: float, burst: float, tracked: int) -> None:
        self._rate, self._burst, self._tracked = rate, burst, tracked
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def _bucket(self, address: str, now: float) -> TokenBucket:
        bucket = self._buckets.pop(address, None) or TokenBucket(self._rate, self._burst, now)
        self._buckets[address] = bucket
        while len(self._buckets) > self._tracked:
            self._buckets.popitem(last=False)
        return bucket

    def available(self, address: str, now: float) -> bool:
        return _available(self._bucket(address, now), now)

    def take(self, address: str, now: float) -> bool:
        return self._bucket(address, now).take(now)

    def give_back(self, address: str, now: float) -> None:
        bucket = self._bucket(address, now)
        _available(bucket, now)
        bucket.tokens = min(bucket.burst, bucket.tokens + 1.0)


class PreAuthLimits:
    """The ``register`` budgets of PROTOCOL.md 6.1 step 2."""

    def __init__(self, config: ServerConfig) -> None:
        self._config = config
        self._register = AddressBudgets(config.register_per_address_per_second, config.register_per_address_burst,
                                        config.tracked_keys)
        self._name_taken = AddressBudgets(config.name_taken_per_address_per_second,
                                          config.name_taken_per_address_burst, config.tracked_keys)
        self._refusals = AddressBudgets(config.refusals_per_address_per_second, config.refusals_per_address_burst,
                                        config.tracked_keys)

    def connection_budget(self, now: float) -> TokenBucket:
        """A new connection's own ``register`` budget."""
        return TokenBucket(self._config.register_per_connection_per_second,
                           self._config.register_per_connection_burst, now)

    def register_allowed(self, connection: TokenBucket, address: str, now: float) -> bool:
        """Take one ``register`` from the connection's budget and its address's; also refuse while the address
        has used up its ``name_taken`` budget, whatever the name, so a refusal never tells a taken name from a
        free one."""
        if not _available(connection, now) or not self._register.available(address, now):
            return False
        if not self._name_taken.available(address, now):
            return False
        connection.take(now)
        self._register.take(address, now)
        return True

    def name_taken(self, address: str, now: float) -> None:
        """A ``name_taken`` answer was given to *address*: it costs one from its budget."""
        self._name_taken.take(address, now)

    def refused(self, address: str, now: float) -> bool:
        """A connection from *address* that is not logged in was refused something (PROTOCOL.md 10): take one
        from the address's budget; False if it was already spent."""
        return self._refusals.take(address, now)

    def admit(self, address: str, now: float) -> bool:
        """May *address* open a new connection? A connection that has not logged in costs one from the address's
        budget too (given back at login, ``logged_in``), so connections opened in parallel cannot overdraw it."""
        return self._refusals.take(address, now)

    def logged_in(self, address: str, now: float) -> None:
        """An honest connection from *address* logged in: its admission costs the address nothing."""
        self._refusals.give_back(address, now)
