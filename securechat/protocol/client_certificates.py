"""The client's certificate requests in flight (PROTOCOL.md 6.3, 7.4).

Owns: which peers' certificates we have asked for and under which request id, so that a peer's certificate is
fetched once however many of its messages arrive, only an answer to our own request is looked at, and a
refused request is asked again on the peer's next message. Bounded: a server that never answers makes the client
forget its oldest request, never grow without end (docs/SECURITY.md). The verified certificates and pins
themselves live in ``ChatBook``. Must not: verify or trust anything (``ChatBook.add_certificates`` does).
"""

from __future__ import annotations

from . import messages as m
from .client_link import ClientLink

# Certificate requests a server may leave unanswered; beyond this the oldest is forgotten (bounded memory against
# a malicious server, docs/SECURITY.md).
MAX_FETCHES_IN_FLIGHT = 64


class CertificateFetches:
    """The ``get_certificates`` requests of one connection."""

    def __init__(self, link: ClientLink) -> None:
        self._link = link
        self.fetching: set[str] = set()                    # names whose certificate request is in flight
        self.requests: dict[int, tuple[str, ...]] = {}     # rid -> the names it asked for

    def fetch(self, names: tuple[str, ...]) -> int | None:
        """Ask for the certificates of *names* not already asked for; returns the request id, or None if every
        name is being fetched already."""
        wanted = tuple(n for n in names if n not in self.fetching)
        if not wanted:
            return None
        while len(self.requests) >= MAX_FETCHES_IN_FLIGHT:
            # bounded memory: a server that never answers forgets our oldest request (its answer would now be
            # ignored, and the next message from one of its names asks again)
            self.fetching.difference_update(self.requests.pop(next(iter(self.requests))))
        rid = self._link.take_rid()
        self.fetching.update(wanted)
        self.requests[rid] = wanted
        self._link.send(m.GetCertificates(rid=rid, usernames=wanted))
        return rid

    def answered(self, rid: int | None) -> tuple[str, ...]:
        """The names request *rid* asked for (nothing if it is not ours); they are no longer in flight."""
        asked = self.requests.pop(rid, ()) if rid is not None else ()
        self.fetching.difference_update(asked)
        return asked

    def refused(self, rid: int | None) -> None:
        """Request *rid* was refused: its names are forgotten, so the next message from one of them asks again."""
        if rid is not None and rid in self.requests:
            self.fetching.difference_update(self.requests.pop(rid))
