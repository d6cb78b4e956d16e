"""securechat.emoji.render: shortcodes become emoji through the ``emoji`` package."""

import emoji

from securechat.emoji import render


def test_smile_and_friends_render_as_the_library_does() -> None:
    assert render(":smile:") == emoji.emojize(":smile:", language="alias") == "\N{SMILING FACE WITH OPEN MOUTH AND SMILING EYES}"
    assert render("ok :+1: :thumbsup:") == "ok \N{THUMBS UP SIGN} \N{THUMBS UP SIGN}"
    assert render(":heart:").startswith("\N{HEAVY BLACK HEART}")


def test_plain_text_and_unknown_codes_are_left_alone() -> None:
    assert render("no codes here: 3:30 pm") == "no codes here: 3:30 pm"
    assert render(":not_a_real_code_xyz:") == ":not_a_real_code_xyz:"
    assert render("") == ""


def test_the_terminal_client_line_can_use_it() -> None:
    assert render("[abcd1234] alice: hi :wave:") == "[abcd1234] alice: hi \N{WAVING HAND SIGN}"
