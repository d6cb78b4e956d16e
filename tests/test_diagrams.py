"""Tests of securechat.diagrams: arrows and labels of sequence diagrams, timing plots, PNG output, headless."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from matplotlib.figure import Figure

from securechat.diagrams import (
    CRYPTO_STEPS,
    SequenceEvent,
    count_arrows,
    sequence_diagram,
    sequence_events,
    time_calls,
    timing_bars,
    timing_stats,
    timing_vs_size,
)
from securechat.simulation import Simulation, drop

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sim() -> Simulation:
    sim = Simulation(seed=5)
    sim.register_and_login("alice", "pw-a")
    return sim


def texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_one_arrow_per_trace_record(sim: Simulation) -> None:
    fig = sequence_diagram(sim)
    assert count_arrows(fig) == len(sim.trace) == 8
    labels = texts(fig)
    assert any(t.startswith("client_hello") for t in labels)
    assert any(t.startswith("record[login]") for t in labels)
    assert "alice" in labels and "server" in labels


def test_crypto_steps_are_annotated_or_not(sim: Simulation) -> None:
    with_notes = texts(sequence_diagram(sim.trace))
    assert CRYPTO_STEPS["server_hello"] in with_notes and CRYPTO_STEPS["login"] in with_notes
    without = texts(sequence_diagram(sim.trace, annotate=False))
    assert CRYPTO_STEPS["server_hello"] not in without
    custom = texts(sequence_diagram(sim.trace, annotate={"login": "my note"}))
    assert "my note" in custom and CRYPTO_STEPS["server_hello"] not in custom


def test_tuples_and_participants_filter() -> None:
    rows = [(0.0, "alice", "server", "hello"), (1.0, "server", "bob", "relay"), (2.0, "bob", "carol", "x")]
    fig = sequence_diagram(rows, participants=["alice", "server", "bob"], annotate=False)
    assert count_arrows(fig) == 2
    assert {"hello", "relay"} <= set(texts(fig)) and "x" not in texts(fig)
    assert sequence_events(rows)[0] == SequenceEvent(time=0.0, source="alice", target="server", label="hello")


def test_default_order_puts_the_server_second() -> None:
    rows = [(0.0, "alice", "server", "a"), (1.0, "server", "bob", "b")]
    labels = texts(sequence_diagram(rows, annotate=False))
    assert labels.index("alice") < labels.index("server") < labels.index("bob")


def test_mallory_actions_are_labelled() -> None:
    sim = Simulation(seed=6)
    sim.intercept = drop(source="alice", carrying="client_hello")
    sim.add_client("alice")
    sim.run_until_idle()
    fig = sequence_diagram(sim)
    assert count_arrows(fig) == 1
    assert any("[dropped]" in t for t in texts(fig))


def test_diagram_saves_to_png(sim: Simulation, tmp_path: Path) -> None:
    path = tmp_path / "sequence.png"
    sequence_diagram(sim, title="login").savefig(path, dpi=60)
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_draws_into_given_axes(sim: Simulation) -> None:
    fig = Figure()
    ax = fig.add_subplot()
    assert sequence_diagram(sim, ax=ax) is fig
    assert count_arrows(fig) == len(sim.trace)


def test_timing_stats_and_time_calls() -> None:
    stats = timing_stats([4.0, 1.0, 3.0, 2.0, 5.0])
    assert stats["median"] == 3.0 and stats["min"] == 1.0 and stats["max"] == 5.0 and stats["n"] == 5
    assert stats["q1"] <= stats["median"] <= stats["q3"]
    assert timing_stats([2.0])["q1"] == timing_stats([2.0])["q3"] == 2.0
    calls: list[int] = []
    samples = time_calls(lambda: calls.append(1), 3, warmup=2)
    assert len(samples) == 3 and len(calls) == 5 and all(s >= 0 for s in samples)
    with pytest.raises(ValueError):
        timing_stats([])


def test_timing_bars_one_bar_per_algorithm_and_operation(tmp_path: Path) -> None:
    results = {"RSA-2048": {"sign": [1e-3, 2e-3, 1.5e-3], "verify": [1e-4, 1.2e-4]},
               "DSA-2048": {"sign": [7e-4], "verify": [9e-4, 1e-3]}, "Ed25519": {"sign": [1e-4]}}
    fig = timing_bars(results, title="t")
    ax = fig.axes[0]
    assert len(ax.patches) == 5  # three sign bars, two verify bars
    assert [t.get_text() for t in ax.get_xticklabels()] == list(results)
    assert ax.get_yscale() == "log"
    fig.savefig(tmp_path / "bars.png", dpi=50)
    assert (tmp_path / "bars.png").read_bytes()[:8] == PNG_MAGIC


def test_timing_vs_size_one_line_per_family_and_operation(tmp_path: Path) -> None:
    results: dict[str, dict[float, Any]] = {
        "RSA-PSS": {1024: {"sign": [1e-3], "verify": [1e-4]}, 2048: {"sign": [2e-3], "verify": [2e-4]}},
        "scrypt": {2**10: [2e-3, 3e-3], 2**12: [8e-3]},
    }
    fig = timing_vs_size(results, logx=True, xlabel="N")
    ax = fig.axes[0]
    assert len(ax.lines) >= 3
    legend = ax.get_legend()
    assert legend is not None
    assert sorted(t.get_text() for t in legend.get_texts()) == ["RSA-PSS sign", "RSA-PSS verify", "scrypt"]
    only_sign = timing_vs_size(results, ops=["sign"]).axes[0].get_legend()
    assert only_sign is not None and len(only_sign.get_texts()) == 2
    fig.savefig(tmp_path / "size.png", dpi=50)
    assert (tmp_path / "size.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.tcp
def test_works_without_a_display(tmp_path: Path) -> None:
    code = ("from securechat.diagrams import sequence_diagram; import sys; "
            "sequence_diagram([(0, 'a', 'server', 'x')]).savefig(sys.argv[1]); "
            "assert 'matplotlib.pyplot' not in sys.modules")
    root = Path(__file__).resolve().parent.parent
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root), "HOME": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.png")], check=True, env=env, cwd=root)
    assert (tmp_path / "a.png").read_bytes()[:8] == PNG_MAGIC


def test_figures_show_themselves_in_jupyter() -> None:
    fig = sequence_diagram([(0.0, "alice", "server", "x")], annotate=False)
    assert fig._repr_png_()[:8] == PNG_MAGIC  # type: ignore[attr-defined]
