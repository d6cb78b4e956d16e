"""State machines as literal tables: the client's connection, the server's view of each peer, a chat.

Theory of operation (PROTOCOL.md 8). A connection starts with a clear-text handshake (client_hello,
server_hello); from then on every frame travels inside an AEAD record. The client is CONNECTED (channel up,
nobody logged in) until a login or a registration is accepted; registering never logs in. Once ONLINE the client
may ask for the directory and open, join, leave and use chats until it logs out. The server keeps a mirror
machine per peer (``PeerState``): it moves on what it receives, and on the outcome of the slow jobs it hands
to its driver (REGISTER_PENDING and LOGIN_PENDING wait for them). Each chat a client knows has its own small
machine (``ChatState``).

A message whose (state, direction, type) is not in the table is illegal: a received one raises
RemoteProtocolError(UNEXPECTED_MESSAGE), a sent one LocalProtocolError. Illegal input before the channel is
authenticated closes the connection; after login it is answered with an error and changes nothing
(docs/THREATS.md entry 8). Must not: import codec or crypto, or do anything but look up tables.
"""

from __future__ import annotations

from enum import Enum

from ..errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from .vocabulary import JobOutcome


class Direction(Enum):
    SEND = "send"
    RECEIVE = "receive"


SEND = Direction.SEND
RECEIVE = Direction.RECEIVE


class ClientState(Enum):
    IDLE = "idle"                        # nothing sent yet
    HANDSHAKING = "handshaking"          # client_hello sent, waiting for server_hello
    CONNECTED = "connected"              # channel up, not logged in
    REGISTERING = "registering"          # register sent, waiting for the challenge
    PROVING = "proving"                  # register_proof sent, waiting for registered
    AUTHENTICATING = "authenticating"    # login sent
    ONLINE = "online"                    # logged in
    CLOSING = "closing"                  # logout sent
    CLOSED = "closed"                    # end of stream, fatal error or bye


class PeerState(Enum):
    AWAIT_HELLO = "await_hello"
    CONNECTED = "connected"
    REGISTERING = "registering"          # challenge sent, waiting for register_proof
    REGISTER_PENDING = "register_pending"  # job running: scrypt, proof check, database write
    LOGIN_PENDING = "login_pending"      # job running: scrypt and proof check
    ONLINE = "online"
    CLOSED = "closed"


class AgreementState(Enum):
    """One member's side of one epoch's contributory key agreement (PROTOCOL.md 7.6)."""

    COMMITTING = "committing"   # our commitment sent (contributory); waiting for everyone's
    REVEALING = "revealing"     # our envelopes sent; waiting for everyone's shares
    CONFIRMING = "confirming"   # key derived, our confirmation sent; waiting for everyone's
    DONE = "done"
    ABORTED = "aborted"


class ChatState(Enum):
    ACTIVE = "active"                    # holds the key of the current epoch
    LEAVING = "leaving"                  # chat_leave sent
    LEFT = "left"


_ONLINE_REQUESTS = ("who", "status", "get_certificates", "chat_open", "chat_invite", "chat_answer", "chat_leave",
                    "chat_send", "chat_refused", "cert_renew", "share_commit", "key_share", "key_confirm")
_ONLINE_PUSHES = (
    "who_result", "status_result", "certificates", "presence", "chat_opened", "chat_invited", "chat_left",
    "chat_invitation", "chat_answered", "invitation_closed", "chat_refusal",
    "chat_key", "chat_message", "error", "chat_epoch", "share_committed", "key_share_delivery", "key_confirmed",
    "round_timeout", "cert_renewed",
)
_ROUND_PUSHES = ("chat_epoch", "share_committed", "key_share_delivery", "key_confirmed")  # PROTOCOL.md 7.6
_ROUND_SENDS = ("share_commit", "key_share", "key_confirm")

# (state, direction, wire type) -> next state. PROTOCOL.md 8.1.
CLIENT_TRANSITIONS: dict[tuple[ClientState, Direction, str], ClientState] = {
    (ClientState.IDLE, SEND, "client_hello"): ClientState.HANDSHAKING,
    (ClientState.HANDSHAKING, RECEIVE, "server_hello"): ClientState.CONNECTED,
    (ClientState.CONNECTED, SEND, "register"): ClientState.REGISTERING,
    (ClientState.CONNECTED, SEND, "login"): ClientState.AUTHENTICATING,
    (ClientState.CONNECTED, SEND, "logout"): ClientState.CLOSING,
    (ClientState.REGISTERING, RECEIVE, "register_challenge"): ClientState.REGISTERING,
    (ClientState.REGISTERING, SEND, "register_proof"): ClientState.PROVING,
    (ClientState.REGISTERING, RECEIVE, "error"): ClientState.CONNECTED,
    (ClientState.PROVING, RECEIVE, "registered"): ClientState.CONNECTED,
    (ClientState.PROVING, RECEIVE, "error"): ClientState.CONNECTED,
    (ClientState.AUTHENTICATING, RECEIVE, "login_ok"): ClientState.ONLINE,
    (ClientState.AUTHENTICATING, RECEIVE, "error"): ClientState.CONNECTED,
    (ClientState.CONNECTED, RECEIVE, "error"): ClientState.CONNECTED,
    (ClientState.ONLINE, SEND, "logout"): ClientState.CLOSING,
    (ClientState.CLOSING, RECEIVE, "bye"): ClientState.CLOSED,
    **{(ClientState.ONLINE, SEND, t): ClientState.ONLINE for t in _ONLINE_REQUESTS},
    **{(ClientState.ONLINE, RECEIVE, t): ClientState.ONLINE for t in _ONLINE_PUSHES},
    # pushes already in flight when logout was sent are still read, then ignored
    **{(ClientState.CLOSING, RECEIVE, t): ClientState.CLOSING for t in _ONLINE_PUSHES},
}

# (state, wire type received) -> next state, for the server's view of one peer. PROTOCOL.md 8.2.
# Job outcomes move REGISTER_PENDING and LOGIN_PENDING on (PEER_JOB_TRANSITIONS).
PEER_TRANSITIONS: dict[tuple[PeerState, str], PeerState] = {
    (PeerState.AWAIT_HELLO, "client_hello"): PeerState.CONNECTED,
    (PeerState.CONNECTED, "register"): PeerState.REGISTERING,
    (PeerState.CONNECTED, "login"): PeerState.LOGIN_PENDING,
    (PeerState.CONNECTED, "logout"): PeerState.CLOSED,
    (PeerState.REGISTERING, "register_proof"): PeerState.REGISTER_PENDING,
    (PeerState.ONLINE, "logout"): PeerState.CLOSED,
    **{(PeerState.ONLINE, t): PeerState.ONLINE for t in _ONLINE_REQUESTS},
}

PEER_JOB_TRANSITIONS: dict[tuple[PeerState, JobOutcome], PeerState] = {
    (PeerState.REGISTER_PENDING, JobOutcome.REGISTERED): PeerState.CONNECTED,
    (PeerState.REGISTER_PENDING, JobOutcome.FAILED): PeerState.CONNECTED,
    (PeerState.LOGIN_PENDING, JobOutcome.LOGGED_IN): PeerState.ONLINE,
    (PeerState.LOGIN_PENDING, JobOutcome.FAILED): PeerState.CONNECTED,
}

# Chat machine on the client. PROTOCOL.md 8.3.
CHAT_TRANSITIONS: dict[tuple[ChatState, Direction, str], ChatState] = {
    (ChatState.ACTIVE, RECEIVE, "chat_key"): ChatState.ACTIVE,
    (ChatState.ACTIVE, RECEIVE, "chat_message"): ChatState.ACTIVE,
    (ChatState.ACTIVE, SEND, "chat_send"): ChatState.ACTIVE,
    (ChatState.ACTIVE, SEND, "chat_invite"): ChatState.ACTIVE,
    (ChatState.ACTIVE, SEND, "chat_leave"): ChatState.LEAVING,
    (ChatState.LEAVING, RECEIVE, "chat_left"): ChatState.LEFT,
    (ChatState.LEAVING, RECEIVE, "chat_key"): ChatState.LEAVING,
    (ChatState.LEAVING, RECEIVE, "chat_message"): ChatState.LEAVING,
    (ChatState.LEAVING, RECEIVE, "error"): ChatState.ACTIVE,
    **{(ChatState.ACTIVE, RECEIVE, t): ChatState.ACTIVE for t in _ROUND_PUSHES},
    **{(ChatState.LEAVING, RECEIVE, t): ChatState.LEAVING for t in _ROUND_PUSHES},
    **{(ChatState.ACTIVE, SEND, t): ChatState.ACTIVE for t in _ROUND_SENDS},
}


def next_client_state(state: ClientState, direction: Direction, kind: str) -> ClientState:
    """Return the client's next state, or raise: LocalProtocolError for SEND, RemoteProtocolError for RECEIVE."""
    try:
        return CLIENT_TRANSITIONS[state, direction, kind]
    except KeyError:
        error = LocalProtocolError if direction is SEND else RemoteProtocolError
        raise error(
            f"cannot {direction.value} {kind} in state {state.name}", ErrorCode.UNEXPECTED_MESSAGE
        ) from None


def next_peer_state(state: PeerState, kind: str) -> PeerState:
    """Return the server-side peer's next state on receiving *kind*, or raise UNEXPECTED_MESSAGE."""
    try:
        return PEER_TRANSITIONS[state, kind]
    except KeyError:
        raise RemoteProtocolError(
            f"{kind} is not allowed in state {state.name}", ErrorCode.UNEXPECTED_MESSAGE
        ) from None


def next_peer_state_on_job(state: PeerState, outcome: JobOutcome) -> PeerState:
    try:
        return PEER_JOB_TRANSITIONS[state, outcome]
    except KeyError:
        raise LocalProtocolError(f"job outcome {outcome} in state {state.name}") from None


def next_chat_state(state: ChatState, direction: Direction, kind: str) -> ChatState:
    try:
        return CHAT_TRANSITIONS[state, direction, kind]
    except KeyError:
        error = LocalProtocolError if direction is SEND else RemoteProtocolError
        raise error(f"cannot {direction.value} {kind} in chat state {state.name}", ErrorCode.NOT_MEMBER) from None


# PROTOCOL.md 7.6: the agreement moves on what it has collected, not on single messages, so its table is keyed by
# the step it takes. "reveal": every commitment is in (at once in contributory-xor, which has none);
# "derive": every share is in and the key is derived; "confirm": every confirmation matched; "fail": any check
# failed, from any running state. DONE and ABORTED are final.
AGREEMENT_TRANSITIONS: dict[tuple[AgreementState, str], AgreementState] = {
    (AgreementState.COMMITTING, "reveal"): AgreementState.REVEALING,
    (AgreementState.REVEALING, "derive"): AgreementState.CONFIRMING,
    (AgreementState.CONFIRMING, "confirm"): AgreementState.DONE,
    (AgreementState.COMMITTING, "fail"): AgreementState.ABORTED,
    (AgreementState.REVEALING, "fail"): AgreementState.ABORTED,
    (AgreementState.CONFIRMING, "fail"): AgreementState.ABORTED,
}


def next_agreement_state(state: AgreementState, step: str) -> AgreementState:
    """The state after *step*; a step the table does not allow is our own bug (LocalProtocolError)."""
    try:
        return AGREEMENT_TRANSITIONS[state, step]
    except KeyError:
        raise LocalProtocolError(f"key agreement cannot {step} in state {state.name}", ErrorCode.INTERNAL_ERROR) from None
