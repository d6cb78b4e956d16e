"""A bug in a slow job becomes ``internal_error`` for that request only (PROTOCOL.md 9)."""

from __future__ import annotations

import pytest

from securechat.crypto.signatures import SignatureScheme
from securechat.errors import ErrorCode
from securechat.net.tcp_client import RequestError, TcpClient
from securechat.store import MemoryRegistry
from tests.helpers import user_keys
from tests.live import start_server

pytestmark = pytest.mark.tcp  # a live server (tests/guard.py)


class _BrokenRegistry(MemoryRegistry):
    """A registry with a bug: writing raises something that is not a securechat error."""

    def add_user(self, record):  # type: ignore[no-untyped-def]
        raise RuntimeError("simulated bug in the storage layer")


def test_a_crashing_job_answers_internal_error_and_the_server_keeps_serving() -> None:
    server = start_server(registry=_BrokenRegistry())
    key = server.protocol.server_key
    pinned = (key.public_der, key.scheme.value)
    try:
        with TcpClient(*server.address, server_key=pinned) as client:
            with pytest.raises(RequestError) as failure:
                client.register("alice", "pw", user_keys("alice", SignatureScheme.RSA_PSS_SHA256))
            assert failure.value.code is ErrorCode.INTERNAL_ERROR
            assert client.closed is None  # the error is a reply: the connection stays up
        with TcpClient(*server.address, server_key=pinned) as again:  # the server still answers handshakes
            assert again.handshake is not None
    finally:
        server.stop()
