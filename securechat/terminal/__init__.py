"""The terminal client (``python -m securechat.client``), in parts a reader can take one at a time.

``shell.Shell`` puts them together for one user's session:

- ``state``: what the session knows (connection, login, current chat) under one lock; ``labels``: chat names.
- ``commands``: the ``Command`` table and the one place a command's failure becomes a plain line;
  ``account_commands`` and ``chat_commands``: what each command does.
- ``event_lines``: what a person sees of each event; ``texts``: the help, the warnings, plain sentences.
- ``reconnect``: bounded backoff and logging in again after a lost connection.
- ``consoles``: the prompt_toolkit line editor or plain lines.

Every string someone else chose is shown through ``display.printable``; nothing typed or received ends in a
traceback.
"""

from __future__ import annotations

from .shell import Shell
from .state import Link, Session
from .texts import HELP, SCHEME_ALIASES, key_changed_warning

__all__ = ["HELP", "SCHEME_ALIASES", "Link", "Session", "Shell", "key_changed_warning"]
