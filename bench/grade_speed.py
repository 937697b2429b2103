"""Batch grading throughput: `checker grade` on N learners with --jobs 1 and --jobs 2, one run;
then the Dask engine (`--scheduler local:2`) against the local pool (`--jobs 2`).

    python -m bench.grade_speed [--workspace build/demo/workspace] [--n 200] [--n 1000]
    python -m bench.grade_speed --only engines [--n 400] [--n-execute 16]

Builds N learners by copying a workspace (the demo workspace after `make demo`, else a foundation
workspace built from the real data) and varying them: every fifth learner has one artifact broken,
so failing paths are timed too. Prints workspaces per second for each --jobs, their ratio, and the
peak RSS of a grading worker (flat as N grows means nothing accumulates per learner).
Goals (issue 5): >= 40 workspaces/s with 2 jobs; <= 300 MB per worker.

The engines part grades one cohort of workspaces (artifacts) and one of small notebooks
(`--execute`, in the sandbox) with `--jobs 2`, `--scheduler local:2` (paths), and local:2 sending
each submission as bytes, as a remote worker gets it. Each rate is given overall (start-up
included: a LocalCluster and one grading process per worker take a few seconds) and once started
(first result to last). Goal (issue 11): local:2 at least 0.9x the pool once started.

How that grows with N machines of c cores: min(N*c/g, 1/k, 1/(1 ms), bandwidth/S), with g the
cost of a learner on a worker core, k the client's serial cost per learner (bundling its files,
submitting, writing its result) and S the bytes a task carries; README.md ("On a Dask cluster")
works it out with the figures measured here.

Each size of the jobs part is graded twice:
- "same data": as copied, learners share byte-identical split files, as a cohort does when
  everyone runs the course's notebooks on the course's data with its seed; a worker parses such
  files once (`checker/table.py`).
- "distinct data": the same cohort with that sharing turned off (CHECKER_TABLE_CACHE_MB=0), so
  every learner's files are parsed and summarized afresh: the cost when no two learners hand in
  the same bytes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_cohort(template: Path, root: Path, n: int) -> Path:
    subs = root / f"subs-{n}"
    for i in range(n):
        learner = subs / f"learner-{i:04d}"
        shutil.copytree(template, learner, symlinks=True)
        if i % 5 == 4:  # vary: one broken artifact per fifth learner
            broken = ["lifecycle_map.yaml", "data/manifest.json", "mlflow.db"][i % 3]
            path = learner / broken
            if path.exists():
                path.write_text("broken by bench\n")
    return subs


def run(
    subs: Path, out: Path, jobs: int, *, shared: bool = True, options: str = ""
) -> tuple[float, float]:
    """Wall seconds of one `python -m checker grade`, and the peak worker RSS in MB.

    `shared=False` turns off the tables shared by content (CHECKER_TABLE_CACHE_MB=0): every
    learner's files are parsed as if no two learners handed in the same bytes. `options` are more
    keyword arguments of `grade`, as Python source.
    """
    script = (
        "import resource, sys, time; from pathlib import Path\n"
        "from checker.batch import grade\n"
        "class Quiet:\n"
        "    def __init__(self, total): pass\n"
        "    def update(self, failed): pass\n"
        "    def close(self): pass\n"
        "start = time.perf_counter()\n"
        f"grade(Path({str(subs)!r}), Path({str(out)!r}), jobs={jobs}, progress=Quiet{options})\n"
        "print(time.perf_counter() - start)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)\n"
    )
    env = os.environ | {"CHECKER_TABLE_CACHE_MB": "64" if shared else "0"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env
    )
    seconds, rss = done.stdout.split()
    return float(seconds), float(rss)


def steady_rate(out: Path) -> float:
    """Learners per second between the first result written and the last: the rate once the
    workers are up, without the start-up (forking a pool, or starting a cluster)."""
    times = sorted(p.stat().st_mtime for p in out.glob("*/result.json"))
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


def execute_cohort(template: Path, root: Path, n: int) -> Path:
    """N learners with one small notebook each, for --execute: it unpacks a valid workspace (the
    cost is the kernel's and the sandbox's, as for a short stage); every fourth one fails."""
    from tests.helpers.workspace import learner_notebook, unpack_cell

    subs = root / f"exec-{n}"
    good = learner_notebook(unpack_cell(template))  # needs nothing outside the sandbox
    for i in range(n):
        learner = subs / f"learner-{i:04d}"
        learner.mkdir(parents=True)
        text = learner_notebook("raise ValueError('broken by bench')") if i % 4 == 3 else good
        (learner / "01-stage.ipynb").write_text(text)
    return subs


ENGINES = (
    ("--jobs 2", ""),
    ("--scheduler local:2", ", scheduler='local:2'"),  # its workers read the files by path
    ("local:2 sending bytes", ", scheduler='local:2', shared_fs=False"),  # as remote workers get
)


def engines(template: Path, root: Path, n: int, n_execute: int) -> None:
    """`--scheduler local:2` against `--jobs 2` on the same cohorts, artifacts then --execute."""
    cohorts = [("artifacts", lambda: make_cohort(template, root, n), "")]
    if n_execute:
        build = lambda: execute_cohort(template, root, n_execute)  # noqa: E731
        cohorts.append(("execute", build, ", execute={'timeout': 60}"))
    for mode, build, execute in cohorts:
        subs = build()
        size = len(list(subs.iterdir()))
        figures = {}
        for engine, options in ENGINES:
            out = root / f"out-{mode}-{len(figures)}"
            seconds, _ = run(subs, out, 2, options=execute + options)
            figures[engine] = (size / seconds, steady_rate(out))
            print(
                f"{mode:<9} N={size:<5} {engine:<20}: {size / seconds:6.2f} learners/s overall "
                f"({seconds:6.1f} s), {figures[engine][1]:6.2f}/s once started"
            )
            shutil.rmtree(out)
        pool, pool_steady = figures.pop("--jobs 2")
        for engine, (dask, dask_steady) in figures.items():
            print(
                f"{mode:<9} N={size:<5} {engine} / --jobs 2 = {dask / pool:.2f}x overall, "
                f"{dask_steady / pool_steady:.2f}x once started"
            )
        shutil.rmtree(subs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=ROOT / "build" / "demo" / "workspace")
    parser.add_argument(
        "--n", type=int, action="append", help="cohort sizes (default 200 and 1000)"
    )
    parser.add_argument(
        "--n-execute", type=int, default=16, help="learners for the engines in execute mode"
    )
    parser.add_argument("--only", choices=["jobs", "engines"], help="one part of the benchmark")
    args = parser.parse_args()
    sizes = args.n or [200, 1000]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        template = args.workspace
        if not (template / "data" / "manifest.json").is_file():
            from tests.helpers.workspace import build_workspace

            print(
                f"no workspace at {template}; building a foundation workspace (run `make demo` for all checks)"
            )
            template = build_workspace(root / "template")
        print(f"template: {template}")
        if args.only != "jobs":
            try:
                import distributed  # noqa: F401
            except ImportError:
                print(
                    "engines: skipped, dask.distributed is not installed (pip install -e '.[dask]')"
                )
            else:
                engines(template, root, max(sizes), args.n_execute)
        for n in sizes if args.only != "engines" else []:
            subs = make_cohort(template, root, n)
            for shared, data in ((True, "same data"), (False, "distinct data")):
                figures = {}
                for jobs in (1, 2):
                    out = root / f"out-{n}-{jobs}-{shared}"
                    seconds, rss = run(subs, out, jobs, shared=shared)
                    figures[jobs] = n / seconds
                    print(
                        f"N={n:<5} {data:<13} --jobs {jobs}: {n / seconds:7.1f} workspaces/s "
                        f"({seconds:6.1f} s), peak worker RSS {rss:6.1f} MB"
                    )
                    shutil.rmtree(out)
                print(f"N={n:<5} {data:<13} speed-up jobs2/jobs1 = {figures[2] / figures[1]:.2f}x")
            shutil.rmtree(subs)


if __name__ == "__main__":
    main()
