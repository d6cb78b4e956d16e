"""The terminal itself: where typed lines come from and where printed lines go.

Owns: on a terminal, a prompt_toolkit line editor (history, arrow keys, the prompt ``alice@bob>`` redrawn when the
current chat changes, incoming lines printed above what is being typed, the typed command echoed with its password
masked); otherwise (a pipe, a script, a test, ``--plain`` for screen readers) plain lines from stdin. Ctrl-D and
Ctrl-C log out and leave. Must not: interpret a line (``Shell.handle`` does) or print a foreign string without
``display.printable``.
"""

from __future__ import annotations

import getpass
import io
import sys
import threading
from typing import TextIO

from ..display import printable
from .commands import Command
from .shell import Shell
from .texts import SCHEME_ALIASES

_TAKES_A_PASSWORD = (f"/{Command.LOGIN}", f"/{Command.REGISTER}")


class PlainTerminal:
    """Lines from a pipe or file; output as plain lines. Undecodable input bytes reach the shell as surrogates
    (it refuses such lines) instead of ending the program."""

    def __init__(self, stdin: TextIO | None = None, stdout: TextIO | None = None) -> None:
        self.stdin: TextIO = sys.stdin if stdin is None else stdin
        if isinstance(self.stdin, io.TextIOWrapper):  # not a new wrapper: that would close stdin when freed
            self.stdin.reconfigure(encoding="utf-8", errors="surrogateescape")
        self.stdout = sys.stdout if stdout is None else stdout
        self._lock = threading.Lock()

    def emit(self, text: str) -> None:
        with self._lock:
            print(text, file=self.stdout, flush=True)

    def ask_password(self, question: str) -> str:
        return getpass.getpass(question)

    def invalidate(self) -> None:
        pass

    def run(self, shell: Shell) -> None:
        for line in self.stdin:
            if not shell.handle(line):
                return
        shell.quit()  # end of input (Ctrl-D on a terminal without the line editor)


class PromptTerminal:
    """prompt_toolkit: line editing and history; lines from other threads are printed above the input line
    (patch_stdout), so incoming messages never clobber what is being typed."""

    def __init__(self) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import InMemoryHistory
        self._session: PromptSession[str] = PromptSession(history=InMemoryHistory(), erase_when_done=True)
        self._lock = threading.Lock()

    def emit(self, text: str) -> None:
        with self._lock:
            print(text, flush=True)  # patch_stdout routes it above the prompt

    def ask_password(self, question: str) -> str:
        from prompt_toolkit import prompt
        return prompt(question, is_password=True)

    def invalidate(self) -> None:
        app = self._session.app
        try:
            if app.is_running:
                app.invalidate()  # thread-safe: schedules a redraw of the prompt on the event loop
        except RuntimeError:  # the loop closed between the check and the call (the prompt just returned)
            pass

    def run(self, shell: Shell) -> None:
        from prompt_toolkit.patch_stdout import patch_stdout
        with patch_stdout():
            while True:
                try:
                    line = self._session.prompt(shell.prompt)
                except (EOFError, KeyboardInterrupt):  # Ctrl-D, Ctrl-C: log out and leave
                    shell.quit()
                    return
                if line.strip().startswith("/"):
                    self.emit(shell.prompt() + printable(mask_password(line.strip())))
                if not shell.handle(line):
                    return


def mask_password(line: str) -> str:
    """``/login bob secret`` -> ``/login bob ****`` for the echoed command line (commands in any case)."""
    words = line.split()
    command = words[0].lower() if words else ""
    if command in _TAKES_A_PASSWORD:
        keep = 3 if len(words) > 2 and command == f"/{Command.REGISTER}" and words[2].lower() in SCHEME_ALIASES else 2
        words = words[:keep] + ["****"] * (len(words) > keep)
    return " ".join(words)


__all__ = ["PlainTerminal", "PromptTerminal", "mask_password"]
