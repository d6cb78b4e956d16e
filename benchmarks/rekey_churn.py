"""Rekey work and bytes under membership churn in a 256-member server-key chat (PROTOCOL.md 7.2 and 7.5).

    python -m benchmarks.rekey_churn [--members 256] [--requests 500] [--out FILE]

In the deterministic simulation (``securechat/simulation.py``; every user shares one throwaway key pair so that
setup is quick), alice opens a chat of *members* - 1 users (trudy's joining makes it *members*). Then, while the key worker is busy (its jobs are held,
as when a burst arrives faster than RSA-OAEP runs), two accounts send *requests* membership changes as fast as
they can: ``mallory`` invites ``trudy``, ``trudy`` leaves, again and again; and an unrelated user opens a small
chat of its own. The held key jobs are then run one after the other, as the single key worker would.

Reported: key jobs run, RSA-OAEP wraps made, key-worker seconds, ``chat_key`` bytes sent (all members), how many
key jobs the unrelated chat_open waited behind and for how many worker seconds, and what the churning accounts
were told. The same script runs against older code (it only uses the simulation and its jobs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from securechat.crypto.signatures import SignatureScheme
from securechat.protocol import codec
from securechat.protocol import events as ev
from securechat.protocol import messages as m
from securechat.protocol.identity import generate_user_keys
from securechat.protocol.jobs import ChatKeyJob
from securechat.protocol.limits import ServerConfig
from securechat.simulation import Simulation


def run(members: int, requests: int) -> dict[str, object]:
    from securechat.crypto.kdf import FAST_SCRYPT

    sim = Simulation(seed=5, config=ServerConfig(scrypt=FAST_SCRYPT))
    shared = generate_user_keys(SignatureScheme.ED25519, random_bytes=sim.random_bytes)
    others = [f"m{i:03d}" for i in range(members - 3)]  # alice + these + mallory = members - 1; trudy joins
    for name in others + ["alice", "mallory", "trudy", "carol", "dave"]:
        sim.keys[name] = shared
        sim.register_and_login(name, "pw-" + name, SignatureScheme.ED25519)
    sim.clients["alice"].open_chat(others + ["mallory"])
    sim.run_until_idle()
    chat_id = sim.last_event("alice", ev.ChatOpened).chat_id
    size = len(sim.server.chats.get(chat_id).members)  # type: ignore[union-attr]

    held: list[object] = []
    real_next_job = sim.server.next_job
    sim.server.next_job = lambda: None  # type: ignore[method-assign]
    refusals: dict[str, int] = {}
    try:
        mallory, trudy = sim.clients["mallory"], sim.clients["trudy"]
        for i in range(requests):
            if i % 2 == 0:
                mallory._send_inner(m.ChatInvite(rid=None, chat_id=chat_id, username="trudy"))  # noqa: SLF001
            else:
                trudy._send_inner(m.ChatLeave(rid=None, chat_id=chat_id))  # noqa: SLF001
            sim.run_until_idle()
            if i == requests // 2:
                sim.clients["carol"].open_chat(["dave"])  # an unrelated user, in the middle of the churn
                sim.run_until_idle()
        for name in ("mallory", "trudy"):
            for failure in sim.events_of(name, ev.RequestFailed):
                refusals[failure.code] = refusals.get(failure.code, 0) + 1
        wraps = 0
        worker = 0.0
        chat_key_bytes = 0
        unrelated_wait = None
        jobs_run = 0
        while True:
            while (job := real_next_job()) is not None:
                held.append(job)
            pending = [j for j in held if isinstance(j, ChatKeyJob) and not j.messages]
            if not pending:
                break
            job = pending[0]
            if job.chat_id != chat_id and unrelated_wait is None:
                unrelated_wait = {"jobs_ahead": jobs_run, "worker_seconds_ahead": round(worker, 3)}
            started = time.perf_counter()
            job.run()
            worker += time.perf_counter() - started
            jobs_run += 1
            wraps += len(job.members)
            chat_key_bytes += sum(len(codec.encode_frame(msg)) for msg in job.messages.values())
            sim.server.job_done(job, sim.now)
            sim.flush()
        sim.run_until_idle()
    finally:
        sim.server.next_job = real_next_job  # type: ignore[method-assign]
    epochs = [e.epoch for e in sim.events_of("m000", ev.ChatKeyed) if e.chat_id == chat_id]
    return {"members": size, "requests": requests, "key_jobs_run": jobs_run, "rsa_oaep_wraps": wraps,
            "key_worker_seconds": round(worker, 3), "chat_key_bytes_sent": chat_key_bytes,
            "chat_key_bytes_per_member_per_rekey": round(chat_key_bytes / max(1, wraps)),
            "epochs_seen_by_a_member": len(epochs), "final_epoch": epochs[-1] if epochs else None,
            "unrelated_chat_open": unrelated_wait, "churn_refusals": refusals}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=256)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    result = run(args.members, args.requests)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
