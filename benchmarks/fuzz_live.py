"""Mutation fuzzing of a LIVE securechat server (docs/THREATS.md "Mutation fuzzing").

``python -m benchmarks.fuzz_live [--frames N] [--seconds S] [--seed K] [--json FILE] [--ws-share F]``

1. Starts a real server in a subprocess (``python -m benchmarks.fuzz_live --serve``: TcpServer on 127.0.0.1
   port 0, MemoryRegistry, FAST scrypt, no message rate limit so the fuzzer is not merely rate-limited; its
   stderr goes to a file and every log record at WARNING or above is kept, so an uncaught exception in the
   engine ("internal error ...", with its traceback) is seen).
2. Records the frames of normal sessions over real sockets: handshake, register, login, who, status, chats in
   every mode (server-key, contributory with its commit/share/confirm rounds, contributory-xor, hybrid),
   invite, leave, logout. Two corpora are kept: the CLEAR frames as they crossed the wire (client_hello and
   the outer record frames) and the INNER plaintext frames (length prefix + JSON), which the fuzzer re-seals
   with a valid channel of its own, the way tests/adversarial's RawConn does.
3. Mutates them: bit flips, byte insertions and deletions, truncation, length-prefix changes, splicing two
   frames, two frames in one, and JSON-level mutations (type swaps, field deletion, wrong types, huge values,
   extra fields, nesting). Clear mutants go to fresh connections, which are half-closed after sending: the
   server must answer or close within the deadline. Inner mutants are sealed and sent on live channels (some
   logged in, some not), in batches; after each batch a ``who`` (or a pre-login probe) is sent: the server
   must answer it or close the connection within the deadline, else it is a hang. A few outer records are
   mutated after sealing (the AEAD must refuse them).
   WebSocket mutants (docs/PROTOCOL.md 15) go to the server's WebSocket port on fresh connections, half-closed
   like the clear ones: byte mutants of the opening request, and, after a real upgrade, hand-built frames that
   break RFC 6455 or the binding (unmasked, text, reserved bits, bad opcodes, long control frames, broken
   fragmentation, announced oversize, not-one-frame payloads) or byte mutants of a valid binary frame.
4. After every batch round, and at the end, an honest sanity client registers, logs in and runs ``who``, once
   over TCP and once over WebSocket.

Reports JSON (``--json``) and text: frames tried per mutation kind, crashes (server died, or a traceback or
"internal error" in its stderr: must be 0), hangs, sanity failures, server RSS at start, end and peak
(/proc/PID/status). Bounded in frames and in seconds; every process and socket it starts is stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from .ws_wire import client_frame, opening_request

DEADLINE_SECONDS = 5.0        # an answer or a close must come within this, else it is a hang
FRAME_DEADLINE_SECONDS = 2.0  # the fuzz server's frame and handshake deadlines (defaults 30 s and 10 s)
PASSWORD = "fuzz-password-1"
BATCH = 40            # inner mutants per probe
SANITY_EVERY_S = 10.0


# --------------------------------------------------------------------------------------------------------------
# the server process
# --------------------------------------------------------------------------------------------------------------

def serve() -> int:
    """Child process: a TcpServer until stdin closes."""
    import dataclasses
    import logging

    from securechat.crypto.kdf import FAST_SCRYPT
    from securechat.net import ws_handshake
    from securechat.net.tcp_server import TcpServer
    from securechat.protocol.limits import ServerConfig
    from securechat.store import MemoryRegistry, new_server_key

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The frame deadline is cut from 30 s to FRAME_DEADLINE_SECONDS so that a mutant announcing more bytes than
    # it sends (a truncated or lengthened outer frame: docs/THREATS.md 1) is closed well within the hang deadline.
    # Every fuzzer connection comes from 127.0.0.1, and each live session registers a user: the per-address
    # registration budget (fair admission, meant for many addresses) is lifted like the message rate limit.
    config = dataclasses.replace(ServerConfig(scrypt=FAST_SCRYPT), messages_per_second=1e9, message_burst=1e9,
                                 registration_burst_per_address=1e9, registrations_per_address_per_hour=1e9,
                                 frame_deadline_seconds=FRAME_DEADLINE_SECONDS,
                                 handshake_deadline_seconds=FRAME_DEADLINE_SECONDS)
    key = new_server_key()
    ws_handshake.HANDSHAKE_DEADLINE_SECONDS = FRAME_DEADLINE_SECONDS  # the same cut for the WebSocket opening handshake
    server = TcpServer(server_key=key, registry=MemoryRegistry(), config=config, relay_events=False,
                       ws_port=0).start()
    assert server.ws_address is not None
    print(json.dumps({"port": server.address[1], "server_key": key.public_der.hex(), "scheme": key.scheme.value,
                      "pid": os.getpid(), "ws_port": server.ws_address[1]}), flush=True)
    sys.stdin.read()
    server.stop()
    return 0


class ServerProcess:
    def __init__(self, argv: list[str] | None = None) -> None:
        self.stderr_file = tempfile.NamedTemporaryFile(prefix="fuzz_live_server_", suffix=".log", delete=False)
        self.proc = subprocess.Popen([sys.executable, *(argv or ["-m", "benchmarks.fuzz_live", "--serve"])],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr_file,
                                     cwd=str(Path(__file__).resolve().parent.parent))
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("server process did not start: " + self.stderr_text())
        info = json.loads(line)
        self.address = ("127.0.0.1", int(info["port"]))
        # the fuzz server has a WebSocket port; other servers started through this class may not
        self.ws_address = ("127.0.0.1", int(info["ws_port"])) if "ws_port" in info else None
        self.server_key = (bytes.fromhex(info["server_key"]), info["scheme"])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_kib(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) in KiB."""
        values = {"VmRSS": 0, "VmHWM": 0}
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                key = line.split(":")[0]
                if key in values:
                    values[key] = int(line.split()[1])
        except OSError:
            pass
        return values["VmRSS"], values["VmHWM"]

    def fds(self) -> int:
        try:
            return len(os.listdir(f"/proc/{self.proc.pid}/fd"))
        except OSError:
            return -1

    def stderr_text(self) -> str:
        if not self.stderr_file.closed:
            self.stderr_file.flush()
        return Path(self.stderr_file.name).read_text(errors="replace")

    def stop(self) -> int | None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.stderr_file.close()
        return self.proc.returncode


# --------------------------------------------------------------------------------------------------------------
# connections
# --------------------------------------------------------------------------------------------------------------

class Channel:
    """A real handshake through ClientProtocol, then arbitrary inner bytes sealed with its record layer."""

    def __init__(self, address: tuple[str, int], server_key: tuple[bytes, str], trace: Any = None) -> None:
        from securechat.protocol.client import ClientProtocol

        self.sock = socket.create_connection(address, timeout=DEADLINE_SECONDS)
        self.cp = ClientProtocol(server_key=server_key, trace=trace)
        self.eof = False
        self.cp.connect()
        self.pump(lambda e: type(e).__name__ == "HandshakeCompleted")

    def pump(self, until: Any) -> Any:
        from securechat.protocol import events as ev

        deadline = time.monotonic() + DEADLINE_SECONDS * 2
        while time.monotonic() < deadline:
            out = self.cp.data_to_send()
            if out:
                self.sock.sendall(out)
            for event in iter(self.cp.next_event, None):
                if until(event) or isinstance(event, ev.ConnectionClosed):
                    return event
            data = self.sock.recv(1 << 20)
            self.cp.receive_data(data, time.time())
            if not data:
                self.eof = True
        raise TimeoutError("honest step timed out")

    def call(self, command: Any, kinds: tuple[str, ...]) -> Any:
        command(self.cp)
        return self.pump(lambda e: type(e).__name__ in kinds + ("RequestFailed",))

    def send_inner_frame(self, framed: bytes) -> None:
        self.sock.sendall(self.sealed(framed))

    def sealed(self, framed: bytes) -> bytes:
        """A record around any plaintext, of any size: attack tooling, so not through the checked m.Record."""
        from securechat.protocol.codec import encode_unchecked

        assert self.cp.link.records is not None
        return encode_unchecked("record", {"data": self.cp.link.records.seal(framed)})

    def probe(self, logged_in: bool, rid: int) -> str:
        """Send a request that must be answered; read until its answer ("ok"), EOF ("closed") or "hang"."""
        body = {"type": "who", "rid": rid} if logged_in else {"type": "login", "rid": rid}  # bad_field pre-login
        try:
            self.send_inner_frame(_frame(json.dumps(body).encode()))
        except OSError:
            return "closed"
        deadline = time.monotonic() + DEADLINE_SECONDS
        while time.monotonic() < deadline:
            try:
                if not select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))[0]:
                    break
                data = self.sock.recv(1 << 20)
            except OSError:
                return "closed"
            if not data:
                return "closed"
            try:
                if self._answered(data, rid):
                    return "ok"
            except Exception:  # our decoder of the server's output: a garbled stream means the close follows
                return "closed"
        return "hang"

    def _answered(self, data: bytes, rid: int) -> bool:
        from securechat.crypto.encoding import b64d
        from securechat.protocol.codec import split_frames

        self.cp.link.decoder.feed(data)
        found = False
        while (body := self.cp.link.decoder.next_frame()) is not None:
            outer = json.loads(body)
            if outer.get("type") == "record" and self.cp.link.records is not None:
                plain = self.cp.link.records.open(b64d(outer["data"]))
                for inner in split_frames(plain):
                    if json.loads(inner).get("rid") == rid:
                        found = True
            elif outer.get("rid") == rid:
                found = True
        return found

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


# --------------------------------------------------------------------------------------------------------------
# capture
# --------------------------------------------------------------------------------------------------------------

def capture(srv: ServerProcess, keys: list[Any]) -> tuple[list[bytes], list[bytes]]:
    """Normal sessions through TcpClient with a tracer: (clear frames, inner plaintext frames) the clients sent."""
    from securechat.net.tcp_client import TcpClient

    clear: list[bytes] = []
    inner: list[bytes] = []

    def tracer(entry: Any) -> None:
        if entry.direction == "send":
            (inner if entry.layer == "inner" else clear).append(bytes(entry.data))

    names = [f"cap{os.getpid() % 1000}{i}" for i in range(3)]
    clients = [TcpClient(*srv.address, server_key=srv.server_key, timeout=20, trace=tracer) for _ in names]
    try:
        for client, name, k in zip(clients, names, keys):
            client.register(name, PASSWORD, k)
            client.login(name, PASSWORD, k)
        a, b, c = clients
        a.who()
        a.status(names[1])
        for mode in ("server-key", "contributory", "contributory-xor", "hybrid"):
            try:
                opened = a.open_chat([names[1]], mode=mode)
                chat_id = opened.chat_id
                try:
                    a.wait_for_key(chat_id, a.chat_epoch(chat_id))
                except Exception:
                    pass
                a.send(chat_id, f"hello in {mode}")
                b.send(chat_id, "hi back") if chat_id in b.protocol.chats else None
                a.invite(chat_id, names[2])
                time.sleep(0.3)
                c.leave(chat_id) if chat_id in c.protocol.chats else None
                time.sleep(0.2)
            except Exception as exc:  # capture is best effort: a mode that fails still left frames behind
                print(f"capture: {mode}: {type(exc).__name__}: {exc}", file=sys.stderr)
        time.sleep(0.5)
        c.logout()
    finally:
        for client in clients:
            client.close()
    # de-duplicate, keep order
    return list(dict.fromkeys(clear)), list(dict.fromkeys(inner))


# --------------------------------------------------------------------------------------------------------------
# mutations
# --------------------------------------------------------------------------------------------------------------

TYPES = ["hello", "client_hello", "register", "register_proof", "login", "login_proof", "who", "status",
         "chat_open", "chat_send", "chat_invite", "chat_leave", "logout", "share_commit", "key_share",
         "key_confirm", "get_certificates", "record", "error", "chat_epoch", "presence", "admin_shutdown", ""]
WEIRD: list[Any] = [None, True, False, 0, -1, 2**64, 2**31, -(2**63), 1.5, float("1e308"), "", "x" * 70_000,
                    "\u202e", "A" * 64, [], [1, 2], {}, {"a": 1}, "AAAA", "====", 10**40, [None] * 1000,
                    "alice", ["alice", "alice"]]


def _byte_mutation(rng: random.Random, data: bytes, other: bytes) -> tuple[str, bytes]:
    b = bytearray(data)
    kind = rng.choice(["bitflip", "bitflip", "insert", "delete", "truncate", "length", "splice", "double",
                       "overwrite"])
    if kind == "bitflip" and b:
        for _ in range(rng.choice([1, 1, 2, 4, 8])):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == "insert":
        i = rng.randrange(len(b) + 1)
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.choice([1, 1, 3, 17, 300])))
    elif kind == "delete" and b:
        i = rng.randrange(len(b))
        del b[i:i + rng.choice([1, 1, 2, 8, 64])]
    elif kind == "truncate":
        b = b[:rng.randrange(len(b) + 1)]
    elif kind == "length":
        n = len(b) - 4
        new = rng.choice([0, 1, 3, max(0, n - 1), n + 1, n + 100, 2**14, 2**20, 2**20 + 2048, 2**31, 2**32 - 1])
        b[:4] = struct.pack(">I", new)
    elif kind == "splice":
        b = b[:rng.randrange(len(b) + 1)] + bytearray(other[rng.randrange(len(other) + 1):])
    elif kind == "double":
        b = b + bytearray(other)
    elif kind == "overwrite" and b:
        i = rng.randrange(len(b))
        for j in range(i, min(len(b), i + rng.choice([1, 4, 16]))):
            b[j] = rng.choice([0, 0xFF, 0x22, 0x5C, 0x7B, 0x7D, rng.randrange(256)])
    return kind, bytes(b)


def _json_mutation(rng: random.Random, data: bytes) -> tuple[str, bytes] | None:
    try:
        obj = json.loads(data[4:])
    except ValueError:
        return None
    if not isinstance(obj, dict) or not obj:
        return None
    key = rng.choice(list(obj))
    kind = rng.choice(["type_swap", "delete_field", "wrong_type", "huge", "extra_field", "nest", "dup_key",
                       "non_json_number"])
    if kind == "type_swap":
        obj["type"] = rng.choice(TYPES)
    elif kind == "delete_field":
        del obj[key]
    elif kind == "wrong_type":
        obj[key] = rng.choice(WEIRD)
    elif kind == "huge":
        obj[key] = rng.choice(["z" * rng.choice([1000, 20_000, 200_000]), 10 ** rng.choice([20, 300, 4000]),
                               list(range(rng.choice([100, 10_000]))), {str(i): i for i in range(2000)}])
    elif kind == "extra_field":
        obj[rng.choice(["sender", "admin", "alg", "x", "username", "epoch"])] = rng.choice(WEIRD)
    elif kind == "nest":
        obj[key] = "\x00NEST\x00"
    try:
        body = json.dumps(obj, separators=(",", ":")).encode()
    except ValueError:  # e.g. an int with too many digits for str()
        body = data[4:]
    if kind == "nest":  # built as text: json.dumps itself would recurse too deep
        depth = rng.choice([10, 100, 1000, 100_000])
        body = body.replace(b'"\\u0000NEST\\u0000"', b"[" * depth + b"1" + b"]" * depth)
    if kind == "dup_key":
        body = body[:-1] + b',"' + key.encode() + b'":' + json.dumps(rng.choice(WEIRD[:12])).encode() + b"}"
    elif kind == "non_json_number":
        body = body[:-1] + b',"n":' + rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1" * 5000]) + b"}"
    if len(body) > 1_000_000:
        body = body[:1_000_000]
    return kind, _frame(body)


def _json_only(rng: random.Random, corpus: list[bytes]) -> tuple[str, bytes] | None:
    out = _json_mutation(rng, rng.choice(corpus))
    return None if out is None else ("json:" + out[0], out[1])


def mutate(rng: random.Random, corpus: list[bytes]) -> tuple[str, bytes]:
    data, other = rng.choice(corpus), rng.choice(corpus)
    if rng.random() < 0.5:
        out = _json_mutation(rng, data)
        if out is not None:
            return "json:" + out[0], out[1]
    kind, mutated = _byte_mutation(rng, data, other)
    return "bytes:" + kind, mutated


# --------------------------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------------------------

def sanity(srv: ServerProcess, keys: Any, n: int) -> bool:
    """An honest user over TCP and another over WebSocket register, log in and list themselves."""
    from securechat.net.tcp_client import TcpClient

    urls = {"t": f"tcp://{srv.address[0]}:{srv.address[1]}"}
    if srv.ws_address is not None:
        urls["w"] = f"ws://{srv.ws_address[0]}:{srv.ws_address[1]}/securechat"
    for tag, url in urls.items():
        name = f"sane{os.getpid() % 1000}x{n}{tag}"
        try:
            with TcpClient(url=url, server_key=srv.server_key, timeout=20) as client:
                client.register(name, PASSWORD, keys)
                client.login(name, PASSWORD, keys)
                if name not in client.who():
                    return False
        except Exception as exc:
            print(f"sanity failed ({url}): {type(exc).__name__}: {exc}", file=sys.stderr)
            return False
    return True


def crash_lines(text: str) -> list[str]:
    return [line for line in text.splitlines()
            if "Traceback" in line or "internal error" in line or "job " in line and "failed" in line]


def run(frames: int, seconds: float, seed: int, quiet: bool = False, ws_share: float = 0.08) -> dict[str, Any]:
    """*ws_share*: the fraction of shots that go to the WebSocket port."""
    from securechat.crypto.signatures import SignatureScheme
    from securechat.protocol.identity import generate_user_keys

    rng = random.Random(seed)
    keys = [generate_user_keys(SignatureScheme.ED25519) for _ in range(3)]
    srv = ServerProcess()
    kinds: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    hangs: list[str] = []
    sanity_failures = 0
    sanity_runs = 0
    tried = 0
    sessions = 0
    started = time.monotonic()
    rid = 1_000_000
    try:
        clear, inner = capture(srv, keys)
        if not sanity(srv, keys[0], 0):
            raise RuntimeError("sanity failed before fuzzing")
        sanity_runs += 1
        time.sleep(0.5)
        rss0, _ = srv.rss_kib()
        fds0 = srv.fds()
        live: Channel | None = None
        logged_in = False
        next_sanity = time.monotonic() + SANITY_EVERY_S
        while tried < frames and time.monotonic() - started < seconds and srv.alive():
            roll = rng.random()
            if roll < 0.12:
                # clear mutants on a fresh connection, half-closed: an answer or a close within the deadline
                kind, data = mutate(rng, clear)
                kinds["clear:" + kind] += 1
                tried += 1
                outcomes[_clear_shot(srv, data)] += 1
                if outcomes["hang"] > len(hangs):
                    hangs.append("clear:" + kind)
            elif roll < 0.12 + ws_share:
                # WebSocket mutants on a fresh connection to the WebSocket port, half-closed (PROTOCOL.md 15)
                kind, data, upgrade = _ws_mutant(rng, clear)
                kinds[kind] += 1
                tried += 1
                result = _ws_shot(srv, data, upgrade)
                outcomes[result] += 1
                if result == "hang":
                    hangs.append(kind)
            elif roll < 0.14 + ws_share:
                # a sealed record mutated after sealing: the AEAD must refuse it (bad_record, closed)
                ch = Channel(srv.address, srv.server_key)
                try:
                    kind, data = _byte_mutation(rng, ch.sealed(rng.choice(inner)), rng.choice(clear))
                    kinds["record:" + kind] += 1
                    tried += 1
                    ch.sock.sendall(data)
                    result = ch.probe(False, rid := rid + 1)
                    outcomes["record:" + result] += 1
                    if result == "hang":
                        hangs.append("record:" + kind)
                finally:
                    ch.close()
            else:
                if live is None:
                    live = Channel(srv.address, srv.server_key)
                    sessions += 1
                    logged_in = rng.random() < 0.8
                    if logged_in:
                        name = f"fz{seed}s{sessions}"
                        live.call(lambda p: p.register(name, PASSWORD, keys[1]), ("RegistrationSucceeded",))
                        ev_ = live.call(lambda p: p.login(name, PASSWORD, keys[1]), ("LoggedIn",))
                        logged_in = type(ev_).__name__ == "LoggedIn"
                # JSON-level mutants keep a valid channel (the server answers and keeps the connection), a
                # byte-level mutant usually breaks the inner framing (fatal): it goes last in its batch.
                batch = [m for m in (_json_only(rng, inner) for _ in range(BATCH - 1)) if m is not None]
                batch.append(mutate(rng, inner))
                try:
                    live.sock.sendall(b"".join(live.sealed(data) for _, data in batch))
                except OSError:
                    pass
                for kind, _ in batch:
                    kinds["inner:" + kind] += 1
                tried += len(batch)
                result = live.probe(logged_in, rid := rid + 1)
                outcomes["inner-batch:" + result] += 1
                if result == "hang":
                    hangs.append("inner-batch:" + ",".join(k for k, _ in batch[-3:]))
                if result != "ok":
                    live.close()
                    live = None
            if time.monotonic() >= next_sanity:
                sanity_runs += 1
                sanity_failures += not sanity(srv, keys[0], sanity_runs)
                next_sanity = time.monotonic() + SANITY_EVERY_S
                if not quiet:
                    rss, hwm = srv.rss_kib()
                    print(f"  {tried} frames, {time.monotonic() - started:.0f} s, rss {rss // 1024} MiB, "
                          f"hangs {len(hangs)}, sanity failures {sanity_failures}", flush=True)
        if live is not None:
            live.close()
        sanity_runs += 1
        sanity_failures += not sanity(srv, keys[0], sanity_runs)
        time.sleep(1.0)
        rss1, hwm = srv.rss_kib()
        fds1 = srv.fds()
        alive = srv.alive()
    finally:
        rc = srv.stop()
    errors = crash_lines(srv.stderr_text())
    elapsed = time.monotonic() - started
    report = {
        "seed": seed, "frames_tried": tried, "seconds": round(elapsed, 1),
        "frames_per_second": round(tried / elapsed, 1) if elapsed else 0,
        "clear_frames_captured": len(clear), "inner_frames_captured": len(inner), "live_sessions": sessions,
        "crashes": (0 if alive else 1) + len([e for e in errors if "Traceback" in e or "internal error" in e]),
        "server_alive_at_end": alive, "server_exit_code": rc, "stderr_error_lines": errors[:20],
        "hangs": len(hangs), "hang_kinds": hangs[:20],
        "sanity_runs": sanity_runs, "sanity_failures": sanity_failures,
        "rss_start_mib": round(rss0 / 1024, 1), "rss_end_mib": round(rss1 / 1024, 1),
        "rss_growth_mib": round((rss1 - rss0) / 1024, 1), "rss_peak_mib": round(hwm / 1024, 1),
        "fds_start": fds0, "fds_end": fds1,
        "outcomes": dict(sorted(outcomes.items())),
        "mutations": dict(sorted(kinds.items())),
    }
    return report


WS_REQUEST = opening_request()


def _ws_mutant(rng: random.Random, clear: list[bytes]) -> tuple[str, bytes, bool]:
    """(kind, bytes, upgrade first?) for one WebSocket shot."""
    if rng.random() < 0.3:
        kind, data = _byte_mutation(rng, WS_REQUEST, rng.choice(clear))
        return "ws-handshake:" + kind, data, False
    payload = rng.choice(clear)
    choice = rng.choice(["unmasked", "text", "rsv", "opcode", "long-ping", "continuation", "interleaved",
                         "announce-oversize", "two-frames", "short-prefix", "bytes", "bytes"])

    def f(opcode: int, payload: bytes, **kw: Any) -> bytes:
        return client_frame(opcode, payload, random_bytes=rng.randbytes, **kw)

    data = {
        "unmasked": lambda: f(2, payload, mask=False),
        "text": lambda: f(1, payload),
        "rsv": lambda: f(2, payload, rsv=rng.randrange(1, 8)),
        "opcode": lambda: f(rng.choice([3, 4, 5, 6, 7, 11, 12, 13, 14, 15]), payload),
        "long-ping": lambda: f(9, payload[:200].ljust(126, b"p")),
        "continuation": lambda: f(0, payload),
        "interleaved": lambda: f(2, payload[:3], fin=False) + f(2, payload[3:]),
        "announce-oversize": lambda: f(2, payload, announce=rng.choice([2**20 + 1100, 2**32, 2**63 - 1])),
        "two-frames": lambda: f(2, payload + payload),
        "short-prefix": lambda: f(2, payload[:-1]),
    }.get(choice)
    if data is None:
        kind, mutated = _byte_mutation(rng, f(2, payload), rng.choice(clear))
        return "ws-frame:bytes:" + kind, mutated, True
    return "ws-frame:" + choice, data(), True


def _ws_shot(srv: ServerProcess, data: bytes, upgrade: bool) -> str:
    """A fresh WebSocket connection (upgraded first if asked), *data*, half-close, then wait for the close."""
    assert srv.ws_address is not None
    try:
        sock = socket.create_connection(srv.ws_address, timeout=DEADLINE_SECONDS)
    except OSError:
        return "connect_refused"
    try:
        if upgrade:
            sock.sendall(WS_REQUEST)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    return "ws:upgrade-refused"  # must not happen: counted apart, visible in the report
                head += chunk
            if not head.startswith(b"HTTP/1.1 101 "):
                return "ws:upgrade-refused"
        return "ws:" + _await_close(sock, data).removeprefix("clear:")
    except OSError:
        return "ws:reset"
    finally:
        sock.close()


def _clear_shot(srv: ServerProcess, data: bytes) -> str:
    """Send *data* on a fresh connection, half-close, and wait for the server to close (it may answer first)."""
    try:
        sock = socket.create_connection(srv.address, timeout=DEADLINE_SECONDS)
    except OSError:
        return "connect_refused"
    try:
        return _await_close(sock, data)
    finally:
        sock.close()


def _await_close(sock: socket.socket, data: bytes) -> str:
    try:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + DEADLINE_SECONDS
        answered = False
        while time.monotonic() < deadline:
            if not select.select([sock], [], [], max(0.0, deadline - time.monotonic()))[0]:
                break
            chunk = sock.recv(1 << 16)
            if not chunk:
                return "clear:answered+closed" if answered else "clear:closed"
            answered = True
        return "hang"
    except OSError:
        return "clear:reset"


def text_report(r: dict[str, Any]) -> str:
    lines = [
        f"fuzz_live: {r['frames_tried']} mutated frames in {r['seconds']} s ({r['frames_per_second']}/s), "
        f"seed {r['seed']}",
        f"  corpus: {r['clear_frames_captured']} clear + {r['inner_frames_captured']} inner frames captured; "
        f"{r['live_sessions']} live sessions",
        f"  crashes: {r['crashes']} (server alive at end: {r['server_alive_at_end']})",
        f"  hangs: {r['hangs']}",
        f"  sanity: {r['sanity_runs']} runs, {r['sanity_failures']} failures",
        f"  server RSS: {r['rss_start_mib']} MiB -> {r['rss_end_mib']} MiB (growth {r['rss_growth_mib']} MiB, "
        f"peak {r['rss_peak_mib']} MiB); descriptors {r['fds_start']} -> {r['fds_end']}",
        "  outcomes: " + ", ".join(f"{k}={v}" for k, v in r["outcomes"].items()),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=480.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", default="", help="write the report here too")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--ws-share", type=float, default=0.08, help="fraction of shots at the WebSocket port")
    args = ap.parse_args(argv)
    if args.serve:
        return serve()
    report = run(args.frames, args.seconds, args.seed, quiet=args.quiet, ws_share=args.ws_share)
    print(text_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["crashes"] == 0 and report["hangs"] == 0 and report["sanity_failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
