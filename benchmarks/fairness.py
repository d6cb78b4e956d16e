"""Fair admission under password guessing (PROTOCOL.md 6.2): ``python -m benchmarks.bench --only fairness``.

An honest user logs in again and again from 127.0.0.1 at the default (OWASP) scrypt cost while attackers keep
guesses in flight: first 40 connections from one address (127.0.0.2), then 400 from ten (127.0.0.10-19, 40 each),
every connection guessing for its own account and sending the next guess as soon as the last is answered. The
server keeps its default per-address limits. Reported: the honest login time (connect, handshake, login) and,
per attacking address, how many guesses were admitted (answered ``auth_failed``) per minute against the
documented window of 30.
"""

from __future__ import annotations

import selectors
import time
from pathlib import Path

from securechat.protocol import events as ev

from . import loadgen as lg

HONEST_ADDRESS = "127.0.0.1"


def _phase(server: lg.ServerHandle, keys, addresses: list[str], per_address: int, duration: float,
           honest_user: int, first_victim: int) -> dict:
    """One attack phase with the honest user measured throughout; every wait is bounded by *duration*."""
    sel = selectors.DefaultSelector()
    attackers: dict[int, tuple[lg.Client, str]] = {}
    admitted: dict[str, int] = {a: 0 for a in addresses}
    refused: dict[str, int] = {a: 0 for a in addresses}
    next_idx = [first_victim]

    def open_attacker(address: str) -> None:
        idx = next_idx[0]
        next_idx[0] += 1
        client = lg.Client(idx, server.port, server.server_key, source=address)
        client.proto.connect()
        client.flush()
        attackers[client.sock.fileno()] = (client, address)
        sel.register(client.sock, selectors.EVENT_READ, client)

    for address in addresses:
        for _ in range(per_address):
            open_attacker(address)
    honest_times: list[float] = []
    failures: list[str] = []
    honest: lg.Client | None = None
    honest_started = 0.0
    start = time.perf_counter()
    end = start + duration
    try:
        while time.perf_counter() < end:
            if honest is None:
                honest = lg.Client(honest_user, server.port, server.server_key, source=HONEST_ADDRESS)
                honest_started = time.perf_counter()
                honest.proto.connect()
                honest.flush()
                sel.register(honest.sock, selectors.EVENT_READ, honest)
            for key, _ in sel.select(0.05):
                client: lg.Client = key.data
                try:
                    data = client.sock.recv(lg.READ)
                except OSError:
                    data = b""
                client.proto.receive_data(data, time.time())
                for event in iter(client.proto.next_event, None):
                    if client is honest:
                        if isinstance(event, ev.HandshakeCompleted):
                            client.proto.login(client.name, lg.PASSWORD, keys)
                        elif isinstance(event, ev.LoggedIn):
                            honest_times.append(time.perf_counter() - honest_started)
                        elif isinstance(event, (ev.RequestFailed, ev.ConnectionClosed)):
                            failures.append(getattr(event, "code", "") or "closed")
                        continue
                    address = attackers[client.sock.fileno()][1] if client.sock.fileno() in attackers else ""
                    if isinstance(event, ev.HandshakeCompleted):
                        client.proto.login(client.name, "a wrong guess", keys)
                    elif isinstance(event, ev.RequestFailed) and event.ref == "login":
                        if event.code == "auth_failed":
                            admitted[address] += 1
                        else:
                            refused[address] += 1
                        client.proto.login(client.name, "a wrong guess", keys)  # the next guess at once
                client.flush() if not client.closed else None
                if not data or client.proto.state.name == "CLOSED":
                    sel.unregister(client.sock)
                    if client is honest:
                        client.close()
                        honest = None
                    else:
                        address = attackers.pop(client.sock.fileno())[1]
                        client.close()
                        open_attacker(address)  # the attacker reconnects at once
                elif client is honest and honest.proto.username is not None:
                    sel.unregister(client.sock)
                    client.close()  # measured: the next honest login starts on a fresh connection
                    honest = None
    finally:
        for client, _ in attackers.values():
            client.close()
        if honest is not None:
            honest.close()
        sel.close()
    minutes = duration / 60
    times = sorted(honest_times)
    return {
        "attacking_addresses": len(addresses), "connections_per_address": per_address, "seconds": duration,
        "honest_logins": len(times), "honest_failures": failures,
        "honest_p50_s": round(lg.percentile(times, 50), 2), "honest_p99_s": round(lg.percentile(times, 99), 2),
        "honest_max_s": round(max(times, default=float("nan")), 2),
        "admitted_guesses_per_address_per_minute": round(max(admitted.values(), default=0) / minutes, 1),
        "admitted_guesses_total": sum(admitted.values()), "refused_guesses_total": sum(refused.values()),
    }


def bench_fairness(keyfile: Path, keys, quick: bool) -> dict:
    duration = 8.0 if quick else 60.0
    phases = [(["127.0.0.2"], 40), ([f"127.0.0.{10 + i}" for i in range(10)], 40)]
    if quick:
        phases = [(["127.0.0.2"], 10), (["127.0.0.10", "127.0.0.11"], 5)]
    out: dict = {"scrypt": "fast" if quick else "owasp", "password_workers": 2, "phases": []}
    for addresses, per_address in phases:
        total = len(addresses) * per_address
        lg_log = f"fairness: {total} guessing connections from {len(addresses)} address(es), {duration:.0f} s"
        print(time.strftime("%H:%M:%S"), lg_log, flush=True)
        server = lg.ServerHandle("securechat", keyfile, users=1 + total * 4, scrypt=out["scrypt"],
                                 extra=("--default-address-limits",))
        try:
            baseline = _phase(server, keys, [], 0, 3.0 if quick else 10.0, 0, 1)
            row = _phase(server, keys, addresses, per_address, duration, 0, 1)
        finally:
            server.stop()
        row["honest_quiet_p50_s"] = baseline["honest_p50_s"]
        print(time.strftime("%H:%M:%S"), f"  honest p50 {row['honest_p50_s']} s p99 {row['honest_p99_s']} s "
              f"(quiet {baseline['honest_p50_s']} s); admitted {row['admitted_guesses_per_address_per_minute']}"
              f"/address/min, refused {row['refused_guesses_total']}", flush=True)
        out["phases"].append(row)
    return out
