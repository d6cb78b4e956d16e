"""A/B of two checkouts on one machine: the relay flood at 50x5 and, optionally, the class session.

Run it once per tree, alternating, on an otherwise idle machine (docs/PERFORMANCE.md, "Re-check on a quiet
machine after the whole redesign"): ``python benchmarks/ab.py /path/to/tree [relay|class] [rounds]``. It imports
``benchmarks.bench`` from *tree*, so each commit measures its own server and load generator; it prints one line
per run and a JSON summary last. Speed is measured here, never asserted in tests.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path


def main(argv: list[str]) -> int:
    if not argv or argv[1:2] not in ([], ["relay"], ["class"]):
        print(__doc__)
        return 2
    root = Path(argv[0]).resolve()
    sys.path.insert(0, str(root))
    from benchmarks import bench  # the tree's own benchmark, not this checkout's

    rounds = int(argv[2]) if len(argv) > 2 else 2
    out: dict = {"root": str(root), "relay": [], "class": None}
    with tempfile.TemporaryDirectory() as tmp:
        keyfile = Path(tmp) / "keys.bin"
        bench.make_keys(keyfile)
        keys = bench.load_keys(keyfile)
        for _ in range(rounds):  # securechat, then the plaintext relay right after: drift hits both alike
            sc = bench.relay_securechat(keyfile, keys, 50, 5, 4.0, 4)
            pl = bench.relay_plain(keyfile, 50, 5, 4.0, 4)
            out["relay"].append({"securechat": sc["deliveries_per_s"], "plain": pl["deliveries_per_s"],
                                 "ratio": round(sc["deliveries_per_s"] / pl["deliveries_per_s"], 3),
                                 "p99_ms": sc["p99_ms"], "lost": sc["lost"]})
            print(out["relay"][-1], flush=True)
        if argv[1:2] == ["class"]:
            c = bench.bench_class(keyfile, keys, False)
            out["class"] = {k: c[k] for k in ("p50_ms", "p99_ms", "lost", "rss_peak_mb", "server_cpu_s_per_s")}
            print(out["class"], flush=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
