"""What a client window shows for each event, error and wire frame, as text: pure functions, no widgets.

Owns: every word the client windows put on screen about something that happened: chat lines, tab labels and
headers, the invitation bar's sentence, status lines. Every string someone else chose (names, message texts, chat
ids, modes, suites, reasons, codes, fingerprints) goes through ``display.printable``, every error code through
``display.explain``, here and nowhere else, so one test can feed each function hostile text without a display.
A *line* is a tuple of ``(text, tag)`` parts; the tags are the chat view's ("sender", "verified", "system",
"warning", and "" for plain text). Must not: import tkinter, or decide anything: the events were verified by
``ClientProtocol`` before they reach a window.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..display import explain, printable
from ..emoji import render as render_emoji
from ..errors import ErrorCode, SecureChatError
from ..keystore import KeyStoreError
from ..protocol import events as ev
from ..protocol.messages import LOBBY_ID
from ..protocol.vocabulary import CONTRIBUTORY_MODES, ChatMode

Part = tuple[str, str]
Line = tuple[Part, ...]

VERIFIED = "\N{HEAVY CHECK MARK} signature verified"
XOR_WARNING = "INSECURE (XOR of shares, no commitments): the last member to reveal chooses the key"
KEY_NOTES: dict[str, str] = {
    ChatMode.SERVER_KEY: "new key verified",
    ChatMode.CONTRIBUTORY: "key agreed by every member and confirmed (the server cannot read)",
    ChatMode.CONTRIBUTORY_XOR: "XOR key agreed (INSECURE variant)",
    ChatMode.HYBRID: "membership verified; a fresh key per message",
}
WIRE_PREVIEW_CHARS = 72
LOST = ("this chat was lost when the connection dropped (the server removed you from it); "
        "open a new chat to continue")
LEFT = "you left this chat; its next key will not be sent to you"


def names(people: Iterable[str]) -> str:
    """``alice, bob``: each name escaped."""
    return ", ".join(printable(name) for name in people)


def short_id(chat_id: str, length: int = 8) -> str:
    """The first *length* characters of a chat id, escaped (a server chooses chat ids)."""
    return printable(chat_id[:length])


# --- errors and the wire pane ---------------------------------------------------------------------------------

def describe_error(exc: BaseException) -> str:
    """One plain line for a failure of a command (never a traceback)."""
    if isinstance(exc, KeyStoreError):  # already a plain sentence saying what to do
        return printable(str(exc))
    if isinstance(exc, SecureChatError):
        return explain(exc.code, str(exc.args[0]) if exc.args else "")
    if isinstance(exc, TimeoutError):
        return explain(ErrorCode.CONNECTION_LOST, "the server did not answer in time")
    if isinstance(exc, OSError):
        return explain(ErrorCode.CONNECTION_LOST, exc.strerror or type(exc).__name__)
    return explain(ErrorCode.INTERNAL_ERROR, type(exc).__name__)


def wire_line(entry: ev.TraceEntry) -> str:
    """A record frame as it crossed the network: direction, size and its first bytes (base64 ciphertext)."""
    arrow = "\N{RIGHTWARDS ARROW} sent" if entry.direction == "send" else "\N{LEFTWARDS ARROW} recv"
    body = entry.data if entry.data[:1] == b"{" else entry.data[4:]  # sent frames carry their length prefix
    preview = printable(body[:WIRE_PREVIEW_CHARS].decode("ascii", "replace"))
    return f"{arrow} {entry.size:6d} B  {preview}..."


# --- a chat tab: its label, header and lines -------------------------------------------------------------------

def tab_label(chat_id: str, mode: str = "") -> str:
    """``lobby``, ``server-key 1a2b3c`` once the mode is known, else ``chat 1a2b3c``."""
    if chat_id == LOBBY_ID:
        return "lobby"
    return f"{printable(mode)} {short_id(chat_id, 6)}" if mode else f"chat {short_id(chat_id, 6)}"


def waiting_header(chat_id: str, mode: str = "") -> str:
    """A tab's header before its first key arrives."""
    return f"chat {short_id(chat_id)}{f' · mode {printable(mode)}' if mode else ''}: waiting for the key ..."


def keyed_header(event: ev.ChatKeyed) -> str:
    return (f"chat {short_id(event.chat_id)} · mode {printable(event.mode)} · epoch {event.epoch} · "
            f"{printable(event.suite)} · members: {names(event.members)}")


def keyed_lines(event: ev.ChatKeyed, *, first: bool) -> list[Line]:
    """A new epoch: who is in it, why, and what kind of key; the XOR mode's warning with its first key."""
    change = f"; joined {names(event.joined)}" if event.joined else ""
    change += f"; left {names(event.left)}" if event.left else ""
    lines: list[Line] = [((f"rekeyed: epoch {event.epoch}, members {names(event.members)} "
                           f"({printable(event.reason)} by {printable(event.actor)}{change}); "
                           f"{KEY_NOTES.get(event.mode, 'new key verified')}", "system"),)]
    if first and event.mode == ChatMode.CONTRIBUTORY_XOR:
        lines.append(((f"\N{WARNING SIGN} {XOR_WARNING}", "warning"),))
    return lines


def received_line(event: ev.ChatReceived) -> Line:
    gap = f"  ({event.gap} missing before it)" if event.gap else ""
    return ((f"{printable(event.sender)}: ", "sender"), (printable(render_emoji(event.text)) + "  ", ""),
            (f"{VERIFIED} ({printable(event.signature_scheme)}){gap}", "verified"))


def sent_line(me: str, text: str, scheme: str) -> Line:
    return ((f"{printable(me)} (you): ", "sender"), (printable(render_emoji(text)) + "  ", ""),
            (f"signed with {printable(scheme)}, sent", "system"))


def rejected_line(event: ev.MessageRejected) -> Line:
    return ((f"\N{WARNING SIGN} REJECTED message from {printable(event.sender)}: {printable(event.code)} "
             f"({printable(event.reason)}) — not shown", "warning"),)


def misbehaved_line(event: ev.PeerMisbehaved) -> Line:
    return ((f"\N{WARNING SIGN} WARNING: {printable(event.sender)} MISBEHAVED at message {event.seq}: "
             f"{printable(event.code)} ({printable(event.reason)})", "warning"),)


def aborted_line(event: ev.ChatAborted) -> Line:
    return ((f"\N{WARNING SIGN} KEY AGREEMENT ABORTED (epoch {event.epoch}): {printable(event.code)} "
             f"({printable(event.reason)}) — this epoch has no key", "warning"),)


def key_changed_line(event: ev.PeerKeyChanged) -> Line:
    return ((f"\N{WARNING SIGN} WARNING: the keys of {printable(event.username)} CHANGED (pinned "
             f"{printable(event.pinned)}, now {printable(event.seen)}). Nothing is sent to or accepted from "
             f"them until you compare safety numbers (button \"Safety numbers\").", "warning"),)


def opened_notes(opened: ev.ChatOpened) -> list[str]:
    """The chat tab's notes about invitees who were not added."""
    return ([f"{printable(name)} is offline: not added" for name in opened.offline]
            + [f"{printable(name)} is not a registered user: not added" for name in opened.unknown])


# --- the window's status line and invitation bar ---------------------------------------------------------------

def opening(mode: str, members: list[str]) -> str:
    rounds = " (commit, reveal, confirm rounds)" if mode in CONTRIBUTORY_MODES else ""
    return f"opening a {printable(mode)} chat with {names(members)}{rounds} ..."


def opened(mode: str, event: ev.ChatOpened) -> str:
    return f"{printable(mode)} chat {short_id(event.chat_id)} with {names(event.members)}"


def invitation(first: ev.InvitationReceived, waiting: int) -> str:
    """The invitation bar: the first pending invitation, and how many more wait behind it."""
    more = f" (+{waiting - 1} more)" if waiting > 1 else ""
    return (f"{printable(first.inviter)} invites you to a {printable(first.mode)} chat "
            f"{short_id(first.chat_id)}{more}")


def rejected_elsewhere(event: ev.MessageRejected) -> str:
    """A rejection naming a chat we have no tab for (no tab is made for it: a server could name any number)."""
    where = f" in chat {short_id(event.chat_id)}" if event.chat_id else ""
    return f"! REJECTED from {printable(event.sender)}{where}: {explain(event.code, event.reason)}"


def refused(event: ev.MessageRefused) -> str:
    who = printable(event.recipient)
    return (f"! {who} did not accept your messages in chat {short_id(event.chat_id)}: {who} has not accepted your "
            f"new keys yet; compare safety numbers with {who} out of band")


def aborted(event: ev.ChatAborted) -> str:
    return f"! key agreement aborted in chat {short_id(event.chat_id)}: {explain(event.code, event.reason)}"


def key_changed(event: ev.PeerKeyChanged) -> str:
    return (f"\N{WARNING SIGN} WARNING: the keys of {printable(event.username)} CHANGED — compare safety numbers "
            f"out of band (button \"Safety numbers\")")


def survivors(username: str, kept: list[str], gone: list[str]) -> str:
    """After logging in again: which chats are still ours (tab labels, already escaped)."""
    return (f"reconnected as {printable(username)}. Chats still open: {', '.join(kept) or 'none'}. "
            f"Lost (the server removed you when the connection dropped): {', '.join(gone) or 'none'}.")
