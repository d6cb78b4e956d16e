"""The terminal client's commands, what it prints, and its recovery after a lost connection.

Owns: turning a typed line into a TcpClient call and an event into one line of text; which chat is current (the
prompt ``alice@bob>`` shows it, a typed message goes there); reconnecting with bounded backoff and logging in
again with the password held in memory for this session only. ``securechat/client.py`` runs it on a terminal.
Must not: contain protocol logic (TcpClient and ClientProtocol do it), read protocol state without the client's
lock (only TcpClient's accessors), or print a string someone else chose without ``display.printable``.
"""

from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .crypto.aead import CipherSuite
from .crypto.signatures import SignatureScheme
from .display import explain, printable
from .emoji import render
from .errors import ErrorCode, LocalProtocolError, SecureChatError
from .keystore import KeyStore, KeyStoreError, PinFileError
from .net.tcp_client import ChatInfo, ConnectionClosedError, RequestError, TcpClient
from .protocol import events as ev
from .protocol.fields import normalize_username
from .protocol.identity import UserKeys
from .protocol.messages import CHAT_MODES, LOBBY_ID, MAX_PASSWORD_CHARS
from .protocol.vocabulary import CONTRIBUTORY_MODES, ChatMode

SCHEME_ALIASES = {"rsa": SignatureScheme.RSA_PSS_SHA256, "dsa": SignatureScheme.DSA_SHA256,
                  "ecdsa": SignatureScheme.ECDSA_P256_SHA256, "ed25519": SignatureScheme.ED25519}
SUITES = ("aes-256-gcm", "aes-256-cbc-hmac-sha256")
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

USAGE = {
    "register": "/register NAME [rsa|dsa|ecdsa|ed25519] [PASSWORD]",
    "login": "/login NAME [PASSWORD]",
    "status": "/status NAME",
    "chat": "/chat [--mode MODE] [--suite SUITE] NAME [NAME...]",
    "invite": "/invite NAME",
    "accept": "/accept CHAT   (the start of the chat id in the invitation)",
    "decline": "/decline CHAT   (the start of the chat id in the invitation)",
    "switch": "/switch CHAT   (a name or number from /chats, or the start of a chat id)",
    "fingerprint": "/fingerprint NAME",
    "trust": "/trust NAME FINGERPRINT",
}

XOR_WARNING = ("!!! INSECURE (XOR of shares, no commitments): the last member to reveal chooses the key. "
               "contributory-xor derives the key as the XOR of the shares; use --mode contributory for the real "
               "derivation")
RULE = "!" * 78
# Bounded backoff: waits between reconnection attempts, the last one repeated until the cap.
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
RECONNECT_ATTEMPTS = 12
SETTLE_SECONDS = 1.5  # after a new login, how long to wait for the server's chat keys before the survivor list


class UsageError(Exception):
    """A command was typed with missing or wrong arguments: its usage line is printed."""


@dataclass
class Session:
    """Who we are logged in as, held in memory only for this process, to log in again after a reconnection."""

    username: str
    password: str
    keys: UserKeys


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


def _mode_promise(mode: str) -> str:
    return _MODE_PROMISES.get(mode, "new key verified")


_MODE_PROMISES: dict[str, str] = {
    ChatMode.SERVER_KEY: "new key verified",
    ChatMode.CONTRIBUTORY: "key agreed by every member and confirmed",
    ChatMode.CONTRIBUTORY_XOR: "XOR key agreed (INSECURE variant)",
    ChatMode.HYBRID: "membership verified (a fresh key per message)",
}


class Shell:
    """One user's terminal session. ``emit`` prints one (already safe) line; ``changed`` asks the terminal to
    redraw the prompt; ``connect`` opens a new TcpClient whose events go to the given callback."""

    def __init__(self, connect: Callable[[Callable[[ev.Event], None]], TcpClient], store: KeyStore, *,
                 emit: Callable[[str], None], ask_password: Callable[[str], str],
                 changed: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.time,
                 reconnect_delays: tuple[float, ...] = RECONNECT_DELAYS,
                 reconnect_attempts: int = RECONNECT_ATTEMPTS) -> None:
        self._connect, self.store, self._emit, self.ask, self._changed = connect, store, emit, ask_password, changed
        self._clock = clock
        self._delays, self._attempts = reconnect_delays, reconnect_attempts
        self._lock = threading.RLock()
        self._print_lock = threading.Lock()
        self.client: TcpClient | None = None
        self._generation = 0
        self.current: str | None = None
        self.session: Session | None = None
        self._sent: dict[int, tuple[str, str]] = {}   # rid of a chat_send -> (chat id, what was typed)
        self._known: set[str] = set()                # chat ids we printed a "new chat" line for
        self._labels: dict[str, str] = {}            # chat id -> its name when first seen with others in it
        self._quitting = False
        self._reconnecting: threading.Thread | None = None
        self._stop = threading.Event()
        self.status = "offline"                      # offline | connected | reconnecting

    # --- output -----------------------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        """Print *text* (built from our own words and printable() of anything foreign)."""
        with self._print_lock:
            self._emit(text)

    def _stamp(self) -> str:
        return time.strftime("%H:%M", time.localtime(self._clock()))

    def prompt(self) -> str:
        with self._lock:
            client, current = self.client, self.current
            user = self.session.username if self.session else None
        if self.status == "reconnecting":
            return f"{user or 'securechat'} (reconnecting...)> "
        if client is None or self.status == "offline":
            return f"{user or 'securechat'} (offline: /reconnect)> "
        if user is None:
            return "securechat> "
        return f"{user}@{self.label(current)}> " if current else f"{user}> "

    def label(self, chat_id: str | None, chats: list[ChatInfo] | None = None) -> str:
        """A readable, escaped name for a chat: "lobby", or the other members when we first saw it ("bob",
        "bob,carol"; it stays the same when they leave), with the start of the id when two active chats would
        have the same name."""
        if chat_id is None:
            return "-"
        if chat_id == LOBBY_ID:
            return "lobby"
        if chats is None:
            chats = self._chats()
        name = self._base_label(chat_id, chats)
        if name is None:
            return printable(chat_id[:8])
        if any(c.chat_id not in (chat_id, LOBBY_ID) and c.state == "active" and self._base_label(c.chat_id, chats)
               == name for c in chats):
            name += "#" + chat_id[:4]
        return printable(name)

    def _base_label(self, chat_id: str, chats: list[ChatInfo]) -> str | None:
        with self._lock:
            known = self._labels.get(chat_id)
        if known is not None:
            return known
        info = next((c for c in chats if c.chat_id == chat_id), None)
        if info is None:
            return None
        me = self.session.username if self.session else None
        others = sorted(m for m in info.members if m != me)
        if not others:
            return "just-you"
        with self._lock:
            self._labels[chat_id] = ",".join(others)
        return ",".join(others)

    def _chats(self) -> list[ChatInfo]:
        client = self.client
        return client.chat_list() if client is not None else []

    # --- connection and recovery ------------------------------------------------------------------------------

    def attach(self, client: TcpClient) -> None:
        """Use *client* (already connected) from now on."""
        with self._lock:
            self.client = client
            self.status = "connected"
        self._changed()

    def open_connection(self) -> TcpClient:
        """Connect through ``connect``, routing the new client's events here (stale clients are ignored)."""
        with self._lock:
            self._generation += 1
            generation = self._generation
        return self._connect(lambda event: self._from_client(event, generation))

    def initial_events(self, event: ev.Event) -> None:
        """Events of the first connection (made before the shell existed, generation 0)."""
        self._from_client(event, 0)

    def _from_client(self, event: ev.Event, generation: int) -> None:
        if generation == self._generation:
            self.on_event(event)

    def _lost(self, event: ev.ConnectionClosed) -> None:
        with self._lock:
            if self._quitting or self.status != "connected":
                return
            self.status = "reconnecting"
            previous = [c for c in self._chats_safely() if c.state == "active"]
            thread = threading.Thread(target=self._reconnect_loop, args=(previous,), name="securechat-reconnect",
                                      daemon=True)
            self._reconnecting = thread
        code = event.code or ErrorCode.CONNECTION_LOST
        reason = printable(event.message) if code == ErrorCode.CONNECTION_LOST else explain(code, event.message)
        self.say(f"* {self._stamp()} connection to the server lost ({reason}); reconnecting (what you type now "
                 "is not sent)")
        self._changed()
        thread.start()

    def _chats_safely(self) -> list[ChatInfo]:
        try:
            return self._chats()
        except Exception:  # noqa: BLE001 - a dead client's snapshot is best effort
            return []

    def _reconnect_loop(self, previous: list[ChatInfo]) -> None:
        labels = {c.chat_id: self.label(c.chat_id, previous) for c in previous}
        for attempt in range(1, self._attempts + 1):
            delay = self._delays[min(attempt - 1, len(self._delays) - 1)]
            if self._stop.wait(delay):
                return
            try:
                self._reconnect_once()
            except ReconnectRefused as exc:
                self.say(f"! {exc}")
                break
            except (SecureChatError, OSError, TimeoutError) as exc:
                if attempt in (1, 3) or attempt % 5 == 0:
                    self.say(f"  ... still reconnecting (attempt {attempt} of {self._attempts}): {_reason(exc)}")
                continue
            self._report_survivors(previous, labels)
            return
        with self._lock:
            self.status = "offline"
            self._reconnecting = None
        self.say("! could not reconnect; type /reconnect to try again, or /quit")
        self._changed()

    def _reconnect_once(self) -> None:
        client = self.open_connection()
        session = self.session
        if session is not None:
            try:
                client.load_pins(self.store.load_pins(session.username))
                client.login(session.username, session.password, session.keys)
            except PinFileError as exc:
                client.close()
                raise ReconnectRefused(str(exc.args[0])) from None
            except RequestError as exc:
                client.close()
                if exc.code is ErrorCode.AUTH_FAILED:
                    raise ReconnectRefused("the server no longer accepts your login (was it reset?): "
                                           "/login again or /register") from None
                raise
            except BaseException:
                client.close()
                raise
        with self._lock:
            self.client = client
            self.status = "connected"
            self._reconnecting = None
        self._changed()

    def _report_survivors(self, previous: list[ChatInfo], labels: dict[str, str]) -> None:
        client = self.client
        who = f" as {self.session.username}" if self.session else ""
        if client is None:
            return
        ids = {c.chat_id for c in previous}
        deadline = time.monotonic() + SETTLE_SECONDS
        while time.monotonic() < deadline and not ids <= {c.chat_id for c in client.chat_list()}:
            time.sleep(0.1)
        now = {c.chat_id for c in client.chat_list() if c.state == "active"}
        survived = [labels[c] for c in labels if c in now]
        lost = [labels[c] for c in labels if c not in now]
        self.say(f"* {self._stamp()} reconnected{who}")
        if survived:
            self.say(f"  chats that survived: {', '.join(survived)}")
        if lost:
            self.say(f"  chats that were lost: {', '.join(lost)} (the server ends your membership when the "
                     "connection drops: /chat NAME opens a new one)")
        with self._lock:
            if self.current is not None and self.current not in now:
                self.current = LOBBY_ID if LOBBY_ID in now else None
        self._changed()

    # --- events (reader thread) -------------------------------------------------------------------------------

    def on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.ConnectionClosed):
            self._lost(event)
            return
        if isinstance(event, ev.ChatKeyed):
            self._on_keyed(event)
            return
        if isinstance(event, ev.PeerKeyPinned):
            self._save_pins()  # before the line: whoever reads the line may look for the file
        line = self.describe(event)
        if line:
            self.say(line)

    def describe(self, event: ev.Event) -> str | None:
        """One line for an event, or None if it needs no line. Every foreign string goes through printable."""
        match event:
            case ev.ChatReceived():
                gap = f" ({event.gap} missing before it)" if event.gap else ""
                return (f"{self._stamp()} [{self.label(event.chat_id)}] {printable(event.sender)}: "
                        f"{printable(render(event.text))}   (signature {printable(event.signature_scheme)} "
                        f"verified){gap}")
            case ev.PresenceChanged():
                return f"* {printable(event.username)} is now {'online' if event.online else 'offline'}"
            case ev.PeerKeyPinned():
                return (f"* first sight of {printable(event.username)}: fingerprint {printable(event.fingerprint)} "
                        f"pinned (compare out of band: /fingerprint {printable(event.username)})")
            case ev.PeerKeyChanged():
                return key_changed_warning(event)
            case ev.ChatAborted():
                return (f"! key agreement in {self.label(event.chat_id)} (epoch {event.epoch}) failed: "
                        f"{explain(event.code, event.reason)}; this chat has no key now")
            case ev.RoundTimedOut():
                return (f"! key agreement in {self.label(event.chat_id)} (epoch {event.epoch}) timed out waiting "
                        f"for {', '.join(printable(m) for m in event.missing)}: no key until they take part "
                        "(/leave, then open the chat again without them)")
            case ev.InvitationReceived() if event.accepted:
                return (f"* {printable(event.inviter)} invited you to a {printable(event.mode)} chat: accepted "
                        "(--accept-invitations)")
            case ev.InvitationReceived():
                short = printable(event.chat_id[:8])
                return (f"* {printable(event.inviter)} invites you to a {printable(event.mode)} chat {short}: "
                        f"/accept {short} or /decline {short} (open for {event.expires_in} s)")
            case ev.MessageRefused():
                who = printable(event.recipient)
                return (f"! {who} did not accept your messages in {self.label(event.chat_id)}: {who} has not accepted "
                        f"your new keys yet. Compare safety numbers with {who} out of band (/fingerprint {who}); "
                        f"{who} then types /trust")
            case ev.InvitationClosed():
                what = {"declined": "declined", "expired": "did not answer"}.get(event.outcome, "withdrew from")
                return f"* {printable(event.username)} {what} your invitation to {self.label(event.chat_id)}"
            case ev.PeerMisbehaved():
                return (f"! WARNING: {printable(event.sender)} MISBEHAVED in {self.label(event.chat_id)} at message "
                        f"{event.seq}: {explain(event.code, event.reason)}")
            case ev.MessageRejected():
                return (f"! REJECTED a message in {self.label(event.chat_id)} from {printable(event.sender)}: "
                        f"{explain(event.code, event.reason)}")
            case ev.RequestFailed() if event.ref == "chat_send":
                with self._lock:
                    sent = self._sent.pop(event.rid, None) if event.rid is not None else None
                what = f' "{_preview(sent[1])}" to {self.label(sent[0])}' if sent else ""
                return f"{self._stamp()} \u2717 NOT delivered{what}: {explain(event.code, event.message)}"
            case ev.RequestFailed() if event.rid is None:
                return f"! {explain(event.code, event.message)}"
        return None

    def _on_keyed(self, event: ev.ChatKeyed) -> None:
        me = self.session.username if self.session else None
        label = self.label(event.chat_id)
        with self._lock:
            new = event.chat_id not in self._known
            self._known.add(event.chat_id)
            became_current = new and self.current is None and event.chat_id != LOBBY_ID
            if became_current:
                self.current = event.chat_id
        if event.chat_id == LOBBY_ID and not new:
            return  # the lobby rekeys at every login and logout: the presence line already said it
        if new and event.actor == me and event.chat_id != LOBBY_ID:
            return  # our own /chat prints its line when it returns
        if new and event.chat_id == LOBBY_ID:
            self.say(f"* lobby [{printable(event.mode)}, {printable(event.suite)}]: everyone online "
                     f"({', '.join(printable(m) for m in event.members)}); /lobby to talk there")
        elif new:
            self.say(f"* chat {label} [{printable(event.mode)}, {printable(event.suite)}] epoch {event.epoch}: "
                     f"members {', '.join(printable(m) for m in event.members)} (opened by {printable(event.actor)}); "
                     f"{_mode_promise(event.mode)}")
            if event.actor != me and event.chat_id != LOBBY_ID:
                self.say(f"  now talking in {label}" if became_current else f"  /switch {label} to talk there")
            if event.mode == ChatMode.CONTRIBUTORY_XOR and event.actor != me:
                self.say(XOR_WARNING)
        else:
            change = [f"{printable(m)} joined" for m in event.joined] + [f"{printable(m)} left" for m in event.left]
            self.say(f"* {label}: new key, epoch {event.epoch}" + (f" ({', '.join(change)})" if change else "")
                     + f"; {_mode_promise(event.mode)}")
        self._changed()

    def _save_pins(self) -> None:
        client = self.client
        username = client.username if client is not None else None  # set before login() returns to us
        if client is not None and username:
            self.store.save_pins(username, client.pins)

    # --- input (main thread) ----------------------------------------------------------------------------------

    def handle(self, line: str) -> bool:
        """Run one typed line; returns False to quit. Never raises for anything a user or a server does."""
        line = line.strip()
        if not line:
            return True
        if any(0xDC80 <= ord(c) <= 0xDCFF for c in line):
            self.say("! that line is not valid UTF-8 text (pasted from a binary file?): nothing was sent")
            return True
        if not line.startswith("/"):
            if any(ord(c) < 0x20 and c != "\t" or 0x7F <= ord(c) < 0xA0 for c in line):
                self.say("! that line holds control characters (arrow keys in a terminal without line editing?): "
                         "nothing was sent")
                return True
            self._send(line)
            return True
        try:
            words = shlex.split(line)
        except ValueError as exc:
            self.say(f"! {exc} (quote a name with spaces, or leave the quote out)")
            return True
        command, args = words[0][1:].lower(), words[1:]
        handler = getattr(self, f"cmd_{command}", None)
        if handler is None:
            self.say(f"! unknown command /{printable(command)}; /help lists them")
            return True
        try:
            return handler(args) is not False
        except (UsageError, IndexError):
            self.say(f"! usage: {USAGE.get(command, '/' + command)}")
        except KeyStoreError as exc:
            self.say(f"! {exc}")
        except PinFileError as exc:  # fail closed: a damaged pin file is never "no pins"
            self.say(f"! {printable(str(exc.args[0]))}")
        except ConnectionClosedError:
            self.say("! not connected to the server: " + ("reconnecting, try again in a moment"
                                                          if self.status == "reconnecting" else "type /reconnect"))
        except RequestError as exc:
            self.say(f"! {explain(exc.code, str(exc.args[0]))}")
        except LocalProtocolError as exc:
            self.say(f"! {self._local(exc)}")
        except SecureChatError as exc:
            self.say(f"! {explain(exc.code, str(exc.args[0]))}")
        except TimeoutError:
            self.say("! the server did not answer in time; try again")
        except OSError as exc:
            self.say(f"! {exc.strerror or exc}")
        return True

    def _local(self, exc: LocalProtocolError) -> str:
        """A local refusal in plain words: most mean "log in first" or "not in this state"."""
        if exc.code is ErrorCode.UNEXPECTED_MESSAGE:
            if self.session is None:
                return "log in first: /login NAME (or /register NAME to create an account)"
            return "that is not possible right now (" + printable(str(exc.args[0])) + ")"
        return explain(exc.code, str(exc.args[0]))

    def _online_client(self) -> TcpClient:
        client = self.client
        if client is None or self.status != "connected":
            raise ConnectionClosedError("not connected")
        return client

    def _send(self, text: str) -> None:
        if self.session is None:
            self.say("! log in first: /login NAME (or /register NAME to create an account); then /chat NAME")
            return
        with self._lock:
            current = self.current
        if current is None:
            self.say("! no chat yet: /chat NAME opens one (or /lobby, or /switch to one of /chats)")
            return
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_MESSAGE_BYTES:
            self.say(f"! that message is {size} bytes; the limit is {MAX_MESSAGE_BYTES} (64 KiB): nothing was "
                     "sent, split it")
            return
        try:
            client = self._online_client()
            with self._lock:
                rid = client.send(current, text)
                self._sent[rid] = (current, text)
                if len(self._sent) > 256:  # only the latest sends can still be refused
                    self._sent.pop(next(iter(self._sent)))
        except ConnectionClosedError:
            self.say("! not connected: your message was not sent (press Up to get it back once reconnected)")
            return
        except LocalProtocolError as exc:
            self.say(f"! not sent: {self._local(exc)}")
            return
        self.say(f"{self._stamp()} [{self.label(current)}] you: {printable(render(text))}   \u2713 sent")

    def _password(self, args: list[str], index: int) -> str:
        return args[index] if len(args) > index else self.ask("password: ")

    @staticmethod
    def _name(raw: str) -> str:
        try:
            return normalize_username(raw)
        except SecureChatError:
            raise KeyStoreError(f"{printable(raw)!r} cannot be a user name: 1-32 of a-z 0-9 _ . - starting "
                                "with a letter or digit") from None

    # --- commands ---------------------------------------------------------------------------------------------

    def cmd_help(self, args: list[str]) -> None:
        self.say(HELP)

    def cmd_register(self, args: list[str]) -> None:
        if not args or len(args) > 3:
            raise UsageError
        name = self._name(args[0])
        has_scheme = len(args) > 1 and args[1].lower() in SCHEME_ALIASES
        if len(args) == 3 and not has_scheme:
            self.say(f"! unknown signature scheme {printable(args[1])}: one of {', '.join(SCHEME_ALIASES)}")
            return
        scheme = SCHEME_ALIASES[args[1].lower()] if has_scheme else SignatureScheme.RSA_PSS_SHA256
        if self.session is not None:
            self.say(f"! you are logged in as {self.session.username}: /quit and start again to register another")
            return
        client = self._online_client()
        self.store.refuse_existing(name)  # before asking anything: never overwrite, never waste a key pair
        index = 2 if has_scheme else 1
        if len(args) > index:
            password = args[index]
        else:
            password = self.ask(f"choose a password for {name}: ")
            if self.ask("type it again: ") != password:
                self.say("! the two passwords differ: nothing was created")
                return
        problem = _password_problem(password)
        if problem:
            self.say(f"! {problem}: nothing was created")
            return
        staged = self.store.stage(name, password, scheme, progress=lambda s: self.say(f"  ... {s}"))
        try:
            result = client.register(name, password, staged.keys)
        except BaseException:
            self.store.discard(staged)  # refused (name taken...) or interrupted: nothing half-made stays
            raise
        keys = self.store.commit(staged)
        enc, sig = keys.fingerprints
        self.say(f"registered {printable(result.username)} ({scheme.value}); keys in {self.store.user_dir(name)}")
        self.say(f"  encryption key {enc}\n  signing key    {sig}\n  now: /login {name}")

    def cmd_login(self, args: list[str]) -> None:
        if not args or len(args) > 2:
            raise UsageError
        name = self._name(args[0])
        if self.session is not None:
            self.say(f"! already logged in as {self.session.username}")
            return
        client = self._online_client()
        self.store.require_keys(name)  # before asking for a password: are there keys to unlock?
        password = self._password(args, 1)
        keys = self.store.load(name, password)
        pins = self.store.load_pins(name)
        client.load_pins(pins)
        result = client.login(name, password, keys)
        with self._lock:
            self.session = Session(username=result.username, password=password, keys=keys)
        self.say(f"logged in as {printable(result.username)}; online: "
                 f"{', '.join(printable(n) for n in result.online)}")
        if pins:
            self.say(f"  {len(pins)} pinned peer fingerprint(s) loaded from {self.store.user_dir(name)}")
        self._changed()

    def cmd_who(self, args: list[str]) -> None:
        self.say("online: " + ", ".join(printable(n) for n in self._online_client().who()))

    def cmd_status(self, args: list[str]) -> None:
        if len(args) != 1:
            raise UsageError
        online = self._online_client().status(args[0])
        self.say(f"{printable(args[0])} is {'online' if online else 'offline'}")

    def cmd_chat(self, args: list[str]) -> None:
        options: dict[str, str] = {"--mode": ChatMode.SERVER_KEY, "--suite": CipherSuite.AES_256_GCM}
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
                self.say(f"! unknown option {printable(args[i])}: --mode or --suite")
                return
            else:
                names.append(args[i])
                i += 1
        mode, suite = options["--mode"], options["--suite"]
        if mode not in CHAT_MODES:
            self.say(f"! unknown mode {printable(mode)}: one of {', '.join(CHAT_MODES)}")
            return
        if suite not in SUITES:
            self.say(f"! unknown suite {printable(suite)}: one of {', '.join(SUITES)}")
            return
        if not names:
            raise UsageError
        if self.session is None:
            self.say("! log in first: /login NAME")
            return
        others = [self._name(n) for n in names]
        others = [n for n in others if n != self.session.username]
        if not others:
            self.say("! you cannot open a chat with only yourself: name someone else (/who lists who is online)")
            return
        client = self._online_client()
        if mode == ChatMode.CONTRIBUTORY_XOR:
            self.say(XOR_WARNING)
        self.say(f"  inviting {', '.join(printable(n) for n in others)}: the chat starts when they have answered "
                 "(at most 20 s; latecomers can still accept)")
        if mode in CONTRIBUTORY_MODES:
            self.say(f"  {mode}: then running the key agreement rounds with the members ...")
        opened = client.open_chat(others, mode=mode, suite=suite)
        with self._lock:
            self.current = opened.chat_id
            self._known.add(opened.chat_id)
        for name in opened.pending:
            where = "is offline" if name in opened.offline else "has not answered yet"
            self.say(f"  {printable(name)} {where}: invited, joins if they accept")
        for name in opened.declined:
            self.say(f"  {printable(name)} declined (or cannot take another chat): not added")
        for name in opened.unknown:
            self.say(f"  {printable(name)} is not a registered user: not added")
        if len(opened.members) < 2 and not opened.pending:
            self.say("  nobody else joined: the chat has only you (/invite NAME)")
        self.say(f"chat {printable(opened.chat_id[:8])} [{mode}, {suite}] with "
                 f"{', '.join(printable(m) for m in opened.members)}: {_mode_promise(mode)}; now talking in "
                 f"{self.label(opened.chat_id)}")
        self._changed()

    def cmd_invite(self, args: list[str]) -> None:
        if len(args) != 1:
            raise UsageError
        if self.current is None:
            self.say("! no current chat: /switch to one first")
            return
        self._online_client().invite(self.current, self._name(args[0]))

    def _answer(self, args: list[str], accept: bool) -> None:
        """PROTOCOL.md 7.11: nobody joins a chat without answering its invitation."""
        if len(args) > 1:
            raise UsageError
        client = self._online_client()
        open_ = list(client.protocol.invitations)
        matches = [cid for cid in open_ if cid.startswith(args[0])] if args else open_
        if len(matches) != 1:
            listed = ", ".join(printable(cid[:8]) for cid in open_) or "none"
            self.say(f"! which invitation? /{'accept' if accept else 'decline'} CHAT (open invitations: {listed})")
            return
        answered = client.answer_invitation(matches[0], accept)
        self.say(f"* {'accepted' if answered.accepted else 'declined'} the invitation to chat "
                 f"{printable(matches[0][:8])}")
        if answered.accepted:
            with self._lock:
                self.current = matches[0]
        self._changed()

    def cmd_accept(self, args: list[str]) -> None:
        self._answer(args, True)

    def cmd_decline(self, args: list[str]) -> None:
        self._answer(args, False)

    def cmd_leave(self, args: list[str]) -> None:
        current = self.current
        if current is None or current == LOBBY_ID:
            self.say("! no chat to leave" if current is None else "! the lobby cannot be left: /switch elsewhere")
            return
        label = self.label(current)
        self._online_client().leave(current)
        with self._lock:
            self.current = None
        self.say(f"left {label}; /chats lists the others")
        self._changed()

    def _active(self) -> list[ChatInfo]:
        return [c for c in self._chats() if c.state == "active"]

    def cmd_chats(self, args: list[str]) -> None:
        chats = self._active()
        if not chats:
            self.say("no chats: /chat NAME opens one")
        for number, chat in enumerate(chats, 1):
            mark = "*" if chat.chat_id == self.current else " "
            self.say(f"{mark} {number}. {self.label(chat.chat_id, chats)} [{printable(chat.mode)}] epoch "
                     f"{chat.epoch}: {', '.join(printable(m) for m in chat.members)}  "
                     f"(id {printable(chat.chat_id[:8])})")

    def cmd_switch(self, args: list[str]) -> None:
        if len(args) != 1:
            raise UsageError
        chats = self._active()
        want = args[0]
        labels = {c.chat_id: self.label(c.chat_id, chats) for c in chats}
        if want.isdigit() and 1 <= int(want) <= len(chats):
            matches = [chats[int(want) - 1].chat_id]
        else:
            matches = [c for c, name in labels.items() if name == want] or \
                      [c for c in labels if c.startswith(want)]
        if len(matches) != 1:
            self.say(f"! {'no such chat' if not matches else 'more than one chat matches'}: "
                     f"{printable(want)} (/chats lists them)")
            return
        with self._lock:
            self.current = matches[0]
        info = next(c for c in chats if c.chat_id == matches[0])
        self.say(f"now talking in {labels[matches[0]]} [{printable(info.mode)}] with "
                 f"{', '.join(printable(m) for m in info.members)}")
        self._changed()

    def cmd_lobby(self, args: list[str]) -> None:
        info = next((c for c in self._chats() if c.chat_id == LOBBY_ID), None)
        if info is None:
            self.say("! no lobby: this server runs without one (securechat-server --lobby), or you are not "
                     "logged in")
            return
        with self._lock:
            self.current = LOBBY_ID
        self.say(f"current chat: the lobby (hybrid mode; everyone online: "
                 f"{', '.join(printable(m) for m in info.members)})")
        self._changed()

    def cmd_fingerprint(self, args: list[str]) -> None:
        if len(args) != 1:
            raise UsageError
        name = self._name(args[0])
        client = self._online_client()
        own = client.identity_fingerprint()
        if own is None:
            self.say("! log in first")
            return
        if self.session is not None and name == self.session.username:
            self.say(f"your identity fingerprint: {own}")
            return
        change = client.pending_key_changes().get(name)
        if change is not None:
            # PROTOCOL.md 7.9: the number to compare is the OFFERED key's; the pinned one cannot match any more.
            pinned, offered = printable(change[0]), printable(change[1])
            self.say(f"!!! the keys of {name} CHANGED; nothing is sent to or accepted from {name} until you decide")
            self.say(f"  pinned key  {pinned}   safety number: {printable(client.safety_number(name))}")
            self.say(f"  OFFERED key {offered}   safety number: "
                     f"{printable(client.safety_number(name, offered=True))}")
            self.say(f"  ask {name} (in person, by phone) to read their safety number with you. Only if it is the")
            self.say(f"  OFFERED one, type  /trust {name} {offered}   (if it differs, a substituted key: do not)")
            return
        try:
            number = client.safety_number(name)
        except SecureChatError:
            self.say(f"no verified key for {name} yet: open a chat with them (or meet them in the lobby) first")
            return
        self.say(f"safety number with {name}: {printable(number)}")
        self.say(f"  read it to {name} out of band (in person, by phone): it must be the same on both screens")

    def cmd_trust(self, args: list[str]) -> None:
        if len(args) != 2:
            self.say("! usage: /trust NAME FINGERPRINT   (the OFFERED fingerprint /fingerprint NAME shows, after "
                     "comparing the safety number out of band)")
            return
        name, typed = self._name(args[0]), args[1]
        client = self._online_client()
        if name not in client.pending_key_changes():
            self.say(f"! the keys of {name} have not changed: there is nothing to trust (/fingerprint {name})")
            return
        try:
            client.accept_key_change(name, typed)
        except SecureChatError as exc:
            self.say(f"! NOT trusted: {printable(str(exc))}")
            return
        self._save_pins()
        self.say(f"pinned the new key of {name}: {printable(client.pins.get(name, ''))}")
        self.say("  (only this key: if the server presents yet another one, you will be warned again)")

    def cmd_renew(self, args: list[str]) -> None:
        """PROTOCOL.md 6.6: a new certificate for the same keys, in the last 30 days of the current one."""
        cert = self._online_client().renew_certificate().certificate
        until = time.strftime("%Y-%m-%d", time.gmtime(cert.not_after))
        self.say(f"certificate renewed for the same keys: valid until {until} UTC")

    def cmd_reconnect(self, args: list[str]) -> None:
        if self.status == "connected":
            self.say("already connected")
            return
        if self.status == "reconnecting":
            self.say("already reconnecting; wait a moment")
            return
        with self._lock:
            previous = [c for c in self._chats_safely() if c.state == "active"]
        labels = {c.chat_id: self.label(c.chat_id, previous) for c in previous}
        try:
            self._reconnect_once()
        except ReconnectRefused as exc:
            self.say(f"! {exc}")
            return
        except (SecureChatError, OSError, TimeoutError) as exc:
            self.say(f"! still cannot reach the server: {_reason(exc)}")
            return
        self._report_survivors(previous, labels)

    def cmd_quit(self, args: list[str]) -> bool:
        self.quit()
        return False

    def quit(self) -> None:
        """Log out (if logged in and connected) and close; safe to call twice and from Ctrl-C."""
        with self._lock:
            if self._quitting:
                return
            self._quitting = True
            client = self.client
        self._stop.set()
        if client is None:
            return
        try:
            if self.session is not None and self.status == "connected":
                client.logout()
                self.say("logged out")
        except (SecureChatError, OSError, TimeoutError):
            pass
        finally:
            client.close()
        thread = self._reconnecting
        if thread is not None and thread is not threading.current_thread():
            thread.join(2.0)


class ReconnectRefused(Exception):
    """Reconnecting cannot succeed by retrying (e.g. the login is refused): stop and say why."""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, SecureChatError):
        return explain(exc.code, str(exc.args[0]))
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


def _preview(text: str, limit: int = 40) -> str:
    shown = printable(text)
    return shown if len(shown) <= limit else shown[:limit - 3] + "..."


def _password_problem(password: str) -> str | None:
    if not password:
        return "the password is empty"
    if len(password) > MAX_PASSWORD_CHARS:
        return f"the password is longer than {MAX_PASSWORD_CHARS} characters"
    if any(0xD800 <= ord(c) <= 0xDFFF for c in password):
        return "the password is not valid UTF-8 text"
    return None


__all__ = ["HELP", "SCHEME_ALIASES", "Session", "Shell", "key_changed_warning"]
