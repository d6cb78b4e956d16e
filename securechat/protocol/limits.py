"""Server limits and the clock-free throttles that enforce them (PROTOCOL.md 10, docs/THREATS.md B and C).

Owns: ``ServerConfig`` (every limit, deadline and cost, with why) and the small throttles the server uses:
per-(account, address) login backoff, per-address failure windows and per-user token buckets. Time is always
passed in as ``now``. Must not: sleep, read a clock, or know about messages.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

from ..crypto.kdf import OWASP_SCRYPT, ScryptParams
from .lab import LabMode


@dataclass(frozen=True)
class ServerConfig:
    scrypt: ScryptParams = OWASP_SCRYPT        # docs/THREATS.md: OWASP minimum N=2^17, r=8, p=1 by default
    certificate_validity_seconds: int = 365 * 24 * 3600
    max_connections: int = 1024                # a class session is 300; leaves room without unbounded growth
    max_connections_per_address: int = 128     # PROTOCOL.md 10.1: an eighth of the slots (benchmarks raise it)
    handshake_deadline_seconds: float = 10.0   # docs/THREATS.md 10: slowloris connections are closed by then
    auth_deadline_seconds: float = 120.0       # a connection must log in within this (key generation is local)
    first_request_deadline_seconds: float = 10.0  # PROTOCOL.md 10.1: under pressure, first request within this
    frame_deadline_seconds: float = 30.0       # a started frame must complete within this (docs/THREATS.md 1)
    max_pending_password_jobs: int = 512       # docs/THREATS.md 14: queued scrypt work beyond this gets server_busy
    max_pending_password_jobs_per_address: int = 8  # PROTOCOL.md 6.2: one address cannot fill the queue
    max_chats_per_user: int = 64               # docs/THREATS.md 15
    max_key_jobs: int = 16                     # PROTOCOL.md 7.2: chat key jobs at once; other chats wait their turn
    invites_per_chat_per_second: float = 1.0   # PROTOCOL.md 7.5: each invitation rekeys every member
    invite_burst_per_chat: float = 20.0
    messages_per_second: float = 200.0         # docs/THREATS.md 15: per user, sustained
    message_burst: float = 2000.0              # per user, burst
    failures_before_backoff: int = 3           # docs/THREATS.md 18: per (account, address)
    max_backoff_seconds: float = 60.0
    address_failure_window_seconds: float = 60.0
    address_failures_allowed: int = 30         # per address per window, across all accounts (in flight count)
    registrations_per_address_per_hour: float = 600.0  # PROTOCOL.md 6.1: sustained, counted when admitted
    registration_burst_per_address: float = 100.0      # a class behind one NAT registers at once
    tracked_keys: int = 100_000                # bound on throttle memory
    require_post_quantum: bool = False         # PROTOCOL.md 4.4: refuse clients without the ML-KEM exchange
    renewal_window_seconds: int = 30 * 24 * 3600  # PROTOCOL.md 6.6: a certificate may be renewed in its last 30 days
    round_timeout_seconds: float = 120.0       # PROTOCOL.md 7.6: a contributory round not finished by then is reported
    lobby: bool = False                        # PROTOCOL.md 7.8: put every online user in the "lobby" chat
    # PROTOCOL.md 6.1 step 2: register budgets before login (token buckets: per second, burst).
    register_per_connection_per_second: float = 0.1   # an honest client registers once or twice
    register_per_connection_burst: float = 3.0
    register_per_address_per_second: float = 20.0     # a class behind one NAT registers at once
    register_per_address_burst: float = 200.0
    name_taken_per_address_per_second: float = 0.2    # bounds username probing: 720 names/hour/address
    name_taken_per_address_burst: float = 20.0
    max_refusals_before_login: int = 64               # PROTOCOL.md 10: then the connection is closed
    refusals_per_address_burst: float = 256.0          # PROTOCOL.md 10.1: refusals before login, per address;
    refusals_per_address_per_second: float = 8.0       # once spent, its new connections get server_busy
    lab: LabMode | None = None                 # PROTOCOL.md 16: deliberately weakened, labs only
    # PROTOCOL.md 7.11: invitations (consent to join)
    invitation_seconds: float = 600.0          # an open invitation expires after this
    open_wait_seconds: float = 20.0            # chat_open waits at most this for online invitees' answers
    max_invitations_per_user: int = 32         # open invitations to one user (older ones expire)
    max_invitations_per_inviter: int = 64      # open invitations sent by one user
    max_invitations_per_pair: int = 2          # open invitations from one user to another

    def __post_init__(self) -> None:
        if self.lab is not None and (not isinstance(self.lab, LabMode) or self.lab.side != "server"):
            raise ValueError("ServerConfig.lab must be a server LabMode (securechat.protocol.lab)")


class LoginThrottle:
    """Exponential backoff per (account, address) plus a failure window per address (PROTOCOL.md 6.2).

    Keyed by the pair, so an attacker guessing from one address slows only itself: the real user, from
    another address, is never locked out (docs/THREATS.md 18). Checked before any scrypt work is queued.
    """

    def __init__(self, config: ServerConfig) -> None:
        self._config = config
        self._pairs: OrderedDict[tuple[str, str], tuple[int, float]] = OrderedDict()
        self._addresses: OrderedDict[str, deque[float]] = OrderedDict()

    def allowed(self, username: str, address: str, now: float, in_flight: int = 0) -> bool:
        """May (username, address) start a login now? *in_flight* is the address's password jobs already
        admitted and not finished: each counts against the address window as if it will fail (PROTOCOL.md
        6.2), so logins sent in parallel are throttled like sequential ones."""
        count, last = self._pairs.get((username, address), (0, 0.0))
        excess = count - self._config.failures_before_backoff
        # min(excess, 64): a campaign of thousands of guesses must not overflow the float (it would raise).
        if excess >= 0 and now < last + min(2.0 ** min(excess, 64), self._config.max_backoff_seconds):
            return False
        window = self._addresses.get(address)
        if window is not None:
            while window and window[0] <= now - self._config.address_failure_window_seconds:
                window.popleft()
        failures = len(window) if window is not None else 0
        return failures + in_flight < self._config.address_failures_allowed

    def attempt(self, username: str, address: str, now: float) -> None:
        """Count an attempt when it is admitted, not when its scrypt job ends: guesses sent in parallel are
        throttled exactly like sequential ones. A success resets the count."""
        count, _ = self._pairs.pop((username, address), (0, 0.0))
        self._pairs[(username, address)] = (count + 1, now)
        self._trim()

    def failed(self, username: str, address: str, now: float) -> None:
        """An admitted attempt failed: it also counts against the address (the pair counted it already)."""
        window = self._addresses.pop(address, deque())
        window.append(now)
        self._addresses[address] = window
        self._trim()

    def succeeded(self, username: str, address: str) -> None:
        self._pairs.pop((username, address), None)

    def _trim(self) -> None:
        for table in (self._pairs, self._addresses):
            while len(table) > self._config.tracked_keys:
                table.popitem(last=False)


class AddressBuckets:
    """One ``TokenBucket`` per address (PROTOCOL.md 6.1: registrations per address).

    Counted when admitted, never refunded: an account made is an account made. Memory is bounded by
    ``tracked_keys`` (the addresses seen longest ago are forgotten first, which only ever gives them a full
    bucket again)."""

    def __init__(self, rate: float, burst: float, tracked_keys: int) -> None:
        self._rate, self._burst, self._tracked = rate, burst, tracked_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, address: str, now: float) -> bool:
        bucket = self._buckets.pop(address, None) or TokenBucket(self._rate, self._burst, now)
        self._buckets[address] = bucket
        while len(self._buckets) > self._tracked:
            self._buckets.popitem(last=False)
        return bucket.take(now)

    def __len__(self) -> int:
        """How many addresses are tracked now (at most ``tracked_keys``)."""
        return len(self._buckets)


class TokenBucket:
    """A request budget: ``rate`` per second, up to ``burst`` saved (docs/THREATS.md 15)."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.updated = burst, now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True
