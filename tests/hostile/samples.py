"""One codec-valid instance of every server->client message, and the ways to break each one.

``sample(kind, world, conn)`` builds a message that passes ``codec.decode_message`` (field kinds and limits of
PROTOCOL.md 3.2); whether the client *accepts* it is what the tests check. ``malformations(kind)`` yields
(label, transform) pairs applied to the message's JSON object: a missing field, an unknown field, a value of the
wrong kind, an oversized value. Every one must be refused by the codec before any handler runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

from securechat.protocol import messages as m
from securechat.protocol.codec import message_to_dict

from .world import Conn, HostileServer

# Every type the server may send (PROTOCOL.md 4-7); "record" is the envelope, tested at the record layer.
SERVER_TYPES = tuple(sorted(m.SERVER_TO_CLIENT))


def sample(kind: str, world: HostileServer, conn: Conn) -> m.Message:
    cert = world.certs["bob"]
    name = conn.username or "alice"
    chat = "c-sample"
    members = (name, "bob")
    blob32 = bytes(range(32))
    table: dict[str, Callable[[], m.Message]] = {
        "server_hello": lambda: m.ServerHello(random=blob32, key_share=blob32, server_key=world.ca.public_der,
                                              server_scheme=world.ca.scheme.value, signature=b"\x01" * 64),
        "error": lambda: m.Error(code="not_member", message="sample", rid=7, ref="who"),
        "register_challenge": lambda: m.RegisterChallenge(rid=1, wrapped_nonce=b"\x02" * 256),
        "registered": lambda: m.Registered(rid=1, certificate=cert),
        "login_ok": lambda: m.LoginOk(rid=1, username=name, certificate=cert, online=(name,)),
        "bye": lambda: m.Bye(rid=1),
        "who_result": lambda: m.WhoResult(rid=1, online=members),
        "status_result": lambda: m.StatusResult(rid=1, username="bob", online=True),
        "presence": lambda: m.Presence(username="bob", online=False),
        "certificates": lambda: m.Certificates(rid=1, certificates=(cert,), unknown=()),
        "chat_opened": lambda: m.ChatOpened(rid=1, chat_id=chat, members=members, offline=(), unknown=()),
        "chat_invited": lambda: m.ChatInvited(rid=1, chat_id=chat, username="carol"),
        "chat_invitation": lambda: m.ChatInvitation(chat_id=chat, inviter="carol", mode="hybrid", suite="aes-256-gcm",
                                                    expires_in=600),
        "chat_answered": lambda: m.ChatAnswered(rid=1, chat_id=chat, accepted=True),
        "invitation_closed": lambda: m.InvitationClosed(chat_id=chat, username="carol", outcome="declined"),
        "chat_refusal": lambda: m.ChatRefusal(chat_id=chat, epoch=1, recipient="carol", seq=1, code="key_changed"),
        "chat_left": lambda: m.ChatLeft(rid=1, chat_id=chat),
        "chat_key": lambda: world.chat_key(chat, 1, "server-key", members, blob32, recipient=name),
        "chat_message": lambda: m.ChatMessage(chat_id=chat, epoch=1, sender="bob", seq=1, ciphertext=b"x" * 40,
                                              signature=b"\x03" * 256),
        "chat_epoch": lambda: world.chat_epoch(chat, 1, "hybrid", members),
        "share_committed": lambda: m.ShareCommitted(chat_id=chat, epoch=1, sender="bob", commitment=blob32,
                                                    signature=b"\x04" * 256),
        "key_share_delivery": lambda: m.KeyShareDelivery(chat_id=chat, epoch=1, sender="bob", recipient=name,
                                                         wrapped_share=b"\x05" * 256, nonce=b"\x06" * 16,
                                                         timestamp=int(world.now), signature=b"\x07" * 256),
        "key_confirmed": lambda: m.KeyConfirmed(chat_id=chat, epoch=1, sender="bob", mac=blob32),
        "cert_renewed": lambda: m.CertRenewed(rid=None, certificate=cert),
        "round_timeout": lambda: m.RoundTimeout(chat_id=chat, epoch=1, missing=("bob",)),
    }
    return table[kind]()


def _wrong_kind(value: Any) -> Any:
    if isinstance(value, bool):
        return "yes"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return 12345
    if isinstance(value, list):
        return "not a list"
    if isinstance(value, dict):
        return ["not", "an", "object"]
    return {"unexpected": True}


def _oversized(value: Any) -> Any:
    if isinstance(value, bool):
        return 2
    if isinstance(value, int):
        return 2**80  # beyond every Integer limit (PROTOCOL.md 3.2: 64-bit)
    if isinstance(value, str):
        return "A" * 200_000  # longer than any text or base64 field of an inner message allows
    if isinstance(value, list):
        return ["x"] * (m.MAX_LIST_ITEMS + 1)  # longer than any list allows
    if isinstance(value, dict):  # a certificate: every text field far beyond its limit
        return {k: ("A" * 20_000 if isinstance(v, str) else v) for k, v in value.items()}
    return value


def malformations(kind: str) -> Iterator[tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]]:
    """(label, transform) for every field of *kind*: missing (if required), wrong kind, oversized; plus an
    unknown extra field."""
    cls = m.MESSAGE_TYPES[kind]
    yield "unknown-field", lambda d: {**d, "injected": 1}
    for fld in dataclasses.fields(cls):
        name = fld.name
        if fld.default is dataclasses.MISSING:
            yield f"missing-{name}", lambda d, n=name: {k: v for k, v in d.items() if k != n}
        yield f"wrong-kind-{name}", lambda d, n=name: {**d, n: _wrong_kind(d.get(n, 1))}
        yield f"oversized-{name}", lambda d, n=name: {**d, n: _oversized(d.get(n, 1))}


def as_dict(message: m.Message) -> dict[str, Any]:
    return message_to_dict(message)
