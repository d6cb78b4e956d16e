"""Pictures for the notebooks: message-sequence diagrams of a simulation trace, and timing plots.

Owns: ``sequence_events`` (a trace turned into (time, source, target, label) rows), ``sequence_diagram``
(participants as lifelines, chunks as arrows labelled with what they carry, crypto steps annotated),
``time_calls`` and ``timing_stats`` (measuring), ``timing_bars`` and ``timing_vs_size`` (plotting).

Must not: drive protocol objects (it only reads a finished trace) or need a display. Figures are built with
matplotlib's object API on an Agg canvas, never through pyplot, so they render headless (CI, a server
without $DISPLAY), need no ``plt.close`` and show in Jupyter as the last expression of a cell.
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

SERVER = "server"

#: What each side computes when a frame of this type is sent (default annotations of ``sequence_diagram``).
CRYPTO_STEPS: dict[str, str] = {
    "client_hello": "client: fresh X25519 key pair + 32-byte random",
    "server_hello": "server: X25519, signs transcript hash; both: HKDF c2s/s2c keys",
    "register": "client: sends SPKI public keys (RSA-OAEP + signing)",
    "register_challenge": "server: RSA-OAEP wraps a fresh 32-byte nonce",
    "register_proof": "client: OAEP unwrap + signs proof over transcript",
    "registered": "server: checks proofs, scrypt hash, CA signs certificate",
    "login": "client: signs transcript-bound login proof",
    "login_ok": "server: scrypt verify, certificate + proof check",
    "chat_key": "server: fresh chat key, OAEP wrap per member, signs all",
    "chat_send": "client: AES-GCM under sender key, signs header+ct",
    "chat_message": "receiver: verifies signature, opens AES-GCM",
    "certificates": "receiver: verifies the CA signature of each certificate",
}

# Colour of an arrow by what Mallory did to the chunk (Simulation WireRecord.action).
_ACTION_COLOURS = {
    "delivered": "black", "dropped": "red", "held": "grey", "modified": "darkorange", "injected": "purple",
    "replayed": "purple", "reflected": "purple", "pushed": "purple", "delayed": "tab:blue",
    "reordered": "tab:blue",
}


class NotebookFigure(Figure):
    """A Figure that Jupyter shows as a PNG when it is the last expression of a cell, whatever the backend."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=90)
        return buffer.getvalue()


@dataclass(frozen=True)
class SequenceEvent:
    """One arrow of a sequence diagram."""

    time: float
    source: str
    target: str
    label: str
    action: str = "delivered"
    size: int = 0
    inner: tuple[str, ...] = ()


def sequence_events(records: Any) -> list[SequenceEvent]:
    """Rows for a sequence diagram from a ``Simulation``, its ``trace`` (WireRecords), or tuples.

    Tuples are ``(time, source, target, label)``. A record's label names the inner messages its records
    carry (known from the protocol objects' inner-layer trace), or its clear type (client_hello, ...).
    """
    records = getattr(records, "trace", records)
    events: list[SequenceEvent] = []
    for r in records:
        if isinstance(r, SequenceEvent):
            events.append(r)
        elif isinstance(r, tuple):
            events.append(SequenceEvent(time=float(r[0]), source=str(r[1]), target=str(r[2]), label=str(r[3])))
        else:
            events.append(SequenceEvent(time=r.time, source=r.source, target=r.target, label=r.label,
                                        action=r.action, size=len(r.data), inner=tuple(r.inner)))
    return events


def _participants(events: Sequence[SequenceEvent]) -> list[str]:
    """Clients in alphabetical order (alice, bob, carol: stable from one slice of a trace to the next), with the
    server second: alice | server | bob reads best."""
    names = sorted({name for e in events for name in (e.source, e.target)} - {SERVER})
    if any(SERVER in (e.source, e.target) for e in events):
        names.insert(min(1, len(names)), SERVER)
    return names


def _notes(event: SequenceEvent, annotate: bool | Mapping[str, str]) -> str:
    if annotate is False:
        return ""
    table = CRYPTO_STEPS if annotate is True else annotate
    kinds = event.inner or tuple(k.strip() for k in event.label.split(","))
    return "; ".join(dict.fromkeys(table[k] for k in kinds if k in table))


def _new_axes(ax: Axes | None, width: float, height: float) -> tuple[Figure, Axes]:
    if ax is not None:
        fig = ax.figure  # the root figure is what the caller gets back, even for axes in a subfigure
        return (fig if isinstance(fig, Figure) else fig.figure), ax
    fig = NotebookFigure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def sequence_diagram(records: Any, participants: Sequence[str] | None = None,
                     annotate: bool | Mapping[str, str] = True, ax: Axes | None = None,
                     title: str | None = None, show_size: bool = True) -> Figure:
    """Draw a message-sequence diagram of a simulation trace.

    Args:
        records: a ``Simulation``, a list of its ``WireRecord`` (slice ``sim.trace`` for one phase), or
            ``SequenceEvent``/``(time, source, target, label)`` rows.
        participants: lifelines from left to right; default: clients alphabetically, the server second.
            Rows involving anyone else are left out.
        annotate: True for the crypto steps of ``CRYPTO_STEPS`` in a note column, a mapping
            type -> text for your own, False for none.
        ax: draw into these axes instead of a new figure.

    Returns:
        The matplotlib Figure. Each row is one arrow (an ``Annotation`` with an arrow patch); dropped or held
        chunks stop half way with a cross; Mallory's chunks are coloured by what she did.
    """
    events = sequence_events(records)
    names = list(participants) if participants is not None else _participants(events)
    events = [e for e in events if e.source in names and e.target in names]
    x = {name: i for i, name in enumerate(names)}
    notes = [_notes(e, annotate) for e in events]
    note_width = 4.5 if any(notes) else 0.0
    fig, ax = _new_axes(ax, 2.6 * max(len(names), 2) + note_width, 0.42 * len(events) + 1.4)
    bottom = -len(events) - 0.5
    for name, i in x.items():
        ax.plot([i, i], [0.5, bottom], color="lightgrey", linewidth=1.5, zorder=0)
        ax.text(i, 0.7, name, ha="center", va="bottom", fontsize=10, fontweight="bold",
                bbox={"boxstyle": "round", "facecolor": "whitesmoke", "edgecolor": "grey"})
    for row, (event, note) in enumerate(zip(events, notes), start=1):
        _arrow(ax, event, x[event.source], x[event.target], -row, show_size)
        if note:
            ax.text(len(names) - 0.6, -row, note, ha="left", va="center", fontsize=7, style="italic",
                    color="dimgrey")
    ax.set_xlim(-0.6, len(names) - 0.4 + (note_width / 2.0 if note_width else 0.0))
    ax.set_ylim(bottom, 1.4)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return fig


def _arrow(ax: Axes, event: SequenceEvent, x0: float, x1: float, y: float, show_size: bool) -> None:
    colour = _ACTION_COLOURS.get(event.action, "purple")
    stopped = event.action in ("dropped", "held")
    end = (x0 + x1) / 2.0 if stopped else x1
    ax.annotate("", xy=(end, y), xytext=(x0, y),
                arrowprops={"arrowstyle": "-|>", "color": colour, "linestyle": "--" if stopped else "-",
                            "shrinkA": 0, "shrinkB": 0})
    if stopped:
        ax.plot([end], [y], marker="x", color=colour, markersize=8)
    text = event.label + (f" ({event.size} B)" if show_size and event.size else "")
    if event.action != "delivered":
        text += f"  [{event.action}]"
    ax.text((x0 + x1) / 2.0, y + 0.08, text, ha="center", va="bottom", fontsize=7.5, color=colour)


# --- timing ---------------------------------------------------------------------------------------------------


def time_calls(fn: Callable[[], object], repeat: int, *, warmup: int = 1) -> list[float]:
    """Run *fn* *warmup* times untimed, then *repeat* times; returns each call's wall time in seconds."""
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def timing_stats(samples: Sequence[float]) -> dict[str, float]:
    """Median, quartiles and extremes of *samples* (seconds). Quartiles fall back to min/max below 4 samples."""
    data = sorted(samples)
    if not data:
        raise ValueError("no samples")
    if len(data) >= 4:
        q1, _, q3 = statistics.quantiles(data, n=4)
    else:
        q1, q3 = data[0], data[-1]
    return {"median": statistics.median(data), "q1": q1, "q3": q3, "min": data[0], "max": data[-1],
            "n": float(len(data))}


_UNITS = {"s": 1.0, "ms": 1e3, "us": 1e6}


def _error_bar(samples: Sequence[float], scale: float) -> tuple[float, float, float]:
    s = timing_stats(samples)
    return s["median"] * scale, (s["median"] - s["q1"]) * scale, (s["q3"] - s["median"]) * scale


def timing_bars(results: Mapping[str, Mapping[str, Sequence[float]]], *, ops: Sequence[str] | None = None,
                unit: str = "ms", log: bool = True, title: str | None = None, ax: Axes | None = None) -> Figure:
    """Grouped bars: one group per algorithm, one bar per operation, height = median, error bar = quartiles.

    Args:
        results: algorithm label -> operation ("keygen", "sign", "verify", ...) -> samples in seconds.
        ops: the operations to show, in order (default: every one found, in order of appearance).
        unit: "s", "ms" or "us". log: logarithmic y axis (the costs span orders of magnitude).
    """
    scale = _UNITS[unit]
    ops = list(ops) if ops is not None else list(dict.fromkeys(op for r in results.values() for op in r))
    algos = list(results)
    fig, ax = _new_axes(ax, max(6.0, 1.1 * len(algos) + 2.0), 4.2)
    width = 0.8 / max(len(ops), 1)
    for j, op in enumerate(ops):
        xs, heights, low, high = [], [], [], []
        for i, algo in enumerate(algos):
            if op in results[algo] and results[algo][op]:
                median, minus, plus = _error_bar(results[algo][op], scale)
                xs.append(i - 0.4 + width * (j + 0.5))
                heights.append(median)
                low.append(minus)
                high.append(plus)
        ax.bar(xs, heights, width=width, yerr=[low, high], capsize=3, label=op)
    ax.set_xticks(range(len(algos)), algos, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"time per operation ({unit}), median and quartiles")
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    if title:
        ax.set_title(title)
    return fig


def timing_vs_size(results: Mapping[str, Mapping[float, Any]], *, ops: Sequence[str] | None = None,
                   unit: str = "ms", xlabel: str = "key size (bits)", logx: bool = False, logy: bool = True,
                   title: str | None = None, ax: Axes | None = None) -> Figure:
    """Time against size: one line per (family, operation) with quartile error bars.

    Args:
        results: family ("RSA-PSS", "DSA", "scrypt") -> size -> either samples, or operation -> samples.
        ops: operations to plot (default: all found).
    """
    scale = _UNITS[unit]
    fig, ax = _new_axes(ax, 6.5, 4.2)
    for family, by_size in results.items():
        series: dict[str, list[tuple[float, Sequence[float]]]] = {}
        for size, value in sorted(by_size.items()):
            per_op = value if isinstance(value, Mapping) else {"": value}
            for op, samples in per_op.items():
                if samples and (ops is None or op in ops or op == ""):
                    series.setdefault(op, []).append((size, samples))
        for op, points in series.items():
            bars = [_error_bar(samples, scale) for _, samples in points]
            ax.errorbar([p[0] for p in points], [b[0] for b in bars], yerr=[[b[1] for b in bars],
                        [b[2] for b in bars]], marker="o", capsize=3, label=f"{family} {op}".strip())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"time ({unit}), median and quartiles")
    if logx:
        ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    return fig


def count_arrows(fig: Figure) -> int:
    """How many arrows a figure made by ``sequence_diagram`` has (for tests and self-checks)."""
    return sum(1 for ax in fig.axes for t in ax.texts if getattr(t, "arrow_patch", None) is not None)


__all__ = [
    "CRYPTO_STEPS", "NotebookFigure", "SequenceEvent", "count_arrows", "sequence_diagram", "sequence_events", "time_calls",
    "timing_bars", "timing_stats", "timing_vs_size",
]
