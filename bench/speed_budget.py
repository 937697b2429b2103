"""The course's speed budget: `make demo` at the CI sample and the full-data chain.

    python -m bench.speed_budget [--only sample|full]

Runs the two commands a person runs, each as its own process into a fresh folder, one after the
other in this run: `python -m checker.chain --out DIR` (what `make demo` runs: the seven stage
notebooks at the CI sample, then grading) and `python -m checker.chain --full --out DIR` (all the
data, all epochs). Prints each one's wall time against its budget (issue 10: the sample within
120 s, the full data within 180 s on a 2-core machine), the ratio of the two, and each notebook's
own seconds, so that a stage which grows shows itself. Exits 1 when a budget is missed.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGETS = {"sample": 120.0, "full": 180.0}
NOTEBOOK_LINE = re.compile(r"^(ok |ERR) (\S+)\s+([0-9.]+) s", re.M)


def run(kind: str, out: Path) -> tuple[float, dict[str, float], int]:
    """Wall time of one chain command, each notebook's seconds as it printed them, its exit code."""
    command = [sys.executable, "-m", "checker.chain", "--out", str(out)]
    if kind == "full":
        command.append("--full")
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    stages = {m[2]: float(m[3]) for m in NOTEBOOK_LINE.finditer(done.stdout)}
    if done.returncode:
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n", file=sys.stderr)
    return seconds, stages, done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(BUDGETS), help="measure one of the two")
    args = parser.parse_args()
    kinds = [args.only] if args.only else ["sample", "full"]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            results[kind] = run(kind, Path(tmp) / kind)
    missed = False
    names = sorted({name for _, stages, _ in results.values() for name in stages})
    print(f"{'notebook':<36}" + "".join(f"{kind:>10}" for kind in kinds))
    for name in names:
        print(f"{name:<36}" + "".join(f"{results[k][1].get(name, 0):>9.1f}s" for k in kinds))
    for kind in kinds:
        seconds, _, code = results[kind]
        budget = BUDGETS[kind]
        verdict = "within" if seconds <= budget and not code else "MISSED"
        missed |= verdict == "MISSED"
        print(
            f"{kind:>6}: {seconds:6.1f} s of {budget:.0f} s ({seconds / budget:.2f} of the budget)"
            f" {verdict}{'' if not code else f' (exit {code})'}"
        )
    if len(kinds) == 2:
        print(f"full / sample = {results['full'][0] / results['sample'][0]:.2f}")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
