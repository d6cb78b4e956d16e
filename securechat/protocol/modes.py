"""The keyless chat modes on the client: signed epochs, contributory rounds, the lobby (PROTOCOL.md 7.6-7.8).

Owns: turning a server-signed ``chat_epoch`` into a chat at that epoch, running the chat's ``Agreement``
(contributory modes; each ``ClientChat`` owns the agreement of its current epoch) as certificates and round
messages arrive, and installing the agreed key. Hybrid chats need no agreement: every message carries its own
wrapped key (``ChatBook.seal``/``receive``). Every function returns a ``Step``: the events for the application
and the round messages for ``ClientProtocol`` to send. Must not: send anything itself, read clocks, or accept
membership the server did not sign.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ErrorCode, SecureChatError
from . import events as ev
from . import messages as m
from .agreement import Agreement, AgreementFailed, Peer
from .chats import ChatBook, ClientChat, keyed_event
from .constructions import chat_epoch_signed_bytes
from .states import AgreementState
from .vocabulary import CONTRIBUTORY_MODES, ChatMode


@dataclass
class Step:
    """What one input to the keyless modes produced: events for the application, messages to send."""

    events: list[ev.Event] = field(default_factory=list)
    send: list[m.Message] = field(default_factory=list)

    def __iadd__(self, other: Step) -> Step:
        self.events += other.events
        self.send += other.send
        return self


def install_epoch(book: ChatBook, msg: m.ChatEpoch, now: float) -> Step:
    """Verify the server's signature on the membership and move the chat to the new epoch (PROTOCOL.md 7.7)."""
    chat, refused = book.admit(msg, keyed=False)
    if refused is not None:
        return Step([refused])
    try:
        book.verify_server_signature(chat_epoch_signed_bytes(
            chat_id=msg.chat_id, epoch=msg.epoch, mode=msg.mode, suite=msg.suite, reason=msg.reason,
            actor=msg.actor, members=msg.members), msg.signature)
    except SecureChatError:
        return Step([_rejected(msg, ErrorCode.BAD_SIGNATURE, "membership not signed by the server")])
    if book.username not in msg.members:
        return Step([_rejected(msg, ErrorCode.NOT_MEMBER, "membership does not list us")])
    refused = book.check_membership(chat_id=msg.chat_id, reason=msg.reason, actor=msg.actor, members=msg.members)
    if refused is not None:
        return Step([refused])
    chat, before = book.enter(chat, msg, None)
    chat.announcement, chat.before = msg, before
    if msg.mode not in CONTRIBUTORY_MODES:
        return Step([keyed_event(msg, before)])
    if len(msg.members) == 1:
        chat.key = book.random_bytes(32)  # a contributory chat of one: nobody else to agree with
        return Step([keyed_event(msg, before)])
    keys = book.keys
    chat.agreement = Agreement(chat_id=msg.chat_id, epoch=msg.epoch, variant=ChatMode(msg.mode),
                               members=msg.members, me=book.username, my_scheme=keys.scheme,
                               my_signing_key=keys.signing_key, my_encryption_key=keys.encryption_key,
                               random_bytes=book.random_bytes)
    step = Step(send=list(chat.agreement.start()))
    step += advance(book, chat, now)
    return step


def on_round(book: ChatBook, msg: m.ShareCommitted | m.KeyShareDelivery | m.KeyConfirmed, now: float) -> Step:
    """A relayed commitment, envelope or confirmation for one of our chats."""
    chat = book.chats.get(msg.chat_id)
    agreement = chat.agreement if chat is not None else None
    if chat is None or agreement is None or agreement.epoch != msg.epoch:
        # docs/THREATS.md 49: a share or commitment of another epoch (replayed by the server) is refused.
        return Step([ev.MessageRejected(chat_id=msg.chat_id, sender=msg.sender, code=ErrorCode.STALE_EPOCH,
                                        reason=f"no agreement running at epoch {msg.epoch}")])
    try:
        agreement.receive(msg)
    except AgreementFailed as exc:
        return _aborted(chat, agreement, exc)
    return advance(book, chat, now)


def advance(book: ChatBook, chat: ClientChat, now: float) -> Step:
    """Let the chat's agreement go as far as the certificates and round messages we hold allow."""
    agreement = chat.agreement
    if agreement is None:
        return Step()

    def peer(name: str) -> Peer | None:
        entry = book.certificates.get(name)
        return None if entry is None else Peer(scheme=entry[0].signature_scheme, signing_key=entry[1],
                                               encryption_key=entry[2])

    try:
        blocked = [n for n in agreement.others if n in book.refused]
        if blocked:
            # docs/THREATS.md 46: no share goes to a key we have not accepted; end the epoch rather than wait forever.
            agreement.abort(f"{', '.join(blocked)} presented a changed key", ErrorCode.KEY_CHANGED)
        send = agreement.advance(peer, now)
    except AgreementFailed as exc:
        return _aborted(chat, agreement, exc)
    if agreement.key is not None and chat.key is None and chat.epoch == agreement.epoch:
        chat.key = agreement.key  # messages may be read from now; we send only once every member confirmed
    if agreement.state is AgreementState.DONE:
        chat.agreement = None
        if chat.announcement is not None:
            return Step([keyed_event(chat.announcement, chat.before)], send)
    return Step([], send)


def _aborted(chat: ClientChat, agreement: Agreement, exc: AgreementFailed) -> Step:
    chat.agreement = None
    if chat.epoch == agreement.epoch:
        # An aborted epoch has no key: nothing is sent or read under the unconfirmed one.
        chat.abort_epoch()
    return Step([ev.ChatAborted(chat_id=chat.chat_id, epoch=agreement.epoch, code=exc.code,
                                reason=str(exc.args[0]))])


def advance_all(book: ChatBook, now: float) -> Step:
    """After certificates arrive: every agreement that was waiting for them moves on."""
    step = Step()
    for chat in list(book.chats.values()):
        if chat.agreement is not None:
            step += advance(book, chat, now)
    return step


def can_send(book: ChatBook, chat_id: str) -> bool:
    """Contributory chats send only once the key is confirmed by every member (PROTOCOL.md 7.6)."""
    chat = book.chats.get(chat_id)
    if chat is None:
        return True  # seal() reports the unknown chat
    return chat.agreement is None and not (chat.mode in CONTRIBUTORY_MODES and chat.key is None)


def _rejected(msg: m.ChatEpoch, code: ErrorCode, reason: str) -> ev.MessageRejected:
    return ev.MessageRejected(chat_id=msg.chat_id, sender="server", code=code, reason=reason)
