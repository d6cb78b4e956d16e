"""Course labs (docs/INSTRUCTORS.md): per-student parameters, the student release, and autograding with nbgrader.

For every lab in labs/: the student release carries no solution and no hidden test; the instructor's reference
scores full marks, the blank release scores 0, and every typical wrong answer listed in the lab's
``wrong_answers.py`` gets exactly the score its rubric says. Grading runs the notebooks for real (nbgrader
autograde: one kernel per notebook), so these tests take a while; they share one course directory per lab.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from securechat.labs import params

nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parent.parent
LABS = ROOT / "labs"
LAB_NAMES = sorted(p.name for p in LABS.iterdir() if (p / f"{p.name}.ipynb").is_file())


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "securechat.labs", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=full_env)


# ---- per-student parameters -------------------------------------------------------------------------------

def test_two_students_get_different_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(params.ENV_SECRET, raising=False)
    a, b = params.student_params("alice01"), params.student_params("bob02")
    for key in ("seed", "lab_seeds", "secret_message", "dsa_nonce_hex"):
        assert a[key] != b[key], key
    assert params.weak_password("alice01") != params.weak_password("bob02") or \
        params.derive("alice01", "leaked-password") != params.derive("bob02", "leaked-password")
    assert params.student_params("alice01") == a, "parameters are a function of the ID"


def test_course_secret_changes_every_parameter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(params.ENV_SECRET, raising=False)
    default = params.student_params("alice01")
    monkeypatch.setenv(params.ENV_SECRET, "spring-term secret")
    secret = params.student_params("alice01")
    assert default["seed"] != secret["seed"] and default["secret_message"] != secret["secret_message"]
    assert secret["course_secret"] == "course secret set" and "spring-term" not in json.dumps(secret)


@pytest.mark.tcp
def test_params_cli_prints_json_and_refuses_bad_ids() -> None:
    ok = _cli("params", "--student", "carol03", env={params.ENV_SECRET: ""})
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == params.student_params("carol03")
    for bad in ("", "a b", "x" * 65, "../etc", "-rf"):
        res = _cli("params", "--student", bad)
        assert res.returncode == 2 and "Traceback" not in res.stderr, (bad, res.stderr)


def test_derive_separates_labels_and_lengths() -> None:
    assert params.derive("s1", "a") != params.derive("s1", "b")
    assert params.derive("s1", "a", 64)[:32] != params.derive("s1", "a", 32) or len(params.derive("s1", "a", 64)) == 64
    assert len(params.derive("s1", "a", 100)) == 100
    with pytest.raises(params.LabParamsError):
        params.derive("s1", "a\0b")


# ---- release and grading ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def release_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("release")
    res = _cli("release", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    return out


def _solution_lines(nb: object) -> set[str]:
    """Every non-trivial line inside a solution region or a hidden-test region of the instructor source."""
    lines: set[str] = set()
    for cell in nb.cells:  # type: ignore[attr-defined]
        inside = False
        for line in cell.source.splitlines():
            if "BEGIN SOLUTION" in line or "BEGIN HIDDEN TESTS" in line:
                inside = True
            elif "END SOLUTION" in line or "END HIDDEN TESTS" in line:
                inside = False
            elif inside and len(line.strip()) > 12:
                lines.add(line.strip())
    return lines


@pytest.mark.tcp
def test_release_carries_the_reading_notebooks_but_no_instructor_file(release_dir: Path) -> None:
    names = {p.name for p in (release_dir / "notebooks").glob("*.ipynb")}
    assert names == {p.name for p in (ROOT / "notebooks").glob("*.ipynb")} and len(names) == 9
    assert not list(release_dir.rglob("notebook_answers.py")) and not list(release_dir.rglob("wrong_answers.py"))
    assert not list(release_dir.rglob("*.db"))


@pytest.mark.tcp
@pytest.mark.parametrize("lab", LAB_NAMES)
def test_release_has_no_solutions_and_no_hidden_tests(release_dir: Path, lab: str) -> None:
    student = release_dir / lab / f"{lab}.ipynb"
    assert (release_dir / lab / "README.md").is_file()
    assert not (release_dir / lab / "wrong_answers.py").exists()
    text = student.read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS"):
        assert marker not in text
    released = nbformat.read(student, as_version=4)
    body = "\n".join(c.source for c in released.cells if c.cell_type == "code")  # (instructions may quote code)
    leaked = [line for line in _solution_lines(nbformat.read(LABS / lab / f"{lab}.ipynb", as_version=4))
              if line in body]
    assert not leaked, leaked
    assert all(c.get("outputs", []) == [] for c in released.cells if c.cell_type == "code")


def _with_cells(source: Path, replacements: dict[str, str], dest: Path) -> Path:
    nb = nbformat.read(source, as_version=4)
    nb = copy.deepcopy(nb)
    found = set()
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in replacements:
            cell.source = replacements[gid].strip("\n")
            found.add(gid)
    assert found == set(replacements), f"unknown cells {set(replacements) - found}"
    nbformat.write(nb, dest)
    return dest


def _wrong_answers(lab: str) -> list[tuple[str, dict[str, str], float]]:
    path = LABS / lab / "wrong_answers.py"
    spec = importlib.util.spec_from_file_location(f"wrong_{lab}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.WRONG)


@pytest.mark.tcp
@pytest.mark.parametrize("lab", LAB_NAMES)
def test_reference_full_blank_zero_wrong_answers_partial(release_dir: Path, lab: str, tmp_path: Path) -> None:
    from securechat.labs.grading import grade_many

    source = LABS / lab / f"{lab}.ipynb"
    wrong = _wrong_answers(lab)
    assert len(wrong) >= 2, "each lab lists typical wrong answers with their rubric scores"
    subs = [("ref-student", source), ("blank-student", release_dir / lab / f"{lab}.ipynb")]
    for i, (_, cells, _) in enumerate(wrong):
        subs.append((f"wrong{i}", _with_cells(source, cells, tmp_path / f"wrong{i}.ipynb")))
    reports = {r.student: r for r in grade_many(subs, lab)}
    ref = reports["ref-student"]
    assert ref.max_score > 0 and ref.score == ref.max_score, ref.lines()
    assert reports["blank-student"].score == 0, reports["blank-student"].lines()
    # Both ran top to bottom: the instructor source without any error, the student release with errors only in
    # the test cells (an unanswered task fails its tests; nothing else may break).
    assert ref.crashed == [] and reports["blank-student"].crashed == [], (ref.crashed, reports["blank-student"].crashed)
    for i, (what, _, expected) in enumerate(wrong):
        got = reports[f"wrong{i}"]
        assert got.score == expected, (what, got.lines())
        assert 0 < got.score < ref.max_score, what


@pytest.mark.tcp
def test_grade_cli_prints_tasks_then_score(tmp_path: Path) -> None:
    lab = "08_key_commitment"  # the quickest lab to run
    res = _cli("grade", str(LABS / lab / f"{lab}.ipynb"), "--student", "dana04")
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.strip().splitlines()
    assert lines[-1].startswith("score: ") and any(l.strip().startswith("task1:") for l in lines)
    x, y = lines[-1].split()[1].split("/")
    assert x == y


@pytest.mark.tcp
def test_grade_cli_refuses_unknown_lab_and_missing_file(tmp_path: Path) -> None:
    res = _cli("grade", str(tmp_path / "nope.ipynb"), "--student", "dana04")
    assert res.returncode == 2 and "no notebook" in res.stderr and "Traceback" not in res.stderr
    (tmp_path / "zz.ipynb").write_text(nbformat.writes(nbformat.v4.new_notebook()))
    res = _cli("grade", str(tmp_path / "zz.ipynb"), "--student", "dana04")
    assert res.returncode == 2 and "unknown lab" in res.stderr
