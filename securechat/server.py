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
import ssl
import sys
import threading

from . import __version__
from .crypto.aead import set_backend
from .crypto.encoding import fingerprint
from .crypto.kdf import OWASP_SCRYPT, ScryptParams
from .errors import SecureChatError
from .keystore import write_server_key_file
from .labs.variants import CTF, add_lab_arguments, announce, lab_mode
from .net.server_log import JsonFormatter
from .net.tcp_server import TcpServer
from .protocol.limits import ServerConfig
from .store import DEFAULT_PASSPHRASE, SqliteRegistry


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="securechat-server", description="Run a securechat server.")
    parser.add_argument("--version", action="version", version=f"securechat-server {__version__}")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for a LAN)")
    parser.add_argument("--port", type=int, default=5050, help="TCP port (0 picks a free one)")
    parser.add_argument("--ws-port", type=int, default=None, metavar="PORT",
                        help="also accept WebSocket clients on this port at /securechat (0 picks a free one)")
    parser.add_argument("--tls-cert", metavar="FILE", help="serve the WebSocket port as wss:// with this PEM "
                        "certificate chain (needs --tls-key; not needed behind a TLS-terminating proxy)")
    parser.add_argument("--tls-key", metavar="FILE", help="the PEM private key of --tls-cert")
    parser.add_argument("--ws-allow-origin", action="append", default=[], metavar="ORIGIN",
                        help="a browser Origin allowed on the WebSocket port (repeatable; requests without an "
                             "Origin header are always allowed)")
    parser.add_argument("--db", default="securechat.db", help="SQLite registry path (created if missing)")
    parser.add_argument("--export-key", metavar="FILE", help="write the server's public key here for clients")
    parser.add_argument("--server-key-file", metavar="FILE",
                        help="keep the server's private key (encrypted) in this owner-only file instead of the "
                             "database, so resetting the database keeps the server's identity (created if missing "
                             "from the key in the database, or a new one)")
    parser.add_argument("--allow-default-passphrase", action="store_true",
                        help="start even though SECURECHAT_SERVER_PASSPHRASE is unset (the published default "
                             "passphrase then protects the server key: demos and tests only)")
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
    add_lab_arguments(parser, "server")  # PROTOCOL.md 16: --lab NAME, never on by default
    parser.add_argument("--log-format", default="text", choices=["text", "json"],
                        help="text: one plain sentence per event; json: one JSON object per line, for tools")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None) or (args.tls_cert and args.ws_port is None):
        parser.error("--tls-cert and --tls-key go together, with --ws-port")
    tls: ssl.SSLContext | None = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            tls.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            print(f"securechat-server: cannot load the TLS certificate or key: {exc}", file=sys.stderr)
            return 2
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if args.log_format == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.basicConfig(level=args.log_level, handlers=[handler])
    log = logging.getLogger("securechat.server")
    if CTF in args.lab:  # the capture-the-flag server runs its own registry and bots (securechat.labs.ctf)
        from .labs.ctf import run_ctf
        return run_ctf(host=args.host, port=args.port, student=args.student)
    passphrase = os.environ.get("SECURECHAT_SERVER_PASSPHRASE") or DEFAULT_PASSPHRASE
    if passphrase == DEFAULT_PASSPHRASE:
        if not args.allow_default_passphrase:
            print("securechat-server: refusing to start: the server key would be protected by the published "
                  "default passphrase. Set SECURECHAT_SERVER_PASSPHRASE (see README), or pass "
                  "--allow-default-passphrase for a throwaway demo server.", file=sys.stderr)
            return 2
        log.warning("server key protected by the default passphrase (--allow-default-passphrase): demo use only")
    registry = SqliteRegistry(args.db)
    try:
        server_key = registry.load_or_create_server_key(passphrase, key_file=args.server_key_file)
    except SecureChatError as exc:
        print(f"securechat-server: cannot load the server key: {exc} (is SECURECHAT_SERVER_PASSPHRASE right?)",
              file=sys.stderr)
        registry.close()
        return 2
    try:
        set_backend(args.aead_backend)
    except RuntimeError as exc:
        print(f"securechat-server: {exc}", file=sys.stderr)
        return 2
    config = ServerConfig(scrypt=ScryptParams(n=args.scrypt_n), lobby=args.lobby,
                          require_post_quantum=args.require_post_quantum, lab=lab_mode(args.lab, "server"))
    announce(config.lab, log)
    if args.export_key:
        write_server_key_file(args.export_key, server_key.public_der, server_key.scheme.value)
    try:
        server = TcpServer(server_key=server_key, registry=registry, host=args.host, port=args.port, config=config,
                           password_workers=args.password_workers, ws_port=args.ws_port, tls=tls,
                           ws_origins=frozenset(args.ws_allow_origin)).start()
    except OSError as exc:
        registry.close()
        ports = f"{args.port}" + (f" or {args.ws_port}" if args.ws_port is not None else "")
        if exc.errno == errno.EADDRINUSE:
            print(f"securechat-server: port {ports} on {args.host} is in use (another server running?): stop "
                  "it or choose another port with --port/--ws-port", file=sys.stderr)
        else:
            print(f"securechat-server: cannot listen on {args.host}:{ports}: {exc.strerror or exc}",
                  file=sys.stderr)
        return 1
    print(f"securechat server on {server.address[0]}:{server.address[1]}  db={args.db}", flush=True)
    if server.ws_address is not None:
        scheme = "wss" if tls is not None else "ws"
        print(f"websocket: {scheme}://{server.ws_address[0]}:{server.ws_address[1]}/securechat", flush=True)
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
