"""Emoji shortcodes: ``:smile:`` -> 😄, for the GUI and the terminal client.

Owns: nothing but the call into the maintained ``emoji`` package (its GitHub/Slack-style alias table, so
``:smile:``, ``:+1:``, ``:thumbsup:``, ``:heart:`` all work). Must not: touch what is encrypted and signed: the
text is rendered for display only, after verification, so a message's bytes stay exactly what the sender typed.
"""

from __future__ import annotations

import emoji as _emoji


def render(text: str) -> str:
    """*text* with every known shortcode replaced by its emoji; unknown ``:words:`` stay as typed."""
    return _emoji.emojize(text, language="alias")
