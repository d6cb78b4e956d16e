"""What a person sees of an event: one line (or a few) per event from the client library.

Owns: the wording of every event the terminal shows (a message with its verified signature, a new chat and what
its mode promises, a rekey, presence, a key change, an invitation, a refused or rejected message), and the side
effects an event has on the session: a chat opened by someone else becomes current if there is none, a newly
pinned key is saved before it is announced. Must not: print a string someone else chose without
``display.printable`` (or ``display.explain`` for an error); ConnectionClosed is reconnection's, not this module's.
"""

from __future__ import annotations

from ..display import explain, printable
from ..emoji import render
from ..protocol import events as ev
from ..protocol.messages import LOBBY_ID, ChatSend
from ..protocol.vocabulary import ChatMode, InvitationOutcome
from .state import TerminalState
from .texts import XOR_WARNING, key_changed_warning, mode_promise, preview

# InvitationClosed.outcome (PROTOCOL.md 7.11) in words.
_INVITATION_OUTCOMES = {InvitationOutcome.DECLINED: "declined", InvitationOutcome.EXPIRED: "did not answer",
                        InvitationOutcome.CANCELLED: "withdrew from"}


class EventLines:
    """Prints the events of the session's client; ``describe`` is the one-line wording."""

    def __init__(self, state: TerminalState) -> None:
        self._state = state

    def show(self, event: ev.Event) -> None:
        """Print what *event* means (called on the client's reader thread)."""
        if isinstance(event, ev.ChatKeyed):
            self._keyed(event)
            return
        if isinstance(event, ev.PeerKeyPinned):
            self._state.save_pins()  # before the line: whoever reads the line may look for the file
        line = self.describe(event)
        if line:
            self._state.say(line)

    def describe(self, event: ev.Event) -> str | None:
        """One line for an event, or None if it needs no line. Every foreign string goes through printable."""
        label, stamp = self._state.label, self._state.stamp
        match event:
            case ev.ChatReceived():
                gap = f" ({event.gap} missing before it)" if event.gap else ""
                return (f"{stamp()} [{label(event.chat_id)}] {printable(event.sender)}: "
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
                return (f"! key agreement in {label(event.chat_id)} (epoch {event.epoch}) failed: "
                        f"{explain(event.code, event.reason)}; this chat has no key now")
            case ev.RoundTimedOut():
                return (f"! key agreement in {label(event.chat_id)} (epoch {event.epoch}) timed out waiting "
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
                return (f"! {who} did not accept your messages in {label(event.chat_id)}: {who} has not accepted "
                        f"your new keys yet. Compare safety numbers with {who} out of band (/fingerprint {who}); "
                        f"{who} then types /trust")
            case ev.InvitationClosed():
                what = _INVITATION_OUTCOMES[event.outcome]
                return f"* {printable(event.username)} {what} your invitation to {label(event.chat_id)}"
            case ev.PeerMisbehaved():
                return (f"! WARNING: {printable(event.sender)} MISBEHAVED in {label(event.chat_id)} at message "
                        f"{event.seq}: {explain(event.code, event.reason)}")
            case ev.MessageRejected():
                return (f"! REJECTED a message in {label(event.chat_id)} from {printable(event.sender)}: "
                        f"{explain(event.code, event.reason)}")
            case ev.RequestFailed() if event.ref == ChatSend.TYPE:
                sent = self._state.take_send(event.rid)
                what = f' "{preview(sent[1])}" to {label(sent[0])}' if sent else ""
                return f"{stamp()} \u2717 NOT delivered{what}: {explain(event.code, event.message)}"
            case ev.RequestFailed() if event.rid is None:
                return f"! {explain(event.code, event.message)}"
        return None

    def _keyed(self, event: ev.ChatKeyed) -> None:
        state, say = self._state, self._state.say
        me = state.me
        label = state.label(event.chat_id)
        with state.lock:
            new = state.announce(event.chat_id)
            if new and state.current is None and event.chat_id != LOBBY_ID:
                state.make_current(event.chat_id)
            is_current = state.current == event.chat_id  # made current here, or by /accept just before
        if event.chat_id == LOBBY_ID and not new:
            return  # the lobby rekeys at every login and logout: the presence line already said it
        if new and event.actor == me and event.chat_id != LOBBY_ID:
            return  # our own /chat prints its line when it returns
        if new and event.chat_id == LOBBY_ID:
            say(f"* lobby [{printable(event.mode)}, {printable(event.suite)}]: everyone online "
                f"({', '.join(printable(m) for m in event.members)}); /lobby to talk there")
        elif new:
            say(f"* chat {label} [{printable(event.mode)}, {printable(event.suite)}] epoch {event.epoch}: "
                f"members {', '.join(printable(m) for m in event.members)} (opened by {printable(event.actor)}); "
                f"{mode_promise(event.mode)}")
            if event.actor != me:
                say(f"  now talking in {label}" if is_current else f"  /switch {label} to talk there")
            if event.mode == ChatMode.CONTRIBUTORY_XOR and event.actor != me:
                say(XOR_WARNING)
        else:
            change = [f"{printable(m)} joined" for m in event.joined] + [f"{printable(m)} left" for m in event.left]
            say(f"* {label}: new key, epoch {event.epoch}" + (f" ({', '.join(change)})" if change else "")
                + f"; {mode_promise(event.mode)}")
        state.changed()


__all__ = ["EventLines"]
