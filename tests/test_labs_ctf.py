"""The capture-the-flag server (securechat.labs.ctf) on 127.0.0.1 port 0: flags verify and differ per student,
and each instructor solution (securechat.labs.instructor.ctf_solutions) recovers its flag from the weakened CTF and fails
against the same bots on a default server. Every server and client is stopped in a finally."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from securechat.crypto.kdf import FAST_SCRYPT
from securechat.labs.instructor import ctf_solutions as solve
from securechat.labs.attacks import AttackFailed
from securechat.labs.ctf import CtfServer
from securechat.labs.flags import CHALLENGES, challenge_of, check_flag, find_flags, flag
from tests.helpers import user_keys

STUDENT = "s1234567"


def test_flags_verify_and_differ_between_students_and_challenges(monkeypatch):
    monkeypatch.setenv("SECURECHAT_COURSE_SECRET", "course secret for the test")
    mine = {c: flag(STUDENT, c) for c in CHALLENGES}
    theirs = {c: flag("s7654321", c) for c in CHALLENGES}
    assert all(check_flag(STUDENT, f) and challenge_of(STUDENT, f) == c for c, f in mine.items())
    assert len(set(mine.values()) | set(theirs.values())) == 2 * len(CHALLENGES)
    assert not any(check_flag(STUDENT, f) for f in theirs.values())
    tampered = mine["dsa-nonce"][:-2] + ("0" if mine["dsa-nonce"][-2] != "0" else "1") + "}"
    assert not check_flag(STUDENT, tampered)
    assert not check_flag(STUDENT, "flag{dsa-nonce-" + "0" * 24 + "}") and not check_flag(STUDENT, "nonsense")
    monkeypatch.setenv("SECURECHAT_COURSE_SECRET", "another course")
    assert not check_flag(STUDENT, mine["no-rekey"])  # the course secret is part of every flag


@contextmanager
def ctf(weak: bool) -> Iterator[CtfServer]:
    server = CtfServer(student=STUDENT, weak=weak, scrypt=FAST_SCRYPT, keys=lambda n, s: user_keys(n, s))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def player(server: CtfServer, name: str = "mallory") -> Iterator[solve.CtfPlayer]:
    p = solve.CtfPlayer(server.address, server.pinned, name, user_keys(name))
    try:
        yield p
    finally:
        p.close()


@pytest.mark.tcp
def test_ctf_attacks_recover_every_flag_from_the_weakened_server():
    with ctf(weak=True) as server, player(server) as me:
        got = {
            "dsa-nonce": solve.solve_dsa_nonce(me),
            "no-rekey": solve.solve_no_rekey(me),
            "login-replay": solve.solve_login_replay(me, server.address, server.pinned),
        }
    assert {c: challenge_of(STUDENT, f) for c, f in got.items()} == {c: c for c in CHALLENGES}
    assert not any(check_flag("s7654321", f) for f in got.values())


@pytest.mark.tcp
def test_ctf_attacks_fail_against_the_same_bots_on_a_default_server():
    with ctf(weak=False) as server, player(server) as me:
        with pytest.raises(AttackFailed, match="different nonces"):
            solve.solve_dsa_nonce(me)
        with pytest.raises(AttackFailed, match="rekeyed"):
            solve.solve_no_rekey(me)
        with pytest.raises(AttackFailed, match="login failed"):
            solve.solve_login_replay(me, server.address, server.pinned)
        me.pump(0.5)
        assert not [f for e in me.seen for f in find_flags(e.text)]  # no bot ever handed out a flag


@pytest.mark.tcp
def test_check_flag_command_accepts_only_this_students_flag(monkeypatch):
    import os
    import subprocess
    import sys

    env = {**os.environ, "SECURECHAT_COURSE_SECRET": "course secret for the cli test"}
    monkeypatch.setenv("SECURECHAT_COURSE_SECRET", env["SECURECHAT_COURSE_SECRET"])
    mine = flag(STUDENT, "no-rekey")

    def check(student: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "securechat.labs", "check-flag", "--student", student, mine],
                              capture_output=True, text=True, timeout=60, env=env)

    accepted, refused = check(STUDENT), check("s7654321")
    assert (accepted.returncode, accepted.stdout.strip()) == (0, "flag accepted")
    assert (refused.returncode, refused.stdout.strip()) == (1, "not this student's flag")


def test_securechat_server_lab_ctf_runs_the_ctf_server(monkeypatch):
    """``securechat-server --lab ctf`` hands over to run_ctf (the CtfServer itself is tested above); key
    generation for seven bots would make a subprocess test slow."""
    import securechat.labs.ctf as ctf_module
    from securechat.server import main as server_main

    calls = []
    monkeypatch.setattr(ctf_module, "run_ctf", lambda **kw: calls.append(kw) or 0)
    assert server_main(["--lab", "ctf", "--port", "0", "--student", STUDENT]) == 0
    assert calls == [{"host": "127.0.0.1", "port": 0, "student": STUDENT}]
