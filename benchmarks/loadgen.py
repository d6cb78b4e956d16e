"""Load generation: many clients driven from ONE thread over raw sockets with selectors (not TcpClient threads).

Setup (handshake, login, chat keys) always runs the real ``ClientProtocol``. The relay phase then has three
endpoint kinds sharing one runner:

* ``FastEndpoint`` (securechat, pre-sealed): the chat payload (ciphertext + signature) was produced ahead of
  time by ``ChatBook.seal``; per message the generator stamps seq, seals ONE channel record per message with the
  client's real ``RecordLayer`` (AES-256-GCM), and on receipt opens the records and reads sender/seq. Receivers
  do not verify or decrypt the end-to-end payload; the server cannot tell the difference.
* ``FullEndpoint`` (securechat, end to end): ``ClientProtocol.send_chat`` (encrypt + sign) and
  ``receive_data`` (record, strict parsing, signature verify, decrypt) for every message.
* ``PlainEndpoint``: the plaintext relay of ``plain_relay.py``.

A securechat ``Client`` may connect to the server's WebSocket port instead (``ws=True``, docs/PROTOCOL.md 15):
its ``sock`` is then a ``WsSocket``: the opening handshake is the client library's ``WsClientEndpoint``; after it,
the generator masks and unframes with a minimal codec of its own (RFC 6455 5.2-5.3: masked binary frames out,
unmasked binary, ping and close frames in), so that the ONE generator thread measures the server rather than
wsproto's per-frame cost in the generator. Every endpoint kind runs unchanged over WebSocket.
"""

from __future__ import annotations

import base64
import json
import os
import selectors
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from securechat.crypto import aead
from securechat.protocol import events as ev
from securechat.protocol import messages as m
from securechat.protocol.client import ClientProtocol
from securechat.protocol.codec import encode_frame, split_frames
from securechat.net.ws import WsClientEndpoint, WsState
from securechat.protocol.identity import UserKeys

from .server_proc import PASSWORD, user_name

_LEN = struct.Struct(">I")
READ = 256 * 1024
ROOT = Path(__file__).resolve().parent.parent


# --- the server process -------------------------------------------------------------------------------------------


class ServerHandle:
    """The server under test in a subprocess; ``stop()`` closes its stdin and waits (kills after 10 s)."""

    def __init__(self, kind: str, keyfile: Path, *, users: int = 0, scrypt: str = "fast",
                 unlimited_rate: bool = False, extra: tuple[str, ...] = ()) -> None:
        cmd = [sys.executable, "-m", "benchmarks.server_proc", kind, str(keyfile), "--users", str(users),
               "--scrypt", scrypt, *extra]
        if kind == "securechat":
            cmd += ["--aead-backend", aead.backend()]  # the server uses the generator's AEAD backend
        if unlimited_rate:
            cmd.append("--unlimited-rate")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        info = json.loads(self.proc.stdout.readline())
        self.port: int = info["port"]
        self.ws_port: int | None = info.get("ws_port")
        self.pid = self.proc.pid
        self.server_key = (bytes.fromhex(info["server_key"]), info["scheme"]) if "server_key" in info else None

    def rss_mb(self) -> float:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")

    def cpu_seconds(self) -> float:
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            return float("nan")

    def stop(self) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


# --- securechat clients through ClientProtocol ----------------------------------------------------------------------


class WsSocket:
    """The parts of a socket the generator uses, over a WebSocket connection (one frame per binary message).

    ``send`` frames all it is given and writes it with ``sendall`` (the server always reads, so this never
    deadlocks); ``recv`` returns the securechat bytes of whole messages, and raises BlockingIOError when the
    bytes read completed none on a non-blocking socket (``b""`` stays end of stream).
    """

    def __init__(self, port: int) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._ws = WsClientEndpoint(f"127.0.0.1:{port}", time.time())
        self._sock.sendall(self._ws.data_to_send())
        while self._ws.state is WsState.HANDSHAKE:
            data = self._sock.recv(READ)
            if not data:
                raise ConnectionError("WebSocket handshake: connection closed")
            self._ws.receive_data(data, time.time())
        if self._ws.state is not WsState.OPEN:
            raise ConnectionError(f"WebSocket handshake refused: {self._ws.refused}")
        self._early = self._ws.app_data()
        self._buffer = bytearray()

    def fileno(self) -> int:
        return self._sock.fileno()

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def close(self) -> None:
        self._sock.close()

    def sendall(self, data: bytes) -> None:
        out = bytearray()
        offset = 0
        while offset < len(data):  # one masked binary message per securechat frame (PROTOCOL.md 15.3)
            end = offset + 4 + _LEN.unpack_from(data, offset)[0]
            out += _masked(0x82, data[offset:end])
            offset = end
        self._sock.sendall(out)

    def send(self, data: bytes | bytearray) -> int:
        blocking = self._sock.gettimeout()
        self._sock.setblocking(True)
        try:
            self.sendall(bytes(data))
        finally:
            self._sock.settimeout(blocking)
        return len(data)

    def recv(self, size: int) -> bytes:
        if self._early:
            early, self._early = self._early, b""
            return early
        while True:
            raw = self._sock.recv(size)
            if not raw:
                return b""
            self._buffer += raw
            data, closed = self._unframe()
            if data or closed:
                return data
            if self._sock.gettimeout() == 0.0:
                raise BlockingIOError("a partial WebSocket message")

    def _unframe(self) -> tuple[bytes, bool]:
        """Whole server frames out of the buffer: (binary payloads, closed?); pings are answered."""
        buf, app, offset = self._buffer, bytearray(), 0
        while len(buf) - offset >= 2:
            opcode, n, head = buf[offset] & 0x0F, buf[offset + 1] & 0x7F, 2
            if n == 126:
                if len(buf) - offset < 4:
                    break
                n, head = int.from_bytes(buf[offset + 2:offset + 4], "big"), 4
            elif n == 127:
                if len(buf) - offset < 10:
                    break
                n, head = int.from_bytes(buf[offset + 2:offset + 10], "big"), 10
            if len(buf) - offset < head + n:
                break
            payload = bytes(buf[offset + head:offset + head + n])
            offset += head + n
            if opcode == 0x2:
                app += payload
            elif opcode == 0x9:
                self._sock.sendall(_masked(0x8A, payload))
            elif opcode == 0x8:
                del buf[:offset]
                return bytes(app), True
        del buf[:offset]
        return bytes(app), False


def _masked(first: int, payload: bytes) -> bytes:
    """A client frame: FIN + opcode, masked with a random key (RFC 6455 5.3)."""
    n = len(payload)
    if n < 126:
        head = bytes((first, 0x80 | n))
    elif n < 1 << 16:
        head = bytes((first, 0xFE)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, 0xFF)) + n.to_bytes(8, "big")
    key = os.urandom(4)
    stream = (key * (n // 4 + 1))[:n]
    return head + key + (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


class Client:
    def __init__(self, idx: int, port: int, server_key: tuple[bytes, str] | None, *, ws: bool = False,
                 source: str = "127.0.0.1") -> None:
        self.idx, self.name = idx, user_name(idx)
        self.sock: socket.socket | WsSocket
        if ws:
            self.sock = WsSocket(port)
        else:
            # *source*: another loopback address (127.0.0.2, ...) stands for another machine (fairness benchmark)
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.proto = ClientProtocol(server_key=server_key)
        self.events: list[ev.Event] = []
        self.closed = False

    def flush(self) -> None:
        out = self.proto.data_to_send()
        if out and not self.closed:
            self.sock.sendall(out)

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass


def pump(clients: list[Client], done: Callable[[], bool], timeout: float, what: str,
         on_data: Callable[[Client, bytes], None] | None = None) -> None:
    """Drive every client's ClientProtocol until ``done()``; raises TimeoutError after *timeout* seconds."""
    by_fd = {c.sock.fileno(): c for c in clients if not c.closed}
    sel = selectors.DefaultSelector()
    for c in by_fd.values():
        sel.register(c.sock, selectors.EVENT_READ, c)
    try:
        deadline = time.monotonic() + timeout
        while True:
            for c in clients:
                c.flush()
            if done():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not done within {timeout} s")
            for key, _ in sel.select(0.05):
                c = key.data
                try:
                    data = c.sock.recv(READ)
                except OSError:
                    data = b""
                if on_data is not None:
                    on_data(c, data)
                c.proto.receive_data(data, time.time())
                c.events.extend(iter(c.proto.next_event, None))
                if not data:
                    sel.unregister(c.sock)
                    c.closed = True
    finally:
        sel.close()


def connect_and_login(port: int, server_key: tuple[bytes, str] | None, keys: UserKeys, indices: range,
                      timeout: float = 120.0, *, ws: bool = False) -> list[Client]:
    """*ws*: *port* is the server's WebSocket port (docs/PROTOCOL.md 15)."""
    clients = [Client(i, port, server_key, ws=ws) for i in indices]
    for c in clients:
        c.proto.connect()
    pump(clients, lambda: all(any(isinstance(e, ev.HandshakeCompleted) for e in c.events) for c in clients),
         timeout, "handshakes")
    login(clients, keys, timeout)
    return clients


def login(clients: list[Client], keys: UserKeys, timeout: float) -> None:
    for c in clients:
        c.proto.login(c.name, PASSWORD, keys)
    pump(clients, lambda: all(c.proto.username is not None for c in clients), timeout, "logins")


def open_chats(clients: list[Client], size: int, timeout: float = 120.0) -> list[list[Client]]:
    """Clients in consecutive groups of *size*; the first of each opens the chat; waits for every key."""
    groups = [clients[i:i + size] for i in range(0, len(clients) - size + 1, size)]
    for g in groups:
        g[0].proto.open_chat([c.name for c in g[1:]])
    members = [c for g in groups for c in g]
    pump(clients, lambda: all(c.proto.book and _own_chat(c) for c in members), timeout, "chat keys")
    return groups


def _own_chat(client: Client) -> str | None:
    """The client's first chat other than the lobby (PROTOCOL.md 7.8), or None."""
    book = client.proto.book
    return next((cid for cid in book.chats if cid != m.LOBBY_ID), None) if book is not None else None


def close_all(clients: list[Client]) -> None:
    for c in clients:
        c.close()


# --- relay-phase endpoints ------------------------------------------------------------------------------------------


class FastEndpoint:
    def __init__(self, client: Client, members: list[int], name_to_idx: dict[str, int]) -> None:
        proto = client.proto
        assert proto.book is not None and not proto.link.inner and not proto.link.decoder.buffered
        self.idx, self.sock, self.members = client.idx, client.sock, members
        assert proto.link.records is not None  # logged in: the channel is up
        self._records = proto.link.records
        self._names = name_to_idx
        self._buf = bytearray()
        chat_id = _own_chat(client)
        assert chat_id is not None
        sealed = proto.book.seal(chat_id, "pre-sealed benchmark message, about one line of chat text", None)
        body = encode_frame(sealed)[4:]
        head, tail = body.split(b'"seq":%d' % sealed.seq, 1)
        self._head, self._tail = head + b'"seq":', tail
        self.seq = sealed.seq
        self.errors = 0

    def make_send(self) -> tuple[int, bytes]:
        self.seq += 1
        body = self._head + str(self.seq).encode() + self._tail
        return self.seq, encode_frame(m.Record(data=self._records.seal(_LEN.pack(len(body)) + body)))

    def parse(self, data: bytes) -> list[tuple[int, int]]:
        buf = self._buf
        buf += data
        out: list[tuple[int, int]] = []
        offset = 0
        while len(buf) - offset >= 4:
            (n,) = _LEN.unpack_from(buf, offset)
            if len(buf) - offset - 4 < n:
                break
            record = json.loads(bytes(buf[offset + 4:offset + 4 + n]))
            offset += 4 + n
            for inner in split_frames(self._records.open(base64.b64decode(record["data"]))):
                msg = json.loads(inner)
                kind = msg["type"]
                if kind == "chat_message":
                    out.append((self._names[msg["sender"]], msg["seq"]))
                elif kind == "error":
                    self.errors += 1
        del buf[:offset]
        return out


class FullEndpoint:
    def __init__(self, client: Client, members: list[int], name_to_idx: dict[str, int]) -> None:
        self.client, self.idx, self.sock, self.members = client, client.idx, client.sock, members
        self._names = name_to_idx
        self._chat = _own_chat(client)
        self.errors = 0
        self.n = 0

    def make_send(self) -> tuple[int, bytes]:
        self.n += 1
        self.client.proto.send_chat(self._chat, f"message {self.n} from {self.client.name}, a line of chat text")
        return self.client.proto.book.chats[self._chat].sent_seq, self.client.proto.data_to_send()  # type: ignore

    def parse(self, data: bytes) -> list[tuple[int, int]]:
        proto = self.client.proto
        proto.receive_data(data, time.time())
        out = []
        for e in iter(proto.next_event, None):
            if isinstance(e, ev.ChatReceived):
                out.append((self._names[e.sender], e.seq))
            elif isinstance(e, (ev.RequestFailed, ev.MessageRejected)):
                self.errors += 1
        extra = proto.data_to_send()  # get_certificates for a new sender
        if extra:
            self.sock.sendall(extra)
        return out


class PlainEndpoint:
    BODY = base64.b64encode(os.urandom(96)).decode()  # about the size of a sealed, signed chat payload

    def __init__(self, idx: int, port: int, room: str, members: list[int]) -> None:
        self.idx, self.members, self.room = idx, members, room
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(self._frame({"type": "join", "name": user_name(idx), "rooms": [room]}))
        self._buf = bytearray()
        self.seq = 0
        self.errors = 0

    @staticmethod
    def _frame(obj: dict) -> bytes:
        body = json.dumps(obj, separators=(",", ":")).encode()
        return _LEN.pack(len(body)) + body

    def make_send(self) -> tuple[int, bytes]:
        self.seq += 1
        return self.seq, self._frame({"type": "send", "room": self.room, "seq": self.seq, "body": self.BODY})

    def parse(self, data: bytes) -> list[tuple[int, int]]:
        buf = self._buf
        buf += data
        out = []
        offset = 0
        while len(buf) - offset >= 4:
            (n,) = _LEN.unpack_from(buf, offset)
            if len(buf) - offset - 4 < n:
                break
            msg = json.loads(bytes(buf[offset + 4:offset + 4 + n]))
            offset += 4 + n
            out.append((int(msg["sender"][1:]), msg["seq"]))
        del buf[:offset]
        return out


# --- the runner -----------------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100 * len(s)))]


def run_relay(endpoints: list, *, duration: float, window: int | None = None, rate: float | None = None,
              warmup: float = 0.5, drain: float = 5.0, stop_when: Callable[[], bool] | None = None,
              sample: Callable[[], None] | None = None) -> dict:
    """Closed loop (*window* messages outstanding per sender) or open loop (*rate* messages/s offered in total).

    Each message counts as delivered once per other member of its chat; latency is receive time minus send
    time, both taken in this process. Stops sending after *duration* (or when ``stop_when()``), then drains.
    """
    by_idx = {e.idx: e for e in endpoints}
    for e in endpoints:
        e.sock.setblocking(False)
    sel = selectors.DefaultSelector()
    for e in endpoints:
        sel.register(e.sock, selectors.EVENT_READ, e)
    pending: dict[tuple[int, int], list] = {}   # (sender, seq) -> [send time, recipients left]
    outstanding = {e.idx: 0 for e in endpoints}
    out: dict[int, bytearray] = {}
    latencies: list[float] = []
    sent = delivered = counted = 0
    start = time.perf_counter()
    cpu_start = time.process_time()
    measure_from = start + warmup
    end_send = start + duration
    last_sample = start
    rr = 0
    stopped_at: float | None = None
    try:
        while True:
            now = time.perf_counter()
            sending = stopped_at is None
            if sending and (now >= end_send or (stop_when is not None and stop_when())):
                stopped_at = now
                sending = False
            if not sending and (not pending or now > stopped_at + drain):
                break
            if sample is not None and now - last_sample >= 1.0:
                sample()
                last_sample = now
            if sending:
                if window is not None:
                    batch = [(e, window - outstanding[e.idx]) for e in endpoints if outstanding[e.idx] < window]
                else:
                    due = int(rate * (now - start)) - sent  # type: ignore[operator]
                    batch = []
                    for _ in range(max(0, due)):
                        batch.append((endpoints[rr % len(endpoints)], 1))
                        rr += 1
                for e, k in batch:
                    chunks = []
                    for _ in range(k):
                        seq, data = e.make_send()
                        pending[(e.idx, seq)] = [time.perf_counter(), len(e.members) - 1]
                        chunks.append(data)
                    outstanding[e.idx] += k
                    sent += k
                    out.setdefault(e.idx, bytearray()).extend(b"".join(chunks))
            for idx in list(out):
                buf = out[idx]
                try:
                    n = by_idx[idx].sock.send(buf)
                except BlockingIOError:
                    n = 0
                del buf[:n]
                if not buf:
                    del out[idx]
            timeout = 0.0 if out else (0.002 if rate else 0.02)
            for key, _ in sel.select(timeout):
                e = key.data
                try:
                    data = e.sock.recv(READ)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(e.sock)
                    continue
                t = time.perf_counter()
                for sender, seq in e.parse(data):
                    p = pending.get((sender, seq))
                    if p is None:
                        continue
                    delivered += 1
                    if p[0] >= measure_from and (stopped_at is None or p[0] < stopped_at):
                        latencies.append(t - p[0])
                    if measure_from <= t and (stopped_at is None or t <= stopped_at):
                        counted += 1
                    p[1] -= 1
                    if p[1] == 0:
                        del pending[(sender, seq)]
                        outstanding[sender] -= 1
    finally:
        sel.close()
        for e in endpoints:
            e.sock.setblocking(True)
    window_s = (stopped_at or time.perf_counter()) - measure_from
    generator_cpu = (time.process_time() - cpu_start) / max(time.perf_counter() - start, 1e-9)
    lost = sum(p[1] for p in pending.values())
    return {
        "sent": sent, "deliveries": delivered, "lost": lost,
        "errors": sum(e.errors for e in endpoints),
        "deliveries_per_s": round(counted / window_s, 1) if window_s > 0 else 0.0,
        "messages_per_s": round(counted / window_s / max(1, len(endpoints[0].members) - 1), 1) if window_s > 0 else 0.0,
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "max_ms": round(max(latencies, default=float("nan")) * 1000, 2),
        "seconds": round(window_s, 2),
        "generator_cpu_s_per_s": round(generator_cpu, 2),
    }


# --- the login-burst helper process ---------------------------------------------------------------------------------


def burst_main() -> int:
    """``python -m benchmarks.loadgen PORT KEYHEX SCHEME KEYFILE START N``: connect N clients, log all in at once."""
    from .keyfile import load_keys

    port, keyhex, scheme, keyfile, first, n = sys.argv[1:7]
    keys = load_keys(Path(keyfile))
    server_key = (bytes.fromhex(keyhex), scheme)
    t0 = time.perf_counter()
    clients = [Client(i, int(port), server_key) for i in range(int(first), int(first) + int(n))]
    for c in clients:
        c.proto.connect()
    result: dict = {}
    try:
        pump(clients, lambda: all(any(isinstance(e, ev.HandshakeCompleted) for e in c.events) for c in clients),
             60, "handshakes")
        t1 = time.perf_counter()
        done_at: dict[int, float] = {}

        def note(c: Client, data: bytes) -> None:
            pass

        for c in clients:
            c.proto.login(c.name, PASSWORD, keys)

        def finished() -> bool:
            now = time.perf_counter()
            for c in clients:
                if c.idx not in done_at and (c.proto.username is not None or any(
                        isinstance(e, (ev.RequestFailed, ev.ConnectionClosed)) for e in c.events)):
                    done_at[c.idx] = now
            return len(done_at) == len(clients)

        pump(clients, finished, 170, "login burst", on_data=note)
        t2 = time.perf_counter()
        ok = sum(1 for c in clients if c.proto.username is not None)
        times = sorted(done_at.values())
        result = {"clients": len(clients), "logged_in": ok, "failed": len(clients) - ok,
                  "connect_handshake_s": round(t1 - t0, 2), "burst_s": round(t2 - t1, 2),
                  "first_login_s": round(times[0] - t1, 2), "median_login_s": round(times[len(times) // 2] - t1, 2)}
    except TimeoutError as exc:
        ok = sum(1 for c in clients if c.proto.username is not None)
        result = {"clients": len(clients), "logged_in": ok, "failed": len(clients) - ok, "error": str(exc)}
    finally:
        print(json.dumps(result), flush=True)
        close_all(clients)
    return 0


if __name__ == "__main__":
    sys.exit(burst_main())
