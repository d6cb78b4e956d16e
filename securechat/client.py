"""``python -m securechat.client``: the interactive terminal client.

Owns: the command line, the first connection (pinning the server key on first use, or refusing a changed one with
both fingerprints), and choosing the terminal: a prompt_toolkit line editor on a terminal, plain lines otherwise
(``terminal/consoles.py``). Commands, event lines and reconnection are the ``securechat.terminal`` package's
(``terminal.Shell`` puts them together).
Must not: contain protocol logic (``TcpClient`` and ``ClientProtocol`` do it) or print a foreign string without
``display.printable``. Passwords are read without echo unless given inline (``/login alice PASSWORD``, meant for
scripts and labs; it stays in your shell history).
"""

from __future__ import annotations

import argparse
import logging
import ssl
import sys
from collections.abc import Callable

from . import __version__
from .crypto.aead import set_backend
from .crypto.encoding import fingerprint
from .display import printable
from .errors import SecureChatError
from .keystore import DEFAULT_ROOT, KeyStore, KeyStoreError, PinFileError, read_server_key_file
from .labs.keylog import KeyLogWriter
from .labs.variants import add_lab_arguments, announce, lab_mode
from .net.tcp_client import TcpClient
from .net.transport import Scheme, parse_url, tcp_url
from .protocol import events as ev
from .protocol.vocabulary import KeyExchange
from .terminal.consoles import PlainTerminal, PromptTerminal
from .terminal.shell import Shell
from .terminal.texts import HELP, SCHEME_ALIASES, key_changed_warning

__all__ = ["HELP", "SCHEME_ALIASES", "Shell", "build_parser", "key_changed_warning", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="securechat-client", description="Interactive securechat client.")
    parser.add_argument("--version", action="version", version=f"securechat-client {__version__}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5050)
    parser.add_argument("--url", help="server URL instead of --host/--port: tcp://HOST:PORT, "
                        "ws://HOST:PORT/securechat or wss://HOST:PORT/securechat (WebSocket, PROTOCOL.md 15)")
    parser.add_argument("--tls-ca", metavar="FILE", help="CA certificate(s) to trust for wss:// (default: the "
                        "system's CAs)")
    parser.add_argument("--keys-dir", default=str(DEFAULT_ROOT), help="where user keys and pinned servers live")
    parser.add_argument("--server-key", metavar="FILE", help="server key file (from securechat-server --export-key)")
    parser.add_argument("--repin", action="store_true",
                        help="forget the pinned key of this server and pin the one it presents now (only after "
                             "its operator confirmed the new fingerprint)")
    parser.add_argument("--post-quantum", action="store_true",
                        help="use the X25519 + ML-KEM-768 hybrid handshake (PROTOCOL.md 4.4)")
    parser.add_argument("--aead-backend", choices=["pycryptodome", "cryptography"], default="pycryptodome",
                        help="AES-GCM implementation (byte-identical; cryptography must be installed)")
    parser.add_argument("--plain", action="store_true",
                        help="no line editor even on a terminal: read plain lines (for screen readers, scripts)")
    parser.add_argument("--accept-invitations", action="store_true",
                        help="join every chat you are invited to without asking (PROTOCOL.md 7.11; default: ask, "
                             "answer with /accept or /decline)")
    add_lab_arguments(parser, "client")  # PROTOCOL.md 16: --lab NAME and --keylog FILE, lab tools
    return parser


def _connect_first(args: argparse.Namespace, store: KeyStore, pinned: tuple[bytes, str] | None,
                   make: Callable[[tuple[bytes, str] | None], TcpClient]) -> TcpClient | str:
    """The first connection, or the lines to print when it fails (never a traceback)."""
    endpoint = parse_url(args.url or tcp_url(args.host, args.port))  # checked by main already
    address = f"{endpoint.host}:{endpoint.port}"
    try:
        return make(pinned)
    except OSError as exc:
        return (f"securechat-client: could not connect to {address}: {exc.strerror or exc} (is the server "
                f"running? securechat-server --port {args.port})")
    except (SecureChatError, TimeoutError) as exc:
        if pinned is None or "differs from the pinned key" not in str(exc):
            return f"securechat-client: could not connect to {address}: {printable(str(exc))}"
    try:  # a changed server key: learn what it presents now, to show both fingerprints (nothing is sent)
        probe = make(None)
        presented = probe.handshake.server_fingerprint if probe.handshake else "unknown"
        probe.close()
    except (OSError, SecureChatError, TimeoutError):
        presented = "unknown (the server did not complete a handshake)"
    source = f"--server-key {args.server_key}" if args.server_key else f"{store.root / 'known_servers.json'}"
    return "\n".join((
        f"securechat-client: THE KEY OF THE SERVER AT {address} HAS CHANGED: not connecting.",
        f"  pinned:    {fingerprint(pinned[0])}  ({source})",
        f"  presented: {printable(presented)}",
        "  Either the server was reinstalled with a new key, or someone is impersonating it. Ask its operator",
        "  for the fingerprint it prints at start-up. Only if it is the presented one, re-pin with",
        f"    securechat-client {'--url ' + args.url if args.url else f'--host {args.host} --port {args.port}'} "
        f"--keys-dir {args.keys_dir} --repin"
        + ("" if not args.server_key else "\n  (or export the new key file: securechat-server --export-key FILE)"),
    ))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        set_backend(args.aead_backend)
    except RuntimeError as exc:
        print(f"securechat-client: {exc}", file=sys.stderr)
        return 2
    store = KeyStore(args.keys_dir)
    try:
        endpoint = parse_url(args.url or tcp_url(args.host, args.port))
        tls = ssl.create_default_context(cafile=args.tls_ca) if args.tls_ca else None
    except (ValueError, OSError, ssl.SSLError) as exc:
        print(f"securechat-client: {exc}", file=sys.stderr)
        return 2
    address = f"{endpoint.host}:{endpoint.port}"  # the server key is pinned per host:port, whatever the scheme
    pinned: tuple[bytes, str] | None
    try:
        if args.server_key:
            pinned = read_server_key_file(args.server_key)
        else:
            pinned = None if args.repin else store.pinned_server(address)
    except KeyStoreError as exc:
        print(f"securechat-client: {exc}", file=sys.stderr)
        return 2
    except PinFileError as exc:  # fail closed: a damaged pin file never means "trust on first use"
        print(f"securechat-client: {exc.args[0]}", file=sys.stderr)
        return 1
    key_exchange = KeyExchange.X25519_MLKEM768 if args.post_quantum else KeyExchange.X25519
    lab = lab_mode(args.lab, "client")
    announce(lab, logging.getLogger("securechat.client"))
    try:
        keylog = KeyLogWriter(args.keylog) if args.keylog else None
    except ValueError as exc:
        print(f"securechat-client: {exc}", file=sys.stderr)
        return 2
    if keylog is not None:
        print(f"LAB TOOL: writing this connection's record keys to {keylog.path}", flush=True)
    interactive = not args.plain and sys.stdin.isatty() and sys.stdout.isatty()
    terminal: PlainTerminal | PromptTerminal | None = None
    if interactive:
        try:
            terminal = PromptTerminal()
        except ImportError:  # prompt_toolkit missing (it is in requirements.txt): plain lines still work
            print("securechat-client: prompt_toolkit is not installed: no line editing (pip install "
                  "prompt_toolkit)", file=sys.stderr)
    if terminal is None:
        terminal = PlainTerminal()
    route: list[Callable[[ev.Event], None]] = []
    trusted = [pinned]

    def make(server_key: tuple[bytes, str] | None, on_event: Callable[[ev.Event], None] | None = None) -> TcpClient:
        return TcpClient(url=str(endpoint), tls=tls, server_key=server_key, on_event=on_event,
                         key_exchange=key_exchange, lab=lab, keylog=keylog,
                         auto_accept_invitations=args.accept_invitations)

    def connect(on_event: Callable[[ev.Event], None]) -> TcpClient:
        return make(trusted[0], on_event)  # a reconnection insists on the key pinned at the first connection

    shell = Shell(connect, store, emit=terminal.emit, ask_password=terminal.ask_password,
                  changed=terminal.invalidate)
    first = _connect_first(args, store, pinned, lambda key: make(key, lambda e: route[0](e) if route else None))
    # the first connection is generation 0: once a reconnection replaced it, its late events are ignored
    if isinstance(first, str):
        print(first, file=sys.stderr)
        return 1
    route.append(shell.initial_events)
    assert first.handshake is not None
    shell.attach(first)
    via = "" if endpoint.scheme is Scheme.TCP else f" ({endpoint})"
    shell.say(f"connected to {address}{via} ({first.handshake.key_exchange}); server key "
              f"{first.handshake.server_fingerprint}")
    trusted[0] = (first.handshake.server_key, first.handshake.server_scheme)
    if first.handshake.first_use or args.server_key:
        # PROTOCOL.md 4.2: a key given with --server-key is pinned too, so a later run without the flag is
        # checked against it rather than trusting on first use again.
        try:
            store.pin_server(address, first.handshake.server_key, first.handshake.server_scheme)
            shell.say(f"  server key from {args.server_key} pinned for {address}" if args.server_key else
                      "  first connection to this server: compare that fingerprint with the one the server "
                      "printed at start-up; pinned now")
        except PinFileError as exc:
            shell.say(f"! server key NOT pinned: {exc.args[0]}")
    shell.say("type /help for commands")
    try:
        terminal.run(shell)
    except KeyboardInterrupt:  # Ctrl-C while a command waited for the server
        shell.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
