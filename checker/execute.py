"""Re-run a learner's notebooks in a separate, limited process, for `checker grade --execute`.

The learner's notebooks are copied into a scratch folder (only regular `NN-*.ipynb` files, size
capped) and executed there with papermill by a child process in its own session, under a memory
limit (`RLIMIT_AS`, inherited by the kernel), a per-cell timeout and a wall-clock cap for the
whole run. Infinite loops, crashes, memory hogs and huge outputs become a failure message for that
learner; the grader's own process never runs learner code.

The child is a fork of the grading worker, which imports papermill once (about 1.5 s of a fresh
interpreter's start, per learner, saved); each kernel is still a fresh process, as with nbgrader.
A worker with other threads running execs a fresh interpreter instead (`python -m checker.execute`).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import resource
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat

DATASETS = Path(__file__).resolve().parents[1] / "datasets"
MAX_NOTEBOOK_BYTES = 20_000_000  # a submitted notebook (inputs; outputs are not needed)
MAX_OUTPUT_BYTES = 50_000_000  # what one executed notebook may weigh with its outputs
# Fewer threads than cores for numerical libraries; plots without a display.
RUNNER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
POLL_SECONDS = 0.02  # how often the grading worker looks whether the runner has finished
PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>


def _notebooks(folder: Path) -> tuple[list[Path], list[str]]:
    """The learner's `NN-*.ipynb` files that are safe to copy, and why others were not."""
    found, problems = [], []
    for path in sorted(folder.glob("[0-9][0-9]-*.ipynb")):
        if path.is_symlink() or not path.is_file():
            problems.append(
                f"{path.name}: expected a regular notebook file, found a link or folder"
            )
        elif path.stat().st_size > MAX_NOTEBOOK_BYTES:
            problems.append(
                f"{path.name}: {path.stat().st_size:,} bytes, over the {MAX_NOTEBOOK_BYTES:,}-byte limit"
            )
        else:
            found.append(path)
    return found, problems


def _validate(path: Path) -> str | None:
    """Why a notebook cannot be executed (not JSON, not nbformat), or None."""
    try:
        nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
        nbformat.validate(nb)
    except UnicodeDecodeError:
        return f"{path.name}: expected a UTF-8 notebook, found other bytes"
    except Exception as exc:  # nbformat raises ValueError, TypeError, KeyError... on bad input
        first = (
            str(exc).strip().splitlines()[0][:200] if str(exc).strip() else exc.__class__.__name__
        )
        return f"{path.name}: expected a valid Jupyter notebook (nbformat 4), found: {first}"
    return None


def run_submission(
    folder: Path, scratch: Path, *, timeout: float = 300, memory_mb: int = 3072
) -> tuple[Path, str | None]:
    """Execute a learner's notebooks into `scratch/workspace`; return it and an error or None."""
    notebooks, problems = _notebooks(folder)
    copies = scratch / "notebooks"
    copies.mkdir(parents=True)
    # Notebooks find the course's data (and exercise 10 its lab) by walking up from their folder.
    (scratch / "datasets").symlink_to(DATASETS, target_is_directory=True)
    workspace = scratch / "workspace"
    workspace.mkdir()
    for path in notebooks:
        (copies / path.name).write_bytes(path.read_bytes())
        problem = _validate(copies / path.name)
        if problem:
            problems.append(problem)
            (copies / path.name).unlink()
    if problems:
        return workspace, "; ".join(problems)
    if not notebooks:
        return workspace, f"no notebooks named NN-*.ipynb found in {folder.name}"
    wall = timeout * len(notebooks) + 60
    pid = _start_runner(copies, workspace, scratch, timeout, memory_mb * 1024 * 1024)
    status = None
    try:
        status = _wait(pid, wall)
    finally:
        if status is None:  # over the wall cap, or this process was interrupted
            _stop(pid)
        with contextlib.suppress(ProcessLookupError):  # belt and braces: the runner's group
            os.killpg(pid, signal.SIGKILL)
    if status is None:
        return workspace, f"the notebooks ran longer than {wall:.0f} s in all and were stopped"
    summary = scratch / "runs.json"
    if not summary.is_file():
        code = os.waitstatus_to_exitcode(status)
        why = "ran out of memory" if code in (-signal.SIGKILL, 137) else f"exited with code {code}"
        return workspace, f"executing the notebooks failed: the runner {why} (limit {memory_mb} MB)"
    runs = json.loads(summary.read_text(encoding="utf-8"))
    errors = [f"{r['notebook']}: {r['error']}" for r in runs if r["error"]]
    heavy = [r["notebook"] for r in runs if r["output_bytes"] > MAX_OUTPUT_BYTES]
    if heavy:
        errors.append(f"{', '.join(heavy)}: outputs over {MAX_OUTPUT_BYTES // 1_000_000} MB")
    return workspace, "; ".join(errors) or None


def _preload() -> None:
    """Import what the runner needs into this (grading) process, once: each fork inherits it.

    A fresh interpreter spent about 1.5 s per learner on these imports (most of it nbformat's
    JSON-schema formats); after the first learner of a worker, this returns at once.
    """
    import papermill  # noqa: F401

    import checker.chain  # noqa: F401


def _start_runner(copies: Path, workspace: Path, scratch: Path, timeout: float, limit: int) -> int:
    """Fork the runner, which executes the notebooks and never returns here; return its pid.

    Forking is only safe for running Python in the child when this process has no other thread
    (one could hold a lock the child then waits on forever): with threads, the child execs a
    fresh interpreter instead, as `subprocess` would.
    """
    warm = threading.active_count() == 1
    if warm:
        _preload()
    pid = os.fork()
    if pid:
        return pid
    code = 70  # EX_SOFTWARE: the runner failed before writing runs.json
    try:
        _become_runner(scratch, limit)
        if not warm:
            args = [str(copies), str(workspace), str(timeout)]
            os.execv(sys.executable, [sys.executable, "-m", "checker.execute", *args])
        _child(copies, workspace, timeout)
        code = 0
    finally:
        os._exit(code)  # never back into the grading worker's code, its atexit or its queues


def _become_runner(scratch: Path, limit: int) -> None:
    """In the forked child: its own session and limits, no terminal, the scratch folder as cwd.

    The memory limit is inherited by the kernels (fresh processes); the runner's own address
    space includes what it inherited from the worker (a few hundred MB), well under the limit.
    """
    os.setsid()  # away from the grader's terminal and its signals; its group is killed at the end
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    # The worker's other files (its task queues, the grader's log or pipe) are not the runner's:
    # held open, a pipe would not see its end while the runner lives. Nothing here uses them.
    most = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    os.closerange(3, most if most != resource.RLIM_INFINITY else 65536)
    os.chdir(scratch)
    os.environ.update(RUNNER_ENV)
    # Temporary files (kernel connection files and sockets, whatever learner code makes) go to
    # the learner's scratch folder, which is removed after grading.
    temporary = scratch / "tmp"
    temporary.mkdir(exist_ok=True)
    os.environ["TMPDIR"] = tempfile.tempdir = str(temporary)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)  # the worker's handler raises into its grading
    gc.freeze()  # the worker's objects: never collected here, so their pages are not copied


def _stop(pid: int) -> None:
    """Kill a runner that is still running, and everything below it; reap it.

    Stopped first, the runner starts no more kernels but stays alive, so that the processes
    below it (kernels, and whatever they left) keep it as their ancestor until all are killed.
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGSTOP)
    _kill_descendants(pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)  # in case it had not yet made its own session
    os.waitpid(pid, 0)


def _wait(pid: int, wall: float) -> int | None:
    """The runner's wait status, or None once it has run `wall` seconds (it is left running).

    Polled rather than timed by SIGALRM, whose handler belongs to the grading in `batch`.
    """
    deadline = time.monotonic() + wall
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL_SECONDS)


def _adopt_orphans() -> None:
    """Make the runner the parent of every process orphaned below it (Linux's child subreaper).

    jupyter_client starts each kernel in a session of its own, and learner code may start
    processes that outlive their kernel, in a new group or session of their own: neither a
    killpg nor the kernel's shutdown reaches those. Adopted by the runner instead of by init, they
    stay below it, where `_kill_descendants` finds them.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, ctypes.c_ulong(1), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def _descendants(root: int) -> list[int]:
    """The live (not zombie) processes below `root`, read from /proc (none without /proc)."""
    children: dict[int, list[int]] = {}
    with contextlib.suppress(FileNotFoundError), os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():  # self, thread-self, sys...
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as handle:
                    stat = handle.read()
            except OSError:  # gone meanwhile
                continue
            state, ppid = stat[stat.rindex(b")") + 2 :].split()[:2]  # the name may hold anything
            if state != b"Z":
                children.setdefault(int(ppid), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


def _kill_descendants(root: int) -> None:
    """SIGKILL every process below `root`, again until none is left (orphans return to it)."""
    for _ in range(200):
        pids = _descendants(root)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def _child(copies: Path, workspace: Path, timeout: float) -> None:
    """The runner: run the copied notebooks in order; write runs.json beside them.

    Whatever the notebooks leave running (a server, a detached process) is killed at the end.
    """
    _adopt_orphans()
    try:
        _run(copies, workspace, timeout)
    finally:
        _kill_descendants(os.getpid())


def _run(copies: Path, workspace: Path, timeout: float) -> None:
    from checker.chain import run_chain

    runs = run_chain(
        sorted(copies.glob("[0-9][0-9]-*.ipynb")),
        workspace,
        copies.parent / "executed",
        {},
        log=lambda _: None,
        execution_timeout=timeout,
        overlap=False,  # papermill owns each kernel, so a timed-out or dead kernel is reaped
        stop_on_error=False,  # like nbgrader: a blank notebook costs its own points, not later ones
        save_each_cell=False,  # like nbgrader: written once, when the notebook is done
        ipc_kernels=True,  # two runners starting kernels at once never race for a TCP port
    )
    summary = [
        {
            "notebook": r.notebook,
            "seconds": r.seconds,
            "error": r.error,
            "output_bytes": r.output.stat().st_size if r.output.exists() else 0,
        }
        for r in runs
    ]
    (copies.parent / "runs.json").write_text(json.dumps(summary), encoding="utf-8")


if __name__ == "__main__":  # the runner of a worker with threads (see _start_runner)
    _child(Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]))
