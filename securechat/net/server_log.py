"""The server's log: one plain line per event, metadata only (PROTOCOL.md 11), or one JSON object per line.

Owns: turning a ``ServerEvent`` into a sentence an instructor can read (``alice logged in from 127.0.0.1``,
``sent unknown_user to #2 for status``) plus the same facts as a flat dict for tools (``--log-format json``),
and the JSON ``logging.Formatter``. Must not: log contents, ciphertexts, passwords or keys; events carry none,
and nothing here reads a frame.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from ..protocol import events as ev

_SNAKE = re.compile(r"(?<!^)(?=[A-Z])")


class EventDescriber:
    """Remembers each peer's address and username (from earlier events) so that later lines can name them."""

    def __init__(self) -> None:
        self._addresses: dict[int, str] = {}
        self._names: dict[int, str] = {}

    def describe(self, event: ev.ServerEvent) -> tuple[str, dict[str, Any]]:
        """The plain line and the JSON fields of *event*."""
        fields: dict[str, Any] = {"event": _SNAKE.sub("_", type(event).__name__).lower(), **vars(event)}
        if isinstance(event, ev.ChatRekeyed):
            fields["members"] = list(event.members)
        peer = event.peer
        address = self._addresses.get(peer, "?")
        if isinstance(event, ev.PeerConnected):
            self._addresses[peer] = event.address
            return f"#{peer} connected from {event.address}", fields
        fields.setdefault("address", address)
        if isinstance(event, ev.PeerHandshakeCompleted):
            return f"#{peer} completed the handshake", fields
        if isinstance(event, ev.UserRegistered):
            return f"{event.username} registered ({event.signature_scheme}) from {address}", fields
        if isinstance(event, ev.UserLoggedIn):
            self._names[peer] = event.username
            return f"{event.username} logged in from {address} (#{peer})", fields
        if isinstance(event, ev.UserLoggedOut):
            return f"{event.username} logged out ({event.reason})", fields
        if isinstance(event, ev.ChatRekeyed):
            return (f"chat {event.chat_id} is at epoch {event.epoch} ({event.reason}), {len(event.members)} "
                    f"members: {', '.join(event.members)}"), fields
        if isinstance(event, ev.MessageRelayed):
            return (f"{event.sender} sent {event.size} bytes to chat {event.chat_id} "
                    f"({event.recipients} recipients)"), fields
        if isinstance(event, ev.ErrorSent):
            text = f"sent {event.code} to #{peer}"
            if event.ref:
                text += f" for {event.ref}"
            return text + (" and closed the connection" if event.fatal else ""), fields
        if isinstance(event, ev.PeerClosed):
            name = self._names.pop(peer, None)
            self._addresses.pop(peer, None)
            who = f"#{peer} ({name})" if name else f"#{peer}"
            return f"{who} closed: {event.reason}", fields
        return f"{fields['event']} #{peer}", fields  # an event added later still gets a line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the event's fields when it has any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "securechat", None)
        if isinstance(fields, dict):
            entry.update({k: v for k, v in fields.items() if k not in entry})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, sort_keys=False, ensure_ascii=True)
