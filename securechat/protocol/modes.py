"""The keyless chat modes on the client: signed epochs, contributory rounds, the lobby (PROTOCOL.md 7.6-7.8).

Owns: turning a server-signed ``chat_epoch`` into a chat at that epoch, running its ``Agreement`` (contributory
modes) as certificates and round messages arrive, and installing the agreed key. Hybrid chats need no
agreement: every message carries its own wrapped key (``ChatBook.seal``/``open``). Must not: send anything
itself (round messages go to ``book.outbox``), read clocks, or accept membership the server did not sign.
"""

from __future__ import annotations

from ..crypto.signatures import verify
from ..errors import ErrorCode, SecureChatError
from . import events as ev
from . import messages as m
from .agreement import Agreement, AgreementFailed, AgreementState, Peer
from .chats import ChatBook, ClientChat
from .constructions import chat_epoch_signed_bytes
from .states import RECEIVE, ChatState, next_chat_state

CONTRIBUTORY = ("contributory", "contributory-xor")


def install_epoch(book: ChatBook, msg: m.ChatEpoch, now: float) -> list[ev.Event]:
    """Verify the server's signature on the membership and move the chat to the new epoch."""
    chat = book.chats.get(msg.chat_id)
    if chat is not None and chat.state is ChatState.LEFT:
        del book.chats[msg.chat_id]
        chat = None
    refused = book.check_continuity(chat_id=msg.chat_id, epoch=msg.epoch, mode=msg.mode, suite=msg.suite,
                                    keyed=False)
    if refused is None and chat is not None and msg.epoch <= chat.epoch:
        refused = _rejected(msg, ErrorCode.STALE_EPOCH, "epoch did not increase")
    if refused is not None:
        return [refused]
    try:
        verify(book._server_scheme, book._server_key, chat_epoch_signed_bytes(  # noqa: SLF001 (same layer)
            chat_id=msg.chat_id, epoch=msg.epoch, mode=msg.mode, suite=msg.suite, reason=msg.reason,
            actor=msg.actor, members=msg.members), msg.signature)
    except SecureChatError:
        return [_rejected(msg, ErrorCode.BAD_SIGNATURE, "membership not signed by the server")]
    if book.username not in msg.members:
        return [_rejected(msg, ErrorCode.NOT_MEMBER, "membership does not list us")]
    refused = book.check_membership(chat_id=msg.chat_id, reason=msg.reason, actor=msg.actor, members=msg.members)
    if refused is not None:
        return [refused]
    book.record_epoch(msg.chat_id, mode=msg.mode, suite=msg.suite, epoch=msg.epoch)
    before = chat.members if chat else ()
    if chat is None:
        chat = book.chats[msg.chat_id] = ClientChat(chat_id=msg.chat_id, mode=msg.mode, suite=msg.suite,
                                                    epoch=msg.epoch, members=msg.members, key=None)
    else:
        chat.state = next_chat_state(chat.state, RECEIVE, "chat_epoch")
        chat.new_epoch(msg.epoch, msg.members, None)
    book.epoch_info[msg.chat_id] = (msg, before)
    book.agreements.pop(msg.chat_id, None)
    if msg.mode not in CONTRIBUTORY or len(msg.members) == 1:
        return [_keyed(msg, before)] if msg.mode not in CONTRIBUTORY else _alone(book, chat, msg, before)
    keys = book._keys  # noqa: SLF001
    agreement = Agreement(chat_id=msg.chat_id, epoch=msg.epoch, variant=msg.mode, members=msg.members,
                          me=book.username, my_scheme=keys.scheme, my_signing_key=keys.signing_key,  # type: ignore[attr-defined]
                          my_encryption_key=keys.encryption_key, random_bytes=book._random_bytes)  # type: ignore[attr-defined]  # noqa: SLF001
    book.agreements[msg.chat_id] = agreement
    book.outbox.extend(agreement.start())
    return advance(book, msg.chat_id, now)


def _alone(book: ChatBook, chat: ClientChat, msg: m.ChatEpoch, before: tuple[str, ...]) -> list[ev.Event]:
    """A contributory chat of one: its own random key (nobody else to agree with)."""
    chat.key = book._random_bytes(32)  # noqa: SLF001
    return [_keyed(msg, before)]


def on_round(book: ChatBook, msg: m.Message, now: float) -> list[ev.Event]:
    """A relayed commitment, envelope or confirmation for one of our chats."""
    chat_id, epoch = getattr(msg, "chat_id"), getattr(msg, "epoch")
    agreement = book.agreements.get(chat_id)
    if not isinstance(agreement, Agreement) or agreement.epoch != epoch:
        # docs/THREATS.md 49: a share or commitment of another epoch (replayed by the server) is refused.
        return [ev.MessageRejected(chat_id=chat_id, sender=getattr(msg, "sender", "server"),
                                   code=ErrorCode.STALE_EPOCH.value, reason=f"no agreement running at epoch {epoch}")]
    agreement.inbox.append(msg)
    return advance(book, chat_id, now)


def advance(book: ChatBook, chat_id: str, now: float) -> list[ev.Event]:
    agreement = book.agreements.get(chat_id)
    chat = book.chats.get(chat_id)
    if not isinstance(agreement, Agreement) or chat is None:
        return []

    def peer(name: str) -> Peer | None:
        entry = book.certificates.get(name)
        return None if entry is None else Peer(scheme=entry[0].signature_scheme, signing_key=entry[1],
                                               encryption_key=entry[2])

    try:
        blocked = [n for n in agreement.others if n in book.refused]
        if blocked:
            # docs/THREATS.md 46: no share goes to a key we have not accepted; end the epoch rather than wait forever.
            agreement.state = AgreementState.ABORTED
            raise AgreementFailed(f"{', '.join(blocked)} presented a changed key", ErrorCode.KEY_CHANGED)
        book.outbox.extend(agreement.advance(peer, now))
    except AgreementFailed as exc:
        book.agreements.pop(chat_id, None)
        if chat.epoch == agreement.epoch:
            # An aborted epoch has no key: nothing is sent or read under the unconfirmed one.
            chat.key, chat.sender_keys = None, {}
        return [ev.ChatAborted(chat_id=chat_id, epoch=agreement.epoch, code=exc.code.value, reason=str(exc.args[0]))]
    if agreement.key is not None and chat.key is None and chat.epoch == agreement.epoch:
        chat.key = agreement.key  # messages may be read from now; we send only once every member confirmed
    if agreement.state is AgreementState.DONE:
        book.agreements.pop(chat_id, None)
        info = book.epoch_info.get(chat_id)
        if isinstance(info, tuple):
            return [_keyed(info[0], info[1])]
    return []


def advance_all(book: ChatBook, now: float) -> list[ev.Event]:
    """After certificates arrive: every agreement that was waiting for them moves on."""
    events: list[ev.Event] = []
    for chat_id in list(book.agreements):
        events += advance(book, chat_id, now)
    return events


def can_send(book: ChatBook, chat_id: str) -> bool:
    """Contributory chats send only once the key is confirmed by every member (PROTOCOL.md 7.6)."""
    chat = book.chats.get(chat_id)
    keyless = chat is not None and chat.mode in CONTRIBUTORY and chat.key is None
    return chat_id not in book.agreements and not keyless


def _keyed(msg: m.ChatEpoch, before: tuple[str, ...]) -> ev.ChatKeyed:
    return ev.ChatKeyed(chat_id=msg.chat_id, epoch=msg.epoch, members=msg.members, reason=msg.reason,
                        actor=msg.actor, joined=tuple(n for n in msg.members if n not in before and before),
                        left=tuple(n for n in before if n not in msg.members), suite=msg.suite, mode=msg.mode)


def _rejected(msg: m.ChatEpoch, code: ErrorCode, reason: str) -> ev.MessageRejected:
    return ev.MessageRejected(chat_id=msg.chat_id, sender="server", code=code.value, reason=reason)
