"""The server under test, in its own process: ``python -m benchmarks.server_proc KIND KEYFILE [options]``.

KIND is ``securechat`` (TcpServer, MemoryRegistry, fresh server key) or ``plain`` (the plaintext ceiling).
Users u0000.. are pre-registered straight into the registry with the benchmark's shared keys, one scrypt
password record shared by all (registration is not what is measured; logins still run the full scrypt check).
Prints one JSON line (port, pid, server key) and runs until stdin closes, then stops every thread.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from securechat.crypto import aead, kdf
from securechat.crypto.certificates import issue_certificate
from securechat.protocol.limits import ServerConfig
from securechat.protocol.registry import UserRecord
from securechat.store import MemoryRegistry, new_server_key

from .keyfile import load_keys
from .plain_relay import PlainRelay

PASSWORD = "benchmark-password-1"


def user_name(i: int) -> str:
    return f"u{i:04d}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=("securechat", "plain"))
    ap.add_argument("keyfile")
    ap.add_argument("--users", type=int, default=0)
    ap.add_argument("--scrypt", choices=("fast", "owasp"), default="fast")
    ap.add_argument("--unlimited-rate", action="store_true")
    ap.add_argument("--aead-backend", choices=aead.BACKENDS, default="pycryptodome")
    ap.add_argument("--lobby", action="store_true", help="put every online user in the lobby (PROTOCOL.md 7.8)")
    ap.add_argument("--max-connections", type=int, default=None, help="raise ServerConfig.max_connections")
    ap.add_argument("--default-address-limits", action="store_true",
                    help="keep the per-address password limits (the fairness benchmark); otherwise they are "
                         "raised, because the load generator is ONE address standing for a whole class")
    args = ap.parse_args()
    aead.set_backend(args.aead_backend)
    if args.kind == "plain":
        server = PlainRelay().start()
        print(json.dumps({"port": server.address[1]}), flush=True)
        sys.stdin.read()
        server.stop()
        return 0
    keys = load_keys(Path(args.keyfile))
    params = kdf.OWASP_SCRYPT if args.scrypt == "owasp" else kdf.FAST_SCRYPT
    config = ServerConfig(scrypt=params, lobby=args.lobby)
    if not args.default_address_limits:
        # Every benchmark client connects from 127.0.0.1: the per-address share of the password queue, the
        # per-address window of logins in flight, the registration bucket (fair admission, PROTOCOL.md 6.1-6.2,
        # meant for many addresses), the per-address connection cap and the pre-login budget (PROTOCOL.md 10.1:
        # every connection not yet logged in takes a token) would refuse a 50- or
        # 300-client login wave, so all are lifted here; the fairness benchmark keeps them.
        config = dataclasses.replace(config, max_pending_password_jobs_per_address=1_000_000,
                                     address_failures_allowed=1_000_000, registration_burst_per_address=1e9,
                                     max_connections_per_address=config.max_connections,
                                     refusals_per_address_burst=1e9)
    if args.max_connections:
        config = dataclasses.replace(config, max_connections=args.max_connections,
                                     max_connections_per_address=args.max_connections)
    if args.unlimited_rate:
        config = dataclasses.replace(config, messages_per_second=1e9, message_burst=1e9)
    server_key = new_server_key()
    registry = MemoryRegistry()
    record = kdf.hash_password(PASSWORD, params)
    now = int(time.time())
    for i in range(args.users):
        cert = issue_certificate(
            username=user_name(i), signature_scheme=keys.scheme, encryption_key=keys.encryption_public,
            signing_key=keys.signing_public, serial=i + 1, now=now - 60, validity_seconds=86400,
            ca_private_key=server_key.private_key, ca_scheme=server_key.scheme)
        registry.add_user(UserRecord(username=user_name(i), password_record=record, certificate=cert))
    server = TcpServer_start(server_key, registry, config)
    assert server.ws_address is not None
    print(json.dumps({"port": server.address[1], "server_key": server_key.public_der.hex(),
                      "scheme": server_key.scheme.value, "ws_port": server.ws_address[1]}), flush=True)
    sys.stdin.read()
    server.stop()
    return 0


def TcpServer_start(server_key, registry, config):  # type: ignore[no-untyped-def]
    from securechat.net.tcp_server import TcpServer

    # the WebSocket port (docs/PROTOCOL.md 15) is always open beside TCP: bench.py's ws part compares the two
    return TcpServer(server_key=server_key, registry=registry, config=config, relay_events=False, ws_port=0).start()


if __name__ == "__main__":
    sys.exit(main())
