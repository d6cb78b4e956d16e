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


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_runs_headless(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECURECHAT_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = _read(path)
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first failing cell
    elapsed = time.perf_counter() - start
    print(f"{path.stem}: {elapsed:.1f} s")
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]  # type: ignore[attr-defined]
    assert not [o for o in outputs if o.output_type == "error"]
