"""Honest ``who`` latency while one address floods the server with pre-authentication work (PROTOCOL.md 6.1, 10).

    python -m benchmarks.preauth_flood [--seconds 20] [--connections 8] [--out FILE]

The server runs in its own process (``benchmarks.server_proc``, default limits for everything this measures).
An honest user logged in from 127.0.0.1 asks ``who`` about 20 times a second, first on a quiet server, then
while an attacker process, from 127.0.0.2, keeps *connections* connections busy: each completes the handshake
and sends 200 ``register`` frames for a taken name (in records of about 40 KB, which every server version accepts
before login), each with a DSA key over a 2048-bit domain that is not the reference one (its import costs a full
primality proof), and reconnects whenever it is closed. This is the flood of the review that found it (200
``register`` frames on one connection stalled an honest ``who`` for 5.7 s).
Prints one JSON object (and writes it to ``--out``): honest p50/p99/max per phase and what the attacker got.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FRAMES_PER_RECORD = 200


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _measure(client: object, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    timeouts = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            client.who()  # type: ignore[attr-defined]
        except TimeoutError:  # no answer within the client's 30 s: counted at what it cost
            timeouts += 1
        latencies.append((time.perf_counter() - started) * 1000)
        time.sleep(0.05)
    return {"requests": len(latencies), "p50_ms": round(_percentile(latencies, 0.50), 2),
            "p99_ms": round(_percentile(latencies, 0.99), 2), "max_ms": round(max(latencies), 2),
            "timeouts_30s": timeouts}


# --- the attacker process ----------------------------------------------------------------------------------------


def _attack(port: int, seconds: float, connections: int, taken: str) -> dict[str, object]:
    from Crypto.PublicKey import DSA

    from securechat.crypto.keys import generate_encryption_key, public_key_der
    from securechat.crypto.signatures import generate_dsa_domain
    from securechat.protocol import codec
    from securechat.protocol import events as ev
    from securechat.protocol import messages as m
    from securechat.protocol.client import ClientProtocol
    from securechat.protocol.codec import encode_record_frame

    domain = generate_dsa_domain(2048)  # a valid domain, but not the reference one
    register = m.Register(
        rid=None, username=taken, password="flood", signature_scheme="dsa-2048-sha256",
        encryption_key=public_key_der(generate_encryption_key()),
        signing_key=public_key_der(DSA.generate(2048, domain=domain)))
    one = codec.frame(codec.encode_message(register))
    per_record = 40_000 // len(one)  # ~40 KB of plaintext: under 64 KiB once sealed and base64-encoded
    chunks = [one * min(per_record, FRAMES_PER_RECORD - i) for i in range(0, FRAMES_PER_RECORD, per_record)]
    stats: Counter[str] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def one_connection() -> None:
        while time.monotonic() < deadline:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=("127.0.0.2", 0))
            except OSError:
                with lock:
                    stats["connect_failed"] += 1
                time.sleep(0.1)
                continue
            proto = ClientProtocol()
            try:
                proto.connect()
                sock.sendall(proto.data_to_send())
                while proto.state.name == "HANDSHAKING" and not proto.closed:
                    proto.receive_data(sock.recv(65536), time.time())
                if proto.closed:
                    with lock:
                        stats["refused_at_admission"] += 1
                    time.sleep(0.01)  # reconnect at once, but leave the shared 2-core machine to the server
                    continue
                # 200 raw register frames, sealed with this connection's channel keys (past the client's own
                # checks), in records that fit the 64 KiB a server allows before login; the plaintexts are made
                # once, so the attacker spends little CPU of its own.
                sock.sendall(b"".join(encode_record_frame(proto.link.records.seal(chunk))
                                      for chunk in chunks))
                with lock:
                    stats["register_frames_sent"] += FRAMES_PER_RECORD
                while time.monotonic() < deadline and not proto.closed:
                    data = sock.recv(65536)
                    proto.receive_data(data, time.time())
                    for event in iter(proto.next_event, None):
                        if isinstance(event, ev.RequestFailed):
                            with lock:
                                stats[f"answer_{event.code}"] += 1
                    if not data:
                        break
                with lock:
                    stats["closed_by_server" if proto.closed else "still_open_at_end"] += 1
            except OSError:
                with lock:
                    stats["connection_error"] += 1
            finally:
                sock.close()

    threads = [threading.Thread(target=one_connection) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return dict(stats)


# --- the driver ---------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--out", default=None)
    ap.add_argument("--attack", type=int, metavar="PORT", help=argparse.SUPPRESS)  # the attacker subprocess
    ap.add_argument("--taken", default="u0000", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.attack:
        print(json.dumps(_attack(args.attack, args.seconds, args.connections, args.taken)), flush=True)
        return 0

    from securechat.net.tcp_client import TcpClient

    from .keyfile import make_keys
    from .server_proc import PASSWORD, user_name

    with tempfile.TemporaryDirectory() as tmp:
        keyfile = Path(tmp) / "keys.bin"
        keys = make_keys(keyfile)
        server = subprocess.Popen([sys.executable, "-m", "benchmarks.server_proc", "securechat", str(keyfile),
                                   "--users", "1"], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
        try:
            assert server.stdout is not None
            info = json.loads(server.stdout.readline())
            port = info["port"]
            honest = TcpClient("127.0.0.1", port, server_key=(bytes.fromhex(info["server_key"]), info["scheme"]))
            try:
                honest.login(user_name(0), PASSWORD, keys)
                quiet = _measure(honest, args.seconds / 2)
                attacker = subprocess.Popen(
                    [sys.executable, "-m", "benchmarks.preauth_flood", "--attack", str(port), "--seconds",
                     str(args.seconds + 5), "--connections", str(args.connections), "--taken", user_name(0)],
                    cwd=ROOT, stdout=subprocess.PIPE, text=True)
                time.sleep(5)  # the attacker makes its DSA domain first (a few seconds)
                flood = _measure(honest, args.seconds)
                out, _ = attacker.communicate(timeout=60)
                attack = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
            finally:
                honest.close()
        finally:
            assert server.stdin is not None
            server.stdin.close()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
    result = {"seconds": args.seconds, "attacker_connections": args.connections,
              "frames_per_record": FRAMES_PER_RECORD, "quiet": quiet, "flood": flood, "attacker": attack,
              "target_p99_ms": 50, "cpu_count": os.cpu_count()}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
