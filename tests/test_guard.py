"""The guard of the ``tcp`` marker (tests/guard.py): a test that opens a socket or starts a process without the
marker fails, even when the code under test swallows the refusal; a marked test may; a pure test is untouched."""

from __future__ import annotations

import _posixsubprocess
import socket
import subprocess
import sys

import pytest

from tests.guard import LiveCallInUnmarkedTest, refuse_live_calls

INNER_CONFTEST = "from tests.guard import pytest_runtest_call, pytest_runtest_setup  # noqa: F401\n"


def test_every_live_call_is_refused_and_recorded() -> None:
    with refuse_live_calls("t") as refused:
        with socket.socket() as sock:
            for call in (lambda: sock.bind(("127.0.0.1", 0)), lambda: sock.connect(("127.0.0.1", 9)),
                         lambda: sock.connect_ex(("127.0.0.1", 9))):
                with pytest.raises(LiveCallInUnmarkedTest, match="not marked tcp"):
                    call()
        with pytest.raises(LiveCallInUnmarkedTest):
            subprocess.run([sys.executable, "-c", "pass"], check=False)
        with pytest.raises(LiveCallInUnmarkedTest):
            _posixsubprocess.fork_exec()  # multiprocessing's spawn start method calls it directly
    assert refused == ["socket.bind", "socket.connect", "socket.connect_ex", "subprocess.Popen", "fork_exec"]


def test_an_unmarked_test_fails_even_if_it_swallows_the_refusal(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(INNER_CONFTEST)
    pytester.makepyfile(test_inner='''
        import socket, subprocess, sys

        def test_swallows_a_socket():
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", 0))
                except Exception:
                    pass

        def test_starts_a_process():
            subprocess.run([sys.executable, "-c", "pass"])

        def test_pure():
            assert sum([1, 2]) == 3
    ''')
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*test_swallows_a_socket is not marked tcp but called socket.bind*",
                                 "*test_starts_a_process is not marked tcp but called subprocess.Popen*"])


@pytest.mark.tcp  # the inner marked test binds a socket
def test_a_marked_test_may_open_sockets(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(INNER_CONFTEST)
    pytester.makepyfile(test_inner='''
        import socket
        import pytest

        @pytest.mark.tcp
        def test_binds():
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
    ''')
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
