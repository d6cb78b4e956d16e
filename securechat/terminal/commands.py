"""What a typed line means: the table of commands, and the one place their failures become plain lines.

Owns: the ``Command`` names, each one's usage line, splitting a typed line into a command and its words (a line
that does not start with ``/`` is a message for the current chat), refusing lines that are not text, and turning
every error a command can meet (a typo, wrong arguments, a refusal by the server, a lost connection, a damaged
key file) into one plain line. Never a traceback. Must not: run a command itself (the handlers are given to it).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from enum import StrEnum

from ..display import explain, printable
from ..errors import LocalProtocolError, SecureChatError
from ..keystore import KeyStoreError, PinFileError
from ..net.tcp_client import ConnectionClosedError, RequestError
from .state import Link, TerminalState, UsageError
from .texts import local_refusal


class Command(StrEnum):
    """Every ``/command`` the terminal client knows (what /help lists)."""

    HELP = "help"
    REGISTER = "register"
    LOGIN = "login"
    WHO = "who"
    STATUS = "status"
    CHAT = "chat"
    LOBBY = "lobby"
    FINGERPRINT = "fingerprint"
    TRUST = "trust"
    INVITE = "invite"
    ACCEPT = "accept"
    DECLINE = "decline"
    LEAVE = "leave"
    CHATS = "chats"
    SWITCH = "switch"
    RENEW = "renew"
    RECONNECT = "reconnect"
    QUIT = "quit"


USAGE: dict[Command, str] = {
    Command.REGISTER: "/register NAME [rsa|dsa|ecdsa|ed25519] [PASSWORD]",
    Command.LOGIN: "/login NAME [PASSWORD]",
    Command.STATUS: "/status NAME",
    Command.CHAT: "/chat [--mode MODE] [--suite SUITE] NAME [NAME...]",
    Command.INVITE: "/invite NAME",
    Command.ACCEPT: "/accept CHAT   (the start of the chat id in the invitation)",
    Command.DECLINE: "/decline CHAT   (the start of the chat id in the invitation)",
    Command.SWITCH: "/switch CHAT   (a name or number from /chats, or the start of a chat id)",
    Command.FINGERPRINT: "/fingerprint NAME",
    Command.TRUST: "/trust NAME FINGERPRINT",
}

# A command's handler gets the words after it; it returns False to end the program (/quit), anything else goes on.
Handler = Callable[[list[str]], bool | None]


def _undecodable(line: str) -> bool:
    """Bytes that were not UTF-8 reach us as lone surrogates (the terminal reads with surrogateescape)."""
    return any(0xDC80 <= ord(c) <= 0xDCFF for c in line)


def _has_controls(line: str) -> bool:
    return any(ord(c) < 0x20 and c != "\t" or 0x7F <= ord(c) < 0xA0 for c in line)


class CommandLine:
    """Runs typed lines: ``/command words...`` through *handlers*, anything else through *send*."""

    def __init__(self, state: TerminalState, handlers: Mapping[Command, Handler],
                 send: Callable[[str], None]) -> None:
        missing = set(Command) - set(handlers)
        if missing:
            raise ValueError(f"no handler for {', '.join(sorted(missing))}")
        self._state, self._handlers, self._send = state, dict(handlers), send

    def handle(self, line: str) -> bool:
        """Run one typed line; returns False to quit. Never raises for anything a user or a server does."""
        say = self._state.say
        line = line.strip()
        if not line:
            return True
        if _undecodable(line):
            say("! that line is not valid UTF-8 text (pasted from a binary file?): nothing was sent")
            return True
        if not line.startswith("/"):
            if _has_controls(line):
                say("! that line holds control characters (arrow keys in a terminal without line editing?): "
                    "nothing was sent")
                return True
            self._send(line)
            return True
        try:
            words = shlex.split(line)
        except ValueError as exc:
            say(f"! {exc} (quote a name with spaces, or leave the quote out)")
            return True
        typed, args = words[0][1:].lower(), words[1:]
        try:
            command = Command(typed)
        except ValueError:
            say(f"! unknown command /{printable(typed)}; /help lists them")
            return True
        return self._run(command, args)

    def _run(self, command: Command, args: list[str]) -> bool:
        say = self._state.say
        try:
            return self._handlers[command](args) is not False
        except (UsageError, IndexError):
            say(f"! usage: {USAGE.get(command, '/' + command)}")
        except KeyStoreError as exc:
            say(f"! {exc}")
        except PinFileError as exc:  # fail closed: a damaged pin file is never "no pins"
            say(f"! {printable(str(exc.args[0]))}")
        except ConnectionClosedError:
            say("! not connected to the server: " + ("reconnecting, try again in a moment"
                                                     if self._state.link is Link.RECONNECTING else "type /reconnect"))
        except RequestError as exc:
            say(f"! {explain(exc.code, str(exc.args[0]))}")
        except LocalProtocolError as exc:
            say(f"! {local_refusal(exc, self._state.session is not None)}")
        except SecureChatError as exc:
            say(f"! {explain(exc.code, str(exc.args[0]))}")
        except TimeoutError:
            say("! the server did not answer in time; try again")
        except OSError as exc:
            say(f"! {exc.strerror or exc}")
        return True


__all__ = ["USAGE", "Command", "CommandLine", "Handler"]
