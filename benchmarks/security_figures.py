"""The docs/THREATS.md "Figures to report" that the test suite does not measure (not part of CI).

``python -m benchmarks.security_figures [--pairs 1000] [--owasp-pairs 30] [--phase-seconds 15] [--json FILE]``

Against a real server subprocess on 127.0.0.1 (TcpServer, MemoryRegistry):

* **Login timing, unknown user vs wrong password** (THREATS 17): ``--pairs`` pairs on one kept connection, the
  order inside each pair random, at the FAST scrypt cost (N=2^10: the OWASP cost, ~0.3 s a hash here, would
  make 2,000 logins take ~10 min), plus ``--owasp-pairs`` pairs at the default OWASP cost (N=2^17). The login
  throttle is switched off for this server only (otherwise the 4th guess is ``rate_limited``). Reported:
  medians, mean difference and a Wilcoxon signed-rank test (normal approximation with tie correction,
  implemented here with the stdlib; scipy's, if installed, is printed beside it).
* **Guesses per account per hour** (THREATS 18): the server's own ``LoginThrottle`` driven by a virtual clock
  for one hour, for an attacker that guesses whenever allowed, from 1 address at 1 account, from 1 address
  at 50 accounts, and from 16 or 256 addresses at 1 account; then a live check (``--phase-seconds`` of
  guessing against the default throttle) compared with the simulation over the same window.
* **Denial of service** (THREATS 10, 11): honest p95 of a full login (connect, handshake, scrypt, proof)
  and of chat delivery (alice -> bob through the relay) at baseline, under slowloris (200 connections that
  send one byte every 5 s and are reopened when the server closes them) and under a connection flood
  (5,000 connects from another loopback source, up to 600 held open); connections refused with
  ``server_busy``; peak server RSS (VmHWM); descriptors before, during and after.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .fuzz_live import ServerProcess

PASSWORD = "figures-password-1"
ATTACK_SOURCE = "127.0.0.3"  # the flooding "other host"; honest clients connect from 127.0.0.1


def serve(argv: list[str]) -> int:
    import dataclasses
    import logging

    from securechat.crypto.kdf import FAST_SCRYPT, OWASP_SCRYPT
    from securechat.net.tcp_server import TcpServer
    from securechat.protocol.limits import ServerConfig
    from securechat.store import MemoryRegistry, new_server_key

    ap = argparse.ArgumentParser()
    ap.add_argument("--scrypt", choices=("fast", "owasp"), default="fast")
    ap.add_argument("--no-throttle", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    config = ServerConfig(scrypt=FAST_SCRYPT if args.scrypt == "fast" else OWASP_SCRYPT)
    if args.no_throttle:
        config = dataclasses.replace(config, failures_before_backoff=10**9, address_failures_allowed=10**9,
                                     max_refusals_before_login=10**9, refusals_per_address_burst=1e9)
    key = new_server_key()
    server = TcpServer(server_key=key, registry=MemoryRegistry(), config=config, relay_events=False).start()
    print(json.dumps({"port": server.address[1], "server_key": key.public_der.hex(), "scheme": key.scheme.value}),
          flush=True)
    sys.stdin.read()
    server.stop()
    return 0


def start(*flags: str) -> ServerProcess:
    return ServerProcess(["-m", "benchmarks.security_figures", "--serve", *flags])


def client(srv: ServerProcess, timeout: float = 60.0) -> Any:
    from securechat.net.tcp_client import TcpClient

    return TcpClient(*srv.address, server_key=srv.server_key, timeout=timeout)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


# --- Wilcoxon ---------------------------------------------------------------------------------------------------

def wilcoxon_signed_rank(x: list[float], y: list[float]) -> dict[str, float]:
    """Two-sided Wilcoxon signed-rank test, normal approximation with tie and continuity corrections."""
    diffs = [a - b for a, b in zip(x, y) if a != b]
    n = len(diffs)
    order = sorted(range(n), key=lambda i: abs(diffs[i]))
    ranks = [0.0] * n
    ties = 0.0
    i = 0
    while i < n:
        j = i
        while j + 1 < n and abs(diffs[order[j + 1]]) == abs(diffs[order[i]]):
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        t = j - i + 1
        ties += t ** 3 - t
        i = j + 1
    w_plus = sum(r for r, d in zip(ranks, diffs) if d > 0)
    mean = n * (n + 1) / 4
    var = n * (n + 1) * (2 * n + 1) / 24 - ties / 48
    z = (w_plus - mean - math.copysign(0.5, w_plus - mean)) / math.sqrt(var) if var > 0 else 0.0
    return {"n": n, "w_plus": w_plus, "z": z, "p": math.erfc(abs(z) / math.sqrt(2))}


def login_timing(pairs: int, scrypt: str, keys: Any) -> dict[str, Any]:
    from securechat.net.tcp_client import RequestError

    srv = start("--scrypt", scrypt, "--no-throttle")
    try:
        name = "victim"
        with client(srv) as c:
            c.register(name, PASSWORD, keys)
        unknown: list[float] = []
        wrong: list[float] = []
        codes: set[tuple[str, str]] = set()
        rng = random.Random(5)
        with client(srv) as c:
            def attempt(user: str) -> float:
                t0 = time.perf_counter()
                try:
                    c.login(user, "not-the-password", keys)
                except RequestError as exc:
                    codes.add((str(exc.code), exc.failure.message))
                    return time.perf_counter() - t0
                raise AssertionError("a wrong login succeeded")
            for _ in range(20):  # warm-up
                attempt(name)
            for i in range(pairs):
                if rng.random() < 0.5:
                    u = attempt(f"nobody{i}")
                    w = attempt(name)
                else:
                    w = attempt(name)
                    u = attempt(f"nobody{i}")
                unknown.append(u)
                wrong.append(w)
        rss, hwm = srv.rss_kib()
    finally:
        srv.stop()
    result: dict[str, Any] = {
        "scrypt": scrypt, "pairs": pairs, "answers": sorted(f"{c} ({m})" for c, m in codes),
        "median_unknown_ms": round(statistics.median(unknown) * 1e3, 3),
        "median_wrong_ms": round(statistics.median(wrong) * 1e3, 3),
        "mean_diff_ms": round(statistics.mean(a - b for a, b in zip(unknown, wrong)) * 1e3, 4),
        "wilcoxon": wilcoxon_signed_rank(unknown, wrong), "server_peak_rss_mib": round(hwm / 1024, 1)}
    try:
        from scipy.stats import wilcoxon  # type: ignore[import-not-found]

        result["scipy_wilcoxon_p"] = float(wilcoxon(unknown, wrong).pvalue)
    except ImportError:
        result["scipy_wilcoxon_p"] = None
    return result


# --- guesses per hour ---------------------------------------------------------------------------------------------

def simulate_guesses(addresses: int, accounts: int, seconds: float, step: float = 0.1) -> dict[str, float]:
    """An attacker who guesses whenever the server's LoginThrottle allows, on a virtual clock."""
    from securechat.protocol.limits import LoginThrottle, ServerConfig

    throttle = LoginThrottle(ServerConfig())
    per_account = [0] * accounts
    t = 0.0
    k = 0
    while t < seconds:
        for a in range(addresses):
            addr = f"10.0.{a // 256}.{a % 256}"
            for _ in range(accounts):  # try the accounts round-robin; each allowed one is a guess
                acct = k % accounts
                k += 1
                user = f"user{acct}"
                if throttle.allowed(user, addr, t):
                    throttle.attempt(user, addr, t)
                    throttle.failed(user, addr, t)
                    per_account[acct] += 1
        t += step
    total = sum(per_account)
    return {"addresses": addresses, "accounts": accounts, "seconds": seconds, "total_guesses": total,
            "guesses_per_account": round(total / accounts, 1)}


def live_guesses(seconds: float, keys: Any) -> dict[str, Any]:
    from securechat.net.tcp_client import RequestError

    srv = start("--scrypt", "fast")
    admitted = limited = 0
    try:
        with client(srv) as c:
            c.register("target", PASSWORD, keys)
        with client(srv) as c:
            t_end = time.monotonic() + seconds
            while time.monotonic() < t_end:
                try:
                    c.login("target", "guess", keys)
                except RequestError as exc:
                    if exc.code.value == "auth_failed":
                        admitted += 1
                    elif exc.code.value == "rate_limited":
                        limited += 1
                        time.sleep(0.05)
                    else:
                        raise
            # the real user, from another address, gets in at once (throttling is per account AND address)
            from securechat.net import tcp_client as tc

            real_ok = False
            orig = tc.socket.create_connection
            try:
                tc.socket.create_connection = lambda addr, timeout=None, **kw: orig(  # type: ignore[assignment]
                    addr, timeout=timeout, source_address=("127.0.0.2", 0))
                with client(srv) as real:
                    real.login("target", PASSWORD, keys)
                    real_ok = True
            finally:
                tc.socket.create_connection = orig  # type: ignore[assignment]
    finally:
        srv.stop()
    return {"seconds": seconds, "admitted_guesses": admitted, "rate_limited_answers": limited,
            "simulated_same_window": simulate_guesses(1, 1, seconds)["total_guesses"],
            "real_user_from_other_address_logged_in": real_ok}


# --- denial of service ----------------------------------------------------------------------------------------------

class Honest:
    """Measures honest login latency (new connection each time) and chat delivery latency."""

    def __init__(self, srv: ServerProcess, keys: Any) -> None:
        self.srv, self.keys = srv, keys
        for name in ("alice", "bob", "carol"):
            with client(srv) as c:
                c.register(name, PASSWORD, keys)
        self.alice, self.bob = client(srv), client(srv)
        self.alice.login("alice", PASSWORD, keys)
        self.bob.login("bob", PASSWORD, keys)
        self.chat = self.alice.open_chat(["bob"]).chat_id
        self.bob.wait_for_key(self.chat, 1)

    def measure(self, seconds: float) -> dict[str, Any]:
        from securechat.protocol import events as ev

        logins: list[float] = []
        chats: list[float] = []
        failures = 0
        reasons: list[str] = []
        t_end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < t_end:
            t0 = time.perf_counter()
            try:
                with client(self.srv, timeout=20) as c:
                    c.login("carol", PASSWORD, self.keys)
                logins.append(time.perf_counter() - t0)
            except Exception as exc:
                failures += 1
                reasons.append(f"login {i}: {type(exc).__name__}: {exc}")
            for _ in range(5):
                i += 1
                text = f"m{i}"
                t0 = time.perf_counter()
                self.alice.send(self.chat, text)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    try:
                        e = self.bob.events.get(timeout=0.5)
                    except Exception:
                        continue
                    if isinstance(e, ev.ChatReceived) and e.text == text:
                        chats.append(time.perf_counter() - t0)
                        time.sleep(0.008)  # stay under the per-user rate limit (200/s sustained)
                        break
                else:
                    failures += 1
                    reasons.append(f"chat {text}: not delivered in 10 s")
        return {"logins": len(logins), "login_p50_ms": round(pct(logins, 50) * 1e3, 1),
                "login_p95_ms": round(pct(logins, 95) * 1e3, 1), "chat_messages": len(chats),
                "chat_p50_ms": round(pct(chats, 50) * 1e3, 2), "chat_p95_ms": round(pct(chats, 95) * 1e3, 2),
                "failures": failures, "failure_reasons": reasons[:5]}

    def close(self) -> None:
        self.alice.close()
        self.bob.close()


def slowloris(srv: ServerProcess, stop: threading.Event, stats: dict[str, int], n: int = 200) -> None:
    socks: list[socket.socket | None] = [None] * n
    last = [0.0] * n
    while not stop.is_set():
        now = time.monotonic()
        for i in range(n):
            s = socks[i]
            try:
                if s is None:
                    s = socket.create_connection(srv.address, timeout=5, source_address=(ATTACK_SOURCE, 0))
                    socks[i], last[i] = s, 0.0
                    stats["opened"] = stats.get("opened", 0) + 1
                if now - last[i] >= 5.0:
                    s.send(b"\x00")
                    last[i] = now
            except OSError:
                if s is not None:
                    s.close()
                socks[i] = None
                stats["closed_by_server"] = stats.get("closed_by_server", 0) + 1
        stop.wait(0.2)
    for s in socks:
        if s is not None:
            s.close()


def flood(srv: ServerProcess, total: int, hold: int, stats: dict[str, int], lock: threading.Lock) -> None:
    held: list[socket.socket] = []
    while True:
        with lock:
            if stats.get("connects", 0) >= total:
                break
            stats["connects"] = stats.get("connects", 0) + 1
        try:
            s = socket.create_connection(srv.address, timeout=2, source_address=(ATTACK_SOURCE, 0))
        except OSError:
            with lock:
                stats["connect_failed"] = stats.get("connect_failed", 0) + 1
            continue
        s.settimeout(0.05)
        try:
            data = s.recv(4096)
            refused = b"server_busy" in data or data == b""
        except TimeoutError:
            refused = False
        except OSError:
            refused = True
        with lock:
            if refused:
                stats["server_busy_or_closed"] = stats.get("server_busy_or_closed", 0) + 1
            if not refused and len(held) < hold:
                held.append(s)
                continue
        s.close()
    time.sleep(1.0)
    for s in held:
        s.close()


def dos_figures(seconds: float, keys: Any) -> dict[str, Any]:
    srv = start("--scrypt", "fast")
    out: dict[str, Any] = {"scrypt": "fast (honest logins run the full scrypt check at N=2^10)"}
    try:
        honest = Honest(srv, keys)
        time.sleep(0.5)
        out["fds_baseline"] = srv.fds()
        out["rss_baseline_mib"] = round(srv.rss_kib()[0] / 1024, 1)
        out["baseline"] = honest.measure(seconds)

        stop = threading.Event()
        s_stats: dict[str, int] = {}
        t = threading.Thread(target=slowloris, args=(srv, stop, s_stats), daemon=True)
        t.start()
        time.sleep(2.0)
        out["fds_during_slowloris"] = srv.fds()
        out["slowloris"] = {**honest.measure(seconds), "attack": dict(s_stats)}
        stop.set()
        t.join(10)
        out["slowloris"]["attack"] = dict(s_stats)

        f_stats: dict[str, int] = {}
        lock = threading.Lock()
        threads = [threading.Thread(target=flood, args=(srv, 5000, 150, f_stats, lock), daemon=True)
                   for _ in range(4)]
        for th in threads:
            th.start()
        time.sleep(1.0)
        out["fds_during_flood"] = srv.fds()
        out["flood"] = honest.measure(seconds)
        for th in threads:
            th.join(120)
        out["flood"]["attack"] = dict(f_stats)
        honest.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and srv.fds() > out["fds_baseline"]:
            time.sleep(0.5)
        out["fds_after"] = srv.fds()
        out["fds_back_to_baseline_s"] = round(30 - (deadline - time.monotonic()), 1)
        rss, hwm = srv.rss_kib()
        out["rss_end_mib"], out["rss_peak_mib"] = round(rss / 1024, 1), round(hwm / 1024, 1)
        out["server_alive"] = srv.alive()
        out["stderr_tracebacks"] = srv.stderr_text().count("Traceback")
    finally:
        srv.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        return serve(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--owasp-pairs", type=int, default=30)
    ap.add_argument("--phase-seconds", type=float, default=15.0)
    ap.add_argument("--json", default="benchmarks/security_figures.json")
    ap.add_argument("--only", choices=("all", "timing", "guesses", "dos"), default="all",
                    help="run one part and update its figures in --json")
    args = ap.parse_args(argv)
    from securechat.crypto.signatures import SignatureScheme
    from securechat.protocol.identity import generate_user_keys

    keys = generate_user_keys(SignatureScheme.ED25519)
    path = Path(args.json)
    report: dict[str, Any] = json.loads(path.read_text()) if args.only != "all" and path.exists() else {}
    report["machine"] = f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    if args.only in ("all", "timing"):
        report["timing_fast"] = login_timing(args.pairs, "fast", keys)
        print(json.dumps(report["timing_fast"]), flush=True)
        if args.owasp_pairs:
            report["timing_owasp"] = login_timing(args.owasp_pairs, "owasp", keys)
            print(json.dumps(report["timing_owasp"]), flush=True)
    if args.only in ("all", "guesses"):
        # The throttle is keyed by (account, address) and by address alone, so N addresses at one account get
        # exactly N times what one address gets: 16 is simulated, 256 follows.
        sims = [simulate_guesses(a, n, 3600.0) for a, n in ((1, 1), (1, 50), (16, 1))]
        sims.append({**sims[0], "addresses": 256, "total_guesses": 256 * sims[0]["total_guesses"],
                     "guesses_per_account": 256 * sims[0]["guesses_per_account"], "derived": "256 x (1, 1)"})
        report["guesses_simulated_1h"] = sims
        print(json.dumps(report["guesses_simulated_1h"]), flush=True)
        report["guesses_live"] = live_guesses(args.phase_seconds * 2, keys)
        print(json.dumps(report["guesses_live"]), flush=True)
    if args.only in ("all", "dos"):
        report["dos"] = dos_figures(args.phase_seconds, keys)
        print(json.dumps(report["dos"]), flush=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
