"""The simulated wire's vocabulary: what travels on it and what a passive observer can parse of it.

Owns: ``Frame`` (bytes in flight, with the simulation's god view of what the records carry), ``WireRecord`` (one
entry of a simulation's trace), the ``Interceptor`` type Mallory's helpers (``teaching/mallory.py``) build, and
Eve's parsing of a chunk: ``frame_bodies``, ``frame_types`` and ``clear_fields`` (docs/PROTOCOL.md 11: after the
handshake only ``record`` and its ciphertext are in clear). Must not: open sockets or threads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..errors import SecureChatError
from ..protocol.codec import FrameDecoder, parse_json

SERVER = "server"
HELD = math.inf  # Frame.deliver_at for a frame Mallory keeps (``reorder`` releases it itself)


@dataclass(frozen=True)
class Frame:
    """Bytes in flight on the simulated wire, as one chunk written by *source* for *target*.

    ``inner`` is what the simulation knows travels inside the chunk's records (Eve does not); ``note`` says how
    Mallory made or changed the chunk; ``deliver_at`` holds it back until the virtual clock reaches that time.
    """

    source: str
    target: str
    data: bytes
    sent_at: float
    index: int
    inner: tuple[str, ...] = ()
    note: str = ""
    deliver_at: float | None = None


@dataclass
class WireRecord:
    """One entry of the simulation's trace: a chunk as it was delivered (after any interception)."""

    index: int
    time: float
    source: str
    target: str
    data: bytes
    types: tuple[str, ...]
    action: str = "delivered"  # or "dropped", "held", "modified", "injected", "replayed", "reordered", ...
    inner: tuple[str, ...] = ()  # inner frame types (the simulation's god view, not Eve's)

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def label(self) -> str:
        """A short name for a diagram: inner types for records, the clear type otherwise."""
        if not self.data:
            return "end of stream"
        if self.inner:
            return "record[" + ", ".join(self.inner) + "]"
        return ", ".join(self.types) or "?"


Interceptor = Callable[[Frame], Iterable[Frame] | None]


def due(frame: Frame) -> float:
    """When a held *frame* may cross the wire (at once if Mallory set no time)."""
    return frame.sent_at if frame.deliver_at is None else frame.deliver_at


def frame_bodies(data: bytes) -> list[bytes] | None:
    decoder = FrameDecoder(max_frame_bytes=1 << 30)
    bodies: list[bytes] = []
    try:
        decoder.feed(data)
        while (body := decoder.next_frame()) is not None:
            bodies.append(body)
    except SecureChatError:
        return None
    return bodies


def frame_types(data: bytes) -> tuple[str, ...]:
    """The ``type`` of each clear frame in a chunk, as Eve would parse it."""
    bodies = frame_bodies(data)
    if bodies is None:
        return ("?",)
    types: list[str] = []
    for body in bodies:
        try:
            types.append(str(parse_json(body)["type"]))
        except SecureChatError:
            types.append("?")
    return tuple(types)


def clear_fields(data: bytes) -> tuple[str, ...]:
    """Every JSON field name Eve can read in a chunk (a record shows only ``type`` and ``data``)."""
    names: list[str] = []
    for body in frame_bodies(data) or []:
        try:
            names.extend(k for k in parse_json(body) if k not in names)
        except SecureChatError:
            continue
    return tuple(names)

__all__ = ["HELD", "SERVER", "Frame", "Interceptor", "WireRecord", "clear_fields", "due", "frame_bodies",
           "frame_types"]
