"""Readable server logs (PROTOCOL.md 11): one plain sentence per event, metadata only; JSON for tools."""

from __future__ import annotations

import json
import logging

from securechat.net.server_log import EventDescriber, JsonFormatter
from securechat.protocol import events as ev


def lines(*events: ev.ServerEvent) -> list[str]:
    describer = EventDescriber()
    return [describer.describe(event)[0] for event in events]


def test_each_event_is_one_plain_sentence() -> None:
    """Finding: log lines were Python object dumps (``ErrorSent(peer=2, code=unknown_user, ...)``)."""
    got = lines(
        ev.PeerConnected(peer=2, address="127.0.0.1"),
        ev.PeerHandshakeCompleted(peer=2),
        ev.UserRegistered(peer=2, username="alice", signature_scheme="rsa-pss-sha256"),
        ev.UserLoggedIn(peer=2, username="alice"),
        ev.ErrorSent(peer=2, code="unknown_user", ref="status", fatal=False),
        ev.ErrorSent(peer=2, code="bad_record", ref=None, fatal=True),
        ev.ChatRekeyed(peer=2, chat_id="c1", epoch=2, members=("alice", "bob"), reason="invite"),
        ev.MessageRelayed(peer=2, chat_id="c1", sender="alice", size=120, recipients=1),
        ev.UserLoggedOut(peer=2, username="alice", reason="logout"),
        ev.PeerClosed(peer=2, reason="logout"),
    )
    assert got == [
        "#2 connected from 127.0.0.1",
        "#2 completed the handshake",
        "alice registered (rsa-pss-sha256) from 127.0.0.1",
        "alice logged in from 127.0.0.1 (#2)",
        "sent unknown_user to #2 for status",
        "sent bad_record to #2 and closed the connection",
        "chat c1 is at epoch 2 (invite), 2 members: alice, bob",
        "alice sent 120 bytes to chat c1 (1 recipients)",
        "alice logged out (logout)",
        "#2 (alice) closed: logout",
    ]
    assert not any("(peer=" in line or "Error" in line for line in got)


def test_the_describer_forgets_closed_peers() -> None:
    describer = EventDescriber()
    for peer in range(100):
        describer.describe(ev.PeerConnected(peer=peer, address="10.0.0.1"))
        describer.describe(ev.PeerClosed(peer=peer, reason="connection closed"))
    assert describer._addresses == {} and describer._names == {}


def test_json_format_has_the_event_fields() -> None:
    describer = EventDescriber()
    describer.describe(ev.PeerConnected(peer=7, address="192.0.2.1"))
    text, fields = describer.describe(ev.UserLoggedIn(peer=7, username="bob"))
    record = logging.LogRecord("securechat.server", logging.INFO, __file__, 1, "%s", (text,), None)
    record.securechat = fields
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "bob logged in from 192.0.2.1 (#7)"
    assert (entry["event"], entry["peer"], entry["username"], entry["address"]) == ("user_logged_in", 7, "bob",
                                                                                    "192.0.2.1")
    assert entry["level"] == "INFO" and "time" in entry
