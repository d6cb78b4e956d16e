"""``python -m securechat.client``: the interactive terminal client.

Owns: reading commands from the terminal and printing events; keys come from the ``KeyStore``. Must not:
contain protocol logic (``TcpClient`` and ``ClientProtocol`` do it). Passwords are read with getpass unless
given inline (``/login alice PASSWORD``, meant for scripts and labs; it stays in your shell history).
"""

from __future__ import annotations

import argparse
import getpass
import logging
import shlex
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

from .crypto.aead import set_backend
from .crypto.encoding import fingerprint
from .crypto.signatures import SignatureScheme
from .emoji import render
from .errors import SecureChatError
from .keystore import DEFAULT_ROOT, KeyStore, PinFileError, read_server_key_file
from .labs.keylog import KeyLogWriter
from .labs.variants import add_lab_arguments, announce, lab_mode
from .net.tcp_client import TcpClient
from .protocol import events as ev
from .protocol.messages import CHAT_MODES, LOBBY_ID

SCHEME_ALIASES = {"rsa": SignatureScheme.RSA_PSS_SHA256, "dsa": SignatureScheme.DSA_SHA256,
                  "ecdsa": SignatureScheme.ECDSA_P256_SHA256, "ed25519": SignatureScheme.ED25519}

HELP = """commands:
  /register NAME [rsa|dsa|ecdsa|ed25519] [PASSWORD]   create keys and an account (default rsa)
  /login NAME [PASSWORD]        log in (keys are read from the key directory)
  /who                          who is online
  /renew                        renew your certificate (same keys) in its last 30 days; an expired one is
                                renewed by the server's operator (securechat-admin renew NAME)
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
  /invite NAME                  invite NAME to the current chat (new epoch, new key)
  /leave                        leave the current chat
  /chats                        list your chats;  /switch CHAT  makes CHAT current (a prefix is enough)
  /quit                         log out and exit;  /help  this text
  anything else                 is sent, encrypted and signed, to the current chat"""


SUITES = ("aes-256-gcm", "aes-256-cbc-hmac-sha256")
XOR_WARNING = ("!!! INSECURE (XOR of shares, no commitments): the last member to reveal chooses the key. contributory-xor "
               "derives the key as the XOR of the shares; use --mode contributory for the real derivation")
RULE = "!" * 78


def key_changed_warning(event: ev.PeerKeyChanged) -> str:
    return "\n".join((
        RULE,
        f"!!! WARNING: THE KEYS OF {event.username.upper()} HAVE CHANGED",
        f"!!!   pinned:  {event.pinned}",
        f"!!!   now:     {event.seen}",
        "!!! The server (which is also the CA) certified different keys for this user. Either they",
        "!!! re-registered, or someone is impersonating them (a substituted key). Nothing is encrypted",
        f"!!! to {event.username} or accepted from them until you compare safety numbers out of band",
        f"!!! (phone, in person): type  /fingerprint {event.username}  for the OFFERED key's safety number",
        f"!!! and, only if {event.username} reads you the same number, /trust {event.username} {event.seen}",
        RULE,
    ))


def describe(event: ev.Event) -> str | None:
    """One line for an event, or None if it needs no line."""
    match event:
        case ev.ChatReceived():
            gap = f" ({event.gap} missing before it)" if event.gap else ""
            return f"[{event.chat_id[:8]}] {event.sender}: {render(event.text)}   (signature {event.signature_scheme} verified){gap}"
        case ev.PresenceChanged():
            return f"* {event.username} is now {'online' if event.online else 'offline'}"
        case ev.ChatKeyed():
            change = f"; joined {', '.join(event.joined)}" if event.joined else ""
            change += f"; left {', '.join(event.left)}" if event.left else ""
            what = {"server-key": "new key verified", "contributory": "key agreed by every member and confirmed",
                    "contributory-xor": "XOR key agreed (INSECURE variant)",
                    "hybrid": "membership verified (a fresh key per message)"}.get(event.mode, "new key verified")
            name = "lobby" if event.chat_id == LOBBY_ID else f"chat {event.chat_id[:8]}"
            return (f"* {name} [{event.mode}, {event.suite}] epoch {event.epoch}: members {', '.join(event.members)}"
                    f" ({event.reason} by {event.actor}{change}); {what}")
        case ev.PeerKeyPinned():
            return (f"* first sight of {event.username}: fingerprint {event.fingerprint} pinned "
                    f"(compare out of band: /fingerprint {event.username})")
        case ev.PeerKeyChanged():
            return key_changed_warning(event)
        case ev.ChatAborted():
            return (f"! KEY AGREEMENT ABORTED in chat {event.chat_id[:8]} epoch {event.epoch}: {event.code} "
                    f"({event.reason}); this epoch has no key")
        case ev.RoundTimedOut():
            return (f"! key agreement in chat {event.chat_id[:8]} epoch {event.epoch} timed out waiting for "
                    f"{', '.join(event.missing)}: no key until they take part (/leave, then open the chat again "
                    "without them)")
        case ev.PeerMisbehaved():
            return (f"! WARNING: {event.sender} MISBEHAVED in chat {event.chat_id[:8]} at message {event.seq}: "
                    f"{event.code} ({event.reason})")
        case ev.MessageRejected():
            return f"! REJECTED message in {event.chat_id[:8]} from {event.sender}: {event.code} ({event.reason})"
        case ev.RequestFailed() if event.rid is None or event.ref == "chat_send":
            return f"! error {event.code}: {event.message}"
        case ev.ConnectionClosed():
            return f"* connection closed: {event.code or 'bye'} {event.message}"
    return None


class Shell:
    def __init__(self, client: TcpClient, store: KeyStore, out: TextIO = sys.stdout,
                 ask_password: Callable[[str], str] = getpass.getpass) -> None:
        self.client, self.store, self.out, self.ask = client, store, out, ask_password
        self.current: str | None = None
        self._print_lock = threading.Lock()

    def say(self, text: str) -> None:
        with self._print_lock:
            print(text, file=self.out, flush=True)

    def on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.ChatKeyed) and self.current is None and event.chat_id != LOBBY_ID:
            self.current = event.chat_id
        line = describe(event)
        if line:
            self.say(line)
        if isinstance(event, ev.ChatKeyed) and event.mode == "contributory-xor" and event.epoch == 1 \
                and event.actor != self.client.protocol.username:
            self.say(XOR_WARNING)
        if isinstance(event, ev.PeerKeyPinned):
            self._save_pins()

    def _save_pins(self) -> None:
        username = self.client.protocol.username
        if username:
            self.store.save_pins(username, self.client.pins)

    def handle(self, line: str) -> bool:
        """Run one input line; returns False to quit."""
        line = line.strip()
        if not line:
            return True
        if not line.startswith("/"):
            if self.current is None:
                self.say("no current chat: /chat NAME first")
            else:
                self.client.send(self.current, line)
            return True
        words = shlex.split(line)
        command, args = words[0][1:], words[1:]
        handler = getattr(self, f"cmd_{command}", None)
        if handler is None:
            self.say(f"unknown command /{command}; /help lists them")
            return True
        try:
            return handler(args) is not False
        except SecureChatError as exc:
            self.say(f"! {exc}")
        except (IndexError, ValueError, KeyError) as exc:
            self.say(f"! usage error ({exc}); /help lists the commands")
        return True

    def _password(self, args: list[str], index: int) -> str:
        return args[index] if len(args) > index else self.ask("password: ")

    def cmd_help(self, args: list[str]) -> None:
        self.say(HELP)

    def cmd_register(self, args: list[str]) -> None:
        name = args[0]
        scheme = SCHEME_ALIASES[args[1].lower()] if len(args) > 1 and args[1].lower() in SCHEME_ALIASES else \
            SignatureScheme.RSA_PSS_SHA256
        password = self._password(args, 2 if len(args) > 1 and args[1].lower() in SCHEME_ALIASES else 1)
        keys = self.store.create(name, password, scheme, progress=lambda s: self.say(f"  ... {s}"))
        result = self.client.register(name, password, keys)
        enc, sig = keys.fingerprints
        self.say(f"registered {result.username} ({scheme.value}); keys in {self.store.user_dir(name)}")
        self.say(f"  encryption key {enc}\n  signing key    {sig}")

    def cmd_login(self, args: list[str]) -> None:
        name, password = args[0], self._password(args, 1)
        keys = self.store.load(name, password)
        pins = self.store.load_pins(name)
        self.client.load_pins(pins)
        result = self.client.login(name, password, keys)
        self.say(f"logged in as {result.username}; online: {', '.join(result.online)}")
        if pins:
            self.say(f"  {len(pins)} pinned peer fingerprint(s) loaded from {self.store.user_dir(name)}")

    def cmd_who(self, args: list[str]) -> None:
        self.say("online: " + ", ".join(self.client.who()))

    def cmd_renew(self, args: list[str]) -> None:
        """PROTOCOL.md 6.6: a new certificate for the same keys, in the last 30 days of the current one."""
        cert = self.client.renew_certificate().certificate
        until = time.strftime("%Y-%m-%d", time.gmtime(cert.not_after))
        self.say(f"certificate renewed for the same keys: valid until {until} UTC")

    def cmd_status(self, args: list[str]) -> None:
        self.say(f"{args[0]} is {'online' if self.client.status(args[0]) else 'offline'}")

    def cmd_chat(self, args: list[str]) -> None:
        options = {"--mode": "server-key", "--suite": "aes-256-gcm"}
        names: list[str] = []
        i = 0
        while i < len(args):
            word = args[i]
            flag, _, inline = word.partition("=")
            if flag in options:
                if inline:
                    options[flag] = inline
                    i += 1
                else:
                    options[flag] = args[i + 1]
                    i += 2
            else:
                names.append(word)
                i += 1
        mode, suite = options["--mode"], options["--suite"]
        if mode not in CHAT_MODES:
            self.say(f"! unknown mode {mode}: one of {', '.join(CHAT_MODES)}")
            return
        if suite not in SUITES:
            self.say(f"! unknown suite {suite}: one of {', '.join(SUITES)}")
            return
        if not names:
            self.say("! usage: /chat [--mode MODE] [--suite SUITE] NAME [NAME...]")
            return
        if mode == "contributory-xor":
            self.say(XOR_WARNING)
        if mode in ("contributory", "contributory-xor"):
            self.say(f"  {mode}: running the key agreement rounds with the members ...")
        opened = self.client.open_chat(names, mode=mode, suite=suite)
        self.current = opened.chat_id
        self.say(f"chat {opened.chat_id[:8]} [{mode}, {suite}] with {', '.join(opened.members)}")
        for name in opened.offline:
            self.say(f"  {name} is offline: not added")
        for name in opened.unknown:
            self.say(f"  {name} is not a registered user: not added")

    def cmd_invite(self, args: list[str]) -> None:
        if self.current is None:
            self.say("no current chat")
            return
        self.client.invite(self.current, args[0])

    def cmd_leave(self, args: list[str]) -> None:
        if self.current is None:
            self.say("no current chat")
            return
        self.client.leave(self.current)
        self.say(f"left {self.current[:8]}")
        self.current = None

    def cmd_chats(self, args: list[str]) -> None:
        for chat_id, chat in self.client.protocol.chats.items():
            mark = "*" if chat_id == self.current else " "
            self.say(f"{mark} {chat_id[:8]} [{chat.mode}] epoch {chat.epoch} {chat.state.value}: "  # type: ignore[attr-defined]
                     f"{', '.join(chat.members)}")  # type: ignore[attr-defined]

    def cmd_lobby(self, args: list[str]) -> None:
        if LOBBY_ID not in self.client.protocol.chats:
            self.say("no lobby: this server runs without one (securechat-server --lobby), or you are not logged in")
            return
        self.current = LOBBY_ID
        members = self.client.protocol.chats[LOBBY_ID].members  # type: ignore[attr-defined]
        self.say(f"current chat: the lobby (hybrid mode; everyone online: {', '.join(members)})")

    def cmd_fingerprint(self, args: list[str]) -> None:
        if not args:
            self.say("! usage: /fingerprint NAME")
            return
        name = args[0].lower()
        protocol = self.client.protocol
        if protocol.certificate is None:
            self.say("log in first")
            return
        if name == protocol.username:
            self.say(f"your identity fingerprint: {protocol.certificate.identity_fingerprint()}")
            return
        change = self.client.pending_key_changes().get(name)
        if change is not None:
            # PROTOCOL.md 7.9: the number to compare is the OFFERED key's; the pinned one cannot match any more.
            pinned, offered = change
            self.say(f"!!! the keys of {name} CHANGED; nothing is sent to or accepted from {name} until you decide")
            self.say(f"  pinned key  {pinned}   safety number: {self.client.safety_number(name)}")
            self.say(f"  OFFERED key {offered}   safety number: {self.client.safety_number(name, offered=True)}")
            self.say(f"  ask {name} (in person, by phone) to read their safety number with you. Only if it is the")
            self.say(f"  OFFERED one, type  /trust {name} {offered}   (if it differs, a substituted key: do not)")
            return
        try:
            number = self.client.safety_number(name)
        except SecureChatError:
            self.say(f"no verified key for {name} yet: open a chat with them (or meet them in the lobby) first")
            return
        self.say(f"safety number with {name}: {number}")
        self.say(f"  read it to {name} out of band (in person, by phone): it must be the same on both screens")

    def cmd_trust(self, args: list[str]) -> None:
        if len(args) != 2:
            self.say("! usage: /trust NAME FINGERPRINT   (the OFFERED fingerprint /fingerprint NAME shows, after "
                     "comparing the safety number out of band)")
            return
        name, typed = args[0].lower(), args[1]
        if name not in self.client.pending_key_changes():
            self.say(f"! the keys of {name} have not changed: there is nothing to trust (/fingerprint {name})")
            return
        try:
            self.client.accept_key_change(name, typed)
        except SecureChatError as exc:
            self.say(f"! NOT trusted: {exc}")
            return
        self._save_pins()
        self.say(f"pinned the new key of {name}: {self.client.pins.get(name, '')}")
        self.say("  (only this key: if the server presents yet another one, you will be warned again)")

    def cmd_switch(self, args: list[str]) -> None:
        matches = [c for c in self.client.protocol.chats if c.startswith(args[0])]
        if len(matches) != 1:
            self.say("no such chat (or ambiguous prefix)")
            return
        self.current = matches[0]

    def cmd_quit(self, args: list[str]) -> bool:
        try:
            if self.client.protocol.username:
                self.client.logout()
        finally:
            self.client.close()
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="securechat-client", description="Interactive securechat client.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5050)
    parser.add_argument("--keys-dir", default=str(DEFAULT_ROOT), help="where user keys and pinned servers live")
    parser.add_argument("--server-key", metavar="FILE", help="server key file (from securechat-server --export-key)")
    parser.add_argument("--post-quantum", action="store_true",
                        help="use the X25519 + ML-KEM-768 hybrid handshake (PROTOCOL.md 4.4)")
    parser.add_argument("--aead-backend", choices=["pycryptodome", "cryptography"], default="pycryptodome",
                        help="AES-GCM implementation (byte-identical; cryptography must be installed)")
    add_lab_arguments(parser, "client")  # PROTOCOL.md 15: --lab NAME and --keylog FILE, lab tools
    args = parser.parse_args(argv)
    try:
        set_backend(args.aead_backend)
    except RuntimeError as exc:
        print(f"securechat-client: {exc}", file=sys.stderr)
        return 2
    store = KeyStore(args.keys_dir)
    address = f"{args.host}:{args.port}"
    try:
        pinned = read_server_key_file(args.server_key) if args.server_key else store.pinned_server(address)
    except PinFileError as exc:  # fail closed: a damaged pin file never means "trust on first use"
        print(f"securechat-client: {exc.args[0]}", file=sys.stderr)
        return 1
    shell: Shell | None = None

    def on_event(event: ev.Event) -> None:
        if shell is not None:
            shell.on_event(event)
    lab = lab_mode(args.lab, "client")
    announce(lab, logging.getLogger("securechat.client"))
    try:
        keylog = KeyLogWriter(args.keylog) if args.keylog else None
    except ValueError as exc:
        print(f"securechat-client: {exc}", file=sys.stderr)
        return 2
    if keylog is not None:
        print(f"LAB TOOL: writing this connection's record keys to {keylog.path}", flush=True)
    try:
        client = TcpClient(args.host, args.port, server_key=pinned, on_event=on_event,
                           key_exchange="x25519+mlkem768" if args.post_quantum else "x25519", lab=lab,
                           keylog=keylog)
    except (SecureChatError, OSError) as exc:
        print(f"securechat-client: could not connect to {address}: {exc}", file=sys.stderr)
        return 1
    shell = Shell(client, store)
    assert client.handshake is not None
    shell.say(f"connected to {address} ({client.handshake.key_exchange}); server key "
              f"{client.handshake.server_fingerprint}")
    if client.handshake.first_use or args.server_key:
        # PROTOCOL.md 4.2: a key given with --server-key is pinned too, so a later run without the flag is
        # checked against it rather than trusting on first use again.
        try:
            store.pin_server(address, client.handshake.server_key, client.handshake.server_scheme)
            shell.say(f"  server key from {args.server_key} pinned for {address}" if args.server_key else
                      "  first connection to this server: compare that fingerprint with the server's; pinned now")
        except PinFileError as exc:
            shell.say(f"! server key NOT pinned: {exc.args[0]}")
    shell.say("type /help for commands")
    for line in sys.stdin:
        if not shell.handle(line):
            break
    else:
        shell.cmd_quit([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
