"""Per-student lab parameters, derived from the student ID and a course secret with HMAC-SHA256.

Owns: the course secret (``SECURECHAT_COURSE_SECRET``, with a published default for self-study), the derivation
``derive(student_id, label)`` every per-student value (seeds, keys, messages, flags) comes from, and the JSON a
student sees with ``python -m securechat.labs params --student ID``. The grader calls the same functions with the
same ID, so it recomputes every expected value instead of storing answers. Must not: print or log the course
secret. With the default secret anyone can compute anyone's parameters: that is fine for self-study, not for a
graded course (docs/INSTRUCTORS.md, "The course secret").
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from typing import Any

from ..crypto.kdf import hkdf_sha256

ENV_SECRET = "SECURECHAT_COURSE_SECRET"
ENV_STUDENT = "SECURECHAT_STUDENT"
DEFAULT_SECRET = b"securechat self-study (published default: not a secret)"
SELF_STUDY_ID = "self-study"
_DOMAIN = b"securechat-labs/v1/"
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")

# Small word lists so per-student messages and passwords stay readable in a notebook.
_WORDS = ("amber", "basalt", "cedar", "delta", "ember", "fjord", "granite", "harbor", "indigo", "juniper",
          "kestrel", "lantern", "meadow", "nimbus", "orchid", "pebble", "quartz", "raven", "saffron", "tundra",
          "umber", "velvet", "willow", "xenon", "yarrow", "zephyr", "acorn", "birch", "comet", "dune", "falcon",
          "glacier")
_PLACES = ("the library", "the north gate", "lab 3", "the old mill", "platform 9", "the boathouse", "the roof",
           "room 101")
# The leaked-registry lab hides each student's password among the first WEAK_PASSWORDS of this list (a tiny
# "rockyou" stand-in, committed so the lab works offline).
WEAK_PASSWORDS = ("123456", "password", "qwerty", "letmein", "dragon", "monkey", "sunshine", "princess",
                  "football", "iloveyou", "admin", "welcome", "shadow", "master", "baseball", "superman",
                  "trustno1", "starwars", "hunter2", "whatever", "freedom", "charlie", "batman", "passw0rd",
                  "michael", "jennifer", "computer", "pokemon", "secret", "summer", "winter", "cookie")


class LabParamsError(ValueError):
    """A student ID the labs cannot use (empty, too long, or with characters outside [A-Za-z0-9._@+-])."""


def check_student_id(student_id: str) -> str:
    """Return *student_id* if usable, else raise :class:`LabParamsError` with a plain-words reason."""
    if not isinstance(student_id, str) or not _ID_RE.match(student_id):
        raise LabParamsError("a student ID is 1-64 characters: letters, digits and . _ @ + - "
                             "(starting with a letter or digit)")
    return student_id


def course_secret() -> bytes:
    """The course secret: ``SECURECHAT_COURSE_SECRET`` if set and non-empty, else the published default."""
    value = os.environ.get(ENV_SECRET, "")
    return value.encode("utf-8") if value else DEFAULT_SECRET


def uses_default_secret() -> bool:
    return not os.environ.get(ENV_SECRET, "")


def current_student() -> str:
    """The student a notebook runs for: ``SECURECHAT_STUDENT`` (the grader sets it), else ``self-study``."""
    return check_student_id(os.environ.get(ENV_STUDENT, "") or SELF_STUDY_ID)


def derive(student_id: str, label: str, n: int = 32) -> bytes:
    """*n* bytes for (*student_id*, *label*): HMAC-SHA256(course secret, domain | label | 0x00 | id), expanded
    with HKDF-SHA256 when more than 32 bytes are asked for. Different labels give independent values."""
    check_student_id(student_id)
    if "\0" in label or not label:
        raise LabParamsError("a derivation label is a non-empty string without NUL")
    if not 1 <= n <= 255 * 32:
        raise LabParamsError("derive() returns 1 to 255*32 bytes")
    prk = hmac.new(course_secret(), _DOMAIN + label.encode() + b"\0" + student_id.encode(), hashlib.sha256).digest()
    if n <= 32:
        return prk[:n]
    return hkdf_sha256(prk, salt=b"", info=_DOMAIN + b"expand", length=n)


def derive_int(student_id: str, label: str, bound: int) -> int:
    """An integer in [0, bound) for (*student_id*, *label*) (bias below 2^-64: 16 extra bytes)."""
    if bound < 1:
        raise LabParamsError("bound must be positive")
    width = (bound.bit_length() + 7) // 8 + 16
    return int.from_bytes(derive(student_id, label, width), "big") % bound


def derive_seed(student_id: str, label: str = "seed") -> int:
    """A 63-bit seed for ``random.Random`` / ``Simulation(seed=...)``."""
    return derive_int(student_id, label, 2**63)


def pick(student_id: str, label: str, choices: tuple[str, ...]) -> str:
    return choices[derive_int(student_id, label, len(choices))]


def secret_message(student_id: str, label: str = "message") -> str:
    """A readable per-student message ("meet at the boathouse at 14:05, word: kestrel-umber")."""
    place = pick(student_id, label + "/place", _PLACES)
    minute = derive_int(student_id, label + "/minute", 60)
    hour = 9 + derive_int(student_id, label + "/hour", 9)
    word = pick(student_id, label + "/w1", _WORDS) + "-" + pick(student_id, label + "/w2", _WORDS)
    return f"meet at {place} at {hour:02d}:{minute:02d}, word: {word}"


def weak_password(student_id: str, label: str = "leaked-password") -> str:
    """A password from :data:`WEAK_PASSWORDS` with a per-student two-digit suffix (so cracking takes a search of
    32 x 100 candidates, not a lookup)."""
    return pick(student_id, label, WEAK_PASSWORDS) + f"{derive_int(student_id, label + '/digits', 100):02d}"


def student_params(student_id: str) -> dict[str, Any]:
    """Everything per-student a lab uses, as JSON-able values (``python -m securechat.labs params``)."""
    sid = check_student_id(student_id)
    return {
        "student": sid,
        "course_secret": "default (self-study)" if uses_default_secret() else "course secret set",
        "seed": derive_seed(sid),
        "lab_seeds": {lab: derive_seed(sid, "seed/" + lab) for lab in LAB_NAMES},
        "secret_message": secret_message(sid),
        "leaked_password_user": "dave",
        "leaked_password_hint": f"one of the {len(WEAK_PASSWORDS)} listed words followed by two digits",
        "dsa_nonce_hex": derive(sid, "dsa-nonce", 16).hex(),
    }


LAB_NAMES = ("01_channel", "02_signatures", "03_passwords", "04_group_keys", "05_agreement", "06_replay_proxy",
             "07_ctf", "08_key_commitment")


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
