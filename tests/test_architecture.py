"""The sans-I/O rule (docs/STYLE.md section 1): protocol/ and crypto/ import no socket, thread or clock,
and only crypto/ imports pycryptodome."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "securechat"
FORBIDDEN = {"socket", "threading", "time", "select", "selectors", "asyncio", "sqlite3"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted((PACKAGE / "protocol").glob("*.py")) + sorted((PACKAGE / "crypto").glob("*.py")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_sans_io_modules_import_no_io(path: Path) -> None:
    assert not _imports(path) & FORBIDDEN
    assert not re.search(r"(?<![\w.])print\(", path.read_text())


def test_only_crypto_imports_pycryptodome() -> None:
    offenders = [p for p in PACKAGE.rglob("*.py") if "Crypto" in _imports(p) and p.parent.name != "crypto"]
    assert offenders == []


def test_package_passes_mypy_strict() -> None:
    """docs/STYLE.md 7: the whole package is annotated and passes ``mypy --strict``."""
    import subprocess
    import sys

    targets = ["securechat", "run_demo.py", "run_modes_demo.py"]
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", *targets], cwd=PACKAGE.parent,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
