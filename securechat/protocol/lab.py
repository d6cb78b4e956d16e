"""LAB MODE: deliberately weakened variants of securechat, for course labs only (PROTOCOL.md 16).

Owns: ``LabVariant`` (the names of the weakenings), which side each applies to, and ``LabMode``, the one
object that switches them on. A weakening exists nowhere but behind ``LabMode.has(...)``; ``LabMode`` cannot be
built without naming at least one variant *and* passing the acknowledgement string, so nothing weak can be
switched on by a default, a typo or a missing argument. Must not: hold any weakening logic itself (the code
paths that consult it are marked ``LAB ONLY``), read the environment, or do I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from ..errors import ErrorCode, LocalProtocolError

#: What a caller must pass as ``acknowledge`` to build a LabMode: it says what the object does.
LAB_ACKNOWLEDGEMENT = "I am running a deliberately insecure securechat for a lab"


class LabVariant(StrEnum):
    """The weakenings; the value is the name used by ``--lab`` and shown in banners (PROTOCOL.md 16.1)."""

    UNBOUND_LOGIN = "unbound-login"            # login proof not bound to the channel transcript (6.2)
    DSA_NONCE_REUSE = "dsa-nonce-reuse"        # client signs every message with the same DSA nonce k
    NO_REKEY_ON_LEAVE = "no-rekey-on-leave"    # server keeps the epoch and key when a member leaves (7.5)
    NO_REPLAY_WINDOW = "no-replay-window"      # server accepts a copy of a recent record again (5.2)
    UNPINNED_CLIENT = "unpinned-client"        # client accepts any server key, even when one is pinned (4.2)
    NO_KEY_COMMITMENT = "no-key-commitment"    # client skips the hybrid key commitment check (7.7)


SERVER_VARIANTS = frozenset({LabVariant.UNBOUND_LOGIN, LabVariant.NO_REKEY_ON_LEAVE, LabVariant.NO_REPLAY_WINDOW})
LAB_REPLAY_WINDOW = 64  # no-replay-window: how many earlier records the server accepts again
CLIENT_VARIANTS = frozenset({LabVariant.UNBOUND_LOGIN, LabVariant.DSA_NONCE_REUSE, LabVariant.UNPINNED_CLIENT,
                             LabVariant.NO_KEY_COMMITMENT})


def parse_variants(names: Iterable[str]) -> frozenset[LabVariant]:
    """The variants named by *names*; an unknown name is refused with the list of known ones."""
    out: set[LabVariant] = set()
    for name in names:
        try:
            out.add(LabVariant(name))
        except ValueError:
            known = ", ".join(v.value for v in LabVariant)
            raise LocalProtocolError(f"unknown lab variant {name!r} (known: {known})", ErrorCode.BAD_FIELD) from None
    return frozenset(out)


@dataclass(frozen=True)
class LabMode:
    """An explicit, acknowledged set of weakenings for one side (``side`` is "server" or "client").

    Raises LocalProtocolError (BAD_FIELD) when no variant is named, when ``acknowledge`` is not exactly
    ``LAB_ACKNOWLEDGEMENT``, or when a variant does not exist on that side.
    """

    variants: frozenset[LabVariant]
    side: str
    acknowledge: str = ""

    def __post_init__(self) -> None:
        if self.acknowledge != LAB_ACKNOWLEDGEMENT:
            raise LocalProtocolError("lab variants weaken securechat on purpose; they need an explicit lab mode "
                                     "(--lab NAME, or LabMode(..., acknowledge=LAB_ACKNOWLEDGEMENT))",
                                     ErrorCode.BAD_FIELD)
        allowed = {"server": SERVER_VARIANTS, "client": CLIENT_VARIANTS}.get(self.side)
        if allowed is None:
            raise LocalProtocolError(f"lab mode side must be server or client, not {self.side!r}",
                                     ErrorCode.BAD_FIELD)
        if not self.variants:
            raise LocalProtocolError("a lab mode names at least one variant", ErrorCode.BAD_FIELD)
        wrong = sorted(v.value for v in self.variants if v not in allowed)
        if wrong:
            raise LocalProtocolError(f"lab variant {', '.join(wrong)} does not apply to the {self.side}",
                                     ErrorCode.BAD_FIELD)

    def has(self, variant: LabVariant) -> bool:
        return variant in self.variants

    @property
    def label(self) -> str:
        """e.g. ``LAB MODE (INSECURE): dsa-nonce-reuse, unbound-login``, for banners and log lines."""
        return "LAB MODE (INSECURE): " + ", ".join(sorted(v.value for v in self.variants))


def lab_has(lab: LabMode | None, variant: LabVariant) -> bool:
    """True only when *lab* is an explicit LabMode that names *variant* (None is the secure default)."""
    return isinstance(lab, LabMode) and lab.has(variant)


def lab_replay_window(lab: LabMode | None) -> int:
    """0 (the default: replays fail, PROTOCOL.md 5.2), or LAB_REPLAY_WINDOW under no-replay-window."""
    return LAB_REPLAY_WINDOW if lab_has(lab, LabVariant.NO_REPLAY_WINDOW) else 0


__all__ = ["CLIENT_VARIANTS", "LAB_ACKNOWLEDGEMENT", "LAB_REPLAY_WINDOW", "SERVER_VARIANTS", "LabMode", "LabVariant",
           "lab_has", "lab_replay_window", "parse_variants"]
