"""Mallory's helpers for the ``Simulation``: interceptor factories for an active attacker on the wire.

Owns: ``drop``, ``delay``, ``duplicate``, ``replay``, ``modify``, ``flip_bit``, ``tamper``, ``reflect``,
``inject_frame``, ``capture``, ``reorder`` and ``chain``. Each returns an ``Interceptor`` (``teaching/wire.py``)
to set as ``Simulation.intercept``: it sees every chunk before delivery and returns what crosses the wire instead.
Must not: open sockets or threads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..protocol import messages as m
from ..protocol.codec import decode_message, encode_frame
from ..protocol.codec import frame as length_prefixed
from .wire import HELD, Frame, Interceptor, frame_bodies, frame_types


class _Attack:
    """Base of the Mallory helpers: acts on the *nth* .. *nth+count-1* chunks that match the filters.

    Filters: *source*/*target* names, *carrying* (an inner message type, using the simulation's knowledge of
    what a record carries, or a clear type) and *when* (any predicate). ``count=None`` acts on every match.
    """

    def __init__(self, *, source: str | None = None, target: str | None = None, carrying: str | None = None,
                 when: Callable[[Frame], bool] | None = None, nth: int = 1, count: int | None = 1) -> None:
        self.source, self.target, self.carrying, self.when = source, target, carrying, when
        self.nth, self.count = nth, count
        self.seen = 0  # matching chunks so far
        self.hits: list[Frame] = []  # the chunks acted on, as they arrived

    def matches(self, frame: Frame) -> bool:
        if not frame.data or (self.source is not None and frame.source != self.source):
            return False
        if self.target is not None and frame.target != self.target:
            return False
        if self.carrying is not None and self.carrying not in frame.inner + frame_types(frame.data):
            return False
        return self.when is None or self.when(frame)

    def __call__(self, frame: Frame) -> list[Frame]:
        if not self.matches(frame):
            return self.other(frame)
        self.seen += 1
        last = None if self.count is None else self.nth + self.count - 1
        if self.seen < self.nth or (last is not None and self.seen > last):
            return self.other(frame)
        self.hits.append(frame)
        return self.act(frame)

    def act(self, frame: Frame) -> list[Frame]:
        raise NotImplementedError

    def other(self, frame: Frame) -> list[Frame]:
        return [frame]


class _Fn(_Attack):
    def __init__(self, act: Callable[[Frame], list[Frame]], **match: Any) -> None:
        super().__init__(**match)
        self._act = act

    def act(self, frame: Frame) -> list[Frame]:
        return self._act(frame)


def drop(**match: Any) -> Interceptor:
    """Mallory deletes the matching chunk: the receiver never sees it."""
    return _Fn(lambda f: [], **match)


def delay(seconds: float, **match: Any) -> Interceptor:
    """Mallory holds the matching chunk for *seconds* of virtual time; later chunks overtake it."""
    return _Fn(lambda f: [replace(f, deliver_at=f.sent_at + seconds, note="delayed")], **match)


def duplicate(copies: int = 1, **match: Any) -> Interceptor:
    """Mallory delivers the matching chunk, then *copies* identical copies right after it (a replay)."""
    return _Fn(lambda f: [f] + [replace(f, note="replayed")] * copies, **match)


def replay(after: float, **match: Any) -> Interceptor:
    """Mallory delivers the matching chunk, and a recorded copy again *after* virtual seconds."""
    return _Fn(lambda f: [f, replace(f, note="replayed", deliver_at=f.sent_at + after)], **match)


def modify(change: Callable[[bytes], bytes], **match: Any) -> Interceptor:
    """Mallory rewrites the matching chunk's bytes with *change*."""
    return _Fn(lambda f: [replace(f, data=change(f.data), note="modified")], **match)


def flip_bit(offset: int, *, source: str | None = None, target: str | None = None,
             when: Callable[[Frame], bool] | None = None, bit: int = 0, **match: Any) -> Interceptor:
    """An interceptor that flips one bit of the first matching chunk at *offset* (from its end if negative)."""

    def change(data: bytes) -> bytes:
        out = bytearray(data)
        out[offset] ^= 1 << bit
        return bytes(out)

    return _Fn(lambda f: [replace(f, data=change(f.data))], source=source, target=target, when=when, **match)


def tamper(offset: int = -1, *, bit: int = 0, **match: Any) -> Interceptor:
    """Mallory flips one bit of the ciphertext (the tag, for a negative *offset*) of the chunk's first record.

    She parses the clear framing and base64 herself, so the receiver's record layer, not its JSON parser, is
    what meets the change (docs/THREATS.md 32). Chunks without a record pass unchanged.
    """

    def change(data: bytes) -> bytes:
        bodies = frame_bodies(data) or []
        for i, body in enumerate(bodies):
            message = decode_message(body)
            if isinstance(message, m.Record):
                sealed = bytearray(message.data)
                sealed[offset] ^= 1 << bit
                bodies[i] = encode_frame(m.Record(data=bytes(sealed)))[4:]
                return b"".join(length_prefixed(b) for b in bodies)
        return data

    return _Fn(lambda f: [replace(f, data=change(f.data), note="modified")], **match)


def reflect(**match: Any) -> Interceptor:
    """Mallory sends the matching chunk back to the party that wrote it, as if the other side had."""
    return _Fn(lambda f: [replace(f, source=f.target, target=f.source, note="reflected")], **match)


def inject_frame(data: bytes | Callable[[Frame], bytes], *, before: bool = False, **match: Any) -> Interceptor:
    """Mallory adds a chunk of her own (to the same receiver) just after (or *before*) the matching chunk."""

    def act(f: Frame) -> list[Frame]:
        extra = replace(f, data=data(f) if callable(data) else data, inner=(), note="injected")
        return [extra, f] if before else [f, extra]

    return _Fn(act, **match)


def capture(into: list[Frame], **match: Any) -> Interceptor:
    """Passive Mallory: copy every matching chunk into *into* (for a later ``Simulation.inject``)."""
    def keep(frame: Frame) -> list[Frame]:
        into.append(frame)
        return [frame]

    return _Fn(keep, **{"count": None, **match})


class _Reorder(_Attack):
    """Holds the matching chunk, then delivers it just after the next chunk on the same (source, target) path."""

    def __init__(self, **match: Any) -> None:
        super().__init__(**match)
        self._held: Frame | None = None

    def act(self, frame: Frame) -> list[Frame]:
        if self._held is not None:
            return self._release(frame)
        self._held = frame
        return [replace(frame, deliver_at=HELD, note="held")]

    def other(self, frame: Frame) -> list[Frame]:
        held = self._held
        if held is not None and (frame.source, frame.target) == (held.source, held.target) and frame.data:
            return self._release(frame)
        return [frame]

    def _release(self, frame: Frame) -> list[Frame]:
        held, self._held = self._held, None
        assert held is not None
        return [frame, replace(held, note="reordered", deliver_at=None)]


def reorder(**match: Any) -> Interceptor:
    """Mallory swaps the matching chunk with the next one on the same path (frames k and k+1, docs/THREATS.md 31)."""
    return _Reorder(**match)


def chain(*interceptors: Interceptor) -> Interceptor:
    """Apply several interceptors in turn: each output chunk of one goes through the next."""

    def intercept(frame: Frame) -> list[Frame]:
        frames = [frame]
        for interceptor in interceptors:
            frames = [out for f in frames
                      for out in ([f] if f.deliver_at is not None else list(interceptor(f) or []))]
        return frames

    return intercept

__all__ = ["capture", "chain", "delay", "drop", "duplicate", "flip_bit", "inject_frame", "modify", "reflect",
           "reorder", "replay", "tamper"]
