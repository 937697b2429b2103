"""Grade a whole cohort: `python -m checker grade SUBMISSIONS --out RESULTS`.

Each learner's workspace is graded with every check in a pool of worker processes, or as a task
on a Dask cluster (`--scheduler`, see `checker.cluster`): either engine yields `Outcome`s to one
loop here, which holds the lock, draws the progress line and writes `grades.csv`. A learner's
result is written atomically (temporary name, then rename) to `RESULTS/<learner>/result.json`, so
a batch killed at any moment and rerun skips the learners already graded and ends with the same
results as one uninterrupted run. A lock on `RESULTS/.lock` keeps two runs from writing the same
folder. Learner code never runs in this process: with `--execute` the notebooks run in a separate
process, their kernels inside bubblewrap (see `checker.execute` and `checker.sandbox`), and the
grading only reads the artifacts they leave. Each result records that isolation. Every worker
dies with the grading process (`PR_SET_PDEATHSIG`), and with it its runner and sandboxes.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import html
import io
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from contextlib import closing, contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from checker.errors import CheckerError

RESULT = "result.json"
FEEDBACK = "feedback.html"
GRADE_SECONDS = 120  # a safety net per learner; the checks have their own caps
WRITERS = 2  # threads writing results graded elsewhere (their fsyncs overlap)
ASSIGNMENT = "lifecycle"
IGNORED = {".ipynb_checkpoints", ".DS_Store", ".git", "gradebook.db"}  # never learners
SAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Learner:
    """One learner's submission: a safe id for RESULTS, and the folder to grade."""

    id: str
    name: str  # the folder name as found (may hold anything a file name can)
    folder: Path  # the learner's folder (SUBMISSIONS/<name> or submitted/<name>/<assignment>)


def sanitize(name: str) -> str:
    """A learner id that is safe as one path component of RESULTS.

    Keeps letters, digits, `.`, `_` and `-`; replaces runs of anything else (`/`, newlines, NUL,
    spaces) with `_`; never starts with a dot (no `..`, no hidden files); at most 64 characters.
    When anything was changed, a short hash of the original keeps distinct names distinct.
    """
    safe = SAFE_ID.sub("_", name).lstrip(".")[:48] or "learner"
    if safe != name:
        digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        safe = f"{safe}-{digest}"
    return safe


def discover(submissions: Path, assignment: str = ASSIGNMENT) -> list[Learner]:
    """The learners of `SUBMISSIONS/<learner>/` or nbgrader's `submitted/<learner>/<assignment>/`.

    Every entry becomes a learner, broken ones included, so that each is graded (0 with a
    message) rather than silently skipped.
    """
    if not submissions.is_dir():
        raise CheckerError(f"SUBMISSIONS {str(submissions)!r} is not a folder of learner folders")
    learners = []
    for entry in sorted(os.scandir(submissions), key=lambda e: e.name):
        if entry.name in IGNORED:
            continue
        folder = Path(entry.path)
        nested = folder / assignment
        if not entry.is_symlink() and nested.is_dir() and not nested.is_symlink():
            folder = nested
        learners.append(Learner(sanitize(entry.name), entry.name, folder))
    ids = [learner.id for learner in learners]
    if len(set(ids)) != len(ids):  # two names that sanitize alike: disambiguate by position
        learners = [Learner(f"{lr.id}-{i}", lr.name, lr.folder) for i, lr in enumerate(learners)]
    return learners


def workspace_of(folder: Path) -> Path:
    """The workspace inside a learner's folder: `workspace/` when present, else the folder."""
    inner = folder / "workspace"
    return inner if inner.is_dir() and not inner.is_symlink() else folder


def _refusal(learner: Learner) -> str | None:
    """Why a learner's folder cannot be graded at all, or None."""
    path = learner.folder
    if path.is_symlink():
        return f"{learner.name!r}: expected a folder, found a symlink (to {os.readlink(path)!r})"
    if not path.exists():
        return f"{learner.name!r}: the folder disappeared before it was graded"
    if not path.is_dir():
        size = path.lstat().st_size
        return f"{learner.name!r}: expected a folder of notebooks and artifacts, found a file of {size:,} bytes"
    return None


def _alarm(signum, frame):
    raise TimeoutError


def isolation(execute: dict | None) -> str:
    """How a learner's code ran: `bwrap`, `none` (executed unsandboxed), or `not executed`."""
    return "not executed" if execute is None else execute.get("sandbox", "bwrap")


def grade_one(learner: Learner, execute: dict | None = None) -> dict:
    """Grade one learner in this (worker) process; never raises."""
    import checker

    result = {
        "learner": learner.id,
        "folder": learner.name,
        "score": 0,
        "max_score": 0,
        "isolation": isolation(execute),
    }
    refusal = _refusal(learner)
    names = list(checker.CHECKS)
    if refusal:
        return result | {"error": refusal, "checks": _zero(names, refusal)}
    scratch = None
    signal.signal(signal.SIGALRM, _alarm)
    try:
        workspace = workspace_of(learner.folder)
        error = None
        if execute is not None:
            from checker.execute import run_submission

            scratch = Path(tempfile.mkdtemp(prefix="checker-exec-"))
            workspace, error = run_submission(learner.folder, scratch, **execute)
        signal.alarm(GRADE_SECONDS)
        report = checker.check_all(workspace)
        signal.alarm(0)
        paths = _machine_paths(workspace, learner.folder)
        checks = [_scrub(r.to_dict(), paths) for r in report.results]
        return result | {
            "score": report.score,
            "max_score": report.max_score,
            "error": error,
            "checks": checks,
        }
    except TimeoutError:
        message = f"grading took longer than {GRADE_SECONDS} s and was stopped"
        return result | {"error": message, "checks": _zero(names, message)}
    except Exception as exc:  # one broken learner never stops the batch
        message = f"could not grade: {exc.__class__.__name__}: {exc}"
        return result | {"error": message, "checks": _zero(names, message)}
    finally:
        signal.alarm(0)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _zero(names: list[str], message: str) -> list[dict]:
    import checker

    return [
        {
            "name": n,
            "passed": False,
            "points": 0,
            "max_points": checker.CHECKS[n].max_points,
            "messages": [message],
            "hint": "",
        }
        for n in names
    ]


def _machine_paths(*folders: Path) -> list[str]:
    """The absolute paths of this machine that messages may quote: each folder as given and
    resolved, longest first (so a folder inside another is replaced whole)."""
    texts = {text for folder in folders for text in (str(folder), str(folder.resolve()))}
    return sorted(texts, key=len, reverse=True)


def _scrub(check: dict, paths: list[str]) -> dict:
    """Replace absolute paths of this machine in messages with `<workspace>`."""
    messages = check["messages"]
    for text in paths:
        messages = [m.replace(text, "<workspace>") for m in messages]
    return check | {"messages": messages}


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o644)  # mkstemp makes 0600; instructors share RESULTS
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _result_path(results: Path, learner: Learner) -> Path:
    path = (results / learner.id / RESULT).resolve()
    if not path.is_relative_to(
        results.resolve()
    ):  # sanitize() makes this impossible; belt and braces
        raise CheckerError(f"learner id {learner.id!r} would escape RESULTS")
    return path


def load_result(path: Path) -> dict | None:
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) and "checks" in result else None


_HELD: set[str] = set()


@contextmanager
def locked(results: Path) -> Iterator[None]:
    """Hold `RESULTS/.lock` for the run; refuse when another run holds it.

    A POSIX record lock (`lockf`), not `flock`: forked grading workers do not inherit it, so a
    run killed with `kill -9` frees the lock at once even while its orphaned workers wind down.
    """
    results.mkdir(parents=True, exist_ok=True)
    key = str(results.resolve())
    if key in _HELD:  # a POSIX lock never refuses its own process: guard that case here
        raise CheckerError(f"{results} is being graded by another run in this process; wait for it")
    handle = (results / ".lock").open("a+")
    try:
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise CheckerError(
            f"{results} is being graded by another run ({holder}); wait for it to finish, "
            "then run again (learners it graded will be skipped)"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    _HELD.add(key)
    try:
        yield
    finally:
        _HELD.discard(key)
        fcntl.lockf(handle, fcntl.LOCK_UN)
        handle.close()


class Progress:
    """A one-line progress bar on stderr: done/total, failures, ETA."""

    def __init__(self, total: int, stream=sys.stderr):
        self.total, self.done, self.failed = total, 0, 0
        self.stream = stream
        self.start = time.monotonic()
        self.tty = getattr(stream, "isatty", lambda: False)()

    def update(self, failed: bool) -> None:
        self.done += 1
        self.failed += failed
        if self.tty or self.done == self.total or self.done % max(1, self.total // 20) == 0:
            self.stream.write(("\r" if self.tty else "") + self.line() + ("" if self.tty else "\n"))
            self.stream.flush()

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate else 0.0
        width = 24
        filled = int(width * self.done / self.total) if self.total else width
        return (
            f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} graded, "
            f"{self.failed} not full marks, {rate:.1f}/s, ETA {int(eta // 60)}:{int(eta % 60):02d}"
        )

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def grade(
    submissions: Path,
    results: Path,
    *,
    jobs: int | None = None,
    execute: dict | None = None,
    force: bool = False,
    assignment: str = ASSIGNMENT,
    progress: Callable[[int], Progress] = Progress,
    scheduler: str | None = None,
    shared_fs: bool | None = None,
    max_submission_mb: float | None = None,
) -> list[dict]:
    """Grade every learner of SUBMISSIONS into RESULTS; return all results, sorted by learner.

    Learners are graded by a local pool of `jobs` processes, or, with `scheduler` (`tcp://HOST:PORT`
    or `local:N`), as tasks on a Dask cluster (`checker.cluster`; `shared_fs` None: by path for
    `local:N`, whose workers share this machine's files, as bytes otherwise). Either way this process holds
    the lock, skips learners already graded, draws the progress line and writes `grades.csv`.
    """
    submissions, results = Path(submissions), Path(results)
    learners = discover(submissions, assignment)
    jobs = jobs or os.cpu_count() or 1
    if scheduler is not None:  # a wrong address or a missing extra: refused before anything
        from checker import cluster

        cluster.parse(scheduler)
        cluster.distributed()
    if execute is not None and isolation(execute) == "bwrap" and scheduler is None:
        from checker import sandbox

        sandbox.require()  # refuse before anything is graded, rather than fail every learner
        # (on a cluster, each worker's grading process checks for itself: checker.cluster)
    with locked(results):
        todo = [lr for lr in learners if force or load_result(_result_path(results, lr)) is None]
        bar = progress(len(todo))
        if scheduler is None:
            outcomes = _graded_here(results, todo, jobs, execute)
        else:
            from checker.cluster import graded

            outcomes = graded(
                todo, scheduler, execute, shared_fs=shared_fs, max_submission_mb=max_submission_mb
            )
        # Results graded elsewhere are written here, by threads: the loop goes on meanwhile.
        with closing(outcomes), ThreadPoolExecutor(WRITERS) as writers:
            writes = []
            for outcome in outcomes:
                if not outcome.written:  # only this process writes RESULTS
                    what = (results, outcome.learner, outcome.result, outcome.feedback)
                    writes.append(writers.submit(_write_learner, *what))
                result = outcome.result
                bar.update(result["score"] < result["max_score"] or bool(result.get("error")))
                while writes and writes[0].done():
                    writes.pop(0).result()  # a failed write (a full disk) stops the batch
            for write in writes:
                write.result()
        bar.close()
        loaded = [load_result(_result_path(results, lr)) for lr in learners]
        everyone = [r for r in loaded if r is not None]
        write_grades(results / "grades.csv", everyone)
        write_summary(results / "summary.png", everyone)
    return everyone


@dataclass(frozen=True)
class Outcome:
    """One learner graded: their result, already written by a pool worker or to be written here."""

    learner: Learner
    result: dict  # the whole result; only score, max_score and error when `written`
    feedback: str | None = None  # the feedback page, when computed where the learner was graded
    written: bool = False


def failure(learner: Learner, message: str, execute: dict | None) -> dict:
    """The result of a learner who could not be graded at all: no checks, the reason why."""
    return {
        "learner": learner.id,
        "folder": learner.name,
        "score": 0,
        "max_score": 0,
        "error": message,
        "checks": [],
        "isolation": isolation(execute),
    }


def _graded_here(
    results: Path, todo: list[Learner], jobs: int, execute: dict | None
) -> Generator[Outcome, None, None]:
    """Grade in a pool of forked worker processes, each writing its learners' results."""
    if todo:
        _warm_up()
    context = get_context("fork")
    with ProcessPoolExecutor(
        max_workers=max(1, min(jobs, len(todo) or 1)),
        mp_context=context,
        initializer=die_with_parent,
        initargs=(os.getpid(),),
    ) as pool:
        pending = {pool.submit(grade_and_write, results, lr, execute): lr for lr in todo}
        if pending:  # every worker has forked: the plotting library loads while they grade
            _load_plotting()
        for future in as_completed(pending):  # one waiter a future, not one a wait
            learner = pending[future]
            try:
                yield Outcome(learner, future.result(), written=True)
            except Exception as exc:  # a worker died (killed, out of memory)
                message = f"the grading worker died: {exc.__class__.__name__}"
                yield Outcome(learner, failure(learner, message, execute))


def die_with_parent(parent: int) -> None:
    """A pool worker's first act: die with the grading process, however it dies."""
    from checker.sandbox import die_with_parent

    die_with_parent(parent)


def grade_and_write(results: Path, learner: Learner, execute: dict | None = None) -> dict:
    """Grade one learner and write their result and feedback, in the worker; return the score."""
    result = grade_one(learner, execute)
    _write_learner(results, learner, result)
    return {k: result[k] for k in ("score", "max_score", "error") if k in result}


def _warm_up() -> None:
    """Load what every grading needs before the workers fork, so they share it: pandas, numpy
    and the compiled schema validators (about 0.6 s a worker would otherwise pay on its own)."""
    import numpy  # noqa: F401
    import pandas  # noqa: F401

    from checker import contract

    contract.compile_all()


def _load_plotting() -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot


def _write_learner(
    results: Path, learner: Learner, result: dict, feedback: str | None = None
) -> None:
    path = _result_path(results, learner)
    page = feedback if feedback is not None else feedback_html(result)
    write_atomic(path.with_name(FEEDBACK), page.encode("utf-8"))
    write_atomic(path, json.dumps(result, indent=2, sort_keys=True).encode("utf-8"))


def write_grades(path: Path, results: list[dict]) -> None:
    """`grades.csv`: one row per learner, a column per check (points), score, max."""
    import checker

    names = list(checker.CHECKS)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["learner", *names, "score", "max_score", "error", "isolation"])
    for result in sorted(results, key=lambda r: r["learner"]):
        points = {c["name"]: c["points"] for c in result["checks"]}
        writer.writerow(
            [
                result["learner"],
                *[points.get(n, 0) for n in names],
                result["score"],
                result["max_score"] or 10 * len(names),
                (result.get("error") or "").replace("\n", " "),
                result.get("isolation", ""),
            ]
        )
    write_atomic(path, buffer.getvalue().encode("utf-8"))


def feedback_html(result: dict) -> str:
    """One learner's feedback: per check ✓/✗, messages and hints. Only their own results."""
    esc = html.escape
    rows = []
    for check in result["checks"]:
        mark = "✓" if check["passed"] else "✗"
        color = "#1a7f37" if check["passed"] else "#cf222e"
        items = "".join(f"<li>{esc(m)}</li>" for m in check["messages"])
        if check.get("hint") and not check["passed"]:
            items += f"<li><em>{esc(check['hint'])}</em></li>"
        rows.append(
            f"<tr><td style='color:{color};font-size:1.3em'>{mark}</td>"
            f"<td><code>{esc(check['name'])}</code></td>"
            f"<td>{check['points']}/{check['max_points']}</td><td><ul>{items}</ul></td></tr>"
        )
    error = f"<p style='color:#cf222e'>{esc(result['error'])}</p>" if result.get("error") else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Feedback: {esc(result['learner'])}</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "td{vertical-align:top;padding:.3em .6em;border-bottom:1px solid #ddd}</style></head><body>"
        f"<h1>Model Lifecycle: feedback for {esc(result['learner'])}</h1>"
        f"<p><strong>Score: {result['score']}/{result['max_score']}</strong></p>{error}"
        "<table><thead><tr><th></th><th>check</th><th>points</th><th>what to fix</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></body></html>\n"
    )


def write_summary(path: Path, results: list[dict]) -> None:
    """`summary.png`: the score distribution and the pass rate per check."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    import checker

    names = list(checker.CHECKS)
    scores = [r["score"] for r in results]
    rates = [
        sum(any(c["name"] == n and c["passed"] for c in r["checks"]) for r in results)
        / max(1, len(results))
        for n in names
    ]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    top = 10 * len(names)
    left.hist(scores, bins=range(0, top + 11, 10), color="#4c72b0", edgecolor="white")
    left.set(title=f"Scores of {len(results)} learners", xlabel="score", ylabel="learners")
    right.barh(names[::-1], [100 * x for x in rates[::-1]], color="#55a868")
    right.set(title="Pass rate per check", xlabel="% of learners", xlim=(0, 100))
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())
