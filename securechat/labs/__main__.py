"""``python -m securechat.labs``: the instructor's and the student's lab commands (docs/INSTRUCTORS.md).

    release OUTDIR [--lab NAME ...]         write the student bundle (handouts + notebooks, no answers)
    grade NOTEBOOK --student ID [--lab N]   autograde one notebook: points per task, then "score: X/Y"
    grade-all DIR --lab NAME                bulk: DIR/<student ID>.ipynb or DIR/<student ID>/<lab>.ipynb; CSV out
    params --student ID                     the student's parameters (JSON)
    check-flag --student ID FLAG            is FLAG this student's capture-the-flag flag?
    ctf ...                                 the capture-the-flag server (``--help`` there)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .params import LabParamsError, check_student_id, student_params


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m securechat.labs", description="securechat course labs")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("release", help="write the student bundle into OUTDIR")
    r.add_argument("outdir", type=Path)
    r.add_argument("--lab", action="append", help="only this lab (repeatable)")
    g = sub.add_parser("grade", help="autograde one notebook")
    g.add_argument("notebook", type=Path)
    g.add_argument("--student", required=True)
    g.add_argument("--lab", help="the lab (default: from the notebook's metadata or file name)")
    a = sub.add_parser("grade-all", help="autograde a folder of submissions; prints CSV")
    a.add_argument("folder", type=Path)
    a.add_argument("--lab", required=True)
    pa = sub.add_parser("params", help="print a student's parameters as JSON")
    pa.add_argument("--student", required=True)
    f = sub.add_parser("check-flag", help="check a capture-the-flag flag")
    f.add_argument("--student", required=True)
    f.add_argument("flag")
    sub.add_parser("ctf", help="the capture-the-flag server", add_help=False)
    return p


def _submissions(folder: Path, lab: str) -> list[tuple[str, Path]]:
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and entry.suffix == ".ipynb":
            found.append((entry.stem, entry))
        elif entry.is_dir() and (entry / f"{lab}.ipynb").is_file():
            found.append((entry.name, entry / f"{lab}.ipynb"))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["ctf"]:
        from . import ctf

        return int(ctf.main(args_list[1:]))
    args = _parser().parse_args(args_list)
    from .grading import LabError  # nbgrader is imported lazily, only by release/grade

    try:
        if args.command == "params":
            print(json.dumps(student_params(args.student), indent=2, sort_keys=True))
        elif args.command == "check-flag":
            from . import flags

            ok = bool(flags.check_flag(check_student_id(args.student), args.flag))
            print("flag accepted" if ok else "not this student's flag")
            return 0 if ok else 1
        elif args.command == "release":
            from .grading import release

            for path in release(args.outdir, args.lab):
                print(f"wrote {path}")
        elif args.command == "grade":
            from .grading import grade

            print("\n".join(grade(args.notebook, args.student, args.lab).lines()))
        elif args.command == "grade-all":
            from .grading import grade_many

            subs = _submissions(args.folder, args.lab)
            reports = grade_many(subs, args.lab)
            tasks = [t.task for t in reports[0].tasks] if reports else []
            print(",".join(["student", *tasks, "score", "max"]))
            for rep in reports:
                print(",".join([rep.student, *(f"{t.score:g}" for t in rep.tasks), f"{rep.score:g}",
                                f"{rep.max_score:g}"]))
    except (LabParamsError, LabError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
