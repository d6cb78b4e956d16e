"""Smoke run of benchmarks/fuzz_live.py (issue 6, section 2): a few hundred mutated frames against a live server
subprocess, 0 crashes, 0 hangs, the sanity client still served. The long run (>= 100k frames) is not in CI;
its figures are in docs/SECURITY.md."""

from __future__ import annotations

from benchmarks import fuzz_live


def test_fuzz_live_smoke() -> None:
    report = fuzz_live.run(frames=400, seconds=20, seed=11, quiet=True)
    assert report["frames_tried"] >= 400 or report["seconds"] >= 20
    assert report["crashes"] == 0, report["stderr_error_lines"]
    assert report["hangs"] == 0, report["hang_kinds"]
    assert report["sanity_failures"] == 0
    assert report["server_alive_at_end"]
    assert report["fds_end"] <= report["fds_start"] + 2
