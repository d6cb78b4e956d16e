"""Moved to ``securechat.teaching.simulation`` (teaching tools live in their own subpackage); this module keeps
the old import path working: it IS that module (``sys.modules`` alias), so patches and imports behave the same."""

import sys

from .teaching import simulation as _module
from .teaching.simulation import *  # noqa: F401,F403  (the public names, for type checkers)

sys.modules[__name__] = _module
