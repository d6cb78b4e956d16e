"""An interception proxy on real sockets, a LAB TOOL (PROTOCOL.md 16.3): ``python -m securechat.labs.proxy``.

Owns: relaying TCP connections from securechat clients to a server frame by frame, showing each frame (the
clear handshake fields; records as sizes and ciphertext, or, with a client key log, the inner frames they
carry), and the tampering hooks the labs use: drop, delay, replay, reorder or bit-flip the n-th record in one
direction. What each tampering does to the connection is in PROTOCOL.md 5.2 (``bad_record``, fatal) and 16.3.

The proxy never holds a key unless the client wrote one to the key log the user named (``securechat-client
--keylog FILE``); without it, it sees exactly what any network attacker sees. Passwords are shown redacted even
then. Every string from the wire goes through ``display.printable`` before it is shown. Must not: forge or
re-encrypt anything (a tampered record is the original bytes, changed), or listen beyond the given address.
"""

from __future__ import annotations

import argparse
import base64
import json
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..crypto.encoding import fingerprint
from ..display import printable
from ..errors import SecureChatError
from ..protocol.channel import RecordLayer
from ..protocol.codec import MAX_FRAME_BYTES, encode_record_frame, record_payload, split_frames
from .keylog import ChannelSecrets, read_keylog

C2S, S2C = "c2s", "s2c"
ACTIONS = ("drop", "delay", "replay", "reorder", "flip")
_LENGTH = struct.Struct(">I")
_SHOWN_BYTES = 24  # of a ciphertext or a long base64 value
_REDACTED = {"password"}


@dataclass(frozen=True)
class Rule:
    """Tamper with record number *index* (0-based, records only) travelling in *direction*.

    ``drop``: never forward it. ``delay``: wait *seconds* first. ``replay``: forward it twice. ``reorder``: hold
    it and forward it after the next record of that direction. ``flip``: flip the lowest bit of its first
    ciphertext byte.
    """

    direction: str
    index: int
    action: str
    seconds: float = 0.0

    @classmethod
    def parse(cls, action: str, text: str) -> Rule:
        """``c2s:3`` or, for delay, ``s2c:1:2.5``."""
        parts = text.split(":")
        want = 3 if action == "delay" else 2
        if len(parts) != want or parts[0] not in (C2S, S2C) or not parts[1].isdigit():
            form = "DIR:N:SECONDS" if action == "delay" else "DIR:N"
            raise ValueError(f"--{action} takes {form} with DIR c2s or s2c and N a record number, not {text!r}")
        seconds = float(parts[2]) if action == "delay" else 0.0
        if not 0.0 <= seconds <= 600.0:
            raise ValueError("a delay is between 0 and 600 seconds")
        return cls(direction=parts[0], index=int(parts[1]), action=action, seconds=seconds)


def flip_bit(frame: bytes) -> bytes:
    """The record *frame* with the lowest bit of its first ciphertext byte flipped (still a valid frame)."""
    sealed = record_payload(frame[4:])
    if not sealed:
        return frame
    return encode_record_frame(bytes([sealed[0] ^ 1]) + sealed[1:])


def _short(value: object, full: bool = False) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    if full or len(text) <= 2 * _SHOWN_BYTES:
        return text
    return f"{text[:2 * _SHOWN_BYTES]}...({len(text)} chars)"


def describe_fields(obj: dict[str, object], *, full: bool = False) -> str:
    """``type key=value ...`` with long values shortened (unless *full*) and passwords redacted; escaped for a
    terminal."""
    parts = [str(obj.get("type", "?"))]
    for key, value in obj.items():
        if key == "type":
            continue
        if key in _REDACTED and isinstance(value, str):
            parts.append(f"{key}=<redacted, {len(value)} chars>")
        else:
            parts.append(f"{key}={_short(value, full)}")
        if key == "server_key" and isinstance(value, str):
            try:
                parts.append(f"(fingerprint {fingerprint(base64.b64decode(value))})")
            except ValueError:
                pass
    return printable(" ".join(parts))


@dataclass
class _Connection:
    """One relayed client connection: its sockets, the client random, and (with a key log) record openers."""

    number: int
    client: socket.socket
    upstream: socket.socket
    client_random: bytes | None = None
    openers: dict[str, RecordLayer] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {C2S: 0, S2C: 0})
    held: dict[str, bytes | None] = field(default_factory=lambda: {C2S: None, S2C: None})
    undecryptable: set[str] = field(default_factory=set)


class InterceptionProxy:
    """Listen on (host, port), relay every connection to *target*; ``start()`` returns once listening.

    Args:
        keylog: path of a client key log (``securechat.labs.keylog``): records of logged connections are opened
            and their inner frames shown. None: records are shown as ciphertext only.
        rules: tampering to apply (``Rule``).
        show: receives every line the proxy prints (default: standard output).
    """

    def __init__(self, target: tuple[str, int], *, host: str = "127.0.0.1", port: int = 0,
                 keylog: str | Path | None = None, rules: tuple[Rule, ...] = (),
                 show: Callable[[str], None] | None = None, full: bool = False) -> None:
        self.target = target
        self.full = full  # show long values (keys, signatures, ciphertexts) whole instead of shortened
        self._host, self._port = host, port
        self.keylog = Path(keylog) if keylog else None
        self.rules: list[Rule] = list(rules)
        self._show = show or (lambda line: print(line, flush=True))
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._conns: list[_Connection] = []
        self.address: tuple[str, int] = (host, port)

    def start(self) -> InterceptionProxy:
        listener = socket.socket(socket.AF_INET6 if ":" in self._host else socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self._host, self._port))
        listener.listen(16)
        listener.settimeout(0.2)
        self._listener = listener
        self.address = listener.getsockname()[:2]
        self._spawn(self._accept_loop, "accept")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets + ([self._listener] if self._listener else []):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> InterceptionProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_rule(self, rule: Rule) -> None:
        """Add a tampering rule while running (the CLI's commands, a test's hook)."""
        with self._lock:
            self.rules.append(rule)

    def records_seen(self, direction: str) -> int:
        """How many records of *direction* the newest connection has relayed: the index of its next one."""
        with self._lock:
            conn = self._conns[-1] if self._conns else None
            return conn.counts[direction] if conn is not None else 0

    def command(self, line: str) -> str:
        """Run one command, e.g. ``flip c2s next`` or ``delay s2c 4 2.5``; returns what to show.

        ``next`` means the newest connection's next record of that direction.
        """
        words = line.split()
        if not words:
            return ""
        if words[0] not in ACTIONS or len(words) < 3:
            return f"commands: {' | '.join(ACTIONS)} c2s|s2c N|next [seconds]"
        if words[1] in (C2S, S2C) and words[2] == "next":
            words[2] = str(self.records_seen(words[1]))
        try:
            rule = Rule.parse(words[0], ":".join(words[1:]))
        except ValueError as exc:
            return str(exc)
        self.add_rule(rule)
        return f"armed: {rule.action} {rule.direction} record #{rule.index}"

    # --- relaying -----------------------------------------------------------------------------------------

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=f"securechat-proxy-{name}", daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10.0)
            except OSError as exc:
                self._show(f"[proxy] cannot reach {self.target[0]}:{self.target[1]}: {exc}")
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                conn = _Connection(number=len(self._conns) + 1, client=client, upstream=upstream)
                self._conns.append(conn)
                self._sockets += [client, upstream]
            self._show(f"[conn {conn.number}] opened, relaying to {self.target[0]}:{self.target[1]}")
            self._spawn(self._pump, f"{conn.number}-c2s", conn, C2S, client, upstream)
            self._spawn(self._pump, f"{conn.number}-s2c", conn, S2C, upstream, client)

    def _pump(self, conn: _Connection, direction: str, source: socket.socket, sink: socket.socket) -> None:
        buffer = bytearray()
        try:
            while not self._stopping.is_set():
                data = source.recv(65536)
                if not data:
                    break
                buffer += data
                while len(buffer) >= 4:
                    (length,) = _LENGTH.unpack_from(buffer)
                    if length > MAX_FRAME_BYTES:  # not securechat: relay the rest unparsed
                        self._show(f"[conn {conn.number}] {direction} frame of {length} bytes: relaying raw")
                        sink.sendall(bytes(buffer))
                        buffer.clear()
                        break
                    if len(buffer) < 4 + length:
                        break
                    frame = bytes(buffer[:4 + length])
                    del buffer[:4 + length]
                    self._relay_frame(conn, direction, frame, sink)
        except OSError:
            pass
        finally:
            self._show(f"[conn {conn.number}] {direction} closed")
            for sock in (sink, source):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _relay_frame(self, conn: _Connection, direction: str, frame: bytes, sink: socket.socket) -> None:
        sealed = record_payload(frame[4:])
        if sealed is None:
            self._show_clear(conn, direction, frame[4:])
            sink.sendall(frame)
            return
        index = conn.counts[direction]
        conn.counts[direction] += 1
        self._show(f"[conn {conn.number}] {direction} record #{index} ({len(sealed)} bytes sealed) "
                   f"{sealed[:_SHOWN_BYTES].hex()}...")
        self._show_inner(conn, direction, sealed)
        out = [frame]
        with self._lock:
            rules = list(self.rules)
        for rule in rules:
            if rule.direction != direction or rule.index != index:
                continue
            self._show(f"[conn {conn.number}] {direction} record #{index}: TAMPER {rule.action}"
                       + (f" {rule.seconds}s" if rule.action == "delay" else ""))
            if rule.action == "drop":
                out = []
            elif rule.action == "delay":
                self._stopping.wait(rule.seconds)
            elif rule.action == "replay":
                out = out + out
            elif rule.action == "flip":
                out = [flip_bit(f) for f in out]
            elif rule.action == "reorder":
                conn.held[direction], out = frame, []
        held = conn.held[direction]
        if out and held is not None:
            out.append(held)  # a record held by "reorder" goes right after the next one
            conn.held[direction] = None
        for piece in out:
            sink.sendall(piece)

    # --- showing --------------------------------------------------------------------------------------------

    def _show_clear(self, conn: _Connection, direction: str, body: bytes) -> None:
        try:
            obj = json.loads(body)
        except ValueError:
            self._show(f"[conn {conn.number}] {direction} clear frame, not JSON ({len(body)} bytes)")
            return
        if not isinstance(obj, dict):
            return
        if obj.get("type") == "client_hello" and isinstance(obj.get("random"), str):
            try:
                conn.client_random = base64.b64decode(obj["random"])
            except ValueError:
                pass
        self._show(f"[conn {conn.number}] {direction} {describe_fields(obj, full=self.full)}")

    def _opener(self, conn: _Connection, direction: str) -> RecordLayer | None:
        """The record opener of *direction*, once the client has logged this connection's keys."""
        with self._lock:  # both directions' threads may look the keys up at once
            if direction in conn.openers:
                return conn.openers[direction]
            if self.keylog is None or conn.client_random is None:
                return None
            secrets: ChannelSecrets | None = read_keylog(self.keylog).get(conn.client_random)
            if secrets is None:
                return None
            for side, key in ((C2S, secrets.client_to_server), (S2C, secrets.server_to_client)):
                conn.openers[side] = RecordLayer(send_key=bytes(32), receive_key=key)
            return conn.openers[direction]

    def _show_inner(self, conn: _Connection, direction: str, sealed: bytes) -> None:
        opener = self._opener(conn, direction)
        if opener is None or direction in conn.undecryptable:
            return
        try:
            plaintext = opener.open(sealed)
            bodies = split_frames(plaintext)
        except SecureChatError:
            # a tampered, dropped or reordered record: the counter is off from here on, as for the receiver
            conn.undecryptable.add(direction)
            self._show(f"[conn {conn.number}] {direction}   (record does not open with the logged key)")
            return
        for body in bodies:
            try:
                obj = json.loads(body)
            except ValueError:
                continue
            if isinstance(obj, dict):
                self._show(f"[conn {conn.number}] {direction}   inner {describe_fields(obj, full=self.full)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m securechat.labs.proxy",
        description="LAB TOOL: relay securechat clients to a server, show every frame, optionally tamper.")
    parser.add_argument("--listen", type=int, required=True, metavar="PORT", help="port to listen on (0: any)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--to", required=True, metavar="HOST:PORT", help="the securechat server")
    parser.add_argument("--keylog", metavar="FILE",
                        help="a client key log (securechat-client --keylog FILE): show the records' inner frames")
    parser.add_argument("--full", action="store_true",
                        help="show long values (keys, signatures, ciphertexts) whole instead of shortened")
    for action in ACTIONS:
        form = "DIR:N:SECONDS" if action == "delay" else "DIR:N"
        parser.add_argument(f"--{action}", action="append", default=[], metavar=form,
                            help=f"{action} record N (0-based) in direction DIR (c2s or s2c)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    host, _, port = args.to.rpartition(":")
    try:
        rules = tuple(Rule.parse(action, text) for action in ACTIONS for text in getattr(args, action))
        target = (host.strip("[]") or "127.0.0.1", int(port))
    except ValueError as exc:
        print(f"proxy: {exc}", file=sys.stderr)
        return 2
    proxy = InterceptionProxy(target, host=args.host, port=args.listen, keylog=args.keylog, rules=rules,
                              full=args.full)
    try:
        proxy.start()
    except OSError as exc:
        print(f"proxy: cannot listen on {args.host}:{args.listen}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"proxy on {proxy.address[0]}:{proxy.address[1]} -> {target[0]}:{target[1]}"
          f"{'  (key log ' + str(args.keylog) + ')' if args.keylog else ''}", flush=True)
    print(f"commands on standard input: {' | '.join(ACTIONS)} c2s|s2c N|next [seconds]", flush=True)
    try:
        for line in sys.stdin:
            reply = proxy.command(line)
            if reply:
                print(reply, flush=True)
        while True:  # standard input closed: keep relaying until Ctrl-C
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        proxy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
