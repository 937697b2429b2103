"""The checker's command line.

    python -m checker check WORKSPACE [--only NAME ...] [--json]
    python -m checker grade SUBMISSIONS --out RESULTS [--jobs N] [--execute [--sandbox bwrap|none]]
        [--timeout S] [--memory-mb MB] [--scratch-mb MB] [--force]
        [--scheduler tcp://HOST:8786 | local:N [--shared-fs] [--max-submission-mb MB]]

Exit codes: 0 when every check passes (check) or the batch completed (grade), 1 when a check
fails, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from checker import CHECKS, CheckerError, check_all


def _check(args: argparse.Namespace) -> int:
    report = check_all(args.workspace, only=args.only)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report)
    return 0 if report.passed else 1


def _grade(args: argparse.Namespace) -> int:
    from checker.batch import grade

    execute = None
    if args.execute:
        execute = {
            "timeout": args.timeout,
            "memory_mb": args.memory_mb,
            "sandbox": args.sandbox,
            "scratch_mb": args.scratch_mb,
        }
    results = grade(
        Path(args.submissions),
        Path(args.out),
        jobs=args.jobs,
        execute=execute,
        force=args.force,
        assignment=args.assignment,
        scheduler=args.scheduler,
        shared_fs=args.shared_fs or None,  # by default: paths for local:N, bytes otherwise
        max_submission_mb=args.max_submission_mb,
    )
    full = sum(r["score"] == r["max_score"] and not r.get("error") for r in results)
    print(f"graded {len(results)} learners ({full} with full marks) into {args.out}")
    print(
        f"  {Path(args.out) / 'grades.csv'}, {Path(args.out) / 'summary.png'}, <learner>/feedback.html"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m checker", description="Grade Model Lifecycle workspaces."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    one = commands.add_parser("check", help="grade one workspace folder")
    one.add_argument("workspace", help="the folder the notebooks wrote their artifacts to")
    one.add_argument(
        "--only", nargs="+", metavar="NAME", choices=list(CHECKS), help="run only these checks"
    )
    one.add_argument("--json", action="store_true", help="print the report as JSON")
    one.set_defaults(run=_check)

    many = commands.add_parser("grade", help="grade a cohort: one folder per learner")
    many.add_argument("submissions", help="SUBMISSIONS/<learner>/ or nbgrader's submitted/ folder")
    many.add_argument(
        "--out", required=True, help="RESULTS folder: grades.csv, summary.png, <learner>/"
    )
    many.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: cores)"
    )
    many.add_argument(
        "--execute", action="store_true", help="re-run each learner's notebooks first"
    )
    many.add_argument(
        "--timeout", type=float, default=300, help="seconds per notebook cell with --execute"
    )
    many.add_argument(
        "--memory-mb", type=int, default=3072, help="memory limit per learner with --execute"
    )
    many.add_argument(
        "--sandbox",
        choices=["bwrap", "none"],
        default="bwrap",
        help="with --execute: run learner code inside bubblewrap (default) or unsandboxed",
    )
    many.add_argument(
        "--scratch-mb", type=int, default=2048, help="disk per learner with --execute (a tmpfs)"
    )
    many.add_argument("--force", action="store_true", help="regrade learners already graded")
    many.add_argument(
        "--assignment", default="lifecycle", help="assignment folder in nbgrader's layout"
    )
    many.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="grade on a Dask cluster: a scheduler's address (tcp://HOST:8786) or local:N "
        "(N workers here); needs the dask extra",
    )
    many.add_argument(
        "--shared-fs",
        action="store_true",
        help="with --scheduler: workers read SUBMISSIONS at the same path, no bytes sent "
        "(always so with local:N)",
    )
    many.add_argument(
        "--max-submission-mb",
        type=float,
        default=None,
        help="with --scheduler: the most one learner's submission may weigh (default 256)",
    )
    many.set_defaults(run=_grade)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except CheckerError as exc:
        print(f"python -m checker: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `python -m checker check ws --json | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
