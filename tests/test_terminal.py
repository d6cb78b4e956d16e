"""The terminal client's parts in memory (no socket): a typo, a foreign string, a refused send, an invitation.

The pexpect tests (test_cli_terminal.py) run the real program; these pin down the rules each part of
``securechat.terminal`` owns, over a fake TcpClient that has only the locked accessors the terminal may use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from securechat.net.tcp_client import ChatInfo
from securechat.protocol import events as ev
from securechat.protocol.messages import ChatSend
from securechat.terminal import Session, Shell
from securechat.terminal.commands import Command, CommandLine
from securechat.terminal.consoles import mask_password
from securechat.terminal.state import TerminalState
from tests.helpers import user_keys

CHAT = "c0ffee00" + "11" * 12


@dataclass
class FakeClient:
    """What the terminal may use of TcpClient; deliberately no ``protocol`` attribute."""

    invitations: list[str] = field(default_factory=list)
    answered: list[tuple[str, bool]] = field(default_factory=list)
    sent: list[tuple[str, str]] = field(default_factory=list)
    username: str | None = "alice"

    def chat_list(self) -> list[ChatInfo]:
        return [ChatInfo(chat_id=CHAT, mode="server-key", suite="aes-256-gcm", epoch=1, members=("alice", "bob"),
                         state="active")]

    def open_invitations(self) -> list[str]:
        return list(self.invitations)

    def answer_invitation(self, chat_id: str, accept: bool) -> ev.InvitationAnswered:
        self.answered.append((chat_id, accept))
        return ev.InvitationAnswered(rid=7, chat_id=chat_id, accepted=accept)

    def send(self, chat_id: str, text: str) -> int:
        self.sent.append((chat_id, text))
        return 41 + len(self.sent)


def _shell(client: FakeClient) -> tuple[Shell, list[str]]:
    lines: list[str] = []
    shell = Shell(lambda on_event: client, store=None, emit=lines.append, ask_password=lambda q: "")  # type: ignore[arg-type, return-value]
    shell.attach(client)  # type: ignore[arg-type]
    shell.session = Session(username="alice", password="", keys=user_keys("alice"))
    return shell, lines


@pytest.mark.parametrize("typed, said", [
    ("/hepl", "! unknown command /hepl; /help lists them"),
    ("/he\x1b[2Jlp", "! unknown command /he\\x1b[2jlp; /help lists them"),  # a typo is echoed escaped
    ("/status", "! usage: /status NAME"),
    ('/chat "bob', "! No closing quotation (quote a name with spaces, or leave the quote out)"),
])
def test_a_typo_gets_a_plain_line_and_nothing_else(typed: str, said: str) -> None:
    shell, lines = _shell(FakeClient())
    assert shell.handle(typed) is True
    assert lines == [said]


def test_every_command_has_a_handler_and_help_names_it() -> None:
    shell, lines = _shell(FakeClient())
    shell.handle("/HELP")
    assert all(f"/{command}" in lines[0] for command in Command)
    state = TerminalState(None, emit=lines.append, changed=lambda: None, clock=lambda: 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no handler for"):
        CommandLine(state, {Command.HELP: lambda args: None}, send=lambda text: None)


def test_the_echoed_command_masks_the_password_in_any_case() -> None:
    assert mask_password("/login bob s3cret") == "/login bob ****"
    assert mask_password("/LOGIN bob s3cret") == "/LOGIN bob ****"  # commands are case-insensitive
    assert mask_password("/Register bob ed25519 s3cret") == "/Register bob ed25519 ****"
    assert mask_password("/who") == "/who"


def test_foreign_strings_in_an_event_line_are_escaped() -> None:
    shell, _ = _shell(FakeClient())
    line = shell.describe(ev.ChatReceived(chat_id=CHAT, epoch=1, sender="bob\u202e", seq=1,
                                          text="ok\x1b[2K\r[lobby] carol: hi", signature_scheme="ed25519", gap=0))
    assert line is not None and "\x1b" not in line and "\r" not in line and "\u202e" not in line
    assert "bob<U+202E>: ok\\x1b[2K\\r[lobby] carol: hi" in line


def test_a_refused_send_names_the_message_it_refused() -> None:
    client = FakeClient()
    shell, lines = _shell(client)
    shell.handle(f"/switch {CHAT[:6]}")
    shell.handle("hello bob")
    assert client.sent == [(CHAT, "hello bob")] and lines[-1].endswith("you: hello bob   \u2713 sent")
    shell.on_event(ev.RequestFailed(rid=42, code="rate_limited", message="slow down", ref=ChatSend.TYPE))
    assert '\u2717 NOT delivered "hello bob" to bob: too many attempts' in lines[-1]


def test_an_invitation_is_answered_through_the_locked_accessor() -> None:
    client = FakeClient(invitations=[CHAT, "d00d" + "22" * 14])
    shell, lines = _shell(client)
    shell.handle("/accept")  # two open: which one?
    assert client.answered == [] and lines[-1].startswith("! which invitation? /accept CHAT (open invitations: ")
    shell.handle(f"/accept {CHAT[:4]}")
    assert client.answered == [(CHAT, True)] and shell.current == CHAT


def test_a_chat_accepted_before_its_key_arrives_is_announced_as_the_current_one() -> None:
    """/accept makes the chat current at once; its key (ChatKeyed) may come before or after the answer: either
    way the line must say we talk there now, never "/switch" to the chat we are already in."""
    client = FakeClient(invitations=[CHAT])
    shell, lines = _shell(client)
    shell.handle(f"/accept {CHAT[:8]}")
    shell.on_event(ev.ChatKeyed(chat_id=CHAT, epoch=1, members=("alice", "bob"), reason="open", actor="bob",
                                joined=(), left=(), suite="aes-256-gcm", mode="server-key"))
    assert lines[-1] == "  now talking in bob" and shell.current == CHAT
    assert "/switch" not in "\n".join(lines)
