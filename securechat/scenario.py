"""Moved to ``securechat.teaching.scenario`` (teaching tools live in their own subpackage); this module keeps
the old import path working: it IS that module (``sys.modules`` alias), so patches and imports behave the same."""

import sys

from .teaching import scenario as _module
from .teaching.scenario import *  # noqa: F401,F403  (the public names, for type checkers)

sys.modules[__name__] = _module
