"""``python -m securechat.server``: run a securechat server on a TCP port until Ctrl-C.

Owns: command-line parsing, logging setup, opening the SQLite registry and the server key. Must not: contain
protocol logic (that is ``protocol/server.py``) or log contents (PROTOCOL.md 11).
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
import threading

from . import __version__
from .crypto.aead import set_backend
from .crypto.encoding import fingerprint
from .crypto.kdf import OWASP_SCRYPT, ScryptParams
from .keystore import write_server_key_file
from .net.tcp_server import TcpServer
from .protocol.limits import ServerConfig
from .store import DEFAULT_PASSPHRASE, SqliteRegistry


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="securechat-server", description="Run a securechat server.")
    parser.add_argument("--version", action="version", version=f"securechat-server {__version__}")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for a LAN)")
    parser.add_argument("--port", type=int, default=5050, help="TCP port (0 picks a free one)")
    parser.add_argument("--db", default="securechat.db", help="SQLite registry path (created if missing)")
    parser.add_argument("--export-key", metavar="FILE", help="write the server's public key here for clients")
    parser.add_argument("--scrypt-n", type=int, default=OWASP_SCRYPT.n,
                        help="scrypt cost N for new passwords (default 2^17, OWASP's minimum; lower only for demos)")
    parser.add_argument("--password-workers", type=int, default=2, help="concurrent scrypt computations")
    parser.add_argument("--lobby", action=argparse.BooleanOptionalAction, default=True,
                        help="put every online user in the shared 'lobby' chat (hybrid mode; default: on)")
    parser.add_argument("--require-post-quantum", action="store_true",
                        help="refuse clients that do not use the X25519 + ML-KEM-768 hybrid handshake")
    parser.add_argument("--aead-backend", choices=["pycryptodome", "cryptography"], default="pycryptodome",
                        help="AES-GCM implementation for records (byte-identical; cryptography must be installed)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log = logging.getLogger("securechat.server")
    passphrase = os.environ.get("SECURECHAT_SERVER_PASSPHRASE", DEFAULT_PASSPHRASE)
    if passphrase == DEFAULT_PASSPHRASE:
        log.warning("server key protected by the default passphrase: set SECURECHAT_SERVER_PASSPHRASE")
    registry = SqliteRegistry(args.db)
    server_key = registry.load_or_create_server_key(passphrase)
    try:
        set_backend(args.aead_backend)
    except RuntimeError as exc:
        print(f"securechat-server: {exc}", file=sys.stderr)
        return 2
    config = ServerConfig(scrypt=ScryptParams(n=args.scrypt_n), lobby=args.lobby,
                          require_post_quantum=args.require_post_quantum)
    if args.export_key:
        write_server_key_file(args.export_key, server_key.public_der, server_key.scheme.value)
    try:
        server = TcpServer(server_key=server_key, registry=registry, host=args.host, port=args.port, config=config,
                           password_workers=args.password_workers).start()
    except OSError as exc:
        registry.close()
        if exc.errno == errno.EADDRINUSE:
            print(f"securechat-server: port {args.port} on {args.host} is in use (another server running?): stop "
                  "it or choose another port with --port", file=sys.stderr)
        else:
            print(f"securechat-server: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
                  file=sys.stderr)
        return 1
    print(f"securechat server on {server.address[0]}:{server.address[1]}  db={args.db}", flush=True)
    print(f"lobby: {'on' if args.lobby else 'off'}", flush=True)
    print(f"server key fingerprint ({server_key.scheme.value}): {fingerprint(server_key.public_der)}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    print("shutting down", flush=True)
    server.stop()
    registry.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
