"""The student release and autograding, done by nbgrader (docs/INSTRUCTORS.md, "Why nbgrader").

Owns: a throwaway nbgrader course directory built from the instructor sources in the repository's ``labs/``
folder, ``release`` (``nbgrader generate_assignment``: solution regions become a stub, hidden tests are removed,
outputs cleared) and ``grade`` (``nbgrader autograde``: the instructor's locked and test cells are restored from
the source, the notebook runs with ``SECURECHAT_STUDENT`` set to the student's ID, and the gradebook gives the
points of every test cell). Must not: keep solutions or hidden tests in anything it writes for students.

Task names come from the test cells' nbgrader ``grade_id``: ``task2-value`` counts towards "task2".
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .params import ENV_STUDENT, check_student_id

COURSE_ID = "securechat-labs"
CODE_STUB = "# YOUR CODE HERE"
HANDOUT_FILES = ("README.md",)        # copied into the release besides the generated notebook
INSTRUCTOR_ONLY = ("wrong_answers.py",)  # never copied (checked by tests/test_labs.py)
EXECUTE_TIMEOUT = 300


class LabError(Exception):
    """A plain-words failure of release or grading (unknown lab, unreadable notebook, nbgrader error)."""


def labs_dir() -> Path:
    """The instructor sources: ``$SECURECHAT_LABS_DIR`` or the repository's ``labs/`` folder."""
    env = os.environ.get("SECURECHAT_LABS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "labs"


def lab_names() -> list[str]:
    """Every lab: a folder ``labs/NAME/`` holding ``README.md`` and the instructor source ``NAME.ipynb``."""
    root = labs_dir()
    if not root.is_dir():
        raise LabError(f"no labs folder at {root} (set SECURECHAT_LABS_DIR to the repository's labs/ folder)")
    return sorted(p.name for p in root.iterdir()
                  if (p / "README.md").is_file() and (p / f"{p.name}.ipynb").is_file())


def _require_lab(name: str) -> str:
    names = lab_names()
    if name not in names:
        raise LabError(f"unknown lab {name!r}; the labs are: {', '.join(names)}")
    return name


@dataclass
class TaskScore:
    task: str
    score: float = 0.0
    max_score: float = 0.0
    cells: list[tuple[str, float, float]] = field(default_factory=list)


@dataclass
class GradeReport:
    lab: str
    student: str
    tasks: list[TaskScore]
    crashed: list[str] = field(default_factory=list)  # cells other than tests that raised (grade_id)

    @property
    def score(self) -> float:
        return sum(t.score for t in self.tasks)

    @property
    def max_score(self) -> float:
        return sum(t.max_score for t in self.tasks)

    def lines(self) -> list[str]:
        out = [f"lab {self.lab}, student {self.student}"]
        for t in self.tasks:
            out.append(f"  {t.task}: {_num(t.score)}/{_num(t.max_score)}")
        if self.crashed:
            out.append(f"  note: these cells raised an error: {', '.join(self.crashed)}")
        out.append(f"score: {_num(self.score)}/{_num(self.max_score)}")
        return out


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}"


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Course:
    """A temporary nbgrader course directory (source/, release/, submitted/, autograded/, gradebook.db)."""

    def __init__(self, root: Path, labs: Sequence[str]) -> None:
        self.root = root
        self.labs = list(labs)
        for lab in self.labs:
            dest = root / "source" / lab
            dest.mkdir(parents=True)
            shutil.copy2(labs_dir() / lab / f"{lab}.ipynb", dest / f"{lab}.ipynb")
        self._api = self._make_api()
        self._generated: set[str] = set()

    def _make_api(self) -> Any:
        # nbgrader runs the `alembic` command to version its gradebook: make the interpreter's scripts findable.
        bindir = str(Path(sys.executable).parent)
        if bindir not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
        from nbgrader.apps import NbGraderAPI
        from nbgrader.coursedir import CourseDirectory
        from traitlets.config import Config

        config = Config()
        config.CourseDirectory.root = str(self.root)
        config.CourseDirectory.course_id = COURSE_ID
        config.CourseDirectory.db_url = f"sqlite:///{self.root / 'gradebook.db'}"
        config.ClearSolutions.code_stub = {"python": CODE_STUB}
        config.ClearSolutions.text_stub = "YOUR ANSWER HERE"
        config.Execute.timeout = EXECUTE_TIMEOUT
        config.Execute.kernel_name = "python3"
        coursedir = CourseDirectory(config=config)
        return NbGraderAPI(coursedir=coursedir, config=config)

    def _check(self, result: dict[str, Any], what: str) -> None:
        if not result.get("success"):
            log = (result.get("error") or "") + "\n" + (result.get("log") or "")
            raise LabError(f"nbgrader {what} failed:\n{log.strip()[-3000:]}")

    def generate(self, lab: str) -> Path:
        if lab not in self._generated:
            self._check(self._api.generate_assignment(lab, force=True, create=True), f"generate_assignment {lab}")
            self._generated.add(lab)
        return self.root / "release" / lab / f"{lab}.ipynb"

    def autograde(self, lab: str, student: str, notebook: Path) -> GradeReport:
        self.generate(lab)
        dest = self.root / "submitted" / student / lab
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        shutil.copy2(notebook, dest / f"{lab}.ipynb")
        repo = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(x for x in (repo, os.environ.get("PYTHONPATH", "")) if x)
        with _env(**{ENV_STUDENT: student, "PYTHONPATH": path}):
            self._check(self._api.autograde(lab, student, force=True, create=True), f"autograde {lab} {student}")
        report = self._report(lab, student)
        report.crashed = self._crashed(lab, student)
        return report

    def _crashed(self, lab: str, student: str) -> list[str]:
        import nbformat

        path = self.root / "autograded" / student / lab / f"{lab}.ipynb"
        nb = nbformat.read(path, as_version=4)
        out = []
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if cell.cell_type == "code" and not meta.get("grade") and any(
                    o.get("output_type") == "error" for o in cell.get("outputs", [])):
                out.append(str(meta.get("grade_id", "?")))
        return out

    def _report(self, lab: str, student: str) -> GradeReport:
        from nbgrader.api import Gradebook

        with Gradebook(f"sqlite:///{self.root / 'gradebook.db'}", course_id=COURSE_ID) as gb:
            nb = gb.find_submission_notebook(lab, lab, student)
            order = {c.name: i for i, c in enumerate(gb.find_notebook(lab, lab).grade_cells)}
            grades = sorted(nb.grades, key=lambda g: order.get(g.name, 0))
            tasks: dict[str, TaskScore] = {}
            for g in grades:
                task = g.name.split("-")[0]
                ts = tasks.setdefault(task, TaskScore(task))
                score = float(g.score or 0.0)
                ts.score += score
                ts.max_score += float(g.max_score)
                ts.cells.append((g.name, score, float(g.max_score)))
        return GradeReport(lab=lab, student=student, tasks=list(tasks.values()))


@contextlib.contextmanager
def course(labs: Sequence[str]) -> Iterator[Course]:
    with tempfile.TemporaryDirectory(prefix="securechat-course-") as tmp:
        yield Course(Path(tmp), [_require_lab(lab) for lab in labs])


def release(outdir: Path, labs: Sequence[str] | None = None) -> list[Path]:
    """Write the student bundle into *outdir*: for every lab, its handout (the lab's README, markdown) and
    ``LAB/LAB.ipynb`` (the student notebook: stubs instead of solutions, no hidden tests, no outputs). Returns the
    notebooks."""
    names = list(labs) if labs else lab_names()
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    with course(names) as c:
        for lab in names:
            generated = c.generate(lab)
            dest = outdir / lab
            dest.mkdir(exist_ok=True)
            shutil.copy2(generated, dest / f"{lab}.ipynb")
            for name in HANDOUT_FILES:
                src = labs_dir() / lab / name
                if src.is_file():
                    shutil.copy2(src, dest / name)
            written.append(dest / f"{lab}.ipynb")
    index = labs_dir() / "README.md"
    if index.is_file():
        shutil.copy2(index, outdir / "README.md")
    _copy_reading_notebooks(outdir / "notebooks")
    return written


def _copy_reading_notebooks(dest: Path) -> None:
    """The numbered notebooks are student copies already (tests and hints, no answers: those stay in the
    instructor's labs/notebook_answers.py); the release carries them, and their data, unchanged."""
    source = labs_dir().parent / "notebooks"
    if not source.is_dir():
        return
    dest.mkdir(parents=True, exist_ok=True)
    for nb in sorted(source.glob("*.ipynb")):
        shutil.copy2(nb, dest / nb.name)
    if (source / "data").is_dir():
        shutil.copytree(source / "data", dest / "data", dirs_exist_ok=True)


def lab_of(notebook: Path) -> str:
    """The lab a submitted notebook belongs to: its metadata ``securechat.lab``, else its file name."""
    import nbformat

    try:
        nb = nbformat.read(notebook, as_version=4)
    except (OSError, ValueError) as exc:
        raise LabError(f"cannot read {notebook}: {exc}") from None
    meta = nb.metadata.get("securechat", {})
    name = meta.get("lab") if isinstance(meta, dict) else None
    return _require_lab(str(name) if name else notebook.stem)


def grade(notebook: Path, student: str, lab: str | None = None) -> GradeReport:
    """Autograde one submitted notebook for *student* (whose ID fixes every expected value)."""
    check_student_id(student)
    if not notebook.is_file():
        raise LabError(f"no notebook at {notebook}")
    name = lab or lab_of(notebook)
    with course([name]) as c:
        return c.autograde(name, student, notebook)


def grade_many(submissions: Sequence[tuple[str, Path]], lab: str) -> list[GradeReport]:
    """Autograde many (student, notebook) pairs of one lab in one course directory (bulk grading)."""
    for student, _ in submissions:
        check_student_id(student)
    with course([lab]) as c:
        return [c.autograde(lab, student, nb) for student, nb in submissions]
