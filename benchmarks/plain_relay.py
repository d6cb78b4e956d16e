"""The ceiling: a plaintext relay of the same architecture as securechat's TcpServer (not project code).

One I/O thread reads every socket through a selector (``io="selectors"``, as TcpServer does; ``io="threads"``:
one reader thread per connection, TcpServer's design before) and moves bytes into one queue; ONE engine thread parses every frame (JSON, as the
real server does), fans out to the other members of the room, and writes everything queued for a connection in
one send per round (non-blocking first, a writer thread only for a slow reader's backlog). No handshake, no
records, no accounts: what is left is the cost of the architecture itself.

Wire: 4-byte big-endian length + JSON. First frame ``{"type":"join","name":..,"rooms":[..]}``; then
``{"type":"send","room":..,"seq":..,"body":..}`` is relayed as ``{"type":"msg","room":..,"sender":..,"seq":..,
"body":..}`` to every other member of the room.
"""

from __future__ import annotations

import itertools
import json
import queue
import selectors
import socket
import struct
import threading
from collections import defaultdict

_LEN = struct.Struct(">I")
READ_SIZE = 256 * 1024


class _Conn:
    def __init__(self, cid: int, sock: socket.socket) -> None:
        self.id, self.sock = cid, sock
        self.buf = bytearray()
        self.name = ""
        self.lock = threading.Lock()
        self.backlog = bytearray()
        self.wakeup = threading.Condition(self.lock)
        self.writer: threading.Thread | None = None
        self.closed = False


class PlainRelay:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, io: str = "selectors") -> None:
        if io not in ("selectors", "threads"):
            raise ValueError("io must be 'selectors' or 'threads'")
        self._io = io
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, port))
        self._listener.listen(512)
        self._listener.settimeout(0.2)
        self.address = self._listener.getsockname()[:2]
        self._inbound: queue.Queue = queue.Queue(20_000)
        self._conns: dict[int, _Conn] = {}
        self._rooms: dict[str, list[_Conn]] = defaultdict(list)
        self._ids = itertools.count(1)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> PlainRelay:
        for target in (self._io_loop if self._io == "selectors" else self._accept_loop, self._engine_loop):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._listener.close()
        for conn in list(self._conns.values()):
            self._close(conn)
        self._inbound.put(("stop", None, None))
        for t in self._threads:
            t.join(5)
        for conn in list(self._conns.values()):
            if conn.writer is not None:
                conn.writer.join(5)

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(next(self._ids), sock)
            self._inbound.put(("open", conn, None))
            threading.Thread(target=self._read_loop, args=(conn,), daemon=True).start()

    def _io_loop(self) -> None:
        sel = selectors.DefaultSelector()
        self._listener.setblocking(False)
        sel.register(self._listener, selectors.EVENT_READ, None)
        while not self._stopping.is_set():
            reads = []
            for key, _ in sel.select(0.2):
                if key.data is None:
                    try:
                        while True:
                            sock, _ = self._listener.accept()
                            sock.setblocking(True)
                            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                            conn = _Conn(next(self._ids), sock)
                            self._inbound.put(("open", conn, None))
                            sel.register(sock, selectors.EVENT_READ, conn)
                    except OSError:  # BlockingIOError: no more waiting; other: listener closed
                        continue
                conn = key.data
                try:
                    data = conn.sock.recv(READ_SIZE, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                reads.append((conn, data))
                if not data:
                    try:
                        sel.unregister(conn.sock)
                    except (KeyError, ValueError):
                        pass
            if reads:
                self._inbound.put(("reads", reads, None))
        sel.close()

    def _read_loop(self, conn: _Conn) -> None:
        while True:
            try:
                data = conn.sock.recv(READ_SIZE)
            except OSError:
                data = b""
            self._inbound.put(("data", conn, data))
            if not data:
                return

    def _engine_loop(self) -> None:
        while True:
            batch = [self._inbound.get()]
            while len(batch) < 512:
                try:
                    batch.append(self._inbound.get_nowait())
                except queue.Empty:
                    break
            out: dict[_Conn, list[bytes]] = defaultdict(list)
            items = []
            for kind, conn, data in batch:
                if kind == "reads":
                    items.extend(("data", c, d) for c, d in conn)
                else:
                    items.append((kind, conn, data))
            for kind, conn, data in items:
                if kind == "stop":
                    return
                if kind == "open":
                    self._conns[conn.id] = conn
                elif kind == "data":
                    if not data:
                        self._drop(conn)
                        continue
                    conn.buf += data
                    self._frames(conn, out)
            for conn, frames in out.items():
                self._send(conn, b"".join(frames))

    def _frames(self, conn: _Conn, out: dict[_Conn, list[bytes]]) -> None:
        buf = conn.buf
        offset = 0
        while len(buf) - offset >= 4:
            (n,) = _LEN.unpack_from(buf, offset)
            if len(buf) - offset - 4 < n:
                break
            msg = json.loads(bytes(buf[offset + 4:offset + 4 + n]))
            offset += 4 + n
            if msg.get("type") == "join":
                conn.name = str(msg["name"])
                for room in msg["rooms"]:
                    self._rooms[room].append(conn)
            elif msg.get("type") == "send":
                body = json.dumps({"type": "msg", "room": msg["room"], "sender": conn.name, "seq": msg["seq"],
                                   "body": msg["body"]}, separators=(",", ":")).encode()
                frame = _LEN.pack(len(body)) + body
                for member in self._rooms.get(msg["room"], ()):
                    if member is not conn:
                        out[member].append(frame)
        del buf[:offset]

    def _drop(self, conn: _Conn) -> None:
        self._conns.pop(conn.id, None)
        for members in self._rooms.values():
            if conn in members:
                members.remove(conn)
        self._close(conn)

    def _send(self, conn: _Conn, data: bytes) -> None:
        with conn.lock:
            if conn.closed:
                return
            if not conn.backlog:
                try:
                    sent = conn.sock.send(data, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    return
                data = data[sent:]
                if not data:
                    return
            conn.backlog += data
            if conn.writer is None:
                conn.writer = threading.Thread(target=self._write_loop, args=(conn,), daemon=True)
                conn.writer.start()
            conn.wakeup.notify()

    def _write_loop(self, conn: _Conn) -> None:
        while True:
            with conn.lock:
                while not conn.backlog and not conn.closed:
                    conn.wakeup.wait(1.0)
                if conn.closed:
                    return
                chunk = bytes(conn.backlog[:READ_SIZE])
            try:
                conn.sock.sendall(chunk)
            except OSError:
                return
            with conn.lock:
                del conn.backlog[:len(chunk)]

    def _close(self, conn: _Conn) -> None:
        with conn.lock:
            if conn.closed:
                return
            conn.closed = True
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.sock.close()
            conn.wakeup.notify()
