"""Smoke test of the benchmark: ``--quick`` runs every part at tiny sizes and reports every figure.

How fast it ran is not asserted (speed belongs in docs/PERFORMANCE.md); the timeout only stops a hang."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.tcp  # the benchmarks start servers (tests/guard.py)

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    subprocess.run([sys.executable, "-m", "benchmarks.bench", "--quick", "--no-plots", "--out", str(out)],
                   cwd=ROOT, check=True, timeout=600, capture_output=True)
    results = json.loads(out.read_text())
    for key in ("machine", "relay", "class_session", "login_burst", "chat_setup", "signature_schemes", "targets"):
        assert key in results, key
    for row in results["relay"]["rows"]:
        for side in ("securechat", "plaintext"):
            assert row[side]["lost"] == 0 and row[side]["deliveries_per_s"] > 0
            assert {"p50_ms", "p99_ms"} <= set(row[side])
        assert row["ratio"] > 0
    assert results["relay"]["end_to_end_50x5"]["lost"] == 0
    assert results["class_session"]["lost"] == 0 and results["class_session"]["rss_peak_mb"] > 0
    assert results["login_burst"]["burst"]["failed"] == 0
    assert results["login_burst"]["chat_during"]["lost"] == 0
    assert [r["members"] for r in results["chat_setup"]["rows"]] == [2, 5]
    # the scale part (2,000 clients, lobby on) and fair admission, at tiny sizes: figures reported, none asserted
    scale = results["scale"]
    assert scale["lost"] == 0 and scale["lobby"] is True and scale["rss_peak_mb"] > 0 and "p99_ms" in scale
    for phase in results["fair_admission"]["phases"]:
        assert phase["honest_logins"] > 0 and not phase["honest_failures"]
        assert phase["admitted_guesses_total"] > 0 and "honest_p99_s" in phase
    assert {"scale_2000_p99_ms", "fair_honest_login_p99_s"} <= set(results["targets"])
    assert {r["scheme"] for r in results["signature_schemes"]["rows"]} == {
        "rsa-pss-sha256", "dsa-2048-sha256", "ecdsa-p256-sha256", "ed25519"}


def test_bench_ws_quick(tmp_path: Path) -> None:
    """The WebSocket part (``--only ws``): the same relay flood over the WebSocket port and the TCP port."""
    out = tmp_path / "results.json"
    subprocess.run([sys.executable, "-m", "benchmarks.bench", "--quick", "--only", "ws", "--out", str(out)],
                   cwd=ROOT, check=True, timeout=120, capture_output=True)
    ws = json.loads(out.read_text())["ws_relay"]
    for side in ("tcp", "websocket"):
        assert ws[side]["lost"] == 0 and ws[side]["deliveries_per_s"] > 0 and ws[side]["errors"] == 0
    assert ws["ratio_ws_to_tcp"] > 0
