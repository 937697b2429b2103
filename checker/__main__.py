"""`python -m checker check WORKSPACE [--only NAME ...] [--json]`.

Exit codes: 0 when every check passes, 1 when any fails, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys

from checker import CHECKS, CheckerError, check_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m checker", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("check", help="grade one workspace folder")
    run.add_argument("workspace", help="the folder the notebooks wrote their artifacts to")
    run.add_argument(
        "--only", nargs="+", metavar="NAME", choices=list(CHECKS), help="run only these checks"
    )
    run.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        report = check_all(args.workspace, only=args.only)
    except CheckerError as exc:
        print(f"python -m checker: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report)
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
