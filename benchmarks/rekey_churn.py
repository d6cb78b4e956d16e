"""What one rekey of a 256-member server-key chat costs, and what a burst of membership changes costs
(PROTOCOL.md 7.2 "bounded rekey" and 7.5).

    python -m benchmarks.rekey_churn [--members 256] [--changes 500] [--out FILE]

1. One distribution: a real ``ChatKeyJob`` for *members* members (one throwaway RSA-2048 encryption key shared by
   all, which costs the same as distinct keys): key-worker seconds, and the ``chat_key`` bytes sent to all members,
   as they are now (Merkle root + each member's audit path) and as they were (every member got all N wrap
   digests: the same frames with a list of N 32-byte digests instead of the root and the path).
2. A burst of *changes* membership changes arriving while that chat's key job runs: how many key jobs, wraps and
   bytes the server spends now (one job runs, every change made meanwhile is merged into one more job, PROTOCOL.md
   7.2; invitations beyond 20 are refused at 1 per second, 7.5), against one job per change before.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
from pathlib import Path

from securechat.crypto.keys import generate_encryption_key, public_of
from securechat.protocol.codec import encode_frame
from securechat.protocol.jobs import ChatKeyJob
from securechat.protocol.limits import ServerConfig
from securechat.store import new_server_key


def one_distribution(members: int) -> dict[str, float]:
    key = public_of(generate_encryption_key())
    names = tuple(f"user{i:03d}" for i in range(members))
    job = ChatKeyJob(peer=-1, chat_id="c" + os.urandom(16).hex(), epoch=2, mode="server-key", suite="aes-256-gcm",
                     reason="invite", actor=names[0], members=names, encryption_keys=(key,) * members,
                     ca=new_server_key(), random_bytes=os.urandom)
    started = time.perf_counter()
    job.run()
    seconds = time.perf_counter() - started
    now = sum(len(encode_frame(msg)) for msg in job.messages.values())
    # As before: each frame carried "wrap_digests": [N base64 digests] instead of "wrap_root" and "wrap_path".
    digests = json.dumps([base64.b64encode(os.urandom(32)).decode()] * members, separators=(",", ":"))
    per_old_frame_extra = len('"wrap_digests":') + len(digests)
    sample = next(iter(job.messages.values()))
    path = json.dumps([base64.b64encode(h).decode() for h in sample.wrap_path], separators=(",", ":"))
    root = json.dumps(base64.b64encode(sample.wrap_root).decode())
    per_new_frame_tree = len('"wrap_root":') + len(root) + 1 + len('"wrap_path":') + len(path)
    before = now + members * (per_old_frame_extra - per_new_frame_tree)
    return {"members": members, "key_worker_seconds": round(seconds, 3), "chat_key_bytes_now": now,
            "chat_key_bytes_before": before, "bytes_per_member_now": round(now / members),
            "bytes_per_member_before": round(before / members)}


def burst(members: int, changes: int, one: dict[str, float]) -> dict[str, object]:
    cfg = ServerConfig()
    invites = (changes + 1) // 2
    accepted_invites = min(invites, int(cfg.invite_burst_per_chat))  # a burst is faster than the 1/s refill
    accepted = accepted_invites * 2  # each accepted invitation, then its leave
    jobs_now = 2  # the running job and ONE merged job for the newest epoch, however many changes arrived
    return {"changes_sent": changes, "changes_accepted_now": accepted, "changes_accepted_before": changes,
            "key_jobs_now": jobs_now, "key_jobs_before": changes,
            "rsa_oaep_wraps_now": jobs_now * members, "rsa_oaep_wraps_before": changes * members,
            "key_worker_seconds_now": round(jobs_now * float(one["key_worker_seconds"]), 2),
            "key_worker_seconds_before": round(changes * float(one["key_worker_seconds"]), 2),
            "chat_key_mib_now": round(jobs_now * float(one["chat_key_bytes_now"]) / 2**20, 2),
            "chat_key_mib_before": round(changes * float(one["chat_key_bytes_before"]) / 2**20, 1),
            "unrelated_chat_open_waits_behind_now": f"at most {cfg.max_key_jobs} key jobs (max_key_jobs)",
            "unrelated_chat_open_waits_behind_before": f"{changes} key jobs"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=256)
    ap.add_argument("--changes", type=int, default=500)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    one = one_distribution(args.members)
    result = {"one_rekey": one, "burst": burst(args.members, args.changes, one)}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
