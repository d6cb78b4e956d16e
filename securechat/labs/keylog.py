"""The channel key log, securechat's SSLKEYLOGFILE (PROTOCOL.md 16.3): a LAB TOOL, off unless asked for.

Owns: the file format and its two sides: ``KeyLogWriter`` (the client appends one line per connection, to a file
it creates with mode 0600) and ``read_keylog`` (the proxy looks the keys up by the connection's client random).
One line per connection::

    SECURECHAT_CHANNEL <client_random hex> <k_c2s hex> <k_s2c hex>

Whoever holds the file can read every record of the logged connections: it is for teaching and debugging one's
own traffic, never for a real deployment. Must not: log anything else (no passwords, no private keys).
"""

from __future__ import annotations

import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

LABEL = "SECURECHAT_CHANNEL"


@dataclass(frozen=True)
class ChannelSecrets:
    client_to_server: bytes
    server_to_client: bytes


class KeyLogWriter:
    """Appends ``SECURECHAT_CHANNEL`` lines to *path*; the file is created with mode 0600 (owner only).

    An existing file is appended to only if it is a regular file owned by us that nobody else can read;
    anything else is refused with ValueError (a plain-words message for the CLI).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            raise ValueError(f"cannot open key log {self.path}: {exc.strerror}") from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_mode & 0o077 or info.st_uid != os.getuid():
            os.close(fd)
            raise ValueError(f"key log {self.path} must be a file of yours that only you can read (chmod 600)")
        self._fd = fd

    def __call__(self, client_random: bytes, k_c2s: bytes, k_s2c: bytes) -> None:
        line = f"{LABEL} {client_random.hex()} {k_c2s.hex()} {k_s2c.hex()}\n".encode("ascii")
        with self._lock:
            os.write(self._fd, line)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def read_keylog(path: str | Path) -> dict[bytes, ChannelSecrets]:
    """client_random -> the channel's two record keys; malformed lines are skipped."""
    out: dict[bytes, ChannelSecrets] = {}
    try:
        text = Path(path).read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 4 or parts[0] != LABEL:
            continue
        try:
            random, c2s, s2c = (bytes.fromhex(x) for x in parts[1:])
        except ValueError:
            continue
        if len(random) == 32 and len(c2s) == 32 and len(s2c) == 32:
            out[random] = ChannelSecrets(client_to_server=c2s, server_to_client=s2c)
    return out


__all__ = ["ChannelSecrets", "KeyLogWriter", "LABEL", "read_keylog"]
