"""The repository is self-contained: every document it cites is in it, and citations point at things that exist.

A reader of the repo alone must be able to follow every reference: a cited ``*.md`` file exists (in the repo
root, in docs/, beside the citing file, or at the cited path), a "PROTOCOL.md N.M" section is a heading of
docs/PROTOCOL.md, a "docs/THREATS.md N" entry is one of the catalog's numbered entries, and nothing points at
material outside the repo (the sessions' seed projects, an issue tracker, a shared folder).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

_CITED_DOC = re.compile(r"(?<![\w/.:-])((?:[\w.-]+/)*[\w-]+\.md)\b")
_PROTOCOL_SECTION = re.compile(r"PROTOCOL\.md,? (?:section |sections |s\. )?(\d+(?:\.\d+)*)")
_THREAT_ENTRY = re.compile(r"THREATS\.md,? (?:entry |entries )?[A-F]?(\d+)")
_OUTSIDE = re.compile(r"\bseeds? 0\d\d\b|\bseed-0\d\d\b|\bissues? #?\d+\b|\.\./shared|/work/", re.IGNORECASE)


def _sources() -> list[Path]:
    """Code, tests, docs, notebooks and build files: everything a reader of the repo reads."""
    found: list[Path] = []
    for pattern in ("securechat/**/*.py", "tests/**/*.py", "benchmarks/**/*.py", "examples/**/*.py", "docs/*.md",
                    "notebooks/*.ipynb", "*.py", "*.md", "*.txt", "*.toml", ".ci/*"):
        found.extend(p for p in ROOT.glob(pattern) if p.is_file() and "vectors" not in p.parts)
    return sorted(set(found))


def _lines() -> list[tuple[str, int, str]]:
    return [(str(path.relative_to(ROOT)), number, line) for path in _sources()
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)]


def _doc_exists(name: str, citing: Path) -> bool:
    if "/" in name:
        return (ROOT / name).is_file() or (citing.parent / name).is_file()
    return any((folder / name).is_file() for folder in (ROOT, DOCS, citing.parent))


def test_every_cited_document_is_in_the_repo() -> None:
    missing = [f"{where}:{number}: {name}" for where, number, line in _lines()
               for name in _CITED_DOC.findall(line)
               if not line.lstrip().startswith(("http", "[http")) and "://" not in line
               and not _doc_exists(name, ROOT / where)]
    assert missing == []


def test_protocol_section_citations_name_real_sections() -> None:
    headings = set(re.findall(r"^#{2,4} (\d+(?:\.\d+)*)[. ]", (DOCS / "PROTOCOL.md").read_text(), re.MULTILINE))
    assert {"3.1", "7.6", "9.1"} <= headings
    wrong = [f"{where}:{number}: PROTOCOL.md {section}" for where, number, line in _lines()
             for section in _PROTOCOL_SECTION.findall(line)
             if section not in headings and section.split(".")[0] not in headings]
    assert wrong == []


def test_threat_catalog_citations_name_real_entries() -> None:
    entries = {int(n) for n in re.findall(r"^(\d+)\. \*\*", (DOCS / "THREATS.md").read_text(), re.MULTILINE)}
    assert entries == set(range(1, 55))
    wrong = [f"{where}:{number}: THREATS.md {entry}" for where, number, line in _lines()
             for entry in _THREAT_ENTRY.findall(line) if int(entry) not in entries]
    assert wrong == []


def test_nothing_cites_material_outside_the_repo() -> None:
    outside = [f"{where}:{number}: {line.strip()[:100]}" for where, number, line in _lines()
               if _OUTSIDE.search(line) and where != "tests/test_self_contained.py"]
    assert outside == []


def test_wycheproof_vectors_carry_their_licence() -> None:
    vectors = ROOT / "tests" / "vectors" / "wycheproof"
    assert any(vectors.glob("*_test.json"))
    assert "Apache License" in (vectors / "LICENSE").read_text()
