"""Chats on the server: open, invite, leave, relay, and each epoch's keys or signed membership (PROTOCOL.md 7).

Owns: the handlers of ``chat_open``, ``chat_invite``, ``chat_leave`` and ``chat_send``, starting a new epoch on
every membership change, releasing server-key distributions in epoch order, the lobby (PROTOCOL.md 7.8), and
the chat directory and the keyless modes' state (``KeylessModes``: signed epochs, rounds, mailboxes). As h2
splits a connection from its streams, ``ServerProtocol`` owns the connections and hands each chat request to
this object, which sees only narrow collaborators: the ``Outbox`` it sends through, ``Presence`` (who is online
and their keys), the registry (who exists) and a job queue. Must not: read a message's contents (it relays
ciphertext it cannot open in every mode but server-key) or touch sockets and clocks.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from ..crypto.aead import CipherSuite
from ..crypto.encoding import RandomBytes
from ..errors import ErrorCode, SecureChatError
from . import events as ev
from . import messages as m
from .messages import MAX_CHAT_MEMBERS
from .codec import chat_message_frame  # noqa: F401  (re-exported: the relay fast path lives in the codec)
from .jobs import ChatKeyJob, Job, ServerKey
from .lab import LabVariant, lab_has
from .limits import ServerConfig, TokenBucket
from .vocabulary import CONTRIBUTORY_MODES, Availability, ChatMode, RekeyReason
from .registry import Registry
from .server_chats import ChatDirectory, ServerChat
from .server_invitations import Invitations, Opening
from .server_modes import KeylessModes
from .server_outbox import Outbox, Peer
from .server_presence import Presence


class ChatRelay:
    """The chats of the server: membership, epochs, keys or signed membership, and the relay of messages."""

    def __init__(self, *, outbox: Outbox, presence: Presence, registry: Registry, config: ServerConfig,
                 server_key: ServerKey, random_bytes: RandomBytes, submit: Callable[[Job], None],
                 now: Callable[[], float], relay_events: bool = True) -> None:
        self._outbox = outbox
        self._presence = presence
        self._registry = registry
        self._server_key = server_key
        self._random_bytes = random_bytes
        self._submit = submit
        self._relay_events = relay_events
        self._clock = now
        self.key_jobs = 0                                       # ChatKeyJobs handed out and not back yet
        self.key_waiting: OrderedDict[str, None] = OrderedDict()  # chats waiting for a key job slot (7.2)
        self.config = config
        self.chats = ChatDirectory(config.max_chats_per_user)
        self.invitations = Invitations(outbox=outbox, presence=presence, chats=self.chats, config=config,
                                       random_bytes=random_bytes, now=now)  # PROTOCOL.md 7.11
        self.modes = KeylessModes(outbox=outbox, presence=presence, chats=self.chats, config=config,
                                  server_key=server_key, random_bytes=random_bytes, now=now)

    def member_online(self, p: Peer, username: str) -> None:
        """A user logged in: bring its keyless chats up to date, and put it in the lobby if there is one."""
        self.modes.on_login(p, username)
        if self.config.lobby:
            self.join_lobby(username)
        self.invitations.on_login(username)

    def member_offline(self, username: str) -> None:
        """A user went offline: chats it was opening are cancelled, those waiting for its answer may start; it
        leaves every chat, and the others' chats start a new epoch."""
        self.start_openings(self.invitations.on_logout(username))
        for chat_id in self.chats.leave_all(username):
            self.rekey(chat_id, RekeyReason.DISCONNECT, username)

    def join_lobby(self, username: str) -> None:
        chat = self.chats.get(m.LOBBY_ID)
        try:
            if chat is None:
                chat = self.chats.open(username, [], mode=ChatMode.HYBRID, suite=CipherSuite.AES_256_GCM,
                                       chat_id=m.LOBBY_ID)
            else:
                self.chats.add(m.LOBBY_ID, username)
        except SecureChatError:
            # PROTOCOL.md 7.8: a full lobby (256 members) admits nobody more; chats still work. Said, not silent.
            peer = self._presence.peer_of(username)
            if peer is not None:
                self._outbox.reply_error(self._outbox.peer(peer), ErrorCode.LIMIT_EXCEEDED,
                                         f"the lobby is full ({MAX_CHAT_MEMBERS} members): you are not in it; "
                                         "chats work", None, ref="lobby")
            return
        self.rekey(m.LOBBY_ID, RekeyReason.JOIN, username)

    def availability_of(self, name: str) -> Availability:
        if name in self._presence:
            return Availability.ONLINE
        return Availability.OFFLINE if self._registry.get_user(name) is not None else Availability.UNKNOWN

    def on_chat_open(self, p: Peer, msg: m.ChatOpen) -> None:
        """PROTOCOL.md 7.1 and 7.11: invite the named users; the chat starts when they have answered."""
        assert p.username is not None
        wanted = [n for n in msg.members if n != p.username]
        status = {n: self.availability_of(n) for n in wanted}
        if not any(status[n] is not Availability.UNKNOWN for n in wanted):
            missing = ", ".join(wanted) or "nobody"
            self._outbox.reply_error(p, ErrorCode.USER_OFFLINE, f"nobody to invite ({missing} not registered)", msg)
            return
        if len(self.chats.chats_of(p.username)) >= self.config.max_chats_per_user:
            self._outbox.reply_error(p, ErrorCode.LIMIT_EXCEEDED, f"{p.username} is in too many chats", msg)
            return
        opening = self.invitations.begin_opening(p, msg, wanted, {n: str(a) for n, a in status.items()})
        if opening is not None:
            self.start_openings([opening])

    def start_openings(self, openings: list[Opening]) -> None:
        """Start epoch 1 of each chat whose invitees answered (or whose wait ended), PROTOCOL.md 7.11."""
        for opening in openings:
            if self.invitations.start(opening):
                self.rekey(opening.chat_id, RekeyReason.OPEN, opening.opener)

    def on_chat_answer(self, p: Peer, msg: m.ChatAnswer) -> None:
        answered = self.invitations.answer(p, msg)
        if answered.opening is not None:
            self.start_openings([answered.opening])
        elif answered.joined:
            self.rekey(msg.chat_id, answered.reason, answered.actor)

    def on_chat_invite(self, p: Peer, msg: m.ChatInvite) -> None:
        """PROTOCOL.md 7.11: an invitation the invitee answers; it joins (a new epoch) only by accepting."""
        assert p.username is not None
        if msg.chat_id == m.LOBBY_ID:
            self._outbox.reply_error(p, ErrorCode.UNEXPECTED_MESSAGE, "the lobby has every online user already",
                                     msg)
            return
        availability = self.availability_of(msg.username)
        try:
            chat = self.chats.check_member(msg.chat_id, p.username)
            if not self.membership_change_allowed(chat):
                raise SecureChatError("too many invitations into this chat, retry shortly", ErrorCode.RATE_LIMITED)
            if availability is Availability.UNKNOWN:
                raise SecureChatError(f"{msg.username} is not registered", ErrorCode.UNKNOWN_USER)
            if msg.username in chat.members:
                raise SecureChatError(f"{msg.username} is already a member", ErrorCode.ALREADY_MEMBER)
            self.invitations.invite(msg.chat_id, msg.username, p.username, chat.mode, chat.suite)
        except SecureChatError as exc:
            self._outbox.reply_error(p, exc.code, str(exc.args[0]), msg)
            return
        self._outbox.send(p, m.ChatInvited(rid=msg.rid, chat_id=msg.chat_id, username=msg.username))

    def on_chat_leave(self, p: Peer, msg: m.ChatLeave) -> None:
        assert p.username is not None
        if msg.chat_id == m.LOBBY_ID:
            self._outbox.reply_error(p, ErrorCode.UNEXPECTED_MESSAGE, "one leaves the lobby by logging out", msg)
            return
        try:
            remaining = self.chats.remove(msg.chat_id, p.username)
        except SecureChatError as exc:
            self._outbox.reply_error(p, exc.code, str(exc.args[0]), msg)
            return
        self._outbox.send(p, m.ChatLeft(rid=msg.rid, chat_id=msg.chat_id))
        chat = self.chats.get(msg.chat_id)
        if chat is not None and lab_has(self.config.lab, LabVariant.NO_REKEY_ON_LEAVE):
            chat.epoch -= 1  # LAB ONLY (PROTOCOL.md 16.1): undo the new epoch, so the leaver's key stays in use
        elif remaining:
            self.rekey(msg.chat_id, RekeyReason.LEAVE, p.username)

    def on_chat_send(self, p: Peer, msg: m.ChatSend) -> None:
        """PROTOCOL.md 7.3: relay to every other current member, labelled with the authenticated sender."""
        assert p.username is not None
        try:
            chat = self.chats.check_member(msg.chat_id, p.username)
        except SecureChatError as exc:
            self._outbox.reply_error(p, exc.code, str(exc.args[0]), msg)
            return
        if msg.epoch != chat.epoch:
            self._outbox.reply_error(p, ErrorCode.STALE_EPOCH, f"chat is at epoch {chat.epoch}", msg)
            return
        hybrid_fields = (msg.wraps, msg.wrap_recipients, msg.key_commitment, msg.prev_hash)
        if (chat.mode == ChatMode.HYBRID) != all(x is not None for x in hybrid_fields) or (
                chat.mode != ChatMode.HYBRID and any(x is not None for x in hybrid_fields)):
            # PROTOCOL.md 7.7: per-message wraps, commitment and chain hash in hybrid chats, and only there
            self._outbox.reply_error(p, ErrorCode.BAD_FIELD, f"wraps do not fit a {chat.mode} chat", msg)
            return
        relayed = chat_message_frame(msg, p.username)
        recipients = 0
        online, queue_to, sender = self._presence.online, self._outbox.queue_to, p.username
        for member in chat.members:
            peer = online.get(member)
            if peer is not None and member != sender:
                queue_to(peer, relayed, "chat_message")
                recipients += 1
        if self._relay_events:
            self._outbox.emit(ev.MessageRelayed(peer=p.id, chat_id=msg.chat_id, sender=p.username,
                                                size=len(msg.ciphertext), recipients=recipients))

    def on_chat_refused(self, p: Peer, msg: m.ChatRefused) -> None:
        """PROTOCOL.md 7.9: relay a refusal notice to the sender, if both are members of the chat's current epoch;
        otherwise it is dropped without a reply (a notice is advice, not a request)."""
        assert p.username is not None
        chat = self.chats.get(msg.chat_id)
        peer = self._presence.online.get(msg.sender)
        if (chat is None or msg.epoch != chat.epoch or p.username not in chat.members or msg.sender not in chat.members
                or msg.sender == p.username or peer is None):
            return
        self._outbox.send_to(peer, m.ChatRefusal(chat_id=msg.chat_id, epoch=msg.epoch, recipient=p.username,
                                                 seq=msg.seq, code=msg.code))

    def on_round(self, p: Peer, msg: m.Message, handler: Callable[..., None]) -> None:
        try:
            handler(p, msg)
        except SecureChatError as exc:
            self._outbox.reply_error(p, exc.code, str(exc.args[0]), msg)

    def rekey(self, chat_id: str, reason: RekeyReason, actor: str) -> None:
        """Every membership change starts a new epoch with a fresh key (PROTOCOL.md 7.5, docs/THREATS.md 38-40).

        PROTOCOL.md 7.2 "bounded rekey": a chat has at most one key job at a time. Changes that arrive while it
        runs are merged: when it ends, one job makes the key of the newest epoch, for the members of that epoch,
        and a distribution overtaken by a later change is never sent. At most ``max_key_jobs`` run at once; other
        chats wait in arrival order, each at most once.
        """
        chat = self.chats.get(chat_id)
        if chat is None:
            return
        self._outbox.emit(ev.ChatRekeyed(peer=self._presence.online.get(actor, -1), chat_id=chat_id,
                                         epoch=chat.epoch, members=tuple(chat.members), reason=reason))
        if chat.mode in m.KEYLESS_MODES:
            self.modes.announce_epoch(chat, reason, actor)  # no key: only signed membership
            return
        chat.rekey = (reason, actor)  # the newest change names the distribution that covers all merged ones
        if not chat.key_job and chat_id not in self.key_waiting:
            self._start_or_wait(chat)

    def _start_or_wait(self, chat: ServerChat) -> None:
        if self.key_jobs >= self.config.max_key_jobs:
            self.key_waiting[chat.chat_id] = None
            return
        assert chat.rekey is not None
        (reason, actor), chat.rekey = chat.rekey, None
        chat.key_job = True
        self.key_jobs += 1
        self._submit(ChatKeyJob(
            peer=-1, chat_id=chat.chat_id, epoch=chat.epoch, mode=chat.mode, suite=chat.suite, reason=reason,
            actor=actor, members=tuple(chat.members),
            encryption_keys=tuple(self._presence.encryption_key(n) for n in chat.members), ca=self._server_key,
            random_bytes=self._random_bytes,
        ))

    def distribute(self, job: ChatKeyJob) -> None:
        """Send a finished distribution if its epoch is still the chat's; then start the merged rekey, if the chat
        changed meanwhile, and any chat waiting for a key job slot."""
        self.key_jobs -= 1
        chat = self.chats.get(job.chat_id)
        if chat is not None:
            chat.key_job = False
            if job.epoch == chat.epoch:
                for member, message in job.messages.items():
                    peer = self._presence.peer_of(member)
                    if member in chat.members and peer is not None:
                        self._outbox.send_to(peer, message)
            if chat.rekey is not None:
                self._start_or_wait(chat)
        while self.key_waiting and self.key_jobs < self.config.max_key_jobs:
            chat_id = next(iter(self.key_waiting))
            del self.key_waiting[chat_id]
            waiting = self.chats.get(chat_id)
            if waiting is not None and waiting.rekey is not None and not waiting.key_job:
                self._start_or_wait(waiting)

    def membership_change_allowed(self, chat: ServerChat) -> bool:
        """PROTOCOL.md 7.5: invitations into one chat are rate limited (each costs a rekey of every member)."""
        if chat.changes is None:
            chat.changes = TokenBucket(self.config.invites_per_chat_per_second, self.config.invite_burst_per_chat,
                                       self._clock())
        return chat.changes.take(self._clock())
