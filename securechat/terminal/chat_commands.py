"""The terminal commands about chats: /chat, /invite, /accept, /decline, /leave, /chats, /switch, /lobby, and a
typed message.

Owns: which chat is current (the prompt ``alice@bob>`` shows it; a typed line goes there), the options of /chat,
answering invitations (PROTOCOL.md 7.11), and the line that confirms a message was sent. Must not: contain
protocol logic (TcpClient does it), read protocol state except through TcpClient's locked accessors, or print a
string someone else chose without ``display.printable``.
"""

from __future__ import annotations

from ..crypto.aead import CipherSuite
from ..display import printable
from ..emoji import render
from ..errors import LocalProtocolError
from ..net.tcp_client import ConnectionClosedError
from ..protocol.messages import CHAT_MODES, LOBBY_ID
from ..protocol.vocabulary import CONTRIBUTORY_MODES, ChatMode
from .commands import Command, Handler
from .state import TerminalState, UsageError
from .texts import MAX_MESSAGE_BYTES, SUITES, XOR_WARNING, local_refusal, mode_promise, user_name

_MODE, _SUITE = "--mode", "--suite"


def _chat_options(args: list[str]) -> tuple[dict[str, str], list[str], str | None]:
    """``/chat`` words -> (options, names, an unknown option or None); UsageError when an option lacks its value."""
    options: dict[str, str] = {_MODE: ChatMode.SERVER_KEY, _SUITE: CipherSuite.AES_256_GCM}
    names: list[str] = []
    i = 0
    while i < len(args):
        flag, _, inline = args[i].partition("=")
        if flag in options:
            if inline:
                options[flag] = inline
                i += 1
            elif i + 1 < len(args):
                options[flag] = args[i + 1]
                i += 2
            else:
                raise UsageError
        elif args[i].startswith("--"):
            return options, names, args[i]
        else:
            names.append(args[i])
            i += 1
    return options, names, None


class ChatCommands:
    """The chat commands of one terminal session, and sending a typed message to the current chat."""

    def __init__(self, state: TerminalState) -> None:
        self._state = state

    def handlers(self) -> dict[Command, Handler]:
        return {Command.CHAT: self.chat, Command.INVITE: self.invite, Command.ACCEPT: self.accept,
                Command.DECLINE: self.decline, Command.LEAVE: self.leave, Command.CHATS: self.chats,
                Command.SWITCH: self.switch, Command.LOBBY: self.lobby}

    def chat(self, args: list[str]) -> None:
        state, say = self._state, self._state.say
        options, names, unknown = _chat_options(args)
        if unknown is not None:
            say(f"! unknown option {printable(unknown)}: --mode or --suite")
            return
        mode, suite = options[_MODE], options[_SUITE]
        if mode not in CHAT_MODES:
            say(f"! unknown mode {printable(mode)}: one of {', '.join(CHAT_MODES)}")
            return
        if suite not in SUITES:
            say(f"! unknown suite {printable(suite)}: one of {', '.join(SUITES)}")
            return
        if not names:
            raise UsageError
        me = state.me
        if me is None:
            say("! log in first: /login NAME")
            return
        others = [n for n in (user_name(n) for n in names) if n != me]
        if not others:
            say("! you cannot open a chat with only yourself: name someone else (/who lists who is online)")
            return
        client = state.online_client()
        if mode == ChatMode.CONTRIBUTORY_XOR:
            say(XOR_WARNING)
        say(f"  inviting {', '.join(printable(n) for n in others)}: the chat starts when they have answered "
            "(at most 20 s; latecomers can still accept)")
        if mode in CONTRIBUTORY_MODES:
            say(f"  {mode}: then running the key agreement rounds with the members ...")
        opened = client.open_chat(others, mode=mode, suite=suite)
        with state.lock:  # one step for the reader thread: our own new chat is current and announced
            state.make_current(opened.chat_id)
            state.announce(opened.chat_id)
        for name in opened.pending:
            where = "is offline" if name in opened.offline else "has not answered yet"
            say(f"  {printable(name)} {where}: invited, joins if they accept")
        for name in opened.declined:
            say(f"  {printable(name)} declined (or cannot take another chat): not added")
        for name in opened.unknown:
            say(f"  {printable(name)} is not a registered user: not added")
        if len(opened.members) < 2 and not opened.pending:
            say("  nobody else joined: the chat has only you (/invite NAME)")
        say(f"chat {printable(opened.chat_id[:8])} [{mode}, {suite}] with "
            f"{', '.join(printable(m) for m in opened.members)}: {mode_promise(mode)}; now talking in "
            f"{state.label(opened.chat_id)}")
        state.changed()

    def invite(self, args: list[str]) -> None:
        if len(args) != 1:
            raise UsageError
        current = self._state.current
        if current is None:
            self._state.say("! no current chat: /switch to one first")
            return
        self._state.online_client().invite(current, user_name(args[0]))

    def accept(self, args: list[str]) -> None:
        self._answer(args, True)

    def decline(self, args: list[str]) -> None:
        self._answer(args, False)

    def _answer(self, args: list[str], accept: bool) -> None:
        """PROTOCOL.md 7.11: nobody joins a chat without answering its invitation."""
        state = self._state
        if len(args) > 1:
            raise UsageError
        client = state.online_client()
        open_ = client.open_invitations()
        matches = [cid for cid in open_ if cid.startswith(args[0])] if args else open_
        if len(matches) != 1:
            listed = ", ".join(printable(cid[:8]) for cid in open_) or "none"
            state.say(f"! which invitation? /{Command.ACCEPT if accept else Command.DECLINE} CHAT "
                      f"(open invitations: {listed})")
            return
        answered = client.answer_invitation(matches[0], accept)
        state.say(f"* {'accepted' if answered.accepted else 'declined'} the invitation to chat "
                  f"{printable(matches[0][:8])}")
        if answered.accepted:
            state.make_current(matches[0])
        state.changed()

    def leave(self, args: list[str]) -> None:
        state = self._state
        current = state.current
        if current is None or current == LOBBY_ID:
            state.say("! no chat to leave" if current is None else "! the lobby cannot be left: /switch elsewhere")
            return
        label = state.label(current)
        state.online_client().leave(current)
        state.make_current(None)
        state.say(f"left {label}; /chats lists the others")
        state.changed()

    def chats(self, args: list[str]) -> None:
        state = self._state
        chats = state.active_chats()
        if not chats:
            state.say("no chats: /chat NAME opens one")
        for number, chat in enumerate(chats, 1):
            mark = "*" if chat.chat_id == state.current else " "
            state.say(f"{mark} {number}. {state.label(chat.chat_id, chats)} [{printable(chat.mode)}] epoch "
                      f"{chat.epoch}: {', '.join(printable(m) for m in chat.members)}  "
                      f"(id {printable(chat.chat_id[:8])})")

    def switch(self, args: list[str]) -> None:
        state = self._state
        if len(args) != 1:
            raise UsageError
        chats = state.active_chats()
        want = args[0]
        labels = {c.chat_id: state.label(c.chat_id, chats) for c in chats}
        if want.isdigit() and 1 <= int(want) <= len(chats):
            matches = [chats[int(want) - 1].chat_id]
        else:
            matches = [c for c, name in labels.items() if name == want] or [c for c in labels if c.startswith(want)]
        if len(matches) != 1:
            state.say(f"! {'no such chat' if not matches else 'more than one chat matches'}: "
                      f"{printable(want)} (/chats lists them)")
            return
        state.make_current(matches[0])
        info = next(c for c in chats if c.chat_id == matches[0])
        state.say(f"now talking in {labels[matches[0]]} [{printable(info.mode)}] with "
                  f"{', '.join(printable(m) for m in info.members)}")
        state.changed()

    def lobby(self, args: list[str]) -> None:
        state = self._state
        info = next((c for c in state.chats() if c.chat_id == LOBBY_ID), None)
        if info is None:
            state.say("! no lobby: this server runs without one (securechat-server --lobby), or you are not "
                      "logged in")
            return
        state.make_current(LOBBY_ID)
        state.say(f"current chat: the lobby (hybrid mode; everyone online: "
                  f"{', '.join(printable(m) for m in info.members)})")
        state.changed()

    def send(self, text: str) -> None:
        """A typed line that is not a command: encrypted, signed and sent to the current chat."""
        state, say = self._state, self._state.say
        if state.session is None:
            say("! log in first: /login NAME (or /register NAME to create an account); then /chat NAME")
            return
        with state.lock:
            current = state.current
        if current is None:
            say("! no chat yet: /chat NAME opens one (or /lobby, or /switch to one of /chats)")
            return
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_MESSAGE_BYTES:
            say(f"! that message is {size} bytes; the limit is {MAX_MESSAGE_BYTES} (64 KiB): nothing was sent, "
                "split it")
            return
        try:
            client = state.online_client()
            with state.lock:  # held until the send is remembered: a refusal from the reader thread finds it
                rid = client.send(current, text)
                state.remember_send(rid, current, text)
        except ConnectionClosedError:
            say("! not connected: your message was not sent (press Up to get it back once reconnected)")
            return
        except LocalProtocolError as exc:
            say(f"! not sent: {local_refusal(exc, logged_in=True)}")
            return
        say(f"{state.stamp()} [{state.label(current)}] you: {printable(render(text))}   \u2713 sent")


__all__ = ["ChatCommands"]
