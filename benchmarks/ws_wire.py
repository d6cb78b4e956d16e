"""Hand-built WebSocket bytes for hostile peers (RFC 6455; docs/PROTOCOL.md 15): an opening request and client
frames that can break any rule. One builder for the live fuzzer (benchmarks/fuzz_live.py) and the adversarial
scripts (tests/adversarial/test_g_websocket.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from securechat.net.ws_handshake import PATH, SUBPROTOCOL


def opening_request(path: str = PATH, *, protocol: str | None = SUBPROTOCOL, origin: str | None = None,
                    extra: str = "") -> bytes:
    """A client's opening request (PROTOCOL.md 15.2); *protocol* None offers no subprotocol, *extra* adds header
    lines (each ending in CRLF) before the blank line."""
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
    if protocol:
        lines.append(f"Sec-WebSocket-Protocol: {protocol}")
    if origin:
        lines.append(f"Origin: {origin}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode("latin-1")


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True, rsv: int = 0,
                 announce: int | None = None, random_bytes: Callable[[int], bytes] = os.urandom) -> bytes:
    """One client frame by hand (RFC 6455 5.2), any field settable: *announce* lies about the payload length,
    *mask* False sends it unmasked, *rsv* sets reserved bits; *random_bytes* draws the masking key (a seeded
    source keeps a fuzzing run reproducible)."""
    n = len(payload) if announce is None else announce
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([bit | 127]) + n.to_bytes(8, "big")
    if not mask:
        return head + payload
    key = random_bytes(4)
    stream = (key * (len(payload) // 4 + 1))[:len(payload)]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(len(payload), "big")
    return head + key + masked
