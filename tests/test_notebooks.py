"""Run every notebook in notebooks/ top to bottom, headless, as CI does.

Each notebook executes in a fresh python3 kernel (the ipykernel of the running interpreter) with
SECURECHAT_FAST=1 (short repetitions) and MPLBACKEND=Agg, working directory notebooks/; any cell error fails the
test (its duration is printed, not asserted: nbclient's per-cell timeout only stops a hang). (Jupyter's own kernel messaging uses loopback ports it picks itself; the notebooks
open no sockets of their own, except the last section of 00_tour, which replays its story over TCP on 127.0.0.1,
port 0, and stops everything it started.) Cheap structural checks make sure the notebooks are committed without outputs and follow the course
format.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
ANSWERS_FILE = NOTEBOOKS.parent / "labs" / "notebook_answers.py"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
EXPECTED = ["00_tour", "01_keys", "02_signatures_rsa_vs_dsa", "03_channel", "04_register_login",
            "05_chat_keys_and_messages", "06_membership", "07_attacks", "08_key_designs"]
FORBIDDEN = re.compile(r"\binput\(|\bgetpass\b|\bimport socket\b|\bsocket\.|\bbind\(")


def _read(path: Path) -> object:
    return nbformat.read(path, as_version=4)


def test_there_are_exactly_nine_numbered_notebooks() -> None:
    assert [p.stem for p in PATHS] == EXPECTED


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_is_committed_clean_and_in_course_format(path: Path) -> None:
    nb = _read(path)
    cells = nb.cells  # type: ignore[attr-defined]
    for cell in cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "clear outputs before committing"
            assert not FORBIDDEN.search(cell.source), "no input(), getpass or sockets in notebooks"
    first = cells[0]
    assert first.cell_type == "markdown"
    for heading in ("Learning goals", "Prerequisites", "Time budget"):
        assert heading in first.source
    sources = "\n".join(c.source for c in cells)
    assert "## Exercises" in sources and 'check("' in sources
    assert "Explain what you observe" in sources
    assert cells[-1].cell_type == "code" and "cleanup" in cells[-1].source.lower()


@pytest.mark.tcp
@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_runs_headless(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The student copy, top to bottom, in FAST mode; after each answer cell has run as the student gets it (blank:
    "not answered yet", never "correct"), the instructor's reference answer (labs/notebook_answers.py) is run and
    checked in the same cell, which must print "correct". One kernel run proves both."""
    monkeypatch.setenv("SECURECHAT_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = _read(path)
    answers = _answers()[path.stem]
    wrong = _answers("WRONG").get(path.stem, {})
    answer_cells: dict[str, object] = {}
    for cell in nb.cells:  # type: ignore[attr-defined]
        match = re.search(r'^check\("(\w+)", (answer_\w+)\)', cell.source, re.M) if cell.cell_type == "code" else None
        if match and "def check" not in cell.source:
            name = match.group(1)
            answer_cells[name] = cell
            cell.source += f"\n# --- test only: the reference answer ---\n{answers[name]}\n{match.group(0)}"
            if name in wrong:
                cell.source += (f"\n# --- test only: a typical wrong answer ---\n{wrong[name]}\ntry:\n"
                                f"    {match.group(0)}\nexcept AssertionError:\n    print('Exercise {name}: wrong answer refused')")
    assert set(answer_cells) == set(answers), "every exercise has exactly one reference answer"
    reruns = _insert_reruns(path.stem, nb)
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first failing cell
    print(f"{path.stem}: {time.perf_counter() - start:.1f} s")
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]  # type: ignore[attr-defined]
    assert not [o for o in outputs if o.output_type == "error"]
    for name, cell in answer_cells.items():
        text = "".join(o.get("text", "") for o in cell.outputs)  # type: ignore[attr-defined]
        blank, _, answered = text.partition(f"Exercise {name}: not answered yet")
        assert _ and not re.search(r"Exercise \w+: correct", blank), f"exercise {name}: blank must not be correct"
        assert f"Exercise {name}: correct" in answered, f"exercise {name}: the reference answer must pass"
        if name in wrong:
            assert answered.endswith(f"Exercise {name}: wrong answer refused\n"), f"exercise {name}: a wrong answer passed"
    for first, again, expect in reruns:  # a cell run a second time changes nothing that follows
        if expect is None:
            assert _text(first) == _text(again), "running the cell again changed its results"
        else:
            assert expect in _text(again), f"after running the cell again: {expect!r} missing"


# Cells that students re-run (Shift-Enter twice) and that once changed the notebook's results when they did:
# (marker of the cell to run again, marker of the cell to run the copy before (None: right after it, and the two
# outputs must be equal), what that later cell must still print).
RERUN = {"04_register_login": ("guess_sim = Simulation(", None, None),
         "08_key_designs": ("class RecordedAgreement", 'for mode in ("contributory", "contributory-xor"):',
                            "== XOR of the shares? True")}


def _text(cell: object) -> str:
    return "".join(o.get("text", "") for o in cell.outputs)  # type: ignore[attr-defined]


def _insert_reruns(stem: str, nb: object) -> list[tuple[object, object, str | None]]:
    if stem not in RERUN:
        return []
    marker, before, expect = RERUN[stem]
    cells = nb.cells  # type: ignore[attr-defined]
    index = next(i for i, c in enumerate(cells) if c.cell_type == "code" and marker in c.source)
    at = index + 1 if before is None else next(i for i, c in enumerate(cells) if before in c.source)
    copy = nbformat.from_dict(dict(cells[index]))
    copy.outputs, copy.execution_count = [], None
    cells.insert(at, copy)
    return [(cells[index], copy, None)] if before is None else [(copy, cells[at + 1], expect)]


SOURCES = {p.stem: "\n".join(c.source for c in nbformat.read(p, as_version=4).cells) for p in PATHS}


def _answers(table: str = "ANSWERS") -> dict[str, dict[str, str]]:
    """The instructor-only reference answers (labs/notebook_answers.py), never shipped in a student copy."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("notebook_answers", ANSWERS_FILE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(getattr(module, table))


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_student_copy_carries_no_reference_answer(path: Path) -> None:
    body = SOURCES[path.stem]
    assert "reference()" not in body and "def _ref" not in body and "_reference_recover" not in body
    for answer in _answers()[path.stem].values():
        for line in answer.splitlines():
            if len(line.strip()) > 20 and not line.strip().startswith(("return", "def ", "answer_")):
                assert line.strip() not in body, line
