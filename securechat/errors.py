"""securechat's exception hierarchy and the error codes that travel in ``error`` frames.

Owns: ``ErrorCode`` (the wire vocabulary of docs/PROTOCOL.md section 9) and the exception classes every
layer raises. Must not: import anything else from securechat, or carry secrets in messages (an error text
can reach a log or the peer).

Hierarchy (docs/STYLE.md section 6)::

    SecureChatError
    +-- ProtocolError            abstract
    |   +-- LocalProtocolError   the caller asked for something illegal now; nothing sent, state unchanged
    |   +-- RemoteProtocolError  the peer sent malformed or out-of-state bytes
    +-- SecurityError            abstract
        +-- AuthenticationError  an identity or a signature did not verify
        +-- IntegrityError       an AEAD tag, a record or an unwrap failed; content is dropped
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Every error code of docs/PROTOCOL.md section 9; the value is what travels in ``error.code``."""

    # framing and channel: fatal, the connection is closed (PROTOCOL.md 9.1)
    FRAME_TOO_LARGE = "frame_too_large"
    BAD_FRAME = "bad_frame"
    BAD_RECORD = "bad_record"
    HANDSHAKE_FAILED = "handshake_failed"
    # message shape and state: fatal before the channel is up, a reply after (PROTOCOL.md 9.2)
    BAD_JSON = "bad_json"
    BAD_FIELD = "bad_field"
    UNKNOWN_TYPE = "unknown_type"
    UNEXPECTED_MESSAGE = "unexpected_message"
    # accounts and admission
    AUTH_FAILED = "auth_failed"
    RATE_LIMITED = "rate_limited"
    SERVER_BUSY = "server_busy"
    LIMIT_EXCEEDED = "limit_exceeded"
    NAME_TAKEN = "name_taken"
    UNKNOWN_USER = "unknown_user"
    USER_OFFLINE = "user_offline"
    STORAGE_FAILED = "storage_failed"
    # chats
    UNKNOWN_CHAT = "unknown_chat"
    NOT_MEMBER = "not_member"
    ALREADY_MEMBER = "already_member"
    # end-to-end checks made by clients (reported as events, never sent by the server)
    BAD_SIGNATURE = "bad_signature"
    BAD_CERTIFICATE = "bad_certificate"
    KEY_CHANGED = "key_changed"
    STALE_EPOCH = "stale_epoch"
    REPLAY = "replay"
    COMMITMENT_MISMATCH = "commitment_mismatch"
    KEY_CONFIRMATION_FAILED = "key_confirmation_failed"
    KEY_UNWRAP_FAILED = "key_unwrap_failed"
    MODE_CHANGED = "mode_changed"              # the server tried to change a chat's mode or suite (PROTOCOL.md 7.10)
    MEMBERSHIP_INCONSISTENT = "membership_inconsistent"  # a signed membership contradicts its own reason
    UNREADABLE_MESSAGE = "unreadable_message"  # a validly signed hybrid message we cannot open (PROTOCOL.md 7.7)
    EQUIVOCATION = "equivocation"              # a sender's hash chain shows two different messages (PROTOCOL.md 7.7)
    DUPLICATE_SHARE = "duplicate_share"
    # the connection ended
    CONNECTION_LOST = "connection_lost"
    INTERNAL_ERROR = "internal_error"


def error_code(text: str) -> ErrorCode | str:
    """The ErrorCode a received ``error.code`` names; a code this version does not know stays its string
    (PROTOCOL.md 9: receivers treat it as a failure of the request)."""
    try:
        return ErrorCode(text)
    except ValueError:
        return text


#: PROTOCOL.md 9.1, the one table both sides use: these codes always end the connection, whoever meets them
#: (the client closes on receiving one inside the channel; the server closes after sending one).
FATAL_CODES = frozenset({
    ErrorCode.FRAME_TOO_LARGE, ErrorCode.BAD_FRAME, ErrorCode.BAD_RECORD, ErrorCode.HANDSHAKE_FAILED,
})
#: PROTOCOL.md 9.1: these also end it when raised against the connection itself (admission, the login deadline,
#: an exhausted record counter); as the answer to one request (9.2) the connection stays.
CONNECTION_FATAL_CODES = FATAL_CODES | {ErrorCode.SERVER_BUSY, ErrorCode.LIMIT_EXCEEDED}


class SecureChatError(Exception):
    """Base of every securechat error. ``code`` is the ErrorCode that names the failed rule."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init__(self, message: str, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"[{self.code.value}] {self.args[0]}"


class ProtocolError(SecureChatError):
    """Abstract: a rule of docs/PROTOCOL.md was broken. Use a subclass."""

    def __new__(cls, *args: object, **kwargs: object) -> ProtocolError:
        if cls is ProtocolError:
            raise TypeError("ProtocolError is abstract: raise LocalProtocolError or RemoteProtocolError")
        return super().__new__(cls)


class LocalProtocolError(ProtocolError):
    """The local application asked for something illegal now. Nothing was sent; state is unchanged."""

    code = ErrorCode.UNEXPECTED_MESSAGE


class RemoteProtocolError(ProtocolError):
    """The peer sent malformed or out-of-state bytes."""

    code = ErrorCode.BAD_FRAME


class SecurityError(SecureChatError):
    """Abstract: a cryptographic check failed. Use a subclass."""

    def __new__(cls, *args: object, **kwargs: object) -> SecurityError:
        if cls is SecurityError:
            raise TypeError("SecurityError is abstract: raise AuthenticationError or IntegrityError")
        return super().__new__(cls)


class AuthenticationError(SecurityError):
    """An identity was not proven: a signature, certificate or handshake did not verify."""

    code = ErrorCode.BAD_SIGNATURE


class IntegrityError(SecurityError):
    """Content was altered or cannot be opened: an AEAD tag, a MAC or an RSA-OAEP unwrap failed."""

    code = ErrorCode.BAD_RECORD


__all__ = [
    "AuthenticationError",
    "ErrorCode",
    "IntegrityError",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "SecureChatError",
    "SecurityError",
]
