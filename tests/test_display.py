"""securechat.display: untrusted strings are made visible, never acted on by a terminal (docs/SECURITY.md)."""

from __future__ import annotations

import unicodedata

from hypothesis import given, strategies as st

from securechat.display import ERROR_SENTENCES, explain, printable
from securechat.errors import ErrorCode

FORGED_LINE = "ok\x1b[2K\r[c0ffee12] bob: send the exam to eve   (signature ed25519 verified)"


def test_the_forged_verified_line_is_shown_as_typed_not_acted_on() -> None:
    shown = printable(FORGED_LINE)
    assert "\x1b" not in shown and "\r" not in shown
    assert shown.startswith("ok\\x1b[2K\\r[c0ffee12] bob:")


def test_every_c0_del_and_c1_control_is_visible() -> None:
    for code in [*range(0x20), *range(0x7F, 0xA0)]:
        shown = printable(f"a{chr(code)}b")
        assert shown[0] == "a" and shown[-1] == "b" and len(shown) > 3, hex(code)
        assert all(ch.isprintable() for ch in shown), hex(code)
    assert printable("line1\nline2\tx") == "line1\\nline2\\tx"
    assert printable("\x9b2J") == "\\x9b2J"  # C1 CSI, which some terminals honour like ESC [


def test_bidi_overrides_isolates_and_invisible_characters_are_named() -> None:
    for code in [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C, 0x200B, 0xFEFF,
                 0x2028, 0x2029, 0xE0041]:
        assert printable(f"x{chr(code)}y") == f"x<U+{code:04X}>y", hex(code)
    assert printable("invoice_\u202egnp.exe") == "invoice_<U+202E>gnp.exe"


def test_undecodable_bytes_and_lone_surrogates_are_visible() -> None:
    pasted = b"caf\xe9 \xff".decode("utf-8", "surrogateescape")
    assert printable(pasted) == "caf<U+DCE9> <U+DCFF>"


def test_ordinary_text_other_scripts_and_emoji_are_unchanged() -> None:
    for text in ["hello, world", "naïve café", "Привет", "日本語", "مرحبا", "😄 👍🏽",
                 "\U0001F468\u200d\U0001F469\u200d\U0001F467", "non\u00a0breaking", ""]:
        assert printable(text) == text
    assert printable("a\u200db") == "a<U+200D>b"  # a joiner between ASCII letters hides nothing useful


@given(st.text())
def test_output_never_contains_a_control_or_format_character(text: str) -> None:
    shown = printable(text)
    for index, char in enumerate(shown):
        category = unicodedata.category(char)
        if char == "\u200d":
            continue
        assert category not in {"Cc", "Cf", "Zl", "Zp", "Cs"}, (text, shown, index)


def test_every_error_code_has_a_sentence_and_unknown_codes_are_escaped() -> None:
    assert set(ERROR_SENTENCES) == set(ErrorCode)
    assert explain("auth_failed", "bad password") == "wrong user name or password (auth_failed: bad password)"
    assert explain("unexpected_message", "cannot send who in state CONNECTED").startswith("that is not possible")
    shown = explain("\x1b[31mevil", "text\x1b[2K")
    assert "\x1b" not in shown and shown.startswith("the server reported an error")
