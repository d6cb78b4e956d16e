"""A long run of the hostile-server harness (tests/hostile/) against the real client library (not part of CI).

``python -m benchmarks.hostile_server [--steps 20000] [--seed 7] [--json FILE]``

For each chat mode (server-key, contributory, hybrid) a ``Campaign`` (tests/hostile/campaign.py) puts alice (the
victim, a real ``ClientProtocol``) and bob (an honest member) behind the scripted malicious server, then applies
``--steps`` random actions: bob's honest messages and the server's replays, reorderings, bit flips, sender swaps,
wrong epochs, messages re-signed with another key under bob's name, signed mode switches, directory noise, unknown
senders, garbage inner frames (which end the connection: a new campaign then starts) and honest rekeys. After every
action the campaign checks that no forged or replayed message was received. Reported per mode: frames delivered,
actions, honest messages received, forgeries accepted, crashes (exceptions out of ``receive_data``), rejection
codes, connections closed, the largest size of everything the client keeps (held messages, pins, certificates,
chats, fetches in flight, agreement inboxes) and the Python heap peak (tracemalloc) of the run.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from securechat.store import new_server_key  # noqa: E402
from tests.helpers import seeded, user_keys  # noqa: E402
from tests.hostile.campaign import ACTIONS, Campaign, bounded_state  # noqa: E402
from tests.hostile.world import ClientCrashed, HostileServer  # noqa: E402

MODES = ("server-key", "contributory", "hybrid")


def run_mode(mode: str, steps: int, rng: random.Random, people: dict[str, Any], ca: Any) -> dict[str, Any]:
    totals: dict[str, Any] = {"frames": 0, "actions": Counter(), "honest_received": 0, "forgeries_accepted": 0,
                              "crashes": 0, "rejected": Counter(), "connections_closed": 0, "campaigns": 0}
    peaks: Counter[str] = Counter()
    done = 0
    started = time.perf_counter()
    while done < steps:
        world = HostileServer(ca, random_bytes=seeded(f"bench/{mode}/{totals['campaigns']}"))
        for name in ("alice", "bob", "carol"):
            world.enroll(name, people[name])
        campaign = Campaign(world, people, mode)
        totals["campaigns"] += 1
        while done < steps and not campaign.closed:
            action = rng.choice(ACTIONS) if rng.random() > 0.01 else "garbage"
            if action == "garbage" and rng.random() > 0.05:
                action = "noise"  # keep most campaigns long: garbage ends the connection
            try:
                campaign.apply(action, rng.randrange(1 << 16))
            except ClientCrashed:
                pass  # counted in world.crashes
            done += 1
            if done % 500 == 0:
                for key, value in bounded_state(campaign.alice).items():
                    peaks[key] = max(peaks[key], value)
        for key, value in bounded_state(campaign.alice).items():
            peaks[key] = max(peaks[key], value)
        stats = campaign.stats
        totals["frames"] += world.frames_sent
        totals["actions"].update(stats.actions)
        totals["honest_received"] += stats.accepted_honest
        totals["forgeries_accepted"] += stats.accepted_forgeries
        totals["crashes"] += len(world.crashes)
        totals["rejected"].update(stats.rejected)
        totals["connections_closed"] += stats.closed
    totals["seconds"] = round(time.perf_counter() - started, 1)
    totals["peak_client_state"] = dict(peaks)
    totals["actions"] = dict(totals["actions"])
    totals["rejected"] = dict(totals["rejected"])
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000, help="actions per mode")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    ca = new_server_key(random_bytes=seeded("hostile/ca"))
    people = {name: user_keys(name) for name in ("alice", "bob", "carol", "mallory")}
    tracemalloc.start()
    results: dict[str, Any] = {"steps_per_mode": args.steps, "seed": args.seed, "modes": {}}
    for mode in MODES:
        results["modes"][mode] = run_mode(mode, args.steps, rng, people, ca)
        print(mode, json.dumps(results["modes"][mode]), flush=True)
    results["heap_peak_mib"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
    tracemalloc.stop()
    print(json.dumps({k: v for k, v in results.items() if k != "modes"}))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    failed = any(r["crashes"] or r["forgeries_accepted"] for r in results["modes"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
