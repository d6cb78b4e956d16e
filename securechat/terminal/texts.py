"""The terminal client's own words: the help, the warnings, and plain sentences for errors.

Owns: the text of /help, the key-change and XOR warnings, what each chat mode promises once keyed, and the small
rules that turn an exception or a refused password into one plain line. Must not: hold state or print anything;
every foreign string it puts into a line goes through ``display.printable`` (or ``display.explain``).
"""

from __future__ import annotations

from ..crypto.aead import CipherSuite
from ..crypto.signatures import SignatureScheme
from ..display import explain, printable
from ..errors import ErrorCode, LocalProtocolError, SecureChatError
from ..keystore import KeyStoreError
from ..protocol import events as ev
from ..protocol.fields import normalize_username
from ..protocol.messages import MAX_PASSWORD_CHARS
from ..protocol.vocabulary import ChatMode

SCHEME_ALIASES = {"rsa": SignatureScheme.RSA_PSS_SHA256, "dsa": SignatureScheme.DSA_SHA256,
                  "ecdsa": SignatureScheme.ECDSA_P256_SHA256, "ed25519": SignatureScheme.ED25519}
SUITES = tuple(CipherSuite)
MAX_MESSAGE_BYTES = 64 * 1024  # PROTOCOL.md 10: one chat message's text, UTF-8

HELP = """commands:
  /register NAME [rsa|dsa|ecdsa|ed25519] [PASSWORD]   create keys and an account (default rsa)
  /login NAME [PASSWORD]        log in (keys are read from the key directory)
  /who                          who is online
  /status NAME                  is NAME online?
  /chat [--mode MODE] [--suite SUITE] NAME [NAME...]   open a chat (it becomes the current chat)
        MODE: server-key (default; the server makes and could read the key), contributory (members agree
        on the key: commit, reveal, HKDF, confirm; the server cannot read), contributory-xor (INSECURE
        XOR of shares, for teaching), hybrid (a fresh key per message, wrapped for each recipient)
        SUITE: aes-256-gcm (default) or aes-256-cbc-hmac-sha256 (encrypt-then-MAC)
  /lobby                        make the lobby (every online user, if the server runs one) the current chat
  /fingerprint NAME             the safety number of you and NAME: compare it with NAME out of band
                                (after a key change: the pinned and the OFFERED key's numbers side by side)
  /trust NAME FINGERPRINT       accept NAME's CHANGED key, exactly the one with FINGERPRINT (only after
                                comparing the offered key's safety number out of band: /fingerprint NAME)
  /invite NAME                  invite NAME to the current chat (they join, with a new epoch and key, if
                                they accept)
  /accept CHAT   /decline CHAT  answer an invitation you received (the start of its chat id is enough)
  /leave                        leave the current chat
  /chats                        list your chats;  /switch CHAT  makes CHAT current (its name, number or id)
  /renew                        renew your certificate (same keys) in its last 30 days; an expired one is
                                renewed by the server's operator (securechat-admin renew NAME)
  /reconnect                    connect again now (after the connection was lost)
  /quit                         log out and exit (Ctrl-D and Ctrl-C too);  /help  this text
  anything else                 is sent, encrypted and signed, to the current chat (the one in the prompt)"""

XOR_WARNING = ("!!! INSECURE (XOR of shares, no commitments): the last member to reveal chooses the key. "
               "contributory-xor derives the key as the XOR of the shares; use --mode contributory for the real "
               "derivation")
RULE = "!" * 78

_MODE_PROMISES: dict[str, str] = {
    ChatMode.SERVER_KEY: "new key verified",
    ChatMode.CONTRIBUTORY: "key agreed by every member and confirmed",
    ChatMode.CONTRIBUTORY_XOR: "XOR key agreed (INSECURE variant)",
    ChatMode.HYBRID: "membership verified (a fresh key per message)",
}


def mode_promise(mode: str) -> str:
    """What a keyed chat of *mode* has been checked for, in a few words."""
    return _MODE_PROMISES.get(mode, "new key verified")


def key_changed_warning(event: ev.PeerKeyChanged) -> str:
    name = printable(event.username)
    return "\n".join((
        RULE,
        f"!!! WARNING: THE KEYS OF {name.upper()} HAVE CHANGED",
        f"!!!   pinned:  {printable(event.pinned)}",
        f"!!!   now:     {printable(event.seen)}",
        "!!! The server (which is also the CA) certified different keys for this user. Either they",
        "!!! re-registered, or someone is impersonating them (a substituted key). Nothing is encrypted",
        f"!!! to {name} or accepted from them until you compare safety numbers out of band",
        f"!!! (phone, in person): type  /fingerprint {name}  for the OFFERED key's safety number",
        f"!!! and, only if {name} reads you the same number, /trust {name} {printable(event.seen)}",
        RULE,
    ))


def reason(exc: BaseException) -> str:
    """Why a connection attempt failed, in one escaped line."""
    if isinstance(exc, SecureChatError):
        return explain(exc.code, str(exc.args[0]))
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


def local_refusal(exc: LocalProtocolError, logged_in: bool) -> str:
    """A local refusal in plain words: most mean "log in first" or "not in this state"."""
    if exc.code is ErrorCode.UNEXPECTED_MESSAGE:
        if not logged_in:
            return "log in first: /login NAME (or /register NAME to create an account)"
        return "that is not possible right now (" + printable(str(exc.args[0])) + ")"
    return explain(exc.code, str(exc.args[0]))


def preview(text: str, limit: int = 40) -> str:
    shown = printable(text)
    return shown if len(shown) <= limit else shown[:limit - 3] + "..."


def password_problem(password: str) -> str | None:
    if not password:
        return "the password is empty"
    if len(password) > MAX_PASSWORD_CHARS:
        return f"the password is longer than {MAX_PASSWORD_CHARS} characters"
    if any(0xD800 <= ord(c) <= 0xDFFF for c in password):
        return "the password is not valid UTF-8 text"
    return None


def user_name(raw: str) -> str:
    """*raw* as a user name (PROTOCOL.md 3.2), or KeyStoreError with the rule in plain words."""
    try:
        return normalize_username(raw)
    except SecureChatError:
        raise KeyStoreError(f"{printable(raw)!r} cannot be a user name: 1-32 of a-z 0-9 _ . - starting "
                            "with a letter or digit") from None


__all__ = ["HELP", "MAX_MESSAGE_BYTES", "RULE", "SCHEME_ALIASES", "SUITES", "XOR_WARNING", "key_changed_warning",
           "local_refusal", "mode_promise", "password_problem", "preview", "reason", "user_name"]
