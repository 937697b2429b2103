"""The checker against nbgrader: the same N submissions graded both ways, in one run.

    PATH=.venv/bin:$PATH python -m bench.vs_nbgrader [--n 20] [--notebooks 01,02,08,09]
        [--one-blank 08,09] [--jobs 2] [--keep]

Builds a temporary nbgrader course the way tests/test_roundtrip.py does (the repo's
nbgrader_config.py, `datasets/` linked at the course root, the chosen solution notebooks as the
source of the `lifecycle` assignment, `nbgrader generate_assignment` for the learner version) and
places N submissions at `submitted/<learner>/lifecycle/`, each parameterized to the CI sample
(SAMPLE_FRAC = 0.3, EPOCHS = 4). Most learners hand in every answer; every fifth from the second
hands in the blank learner version; every fifth from the fourth leaves one notebook blank (in
turn, the notebooks of `--one-blank`: by default the exercises of the subset). Then it grades them
twice, timing each command as a whole (start-up included):

  (a) `python -m checker grade <course>/submitted --out <results> --execute --jobs 2`, which
      re-runs each learner's notebooks with papermill in a limited child process, its kernels
      inside bubblewrap, then grades the artifacts (run first: warm caches, if any, favour the
      runs after it);
  (a') the same with `--sandbox none` (kernels unsandboxed): the sandbox's cost;
  (b) `nbgrader autograde lifecycle`, which runs the same notebooks, one learner after another
      (its kernels inside bubblewrap too, as the course's nbgrader_config.py sets when bwrap
      runs here; CHECKER_NBGRADER_SANDBOX=none for unsandboxed nbgrader).

It prints the wall times, submissions per second, their ratio (goal of issue 5: the checker at
least 1.9x nbgrader's throughput), the sandbox's cost (goal of issue 13: at most 5%), and the verdicts compared: every nbgrader grade cell whose
source calls `checker.check_all(ws, only=[...])` is matched to those checks; the cell passes when
it scored its full points, the checks pass when the checker passed all of them. Exits 1 when any
verdict differs, or when nbgrader failed to process a learner (who is then left out of the
comparison and named).

Which notebooks: the whole course takes 1.5-3 minutes per learner per way on a 2-core machine.
`checker grade --execute` runs a submission's notebooks in an empty scratch workspace, so the
subset must build its own artifacts from nothing, and notebook 10 looks for
`datasets/labs/typical-lab.ipynb` above its own folder, which the checker's scratch copy (under
the system temporary folder) does not have. The default, stages 01-02 and exercises 08-09, runs
from nothing both ways: about 12 s of notebook time per learner, about 8 minutes in all for 20
learners. `all` runs the ten notebooks. Everything happens in a temporary folder; nothing in the
repo is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions" / "lifecycle"
BIN = Path(sys.executable).parent
ASSIGNMENT = "lifecycle"
DEFAULT_NOTEBOOKS = "01,02,08,09"
PARAMETERS = {"SAMPLE_FRAC": "0.3", "EPOCHS": "4"}  # the CI sample (checker.chain.CI_PARAMETERS)
ONLY = re.compile(r"check_all\([^)]*only\s*=\s*\[([^\]]*)\]")


def environment() -> dict[str, str]:
    """The venv first on PATH: nbgrader calls `alembic`, papermill and nbgrader start kernels."""
    return os.environ | {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }


def run(command: list[str], cwd: Path, log: Path, *, check: bool = True) -> float:
    """Run a command with its output in `log`; return its wall seconds.

    A failure stops the bench when `check`; otherwise it is reported (nbgrader autograde exits 1
    when it could not process some learner; the comparison then names who).
    """
    start = time.perf_counter()
    with log.open("w", encoding="utf-8") as out:
        done = subprocess.run(
            command, cwd=cwd, env=environment(), stdout=out, stderr=subprocess.STDOUT, timeout=7200
        )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        message = f"{' '.join(Path(c).name for c in command[:3])} ... exited with {done.returncode}"
        if check:
            sys.exit(f"{message}:\n{tail}")
        print(f"note: {message}; the end of its log:\n{tail}", file=sys.stderr)
    return seconds


def choose(spec: str) -> list[Path]:
    """The solution notebooks named by two-digit prefixes (`01,02,08`) or `all`."""
    every = sorted(SOLUTIONS.glob("[0-9][0-9]-*.ipynb"))
    if spec.strip() == "all":
        return every
    prefixes = [p.strip().zfill(2) for p in spec.split(",") if p.strip()]
    chosen = [nb for nb in every if nb.name[:2] in prefixes]
    missing = set(prefixes) - {nb.name[:2] for nb in chosen}
    if missing:
        sys.exit(f"no notebook in {SOLUTIONS} starts with {', '.join(sorted(missing))}")
    return chosen


def make_course(root: Path, notebooks: list[Path]) -> Path:
    """A course folder: the repo's nbgrader config, the chosen notebooks as the source, the data."""
    course = root / "course"
    source = course / "solutions" / ASSIGNMENT
    source.mkdir(parents=True)
    exchange = root / "exchange"
    exchange.mkdir()
    config = (ROOT / "nbgrader_config.py").read_text(encoding="utf-8")
    config += f"\nc.Exchange.root = {str(exchange)!r}\n"
    (course / "nbgrader_config.py").write_text(config, encoding="utf-8")
    for notebook in notebooks:
        shutil.copy(notebook, source)
    for folder in ("datasets", "labs"):  # the notebooks find them by walking up
        if (ROOT / folder).is_dir():
            os.symlink(ROOT / folder, course / folder)
    return course


def load(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def answered(release: Path) -> nbformat.NotebookNode:
    """The learner version with every answer cell filled in from the solution."""
    nb = load(release)
    solution = {
        c.metadata["nbgrader"]["grade_id"]: c.source
        for c in load(SOLUTIONS / release.name).cells
        if c.metadata.get("nbgrader", {}).get("grade_id")
    }
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            cell.source = re.sub(
                r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?",
                "",
                solution[meta["grade_id"]],
                flags=re.M,
            )
    return nb


def small_sample(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Set the CI sample in the parameters cell, as a learner may edit it."""
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    for name, value in PARAMETERS.items():
        cell.source, found = re.subn(
            rf"^({name}\s*=\s*)[^#\n]*?(\s*(#.*)?)$", rf"\g<1>{value}\g<2>", cell.source, flags=re.M
        )
        if not found:
            sys.exit(f"no `{name} = ...` line in the parameters cell of a notebook")
    return nb


def plan(n: int, blankable: list[str]) -> dict[str, str]:
    """Each learner's kind: `solution`, `blank`, or `blank-<notebook>` (one notebook left blank)."""
    kinds, turn = {}, 0
    for i in range(n):
        if i % 5 == 1:
            kind = "blank"
        elif i % 5 == 3 and blankable:
            kind, turn = f"blank-{blankable[turn % len(blankable)]}", turn + 1
        else:
            kind = "solution"
        kinds[f"learner-{i:03d}"] = kind
    return kinds


def submit(course: Path, kinds: dict[str, str]) -> None:
    """Place each learner's notebooks at `submitted/<learner>/lifecycle/`, as `collect` leaves them."""
    release = course / "notebooks" / ASSIGNMENT
    notebooks = sorted(release.glob("[0-9][0-9]-*.ipynb"))
    right = {nb.name: answered(nb) for nb in notebooks}
    blank = {nb.name: load(nb) for nb in notebooks}
    for learner, kind in kinds.items():
        folder = course / "submitted" / learner / ASSIGNMENT
        folder.mkdir(parents=True)
        (folder / "timestamp.txt").write_text("2025-01-15 12:00:00.000000 UTC\n", encoding="utf-8")
        for nb in notebooks:
            left_blank = kind == "blank" or kind == f"blank-{nb.name[:2]}"
            version = nbformat.from_dict(blank[nb.name] if left_blank else right[nb.name])
            nbformat.write(small_sample(version), str(folder / nb.name))


def grade_cells(course: Path) -> dict[str, tuple[str, ...]]:
    """grade_id -> the checks its source names in `only=[...]` (the cells both ways grade)."""
    mapping = {}
    for path in sorted((course / "solutions" / ASSIGNMENT).glob("*.ipynb")):
        for cell in load(path).cells:
            meta = cell.metadata.get("nbgrader", {})
            match = ONLY.search(cell.source) if meta.get("grade") else None
            if match:
                mapping[meta["grade_id"]] = tuple(re.findall(r"[\"'](\w+)[\"']", match.group(1)))
    return mapping


def nbgrader_verdicts(course: Path, learners: list[str]) -> dict[str, dict[str, bool]]:
    """Per learner, grade_id -> whether the cell scored its full automatic points."""
    from nbgrader.api import Gradebook, MissingEntry

    verdicts: dict[str, dict[str, bool]] = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for learner in learners:
            try:
                submission = gb.find_submission(ASSIGNMENT, learner)
            except MissingEntry:  # nbgrader dropped the learner: every cell scored 0
                verdicts[learner] = {}
                continue
            verdicts[learner] = {
                grade.name: (grade.auto_score or 0.0) >= grade.max_score > 0
                for notebook in submission.notebooks
                for grade in notebook.grades
            }
    return verdicts


def checker_verdicts(results: Path, learners: list[str]) -> dict[str, dict[str, bool]]:
    """Per learner, check name -> passed, from `RESULTS/<learner>/result.json`."""
    verdicts = {}
    for learner in learners:
        result = json.loads((results / learner / "result.json").read_text(encoding="utf-8"))
        verdicts[learner] = {c["name"]: bool(c["passed"]) for c in result["checks"]}
    return verdicts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="submissions (default 20)")
    parser.add_argument(
        "--notebooks",
        default=DEFAULT_NOTEBOOKS,
        help=f"two-digit prefixes of the notebooks to grade, or `all` (default {DEFAULT_NOTEBOOKS})",
    )
    parser.add_argument(
        "--one-blank",
        help="prefixes of the notebooks left blank in turn by the one-blank learners "
        "(default: the exercises of the subset, else its last notebook)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="checker workers (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary course folder")
    args = parser.parse_args()

    notebooks = choose(args.notebooks)
    chosen = [nb.name[:2] for nb in notebooks]
    if args.one_blank:
        blankable = [p.strip().zfill(2) for p in args.one_blank.split(",") if p.strip()]
        if set(blankable) - set(chosen):
            sys.exit(f"--one-blank {args.one_blank}: not among the notebooks graded ({chosen})")
    else:
        blankable = [nb.name[:2] for nb in notebooks if "exercise" in nb.name] or chosen[-1:]
    kinds = plan(args.n, blankable)

    root = Path(tempfile.mkdtemp(prefix="vs-nbgrader-"))
    try:
        course = make_course(root, notebooks)
        nbgrader = [str(BIN / "nbgrader")]
        run([*nbgrader, "generate_assignment", ASSIGNMENT, "--force"], course, root / "gen.log")
        submit(course, kinds)
        learners = sorted(kinds)

        load_before = os.getloadavg()[0]
        grade = [sys.executable, "-m", "checker", "grade", str(course / "submitted"),
                 "--execute", "--jobs", str(args.jobs)]  # fmt: skip
        checker_seconds = run(
            [*grade, "--out", str(root / "results")], root, root / "checker.log"
        )  # learner kernels inside bubblewrap (the default)
        unsandboxed_seconds = run(
            [*grade, "--out", str(root / "results-none"), "--sandbox", "none"],
            root,
            root / "checker-none.log",
        )
        nbgrader_seconds = run(
            [*nbgrader, "autograde", ASSIGNMENT], course, root / "nbgrader.log", check=False
        )
        load_after = os.getloadavg()[0]

        cells = grade_cells(course)
        theirs = nbgrader_verdicts(course, learners)
        ours = checker_verdicts(root / "results", learners)
        # nbgrader removes the autograded folder of a learner it failed to process (a kernel that
        # died, a notebook it cannot read) and leaves partial scores in the gradebook.
        dropped = [lr for lr in learners if not (course / "autograded" / lr / ASSIGNMENT).is_dir()]
    finally:
        if args.keep:
            print(f"(kept {root}: logs in gen.log, checker.log, nbgrader.log)")
        else:
            shutil.rmtree(root, ignore_errors=True)

    counts: dict[str, int] = {}
    for kind in kinds.values():
        counts[kind] = counts.get(kind, 0) + 1
    print(f"graded notebooks ({len(notebooks)}): {', '.join(nb.stem for nb in notebooks)}")
    print(
        f"parameters in every submission: {', '.join(f'{k} = {v}' for k, v in PARAMETERS.items())}"
    )
    print(f"submissions: {args.n} ({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))})")
    print(
        f"1-minute load average: {load_before:.2f} before, {load_after:.2f} after, on {os.cpu_count()} cores"
    )
    print()
    rate_theirs, rate_ours = args.n / nbgrader_seconds, args.n / checker_seconds
    rate_none = args.n / unsandboxed_seconds
    command = f"checker grade --execute --jobs {args.jobs}"
    print(f"{'nbgrader autograde':<44} {nbgrader_seconds:8.1f} s  {rate_theirs:.3f} submissions/s")
    print(f"{command:<44} {checker_seconds:8.1f} s  {rate_ours:.3f} submissions/s")
    print(
        f"{command + ' --sandbox none':<44} {unsandboxed_seconds:8.1f} s  {rate_none:.3f} submissions/s"
    )
    print(f"throughput ratio (checker / nbgrader): {rate_ours / rate_theirs:.2f}x  (goal >= 1.9x)")
    print(
        f"cost of the sandbox: {100 * (1 - rate_ours / rate_none):.1f}% of throughput  (goal <= 5%)"
    )
    print()

    compared = [lr for lr in learners if lr not in dropped]
    agree, disagreements = 0, []
    print(
        f"{'grade cell':<16} {'check(s)':<24} {'nbgrader pass':>13} {'checker pass':>12} {'agree':>6}"
    )
    for grade_id, names in cells.items():
        passed_theirs = passed_ours = same = 0
        for learner in compared:
            a = theirs[learner].get(grade_id, False)
            b = all(ours[learner].get(name, False) for name in names)
            passed_theirs += a
            passed_ours += b
            if a == b:
                same += 1
            else:
                disagreements.append((learner, kinds[learner], grade_id, names, a, b))
        agree += same
        print(
            f"{grade_id:<16} {'+'.join(names):<24} {passed_theirs:>13} {passed_ours:>12} {same:>6}"
        )
    total = len(cells) * len(compared)
    print(
        f"verdicts: {agree}/{total} agree, {len(disagreements)} disagree "
        f"({len(cells)} grade cells x {len(compared)} learners)"
    )
    for learner, kind, grade_id, names, a, b in disagreements:
        print(
            f"  {learner} ({kind}) {grade_id} [{'+'.join(names)}]: "
            f"nbgrader {'pass' if a else 'fail'}, checker {'pass' if b else 'fail'}"
        )
    if dropped:
        print(
            f"not compared: nbgrader autograde failed to process {', '.join(dropped)} "
            "(no autograded folder; see 'There was an error processing' in nbgrader.log)"
        )
    return 1 if disagreements or dropped else 0


if __name__ == "__main__":
    sys.exit(main())
