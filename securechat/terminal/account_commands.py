"""The terminal commands about accounts and trust: /register, /login, /who, /status, /fingerprint, /trust, /renew.

Owns: the key directory's side of an account (keys staged before the server is asked, committed only once it
accepted; pins loaded at login and saved when they change), asking for a password when none was typed, and what
each of these commands prints. Must not: contain protocol logic (TcpClient does it), or print a string someone
else chose without ``display.printable``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..crypto.signatures import SignatureScheme
from ..display import printable
from ..errors import SecureChatError
from .commands import Command, Handler
from .state import Session, TerminalState, UsageError
from .texts import SCHEME_ALIASES, password_problem, user_name


class AccountCommands:
    """The account and trust commands of one terminal session; ``ask_password`` reads a password without echo."""

    def __init__(self, state: TerminalState, ask_password: Callable[[str], str]) -> None:
        self._state, self._ask = state, ask_password

    def handlers(self) -> dict[Command, Handler]:
        return {Command.REGISTER: self.register, Command.LOGIN: self.login, Command.WHO: self.who,
                Command.STATUS: self.status, Command.FINGERPRINT: self.fingerprint, Command.TRUST: self.trust,
                Command.RENEW: self.renew}

    def _password(self, args: list[str], index: int) -> str:
        return args[index] if len(args) > index else self._ask("password: ")

    def register(self, args: list[str]) -> None:
        state, say = self._state, self._state.say
        if not args or len(args) > 3:
            raise UsageError
        name = user_name(args[0])
        has_scheme = len(args) > 1 and args[1].lower() in SCHEME_ALIASES
        if len(args) == 3 and not has_scheme:
            say(f"! unknown signature scheme {printable(args[1])}: one of {', '.join(SCHEME_ALIASES)}")
            return
        scheme = SCHEME_ALIASES[args[1].lower()] if has_scheme else SignatureScheme.RSA_PSS_SHA256
        if state.session is not None:
            say(f"! you are logged in as {state.session.username}: /quit and start again to register another")
            return
        client = state.online_client()
        state.store.refuse_existing(name)  # before asking anything: never overwrite, never waste a key pair
        index = 2 if has_scheme else 1
        if len(args) > index:
            password = args[index]
        else:
            password = self._ask(f"choose a password for {name}: ")
            if self._ask("type it again: ") != password:
                say("! the two passwords differ: nothing was created")
                return
        problem = password_problem(password)
        if problem:
            say(f"! {problem}: nothing was created")
            return
        staged = state.store.stage(name, password, scheme, progress=lambda s: say(f"  ... {s}"))
        try:
            result = client.register(name, password, staged.keys)
        except BaseException:
            state.store.discard(staged)  # refused (name taken...) or interrupted: nothing half-made stays
            raise
        keys = state.store.commit(staged)
        enc, sig = keys.fingerprints
        say(f"registered {printable(result.username)} ({scheme.value}); keys in {state.store.user_dir(name)}")
        say(f"  encryption key {enc}\n  signing key    {sig}\n  now: /login {name}")

    def login(self, args: list[str]) -> None:
        state, say = self._state, self._state.say
        if not args or len(args) > 2:
            raise UsageError
        name = user_name(args[0])
        if state.session is not None:
            say(f"! already logged in as {state.session.username}")
            return
        client = state.online_client()
        state.store.require_keys(name)  # before asking for a password: are there keys to unlock?
        password = self._password(args, 1)
        keys = state.store.load(name, password)
        pins = state.store.load_pins(name)
        client.load_pins(pins)
        result = client.login(name, password, keys)
        with state.lock:
            state.session = Session(username=result.username, password=password, keys=keys)
        say(f"logged in as {printable(result.username)}; online: {', '.join(printable(n) for n in result.online)}")
        if pins:
            say(f"  {len(pins)} pinned peer fingerprint(s) loaded from {state.store.user_dir(name)}")
        state.changed()

    def who(self, args: list[str]) -> None:
        self._state.say("online: " + ", ".join(printable(n) for n in self._state.online_client().who()))

    def status(self, args: list[str]) -> None:
        if len(args) != 1:
            raise UsageError
        online = self._state.online_client().status(args[0])
        self._state.say(f"{printable(args[0])} is {'online' if online else 'offline'}")

    def fingerprint(self, args: list[str]) -> None:
        state, say = self._state, self._state.say
        if len(args) != 1:
            raise UsageError
        name = user_name(args[0])
        client = state.online_client()
        own = client.identity_fingerprint()
        if own is None:
            say("! log in first")
            return
        if name == state.me:
            say(f"your identity fingerprint: {own}")
            return
        change = client.pending_key_changes().get(name)
        if change is not None:
            # PROTOCOL.md 7.9: the number to compare is the OFFERED key's; the pinned one cannot match any more.
            pinned, offered = printable(change[0]), printable(change[1])
            say(f"!!! the keys of {name} CHANGED; nothing is sent to or accepted from {name} until you decide")
            say(f"  pinned key  {pinned}   safety number: {printable(client.safety_number(name))}")
            say(f"  OFFERED key {offered}   safety number: {printable(client.safety_number(name, offered=True))}")
            say(f"  ask {name} (in person, by phone) to read their safety number with you. Only if it is the")
            say(f"  OFFERED one, type  /trust {name} {offered}   (if it differs, a substituted key: do not)")
            return
        try:
            number = client.safety_number(name)
        except SecureChatError:
            say(f"no verified key for {name} yet: open a chat with them (or meet them in the lobby) first")
            return
        say(f"safety number with {name}: {printable(number)}")
        say(f"  read it to {name} out of band (in person, by phone): it must be the same on both screens")

    def trust(self, args: list[str]) -> None:
        state, say = self._state, self._state.say
        if len(args) != 2:
            say("! usage: /trust NAME FINGERPRINT   (the OFFERED fingerprint /fingerprint NAME shows, after "
                "comparing the safety number out of band)")
            return
        name, typed = user_name(args[0]), args[1]
        client = state.online_client()
        if name not in client.pending_key_changes():
            say(f"! the keys of {name} have not changed: there is nothing to trust (/fingerprint {name})")
            return
        try:
            client.accept_key_change(name, typed)
        except SecureChatError as exc:
            say(f"! NOT trusted: {printable(str(exc))}")
            return
        state.save_pins()
        say(f"pinned the new key of {name}: {printable(client.pins.get(name, ''))}")
        say("  (only this key: if the server presents yet another one, you will be warned again)")

    def renew(self, args: list[str]) -> None:
        """PROTOCOL.md 6.6: a new certificate for the same keys, in the last 30 days of the current one."""
        cert = self._state.online_client().renew_certificate().certificate
        until = time.strftime("%Y-%m-%d", time.gmtime(cert.not_after))
        self._state.say(f"certificate renewed for the same keys: valid until {until} UTC")


__all__ = ["AccountCommands"]
