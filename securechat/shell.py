"""The terminal client's session under its former module path; it lives in the ``securechat.terminal`` package."""

from __future__ import annotations

from .terminal.shell import Shell
from .terminal.state import Session
from .terminal.texts import HELP, SCHEME_ALIASES, key_changed_warning

__all__ = ["HELP", "SCHEME_ALIASES", "Session", "Shell", "key_changed_warning"]
