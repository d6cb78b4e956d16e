"""``python -m securechat.gui [--clients N] [--host H --port P | --url URL] [--db PATH] [--scrypt-n N] [--lobby]``."""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from .app import DEMO_SCRYPT_N, DEFAULT_NAMES, launch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="securechat-gui", description="securechat desktop launcher (tkinter).")
    parser.add_argument("--version", action="version", version=f"securechat-gui {__version__}")
    parser.add_argument("--clients", type=int, default=3, help="client windows to open (default 3)")
    parser.add_argument("--host", help="connect to this server instead of starting one")
    parser.add_argument("--port", type=int, default=5050, help="port of the remote server (with --host)")
    parser.add_argument("--url", help="connect to this remote server URL instead of starting one: tcp://HOST:PORT, "
                        "ws://HOST:PORT/securechat or wss://HOST:PORT/securechat")
    parser.add_argument("--db", help="SQLite registry of the local server (default: a temporary one)")
    parser.add_argument("--scrypt-n", type=int, default=DEMO_SCRYPT_N,
                        help=f"scrypt N of the local server (default 2**14 for the demo; production is 2**17)")
    parser.add_argument("--keys-dir", help="key directory (default: a temporary one locally, ~/.securechat remote)")
    parser.add_argument("--server-key", metavar="FILE", help="server key file to pin (remote server)")
    parser.add_argument("--lobby", action="store_true", help="the local server puts everyone in the lobby chat")
    args = parser.parse_args(argv)
    if args.clients < 0 or args.clients > len(DEFAULT_NAMES):
        parser.error(f"--clients must be between 0 and {len(DEFAULT_NAMES)}")
    app = launch(clients=args.clients, url=args.url, host=args.host, port=args.port if args.host else None, db=args.db,
                 scrypt_n=args.scrypt_n, keys_dir=args.keys_dir, server_key_file=args.server_key, lobby=args.lobby)
    try:
        app.root.mainloop()
    finally:
        app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
