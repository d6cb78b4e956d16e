"""Showing untrusted text to a person: ``printable`` for the terminal and the GUI, ``explain`` for error codes.

Owns: the one rule for rendering a string that someone else chose (message text, user names, chat ids, server
error texts, certificate fields) and the one table from an error code (PROTOCOL.md 9) to a plain sentence.
Must not: change what is signed or sent (display only, after verification), or print anything itself.

Why: a terminal acts on control characters. A message ``ok\\x1b[2K\\r[chat] bob: ...`` erases the sender's real
prefix and leaves a line that looks as if bob wrote it; a right-to-left override (U+202E) reorders what follows.
``printable`` makes every such character *visible* instead: C0 controls, DEL and C1 controls as ``\\xNN`` (``\\n``,
``\\r``, ``\\t`` by name), and Unicode format, line/paragraph separator and lone-surrogate characters as
``<U+XXXX>``. A backslash stays a backslash: the escapes are only a way of showing, nothing is parsed back.
Zero-width joiners are kept only inside emoji sequences (between two non-ASCII characters), where they act.
"""

from __future__ import annotations

import unicodedata

from .errors import ErrorCode

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_ZWJ = "\u200d"
# Unicode categories shown as <U+XXXX>: Cf format (bidi embeddings/overrides/isolates U+202A-U+202E and
# U+2066-U+2069, marks U+200E/U+200F/U+061C, zero-width space U+200B, BOM U+FEFF, soft hyphen, invisible tag
# characters U+E0000-U+E007F), Zl/Zp (U+2028/U+2029 act as line breaks in some renderers), Cs (lone surrogates,
# from surrogateescape'd bytes that were not UTF-8).
_SHOWN_CATEGORIES = {"Cf", "Zl", "Zp", "Cs"}


def _is_control(code: int) -> bool:
    return code < 0x20 or 0x7F <= code < 0xA0


def printable(text: str) -> str:
    """*text* with every character that could act on a terminal or a text widget made visible.

    ``printable("ok\\x1b[2K\\r[c] bob: hi") == "ok\\\\x1b[2K\\\\r[c] bob: hi"``;
    ``printable("abc\\u202edef") == "abc<U+202E>def"``. Printable characters, emoji and other scripts are
    returned unchanged, so ``printable(s) == s`` for every ordinary message.
    """
    if text.isprintable():  # fast path: no Cc, Cf, Zl, Zp, Cs (nor Zs other than the space, which is fine)
        return text
    out: list[str] = []
    for index, char in enumerate(text):
        code = ord(char)
        if _is_control(code):
            out.append(_NAMED.get(char, f"\\x{code:02x}"))
        elif char == _ZWJ and _joins_emoji(text, index):
            out.append(char)
        elif unicodedata.category(char) in _SHOWN_CATEGORIES:
            out.append(f"<U+{code:04X}>")
        else:
            out.append(char)
    return "".join(out)


def _joins_emoji(text: str, index: int) -> bool:
    if index == 0 or index == len(text) - 1:
        return False
    before, after = text[index - 1], text[index + 1]
    return all(ord(c) > 0x7F and unicodedata.category(c) not in _SHOWN_CATEGORIES and not _is_control(ord(c))
               for c in (before, after))


# --- error codes in plain words (PROTOCOL.md 9), for the terminal client and the GUI --------------------------

ERROR_SENTENCES: dict[ErrorCode, str] = {
    ErrorCode.FRAME_TOO_LARGE: "that was too large to send (the limit is 64 KiB per message)",
    ErrorCode.BAD_FRAME: "the connection carried bytes that are not securechat frames",
    ErrorCode.BAD_RECORD: "an encrypted record did not decrypt (the connection may have been tampered with)",
    ErrorCode.HANDSHAKE_FAILED: "the secure connection to the server could not be set up",
    ErrorCode.BAD_JSON: "a message was not valid JSON",
    ErrorCode.BAD_FIELD: "a field of the request was not accepted",
    ErrorCode.UNKNOWN_TYPE: "the other side does not know that kind of message",
    ErrorCode.UNEXPECTED_MESSAGE: "that is not possible right now",
    ErrorCode.AUTH_FAILED: "wrong user name or password",
    ErrorCode.RATE_LIMITED: "too many attempts: wait a little and try again",
    ErrorCode.SERVER_BUSY: "the server is busy: try again in a moment",
    ErrorCode.LIMIT_EXCEEDED: "a server limit was reached (too many chats, members or messages)",
    ErrorCode.NAME_TAKEN: "that user name is already registered",
    ErrorCode.UNKNOWN_USER: "no such user is registered",
    ErrorCode.USER_OFFLINE: "that user is not online",
    ErrorCode.STORAGE_FAILED: "the server could not save that",
    ErrorCode.UNKNOWN_CHAT: "no such chat",
    ErrorCode.NOT_MEMBER: "you are not a member of that chat",
    ErrorCode.ALREADY_MEMBER: "that user is already in the chat",
    ErrorCode.BAD_SIGNATURE: "a signature did not verify: the message was dropped",
    ErrorCode.BAD_CERTIFICATE: "a certificate was not accepted",
    ErrorCode.KEY_CHANGED: "the keys of that user changed: compare safety numbers before trusting them",
    ErrorCode.STALE_EPOCH: "the message was encrypted under an old chat key",
    ErrorCode.REPLAY: "a message was replayed (seen before): it was dropped",
    ErrorCode.COMMITMENT_MISMATCH: "a member's key share did not match its commitment",
    ErrorCode.KEY_CONFIRMATION_FAILED: "the members did not end up with the same chat key",
    ErrorCode.KEY_UNWRAP_FAILED: "a chat key could not be unwrapped with your key",
    ErrorCode.DUPLICATE_SHARE: "a member sent its key share twice",
    ErrorCode.MODE_CHANGED: "the server tried to change how this chat is encrypted; refused, the chat keeps its mode",
    ErrorCode.MEMBERSHIP_INCONSISTENT: "the server sent a member list that contradicts itself; ignored",
    ErrorCode.UNREADABLE_MESSAGE: "a member sent you a message you cannot open (it gave members different keys)",
    ErrorCode.EQUIVOCATION: "a member showed different people different messages at the same place",
    ErrorCode.CONNECTION_LOST: "the connection to the server was lost",
    ErrorCode.INTERNAL_ERROR: "something went wrong inside the program",
}


def explain(code: str | ErrorCode, detail: str = "") -> str:
    """One plain line for an error: the sentence for *code*, then the (untrusted, escaped) *detail* and code.

    ``explain("auth_failed", "bad password")`` -> ``"wrong user name or password (auth_failed: bad password)"``.
    An unknown code (a server may send anything) is shown escaped, never trusted as a key into the table.
    """
    try:
        sentence = ERROR_SENTENCES[ErrorCode(code)]
    except ValueError:
        sentence = "the server reported an error"
    tail = printable(str(code)) + (f": {printable(detail)}" if detail else "")
    return f"{sentence} ({tail})"


__all__ = ["ERROR_SENTENCES", "explain", "printable"]
