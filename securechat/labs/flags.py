"""Capture-the-flag flags: one per (student, challenge), derived from the course secret (PROTOCOL.md 16.2).

Owns: the flag format ``flag{<challenge>-<24 hex>}`` and ``check_flag``. The 24 hex digits are the first 12
bytes of ``params.derive(student, "ctf flag <challenge>")`` (HMAC-SHA256 under ``SECURECHAT_COURSE_SECRET``), so
the grader recomputes every flag from the student ID alone and one student's flag is worthless to another.
Must not: print or store flags (the CTF bots hand them out; this module only makes and checks them).
"""

from __future__ import annotations

import hmac
import re

from .params import check_student_id, derive

#: The challenges of the CTF server (securechat.labs.ctf), each won by one attack (PROTOCOL.md 16.1).
CHALLENGES = ("dsa-nonce", "no-rekey", "login-replay")
_FLAG = re.compile(r"flag\{([a-z-]{1,32})-([0-9a-f]{24})\}")


def flag(student_id: str, challenge: str) -> str:
    """The flag of *challenge* for *student_id*."""
    if challenge not in CHALLENGES:
        raise ValueError(f"unknown challenge {challenge!r} (known: {', '.join(CHALLENGES)})")
    return f"flag{{{challenge}-{derive(check_student_id(student_id), 'ctf flag ' + challenge, 12).hex()}}}"


def challenge_of(student_id: str, text: str) -> str | None:
    """The challenge whose flag for *student_id* is *text* (surrounding spaces ignored), else None."""
    match = _FLAG.fullmatch(text.strip())
    if match is None or match.group(1) not in CHALLENGES:
        return None
    expected = flag(student_id, match.group(1))
    return match.group(1) if hmac.compare_digest(expected.encode(), match.group(0).encode()) else None


def check_flag(student_id: str, text: str) -> bool:
    """True if *text* is one of *student_id*'s flags (constant-time comparison)."""
    return challenge_of(student_id, text) is not None


def find_flags(text: str) -> list[str]:
    """Every flag-shaped substring of *text* (for solvers reading bot messages)."""
    return [m.group(0) for m in _FLAG.finditer(text)]


__all__ = ["CHALLENGES", "challenge_of", "check_flag", "find_flags", "flag"]
