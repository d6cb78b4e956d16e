"""Every ErrorCode is documented and exercised ("every error code in PROTOCOL.md has a test")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from securechat.errors import ErrorCode

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.value)
def test_every_code_is_in_the_protocol_document(code: ErrorCode) -> None:
    assert f"`{code.value}`" in (ROOT / "docs" / "PROTOCOL.md").read_text()


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.value)
def test_every_code_is_asserted_by_some_test(code: ErrorCode) -> None:
    """A test names the code (as ErrorCode.X, an alias like A.X/E.X, or its wire string) outside this file."""
    pattern = re.compile(rf"\b[A-Za-z]+\.{code.name}\b|[\"']{code.value}[\"']")
    files = [p for p in (ROOT / "tests").rglob("test_*.py") if p.name != Path(__file__).name]
    assert any(pattern.search(p.read_text()) for p in files), f"no test asserts {code.value}"
