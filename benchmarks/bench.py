"""securechat benchmark. Run: ``python -m benchmarks.bench [--quick] [--out FILE]
[--aead-backend pycryptodome|cryptography|both] [--only relay class burst setup schemes ws]``.

``ws`` runs the relay flood at 50x5 over the server's WebSocket port and over its TCP port, interleaved, in one
run (docs/PROTOCOL.md 15; target: WebSocket >= 0.8x TCP).

``--aead-backend both`` runs every part with pycryptodome (the top-level figures), then the relay, the class
session and the per-message costs again with the optional ``cryptography`` backend in server and generator
alike (``results["by_backend"]["cryptography"]``), so both are measured on the same machine in one run.

The server runs in its own process (``server_proc.py``) on 127.0.0.1, port 0; this process is the load
generator (one thread, selectors, many ClientProtocol objects); the login burst runs in a third process.
Writes ``benchmarks/results.json`` and the plots ``docs/images/perf-*.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # python benchmarks/bench.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

from securechat.crypto import aead  # noqa: E402
from securechat.protocol import events as ev  # noqa: E402

from . import loadgen as lg  # noqa: E402
from .keyfile import load_keys, make_keys  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

TARGETS = {
    "relay_50x5_deliveries_per_s": 15000,
    "relay_ratio_to_plaintext": 0.5,
    "class_p99_ms": 50,
    "class_lost": 0,
    "class_rss_mb": 300,
    "setup_100_members_ms": 50,
    "login_burst_s": 90,
    "login_burst_chat_p99_ms": 100,
}


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def machine() -> dict:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    import Crypto

    try:
        from importlib.metadata import version

        pyca = version("cryptography")
    except Exception:  # noqa: BLE001 - optional package
        pyca = None
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "pycryptodome": Crypto.__version__, "cryptography": pyca, "platform": platform.platform()}


# --- relay capacity --------------------------------------------------------------------------------------------------


def relay_securechat(keyfile: Path, keys, clients: int, size: int, duration: float, window: int,
                     full: bool = False, ws: bool = False) -> dict:
    server = lg.ServerHandle("securechat", keyfile, users=clients, unlimited_rate=True)
    cl: list[lg.Client] = []
    try:
        port = server.ws_port if ws else server.port
        cl = lg.connect_and_login(port, server.server_key, keys, range(clients), ws=ws)
        groups = lg.open_chats(cl, size)
        names = {c.name: c.idx for c in cl}
        kind = lg.FullEndpoint if full else lg.FastEndpoint
        eps = [kind(c, [x.idx for x in g], names) for g in groups for c in g]
        cpu0 = server.cpu_seconds()
        result = lg.run_relay(eps, duration=duration, window=window)
        result["server_cpu_s_per_s"] = round((server.cpu_seconds() - cpu0) / max(result["seconds"], 1e-9), 2)
        result["server_rss_mb"] = round(server.rss_mb(), 1)
        return result
    finally:
        lg.close_all(cl)
        server.stop()


def relay_plain(keyfile: Path, clients: int, size: int, duration: float, window: int) -> dict:
    server = lg.ServerHandle("plain", keyfile)
    eps = []
    try:
        for g in range(clients // size):
            members = list(range(g * size, (g + 1) * size))
            eps += [lg.PlainEndpoint(i, server.port, f"room{g}", members) for i in members]
        time.sleep(0.3)  # joins processed
        cpu0 = server.cpu_seconds()
        result = lg.run_relay(eps, duration=duration, window=window)
        result["server_cpu_s_per_s"] = round((server.cpu_seconds() - cpu0) / max(result["seconds"], 1e-9), 2)
        return result
    finally:
        for e in eps:
            e.sock.close()
        server.stop()


def bench_relay(keyfile: Path, keys, quick: bool) -> dict:
    configs = [(10, 5), (10, 10), (50, 5), (50, 10), (300, 5), (300, 10)] if not quick else [(10, 5)]
    duration = 1.5 if quick else 4.0
    reps = 1 if quick else 3
    window = 4
    rows = []

    def median_run(runs: list[dict]) -> dict:
        best = sorted(runs, key=lambda r: r["deliveries_per_s"])[len(runs) // 2]
        return {**best, "runs_deliveries_per_s": [r["deliveries_per_s"] for r in runs],
                "lost": sum(r["lost"] for r in runs)}

    for clients, size in configs:
        log(f"relay flood {clients}x{size}")
        scs, pls = [], []
        for _ in range(reps):  # interleaved, so drift on the VM hits both alike
            scs.append(relay_securechat(keyfile, keys, clients, size, duration, window))
            pls.append(relay_plain(keyfile, clients, size, duration, window))
        sc, pl = median_run(scs), median_run(pls)
        rows.append({"clients": clients, "chat_size": size, "securechat": sc, "plaintext": pl,
                     "ratio": round(sc["deliveries_per_s"] / pl["deliveries_per_s"], 3) if pl["deliveries_per_s"] else 0})
        log(f"  securechat {sc['deliveries_per_s']}/s p50 {sc['p50_ms']} p99 {sc['p99_ms']} lost {sc['lost']}; "
            f"plain {pl['deliveries_per_s']}/s; ratio {rows[-1]['ratio']}")
    log("relay end to end (full client work) 50x5" if not quick else "relay end to end 10x5")
    e2e = relay_securechat(keyfile, keys, 10 if quick else 50, 5, duration, window, full=True)
    log(f"  end to end {e2e['deliveries_per_s']}/s p50 {e2e['p50_ms']} p99 {e2e['p99_ms']} lost {e2e['lost']}")
    return {"window_per_sender": window, "seconds_per_run": duration, "runs_per_configuration": reps,
            "one_record_per_message": True,
            "rows": rows, "end_to_end_50x5": e2e}


def bench_ws(keyfile: Path, keys, quick: bool) -> dict:
    """The relay over the WebSocket port against the TCP port (docs/PROTOCOL.md 15), interleaved in one run."""
    clients, size = (10, 5) if quick else (50, 5)
    duration, reps, window = (1.5, 1, 4) if quick else (4.0, 5, 4)
    log(f"relay flood {clients}x{size}: WebSocket against TCP, {reps} runs each, interleaved")
    tcp_runs, ws_runs = [], []
    for _ in range(reps):  # interleaved, so drift on the VM hits both alike
        tcp_runs.append(relay_securechat(keyfile, keys, clients, size, duration, window))
        ws_runs.append(relay_securechat(keyfile, keys, clients, size, duration, window, ws=True))

    def median(runs: list[dict]) -> dict:
        best = sorted(runs, key=lambda r: r["deliveries_per_s"])[len(runs) // 2]
        return {**best, "runs_deliveries_per_s": [r["deliveries_per_s"] for r in runs],
                "lost": sum(r["lost"] for r in runs)}

    tcp, over_ws = median(tcp_runs), median(ws_runs)
    ratio = round(over_ws["deliveries_per_s"] / tcp["deliveries_per_s"], 3) if tcp["deliveries_per_s"] else 0.0
    for side in (tcp, over_ws):  # server CPU per delivery: what the transport costs, whatever the machine's load
        side["server_cpu_us_per_delivery"] = round(side["server_cpu_s_per_s"] / side["deliveries_per_s"] * 1e6, 1) \
            if side["deliveries_per_s"] else 0.0
    log(f"  tcp {tcp['deliveries_per_s']}/s p50 {tcp['p50_ms']} p99 {tcp['p99_ms']} "
        f"({tcp['server_cpu_us_per_delivery']} us server CPU per delivery); websocket {over_ws['deliveries_per_s']}/s "
        f"p50 {over_ws['p50_ms']} p99 {over_ws['p99_ms']} ({over_ws['server_cpu_us_per_delivery']} us); ratio {ratio}")
    return {"clients": clients, "chat_size": size, "window_per_sender": window, "seconds_per_run": duration,
            "runs_per_transport": reps, "tcp": tcp, "websocket": over_ws, "ratio_ws_to_tcp": ratio,
            "pair_ratios": [round(w["deliveries_per_s"] / t["deliveries_per_s"], 3) if t["deliveries_per_s"] else 0.0
                            for t, w in zip(tcp_runs, ws_runs)]}


# --- class session ---------------------------------------------------------------------------------------------------


def bench_class(keyfile: Path, keys, quick: bool) -> dict:
    clients, size, rate, duration = (20, 10, 100.0, 2.0) if quick else (300, 10, 1000.0, 60.0)
    log(f"class session: {clients} clients, chats of {size}, {rate:.0f} msg/s for {duration:.0f} s")
    server = lg.ServerHandle("securechat", keyfile, users=clients)  # default limits (200 msg/s per user)
    cl: list[lg.Client] = []
    rss: list[float] = []
    try:
        rss.append(server.rss_mb())
        cl = lg.connect_and_login(server.port, server.server_key, keys, range(clients))
        groups = lg.open_chats(cl, size)
        rss_ready = server.rss_mb()
        names = {c.name: c.idx for c in cl}
        eps = [lg.FastEndpoint(c, [x.idx for x in g], names) for g in groups for c in g]
        cpu0 = server.cpu_seconds()
        result = lg.run_relay(eps, duration=duration, rate=rate, warmup=1.0,
                              sample=lambda: rss.append(server.rss_mb()))
        result["server_cpu_s_per_s"] = round((server.cpu_seconds() - cpu0) / max(result["seconds"], 1e-9), 2)
        rss.append(server.rss_mb())
    finally:
        lg.close_all(cl)
        server.stop()
    result.update({"clients": clients, "chat_size": size, "offered_messages_per_s": rate, "duration_s": duration,
                   "rss_idle_mb": round(rss[0], 1), "rss_after_logins_mb": round(rss_ready, 1),
                   "rss_peak_mb": round(max(rss), 1), "rss_samples_mb": [round(x, 1) for x in rss]})
    log(f"  p50 {result['p50_ms']} p99 {result['p99_ms']} lost {result['lost']} rss peak {result['rss_peak_mb']} MB")
    return result


# --- scale: 2,000 clients ------------------------------------------------------------------------------------------


def raise_descriptor_limit(needed: int) -> dict:
    """Each client holds one descriptor here and one in the server: raise the soft limit to the hard one."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed and (hard == resource.RLIM_INFINITY or hard >= needed):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else needed, hard))
    soft_now, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {"soft_before": soft, "hard": hard, "soft": soft_now, "needed": needed}


def bench_scale(keyfile: Path, keys, quick: bool) -> dict:
    """2,000 clients logged in (FAST scrypt for setup), chats of 5, the lobby on, 2,000 msg/s offered for 60 s."""
    clients, size, rate, duration = (50, 5, 100.0, 2.0) if quick else (2000, 5, 2000.0, 60.0)
    fds = raise_descriptor_limit(2 * clients + 256)  # the server process inherits the raised limit
    log(f"scale: {clients} clients, chats of {size}, lobby on, {rate:.0f} msg/s for {duration:.0f} s (fds {fds})")
    server = lg.ServerHandle("securechat", keyfile, users=clients,
                             extra=("--lobby", "--max-connections", str(clients + 64)))
    cl: list[lg.Client] = []
    rss: list[float] = []
    try:
        rss.append(server.rss_mb())
        t0 = time.perf_counter()
        cl = []
        for first in range(0, clients, 250):  # batches: the listen backlog is 512
            batch = lg.connect_and_login(server.port, server.server_key, keys,
                                         range(first, min(first + 250, clients)), timeout=600)
            cl += batch
            until = time.monotonic() + 0.5
            lg.pump(cl, lambda: time.monotonic() > until, 5, "drain")  # read what the lobby sent meanwhile
        login_s = time.perf_counter() - t0
        groups = lg.open_chats(cl, size, timeout=600)
        setup_s = time.perf_counter() - t0
        rss_ready = server.rss_mb()
        lobby_full = sum(1 for c in cl for e in c.events
                         if isinstance(e, ev.RequestFailed) and e.ref == "lobby")
        names = {c.name: c.idx for c in cl}
        eps = [lg.FastEndpoint(c, [x.idx for x in g], names) for g in groups for c in g]
        cpu0 = server.cpu_seconds()
        result = lg.run_relay(eps, duration=duration, rate=rate, warmup=0.5 if quick else 2.0,
                              sample=lambda: rss.append(server.rss_mb()))
        result["server_cpu_s_per_s"] = round((server.cpu_seconds() - cpu0) / max(result["seconds"], 1e-9), 2)
        rss.append(server.rss_mb())
    finally:
        lg.close_all(cl)
        server.stop()
    result.update({"clients": clients, "chat_size": size, "lobby": True, "offered_messages_per_s": rate,
                   "duration_s": duration, "login_s": round(login_s, 1), "setup_s": round(setup_s, 1),
                   "told_lobby_full": lobby_full, "descriptors": fds,
                   "rss_idle_mb": round(rss[0], 1), "rss_after_setup_mb": round(rss_ready, 1),
                   "rss_peak_mb": round(max(rss), 1)})
    log(f"  logins {login_s:.1f} s; p50 {result['p50_ms']} p99 {result['p99_ms']} lost {result['lost']} "
        f"rss peak {result['rss_peak_mb']} MB; {lobby_full} told the lobby is full")
    return result


# --- login burst -----------------------------------------------------------------------------------------------------


def bench_login_burst(keyfile: Path, keys, quick: bool) -> dict:
    online, burst, rate = (5, 6, 20.0) if quick else (30, 300, 200.0)
    scrypt = "fast" if quick else "owasp"
    log(f"login burst: {burst} logins at scrypt={scrypt}, {online} clients chatting at {rate:.0f} msg/s")
    server = lg.ServerHandle("securechat", keyfile, users=online + burst, scrypt=scrypt)
    cl: list[lg.Client] = []
    helper = None
    try:
        cl = lg.connect_and_login(server.port, server.server_key, keys, range(online), timeout=150)
        groups = lg.open_chats(cl, 5)
        names = {c.name: c.idx for c in cl}
        eps = [lg.FastEndpoint(c, [x.idx for x in g], names) for g in groups for c in g]
        assert server.server_key is not None
        # quiet baseline first, then the burst
        base = lg.run_relay(eps, duration=1.0 if quick else 3.0, rate=rate, warmup=0.3)
        helper = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.loadgen", str(server.port), server.server_key[0].hex(),
             server.server_key[1], str(keyfile), str(online), str(burst)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True)
        cpu0 = server.cpu_seconds()
        rss: list[float] = [server.rss_mb()]
        during = lg.run_relay(eps, duration=200.0, rate=rate, warmup=0.0, stop_when=lambda: helper.poll() is not None,
                              sample=lambda: rss.append(server.rss_mb()))
        during["server_rss_peak_mb"] = round(max(rss), 1)
        during["server_cpu_s_per_s"] = round((server.cpu_seconds() - cpu0) / max(during["seconds"], 1e-9), 2)
        assert helper.stdout is not None
        outcome = json.loads(helper.stdout.read() or "{}")
        helper.wait(10)
    finally:
        if helper is not None and helper.poll() is None:
            helper.kill()
            helper.wait(5)
        lg.close_all(cl)
        server.stop()
    log(f"  burst {outcome}; chat p50 {during['p50_ms']} p99 {during['p99_ms']} lost {during['lost']}")
    return {"scrypt": scrypt, "password_workers": 2, "burst": outcome, "chatting_clients": online,
            "chat_rate_messages_per_s": rate, "chat_before": base, "chat_during": during}


# --- chat setup and rekey ----------------------------------------------------------------------------------------------


def _timed_key(clients: list[lg.Client], action, watch: list[lg.Client], installed, timeout: float = 30.0):
    """Run *action*, then: ms until every client in *watch* received bytes (its chat_key record), and ms until
    ``installed()`` (after this process has opened every record and unwrapped every key, one after another)."""
    import selectors

    arrived: dict[int, float] = {}
    stash: list[tuple[lg.Client, bytes]] = []
    sel = selectors.DefaultSelector()
    for c in watch:
        sel.register(c.sock, selectors.EVENT_READ, c)
    t0 = time.perf_counter()
    action()
    deadline = t0 + timeout
    try:
        while len(arrived) < len(watch) and time.perf_counter() < deadline:
            for key, _ in sel.select(0.05):
                c = key.data
                data = c.sock.recv(lg.READ)
                arrived.setdefault(c.idx, time.perf_counter())
                stash.append((c, data))
    finally:
        sel.close()
    t_arrived = max(arrived.values()) - t0 if len(arrived) == len(watch) else float("nan")
    for c, data in stash:
        c.proto.receive_data(data, time.time())
        c.events.extend(iter(c.proto.next_event, None))
    lg.pump(clients, installed, timeout, "key install")
    return round(t_arrived * 1000, 2), round((time.perf_counter() - t0) * 1000, 2)


def bench_setup(keyfile: Path, keys, quick: bool) -> dict:
    sizes, reps = ([2, 5], 1) if quick else ([2, 10, 50, 100, 200], 3)
    total = max(sizes) + 1
    log(f"chat setup and rekey: sizes {sizes}, {reps} repetitions")
    server = lg.ServerHandle("securechat", keyfile, users=total)
    cl: list[lg.Client] = []
    rows = []
    try:
        cl = lg.connect_and_login(server.port, server.server_key, keys, range(total))
        lg.pump(cl, lambda: False if time.sleep(0) else True, 5, "drain")
        creator, extra = cl[0], cl[-1]
        for size in sizes:
            setup, rekey = [], []
            for _ in range(reps):
                members = cl[:size]
                before = set(creator.proto.book.chats)  # type: ignore[union-attr]
                chat_holder: list[str] = []

                def opened() -> bool:
                    new = set(creator.proto.book.chats) - before  # type: ignore[union-attr]
                    if not new:
                        return False
                    chat_holder[:] = list(new)
                    return all(chat_holder[0] in c.proto.book.chats for c in members)  # type: ignore[union-attr]

                setup.append(_timed_key(cl, lambda: (creator.proto.open_chat([c.name for c in members[1:]]),
                                                     creator.flush()), members[1:], opened))
                chat_id = chat_holder[0]
                epoch = creator.proto.book.chats[chat_id].epoch  # type: ignore[union-attr]
                everyone = members + [extra]

                def rekeyed() -> bool:
                    return all(chat_id in c.proto.book.chats and c.proto.book.chats[chat_id].epoch > epoch  # type: ignore
                               for c in everyone)

                rekey.append(_timed_key(cl, lambda: (creator.proto.invite(chat_id, extra.name), creator.flush()),
                                        everyone[1:], rekeyed))
                # the creator leaves: the chat ends for it, and the members' chats stay (not measured)
                creator.proto.leave(chat_id)
                lg.pump(cl, lambda: creator.proto.book.chats[chat_id].key == b"", 30, "leave")  # type: ignore
                time.sleep(0.05)
                lg.pump(cl, lambda: True, 1, "drain")
            row = {"members": size,
                   "setup_arrived_ms": statistics.median(s[0] for s in setup),
                   "setup_installed_ms": statistics.median(s[1] for s in setup),
                   "rekey_arrived_ms": statistics.median(r[0] for r in rekey),
                   "rekey_installed_ms": statistics.median(r[1] for r in rekey),
                   "setup_runs": setup, "rekey_runs": rekey}
            rows.append(row)
            log(f"  {size} members: setup {row['setup_arrived_ms']} ms (installed {row['setup_installed_ms']}), "
                f"invite rekey {row['rekey_arrived_ms']} ms (installed {row['rekey_installed_ms']})")
    finally:
        lg.close_all(cl)
        server.stop()
    return {"repetitions": reps, "rows": rows}


# --- per-message cost per signature scheme ---------------------------------------------------------------------------


def bench_schemes(quick: bool) -> dict:
    from securechat.crypto.certificates import issue_certificate
    from securechat.crypto.keys import load_public_key
    from securechat.crypto.signatures import SignatureScheme
    from securechat.protocol.channel import RecordLayer
    from securechat.protocol.chats import ChatBook, ClientChat
    from securechat.protocol.codec import encode_frame
    from securechat.protocol.identity import generate_user_keys
    from securechat.protocol import messages as m
    from securechat.store import new_server_key

    ca = new_server_key()
    text = "a line of chat text, about as long as people type in a class chat"
    rows = []
    for scheme in SignatureScheme:
        log(f"per-message cost: {scheme.value}")
        keys = generate_user_keys(scheme)
        chat_key = os.urandom(32)
        books = {}
        for name in ("alice", "bob"):
            book = ChatBook(username=name, keys=keys, server_key=load_public_key(ca.public_der),
                            server_scheme=ca.scheme, random_bytes=os.urandom)
            book.chats["c" + "0" * 32] = ClientChat(chat_id="c" + "0" * 32, mode="server-key", suite="aes-256-gcm",
                                                    epoch=1, members=("alice", "bob"), key=chat_key)
            books[name] = book
        cert = issue_certificate(username="alice", signature_scheme=scheme, encryption_key=keys.encryption_public,
                                 signing_key=keys.signing_public, serial=1, now=int(time.time()) - 60,
                                 validity_seconds=86400, ca_private_key=ca.private_key, ca_scheme=ca.scheme)
        books["bob"].certificates["alice"] = (cert, load_public_key(keys.signing_public),
                                              load_public_key(keys.encryption_public))
        n = 20 if quick else (200 if scheme is not SignatureScheme.RSA_PSS_SHA256 else 100)
        t = time.perf_counter()
        sends = [books["alice"].seal("c" + "0" * 32, text, i + 1) for i in range(n)]
        seal_us = (time.perf_counter() - t) / n * 1e6
        msgs = [m.ChatMessage(chat_id=s.chat_id, epoch=s.epoch, sender="alice", seq=s.seq,
                              ciphertext=s.ciphertext, signature=s.signature) for s in sends]
        t = time.perf_counter()
        results = [books["bob"].open(msg) for msg in msgs]
        open_us = (time.perf_counter() - t) / n * 1e6
        assert all(isinstance(r, ev.ChatReceived) for r in results), results[0]
        # the channel layer around one message: one record sealed by the sender, one opened by the receiver
        rl_a = RecordLayer(send_key=chat_key, receive_key=chat_key)
        rl_b = RecordLayer(send_key=chat_key, receive_key=chat_key)
        frame = encode_frame(sends[0])
        t = time.perf_counter()
        for _ in range(n):
            rl_b.open(rl_a.seal(frame))
        record_us = (time.perf_counter() - t) / n * 1e6
        rows.append({"scheme": scheme.value, "sender_us": round(seal_us, 1), "receiver_us": round(open_us, 1),
                     "record_seal_plus_open_us": round(record_us, 1), "signature_bytes": len(sends[0].signature),
                     "iterations": n})
        log(f"  sender {seal_us:.0f} us, receiver {open_us:.0f} us, record seal+open {record_us:.0f} us")
    return {"rows": rows}


# --- main ------------------------------------------------------------------------------------------------------------


def evaluate_scale(results: dict) -> dict:
    """Targets of the scale and fairness parts (docs/PERFORMANCE.md)."""
    out: dict = {}
    s = results.get("scale")
    if s is not None:
        out["scale_2000_p99_ms"] = {"target": "< 50", "value": s["p99_ms"], "met": s["p99_ms"] < 50}
        out["scale_2000_lost"] = {"target": "0", "value": s["lost"], "met": s["lost"] == 0}
        out["scale_2000_rss_mb"] = {"target": "< 500", "value": s["rss_peak_mb"], "met": s["rss_peak_mb"] < 500}
    f = results.get("fair_admission")
    if f is not None:
        worst = max(p["honest_p99_s"] for p in f["phases"])
        out["fair_honest_login_p99_s"] = {"target": "< 3", "value": worst, "met": worst < 3}
        admitted = max(p["admitted_guesses_per_address_per_minute"] for p in f["phases"])
        out["fair_guesses_per_address_per_minute"] = {"target": "<= 30 (+ 8 in flight)", "value": admitted,
                                                      "met": admitted <= 38}
    return out


def evaluate(results: dict) -> dict:
    out = evaluate_scale(results)
    w = results.get("ws_relay")
    if w and not results.get("quick"):
        out["ws_relay_ratio_to_tcp"] = {"target": ">= 0.8", "value": w["ratio_ws_to_tcp"],
                                        "met": w["ratio_ws_to_tcp"] >= 0.8}
    relay = {(r["clients"], r["chat_size"]): r for r in results.get("relay", {}).get("rows", [])}
    r = relay.get((50, 5))
    if r:
        out["relay_50x5_deliveries_per_s"] = {"target": ">= 15000", "value": r["securechat"]["deliveries_per_s"],
                                              "met": r["securechat"]["deliveries_per_s"] >= 15000}
        out["relay_ratio_to_plaintext"] = {"target": ">= 0.5", "value": r["ratio"], "met": r["ratio"] >= 0.5}
    c = results.get("class_session")
    if c is None:
        return out
    out["class_p99_ms"] = {"target": "< 50", "value": c["p99_ms"], "met": c["p99_ms"] < 50}
    out["class_lost"] = {"target": "0", "value": c["lost"], "met": c["lost"] == 0}
    out["class_rss_mb"] = {"target": "< 300", "value": c["rss_peak_mb"], "met": c["rss_peak_mb"] < 300}
    if "chat_setup" not in results or "login_burst" not in results:
        return out
    s = {row["members"]: row for row in results["chat_setup"]["rows"]}
    if 100 in s:
        out["setup_100_members_ms"] = {"target": "< 50", "value": s[100]["setup_arrived_ms"],
                                       "met": s[100]["setup_arrived_ms"] < 50}
    b = results["login_burst"]
    burst_s = b["burst"].get("burst_s", float("inf"))
    out["login_burst_s"] = {"target": "< 90 (all 300 logged in)", "value": burst_s,
                            "met": burst_s < 90 and b["burst"].get("failed", 1) == 0}
    out["login_burst_chat_p99_ms"] = {"target": "< 100", "value": b["chat_during"]["p99_ms"],
                                      "met": b["chat_during"]["p99_ms"] < 100}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds (the smoke test)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results.json"))
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--only", nargs="*", default=None,
                    help="run only these parts (relay class burst setup schemes ws scale fairness); their results "
                         "are merged into --out when it exists")
    ap.add_argument("--aead-backend", choices=(*aead.BACKENDS, "both"), default="pycryptodome",
                    help="AES-GCM backend of server and generator; 'both' adds a cryptography pass (relay, class, "
                         "schemes)")
    args = ap.parse_args(argv)
    backends = list(aead.BACKENDS) if args.aead_backend == "both" else [args.aead_backend]
    aead.set_backend(backends[0])  # RuntimeError here if cryptography is asked for and not installed
    started = time.time()
    results: dict = {"quick": args.quick, "machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                     "command": "python -m benchmarks.bench" + (" --quick" if args.quick else "")
                     + (f" --aead-backend {args.aead_backend}" if args.aead_backend != "pycryptodome" else ""),
                     "aead_backend": backends[0]}
    # ws (WebSocket against TCP) is in a full run; the quick smoke leaves it to its own smoke test
    parts = args.only or ["relay", "class", "burst", "setup", "schemes", *([] if args.quick else ["ws"]),
                          "scale", "fairness"]
    with tempfile.TemporaryDirectory() as tmp:
        keyfile = Path(tmp) / "keys.bin"
        keys = make_keys(keyfile)
        keys = load_keys(keyfile)
        if "relay" in parts:
            results["relay"] = bench_relay(keyfile, keys, args.quick)
        if "class" in parts:
            results["class_session"] = bench_class(keyfile, keys, args.quick)
        if "burst" in parts:
            results["login_burst"] = bench_login_burst(keyfile, keys, args.quick)
        if "setup" in parts:
            results["chat_setup"] = bench_setup(keyfile, keys, args.quick)
        if "schemes" in parts:
            results["signature_schemes"] = bench_schemes(args.quick)
        if "ws" in parts:
            results["ws_relay"] = bench_ws(keyfile, keys, args.quick)
        if "scale" in parts:
            results["scale"] = bench_scale(keyfile, keys, args.quick)
        if "fairness" in parts:
            from .fairness import bench_fairness

            results["fair_admission"] = bench_fairness(keyfile, keys, args.quick)
        for name in backends[1:]:
            log(f"--- again with the {name} AEAD backend ---")
            aead.set_backend(name)
            other: dict = {"aead_backend": name}
            if "relay" in parts:
                other["relay"] = bench_relay(keyfile, keys, args.quick)
            if "class" in parts:
                other["class_session"] = bench_class(keyfile, keys, args.quick)
            if "schemes" in parts:
                other["signature_schemes"] = bench_schemes(args.quick)
            if "ws" in parts:
                other["ws_relay"] = bench_ws(keyfile, keys, args.quick)
            other["targets"] = evaluate(other)  # relay and class targets; burst and setup are not AEAD-bound
            results.setdefault("by_backend", {})[name] = other
        aead.set_backend("pycryptodome")
    if not args.only:
        results["targets"] = evaluate(results)
    elif "ws" in parts:
        results["targets"] = evaluate({"quick": args.quick, "ws_relay": results["ws_relay"]})
    if args.only:
        results.setdefault("targets", {}).update(evaluate_scale(results))
    results["elapsed_s"] = round(time.time() - started, 1)
    if args.only and Path(args.out).exists():  # a partial run updates its parts, keeping the others' figures
        merged = json.loads(Path(args.out).read_text())
        merged.setdefault("targets", {}).update(results.pop("targets", {}))  # only this run's targets change
        merged.update({k: v for k, v in results.items() if k not in ("machine", "started", "command", "quick")})
        merged.setdefault("partial_runs", []).append({"parts": parts, "started": results["started"],
                                                      "quick": args.quick, "machine": results["machine"]})
        results = merged
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {args.out} in {results['elapsed_s']} s")
    if not args.no_plots and not args.only:
        from .plot import plot

        plot(results, ROOT / "docs" / "images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
