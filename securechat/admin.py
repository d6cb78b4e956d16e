"""``securechat-admin --db PATH`` (``python -m securechat.admin``): look after a server's registry.

Owns: the instructor's commands on a registry file: ``list`` (users, scheme, certificate expiry, last login),
``counts``, ``remove NAME`` and ``reset NAME`` (a user who lost their keys: the account goes and the name is
free to register again), ``renew NAME`` (an expired account: the same keys certified again), ``key`` (the server key's fingerprint; ``--export FILE`` writes the public key file
clients pin). Safe against the database of a running server: SQLite in WAL mode lets it read while the server
writes, and every change is one short transaction (PROTOCOL.md 6.5). Must not: print a password record or a
private key, or change anything without a confirmation (``--yes`` or typing the name).
"""

from __future__ import annotations

from . import __version__

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from .crypto.certificates import issue_certificate
from .crypto.encoding import fingerprint
from .display import printable
from .errors import SecureChatError
from .keystore import write_server_key_file
from .protocol.jobs import ServerKey
from .store import DEFAULT_PASSPHRASE, SqliteRegistry, read_server_key_file

EXPIRING_SOON_SECONDS = 30 * 24 * 3600


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="securechat-admin", description="Look after a securechat registry.")
    parser.add_argument("--version", action="version", version=f"securechat-admin {__version__}")
    parser.add_argument("--db", required=True, help="the server's SQLite registry (it may be running)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="users with scheme, certificate expiry and last login")
    sub.add_parser("counts", help="how many users, per scheme, expired and expiring within 30 days")
    for name, text in (("remove", "delete a user's account"),
                       ("reset", "a user who lost their keys: delete the account so the name can register again")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("username")
        cmd.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    renew = sub.add_parser("renew", help="re-certify a user's same keys for another period (an expired account; "
                                         "needs SECURECHAT_SERVER_PASSPHRASE)")
    renew.add_argument("username")
    renew.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    renew.add_argument("--days", type=int, default=365, help="validity of the new certificate (default 365)")
    renew.add_argument("--server-key-file", metavar="FILE", help="the server's private key file, if it uses one")
    renew.add_argument("--allow-default-passphrase", action="store_true", help="the server runs with the default")
    key = sub.add_parser("key", help="the server key's scheme and fingerprint (needs SECURECHAT_SERVER_PASSPHRASE)")
    key.add_argument("--export", metavar="FILE", help="write the public key file clients pin (--server-key)")
    key.add_argument("--server-key-file", metavar="FILE", help="the server's private key file, if it uses one")
    key.add_argument("--allow-default-passphrase", action="store_true", help="the server runs with the default")
    return parser


def main(argv: list[str] | None = None, *, ask: Callable[[str], str] = input) -> int:
    args = build_parser().parse_args(argv)
    if not Path(args.db).exists():
        print(f"securechat-admin: no registry at {args.db}", file=sys.stderr)
        return 2
    registry = SqliteRegistry(args.db)
    try:
        return _COMMANDS[args.command](registry, args, ask)
    except SecureChatError as exc:
        print(f"securechat-admin: {exc}", file=sys.stderr)
        return 1
    finally:
        registry.close()


def _when(seconds: float | None) -> str:
    return "never" if seconds is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(seconds)) + " UTC"


def _list(registry: SqliteRegistry, args: argparse.Namespace, ask: Callable[[str], str]) -> int:
    users = registry.list_users()
    now = time.time()
    print(f"{'user':<33} {'scheme':<15} {'certificate expires':<22} last login")
    for record, last_login in users:
        cert = record.certificate
        expiry = _when(cert.not_after) + (" (expired)" if cert.not_after <= now else "")
        print(f"{printable(record.username):<33} {cert.signature_scheme.value:<15} {expiry:<22} {_when(last_login)}")
    print(f"{len(users)} users")
    return 0


def _counts(registry: SqliteRegistry, args: argparse.Namespace, ask: Callable[[str], str]) -> int:
    users = registry.list_users()
    now = time.time()
    schemes = Counter(record.certificate.signature_scheme.value for record, _ in users)
    expired = sum(record.certificate.not_after <= now for record, _ in users)
    soon = sum(now < record.certificate.not_after <= now + EXPIRING_SOON_SECONDS for record, _ in users)
    never = sum(last is None for _, last in users)
    print(f"users: {len(users)}")
    for scheme, count in sorted(schemes.items()):
        print(f"  {scheme}: {count}")
    print(f"certificates expired: {expired}")
    print(f"certificates expiring within 30 days: {soon}")
    print(f"never logged in: {never}")
    return 0


def _remove(registry: SqliteRegistry, args: argparse.Namespace, ask: Callable[[str], str]) -> int:
    name = args.username
    if registry.get_user(name) is None:
        print(f"securechat-admin: no user {printable(name)}", file=sys.stderr)
        return 1
    if not args.yes:
        answer = ask(f"type {name} to {args.command} the account {name}: ")
        if answer.strip() != name:
            print("nothing changed", file=sys.stderr)
            return 1
    registry.remove_user(name)
    print(f"{name}: account removed; the name is free to register again")
    if args.command == "reset":
        print(f"{name} registers again with new keys (/register {name}); peers who pinned the old key see a "
              "key-change warning and must compare safety numbers before trusting the new one")
    print("a client already logged in as this user stays connected until it logs out; its old certificate "
          "stays valid for peers that fetched it until it expires (there is no revocation list)")
    return 0


def _server_key(registry: SqliteRegistry, args: argparse.Namespace) -> ServerKey | int:
    """The server's key (never a new one), or the exit code after saying why not."""
    passphrase = os.environ.get("SECURECHAT_SERVER_PASSPHRASE") or DEFAULT_PASSPHRASE
    if passphrase == DEFAULT_PASSPHRASE and not args.allow_default_passphrase:
        print("securechat-admin: set SECURECHAT_SERVER_PASSPHRASE (the server's), or pass "
              "--allow-default-passphrase for a demo server", file=sys.stderr)
        return 2
    if args.server_key_file is not None:
        if not Path(args.server_key_file).exists():
            print(f"securechat-admin: no key file at {args.server_key_file}", file=sys.stderr)
            return 1
        return read_server_key_file(args.server_key_file, passphrase)
    if registry.has_server_key():
        return registry.load_or_create_server_key(passphrase)  # loads: never creates one here
    print("securechat-admin: this registry holds no server key (does the server use --server-key-file?)",
          file=sys.stderr)
    return 1


def _renew(registry: SqliteRegistry, args: argparse.Namespace, ask: Callable[[str], str]) -> int:
    """PROTOCOL.md 6.6, recovery of an expired account: the same keys, certified again by the instructor (who
    has checked who is asking); the user's peers keep their pins, since the keys do not change."""
    record = registry.get_user(args.username)
    if record is None:
        print(f"securechat-admin: no user {printable(args.username)}", file=sys.stderr)
        return 1
    key = _server_key(registry, args)
    if isinstance(key, int):
        return key
    if not args.yes and ask(f"type {args.username} to renew its certificate: ").strip() != args.username:
        print("nothing changed", file=sys.stderr)
        return 1
    old, now = record.certificate, int(time.time())
    cert = issue_certificate(
        username=old.username, signature_scheme=old.signature_scheme, encryption_key=old.encryption_key,
        signing_key=old.signing_key, serial=int.from_bytes(os.urandom(8), "big") >> 1, now=now,
        validity_seconds=args.days * 86400, ca_private_key=key.private_key, ca_scheme=key.scheme)
    registry.replace_certificate(old.username, cert)
    print(f"{old.username}: certificate renewed for the same keys until {_when(cert.not_after)}; "
          "they can log in again")
    return 0


def _key(registry: SqliteRegistry, args: argparse.Namespace, ask: Callable[[str], str]) -> int:
    key = _server_key(registry, args)
    if isinstance(key, int):
        return key
    print(f"server key scheme: {key.scheme.value}")
    print(f"server key fingerprint: {fingerprint(key.public_der)}")
    if args.export:
        write_server_key_file(args.export, key.public_der, key.scheme.value)
        print(f"public key written to {args.export} (give it to clients: --server-key {args.export})")
    return 0


_COMMANDS = {"list": _list, "counts": _counts, "remove": _remove, "reset": _remove, "renew": _renew, "key": _key}


if __name__ == "__main__":
    sys.exit(main())
