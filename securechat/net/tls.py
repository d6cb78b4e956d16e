"""TLS as a sans-I/O layer (``ssl.MemoryBIO``), for ``wss://`` without a proxy (docs/PROTOCOL.md 15.4).

Owns: ``TlsLayer``: raw bytes in and out, plaintext in and out, the handshake driven by the bytes fed to it; the
standard library's ``ssl`` does all the cryptography. Used beneath the WebSocket layer by ws_server.py (server)
and transport.py (client). Must not: touch a socket or log contents.
"""

from __future__ import annotations

import ssl

READ_SIZE_BYTES = 256 * 1024


class TlsLayer:
    """TLS over memory buffers (``ssl.SSLObject``): raw bytes in/out, plaintext in/out; no socket."""

    def __init__(self, context: ssl.SSLContext, *, server_side: bool, server_hostname: str | None = None) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=server_side,
                                     server_hostname=server_hostname)
        self.handshake_done = False
        self.failed: str | None = None
        self._pending = bytearray()  # plaintext to send once the handshake is done
        self._handshake()

    def _handshake(self) -> None:
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            return
        except ssl.SSLError as exc:
            self.failed = f"TLS handshake failed: {exc.reason or exc}"
            return
        self.handshake_done = True
        if self._pending:
            pending = bytes(self._pending)
            self._pending.clear()
            self.send(pending)

    def receive(self, data: bytes) -> bytes:
        """Feed raw bytes; returns the plaintext they completed (may be empty). ``failed`` says if TLS broke."""
        if self.failed is not None:
            return b""
        if not data:
            self._incoming.write_eof()
        else:
            self._incoming.write(data)
        if not self.handshake_done:
            self._handshake()
            if not self.handshake_done:
                return b""
        plain = bytearray()
        while True:
            try:
                chunk = self._tls.read(READ_SIZE_BYTES)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                break
            except ssl.SSLError as exc:
                self.failed = f"TLS error: {exc.reason or exc}"
                break
            if not chunk:
                break
            plain += chunk
        return bytes(plain)

    def send(self, plain: bytes) -> None:
        if not self.handshake_done:
            self._pending += plain
            return
        view = memoryview(plain)
        while view:
            written = self._tls.write(view)
            view = view[written:]

    def data_to_send(self) -> bytes:
        return self._outgoing.read()
