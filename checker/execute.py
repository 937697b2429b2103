"""Re-run a learner's notebooks in a separate, limited process, for `checker grade --execute`.

`run_submission(folder, scratch)` is the one step: it copies the learner's notebooks into a
scratch folder (only regular `NN-*.ipynb` files, size capped) and has them executed there with
papermill by a **runner**, a child process in its own session, under a memory limit, a per-cell
timeout and a wall-clock cap for the whole run. Infinite loops, crashes, memory hogs and huge
outputs become a failure message for that learner; the grader's own process never runs learner
code.

With `sandbox="bwrap"` (the default) learner code runs only inside bubblewrap
(`checker/sandbox.py`): the runner first makes the learner's working folder a size-capped tmpfs
of its own (`/tmp/checker-box-*`, see `_box`), then starts each kernel in a sandbox that may write that folder and
nothing else. When every sandbox has exited, the runner copies what the notebooks left (the
workspace, the executed notebooks) out to `scratch/`, within the size cap; the grading worker
reads it there, as untrusted files. The runner itself is trusted code: it runs no learner code,
only reads the kernels' messages. With `sandbox="none"` the kernels run as the grader's user.

The runner is a fork of the grading worker, which imports papermill once (about 1.5 s of a fresh
interpreter's start, per learner, saved); each kernel is still a fresh process, as with nbgrader.
A caller with other threads running (a Dask worker, a test process) gets a fresh interpreter
instead (`python -m checker.execute`, started without a fork of the caller).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from checker.sandbox import DATASETS, ISOLATIONS, Limits, die_with_parent

MAX_NOTEBOOK_BYTES = 20_000_000  # a submitted notebook (inputs; outputs are not needed)
MAX_OUTPUT_BYTES = 50_000_000  # what one executed notebook may weigh with its outputs
# Fewer threads than cores for numerical libraries; plots without a display.
RUNNER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
POLL_SECONDS = 0.02  # how often the grading worker looks whether the runner has finished
PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>
SUMMARY = "runs.json"  # what the runner reports, beside the workspace


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
    import nbformat

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
    folder: Path,
    scratch: Path,
    *,
    timeout: float = 300,
    memory_mb: int = Limits.memory_mb,
    sandbox: str = "bwrap",
    tasks: int = Limits.tasks,
    scratch_mb: int = Limits.scratch_mb,
) -> tuple[Path, str | None]:
    """Execute a learner's notebooks into `scratch/workspace`; return it and an error or None.

    `scratch` is a new folder of the caller's, removed by the caller. With `sandbox="bwrap"` the
    caller should have checked `checker.sandbox.require()` once: a sandbox that cannot start
    becomes this learner's error, not a run without it.
    """
    if sandbox not in ISOLATIONS:
        raise ValueError(f"sandbox must be one of {ISOLATIONS}, not {sandbox!r}")
    notebooks, problems = _notebooks(folder)
    copies = scratch / "notebooks"
    copies.mkdir(parents=True)
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
    limits = Limits(memory_mb=memory_mb, tasks=tasks, scratch_mb=scratch_mb)
    options = {"timeout": timeout, "sandbox": sandbox, "limits": limits.__dict__}
    wall = timeout * len(notebooks) + 60
    pid = _start_runner(scratch, options)
    status = None
    try:
        status = _wait(pid, wall)
    finally:
        if status is None:  # over the wall cap, or this process was interrupted
            _stop(pid)
        with contextlib.suppress(ProcessLookupError):  # belt and braces: the runner's group
            os.killpg(pid, signal.SIGKILL)
    if sandbox == "bwrap":
        from checker.sandbox import remove_learner_cgroup

        remove_learner_cgroup(_cgroup_name(pid))
        with contextlib.suppress(OSError):  # the empty mount point of the runner's tmpfs
            _box(scratch).rmdir()
    if status is None:
        return workspace, f"the notebooks ran longer than {wall:.0f} s in all and were stopped"
    summary = _read_summary(scratch / SUMMARY)
    if summary is None:
        code = os.waitstatus_to_exitcode(status)
        why = "ran out of memory" if code in (-signal.SIGKILL, 137) else f"exited with code {code}"
        return workspace, f"executing the notebooks failed: the runner {why} (limit {memory_mb} MB)"
    errors = [f"{r['notebook']}: {r['error']}" for r in summary["runs"] if r["error"]]
    heavy = [r["notebook"] for r in summary["runs"] if r["output_bytes"] > MAX_OUTPUT_BYTES]
    if heavy:
        errors.append(f"{', '.join(heavy)}: outputs over {MAX_OUTPUT_BYTES // 1_000_000} MB")
    errors += summary["problems"]
    return workspace, "; ".join(errors) or None


def _box(scratch: Path) -> Path:
    """Where a sandboxed runner mounts the learner's tmpfs: a short path, because the kernels'
    Unix sockets live in it and a socket's path may not exceed 107 bytes (a long TMPDIR for
    `scratch` would break every kernel). Named after `scratch`, a new folder."""
    digest = hashlib.sha256(str(scratch.resolve()).encode()).hexdigest()[:16]
    return Path("/tmp") / f"checker-box-{digest}"


def _cgroup_name(runner: int) -> str:
    return f"checker-learner-{runner}"


def _read_summary(path: Path) -> dict | None:
    """The runner's `runs.json`, checked for shape (it is written beside learner files), or None."""
    try:
        if not path.is_file():
            return None
        summary = json.loads(path.read_text(encoding="utf-8"))
        runs, problems = summary["runs"], summary["problems"]
        assert all(isinstance(p, str) for p in problems)
        for run in runs:
            assert isinstance(run["notebook"], str) and isinstance(run["output_bytes"], int)
            assert run["error"] is None or isinstance(run["error"], str)
    except (OSError, ValueError, TypeError, KeyError, AssertionError):
        return None
    return summary


def _preload() -> None:
    """Import what the runner needs into this (grading) process, once: each fork inherits it.

    A fresh interpreter spent about 1.5 s per learner on these imports (most of it nbformat's
    JSON-schema formats); after the first learner of a worker, this returns at once.
    """
    import papermill  # noqa: F401

    import checker.chain
    import checker.sandbox  # noqa: F401


def _start_runner(scratch: Path, options: dict) -> int:
    """Start the runner, which executes the notebooks and never returns here; return its pid.

    Forking is only safe for running Python in the child when this process has no other thread
    (one could hold a lock the child then waits on forever): with threads, the runner is a fresh
    interpreter started by `subprocess` (no Python runs between its fork and its exec).
    """
    if threading.active_count() > 1:
        process = subprocess.Popen(
            [sys.executable, "-m", "checker.execute", str(scratch), json.dumps(options)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            cwd=scratch,
            # One thread per library from the start: a threaded process gets no user namespace.
            env=os.environ | RUNNER_ENV,
        )
        process.returncode = 0  # reaped by _wait with os.waitpid, not by this object
        return process.pid
    _preload()
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 70  # EX_SOFTWARE: the runner failed before writing runs.json
    try:
        os.setsid()  # away from the grader's terminal and its signals; its group is killed at the end
        _runner(scratch, options, parent)
        code = 0
    finally:
        os._exit(code)  # never back into the grading worker's code, its atexit or its queues


def _runner(scratch: Path, options: dict, parent: int) -> None:
    """In the runner: its limits, then the notebooks (sandboxed, in a tmpfs of its own), then
    what they left copied out to `scratch`, and `runs.json` beside it."""
    die_with_parent(parent)
    limits = Limits(**options["limits"])
    _become_runner(scratch, limits.memory_mb * 1024 * 1024)
    sandboxed = options["sandbox"] == "bwrap"
    box = _box(scratch) if sandboxed else scratch
    problems = []
    if sandboxed:
        from checker import sandbox

        box.mkdir(exist_ok=True)
        sandbox.learner_cgroup(_cgroup_name(os.getpid()), limits)
        try:
            sandbox.learner_scratch(box, limits)
        except OSError as exc:
            problem = f"the sandbox could not start ({exc}); see `python -m checker.sandbox`"
            summary: dict[str, list] = {"runs": [], "problems": [problem]}
            (scratch / SUMMARY).write_text(json.dumps(summary), encoding="utf-8")
            return
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.tasks, limits.tasks))
        shutil.copytree(scratch / "notebooks", box / "notebooks")
        (box / "workspace").mkdir()
        _seed_home(box / "home")
    # Notebooks find the course's data (and exercise 10 its lab) by walking up from their folder.
    (box / "datasets").symlink_to(DATASETS, target_is_directory=True)
    # Temporary files (kernel connection files and sockets, whatever learner code makes) go to
    # the learner's folder, which is removed after grading.
    temporary = box / "tmp"
    temporary.mkdir(exist_ok=True)
    os.environ["TMPDIR"] = tempfile.tempdir = str(temporary)
    kernels = None
    if sandboxed:
        os.environ["HOME"] = str(box / "home")
        os.environ["JUPYTER_DEFAULT_PROVISIONER_NAME"] = "checker-sandbox"
        # A factory the worker inherited (papermill run in the process it was forked from)
        # would keep its default: make it again, and refuse to run kernels unless sandboxed.
        from jupyter_client.provisioning.factory import KernelProvisionerFactory

        KernelProvisionerFactory.clear_instance()
        if KernelProvisionerFactory.instance().default_provisioner_name != "checker-sandbox":
            raise RuntimeError("kernels would not start inside the sandbox")
        kernels = {"SandboxProvisioner": {"writable": [str(box)], **_provisioner_limits(limits)}}
    runs = _child(box / "notebooks", box / "workspace", options["timeout"], kernels)
    if sandboxed:  # every sandbox has exited: copy out what the notebooks left, within the cap
        budget = [limits.scratch_mb * 1024 * 1024, limits.files]
        for name in ("workspace", "executed"):
            if (box / name).is_dir() and not (box / name).is_symlink():
                shutil.rmtree(scratch / name, ignore_errors=True)
                left = _copy_out(box / name, scratch / name, budget)
                if left:
                    problems.append(f"{name}/: {left}")
                    break
    summary = {"runs": runs, "problems": problems}
    (scratch / SUMMARY).write_text(json.dumps(summary), encoding="utf-8")


def _provisioner_limits(limits: Limits) -> dict:
    return {"memory_mb": limits.memory_mb, "tasks": limits.tasks, "file_mb": limits.scratch_mb}


def _seed_home(home: Path) -> None:
    """A HOME for the learner's kernels, with matplotlib's font list (else rebuilt: 0.3 s)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "matplotlib"
    (home / ".cache" / "matplotlib").mkdir(parents=True)
    with contextlib.suppress(OSError):
        for fonts in cache.glob("fontlist-*.json"):
            shutil.copyfile(fonts, home / ".cache" / "matplotlib" / fonts.name)


def _copy_out(source: Path, target: Path, budget: list[int]) -> str | None:
    """Copy a tree the sandbox wrote: folders, regular files and symlinks (as links, never
    followed); nothing else. `budget` is [bytes, entries] left, shared by calls; over it, stop."""
    target.mkdir()
    for entry in sorted(os.scandir(source), key=lambda e: e.name):
        info = entry.stat(follow_symlinks=False)
        budget[1] -= 1
        budget[0] -= info.st_size if stat.S_ISREG(info.st_mode) else 0
        if budget[0] < 0 or budget[1] < 0:
            return "more than the scratch folder may hold (hard links?); the rest was not kept"
        path = target / entry.name
        if stat.S_ISDIR(info.st_mode):
            problem = _copy_out(Path(entry.path), path, budget)
            if problem:
                return problem
        elif stat.S_ISREG(info.st_mode):
            shutil.copyfile(entry.path, path, follow_symlinks=False)
        elif stat.S_ISLNK(info.st_mode):
            os.symlink(os.readlink(entry.path), path)
    return None


def _become_runner(scratch: Path, limit: int) -> None:
    """In the runner: its limits, no terminal, none of the worker's files, the scratch as cwd.

    The memory limit is inherited by the kernels (fresh processes); the runner's own address
    space includes what it inherited from the worker (a few hundred MB), well under the limit.
    """
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    # The worker's other files (its task queues, the grader's log or pipe) are not the runner's:
    # held open, a pipe would not see its end while the runner lives. Nothing here uses them.
    most = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    os.closerange(3, most if most != resource.RLIM_INFINITY else 65536)
    # An event loop the worker inherited (papermill run in the process it was forked from) holds
    # file descriptors just closed: papermill must make its own (else "Bad file descriptor").
    if "jupyter_core.utils" in sys.modules:
        sys.modules["jupyter_core.utils"]._loop.set(None)
    os.chdir(scratch)
    os.environ.update(RUNNER_ENV)
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


def _child(copies: Path, workspace: Path, timeout: float, kernels: dict | None) -> list[dict]:
    """The runner's notebooks, in order; what each did. Whatever they left running (a server, a
    detached process, a sandbox) is killed at the end."""
    _adopt_orphans()
    try:
        return _run(copies, workspace, timeout, kernels)
    finally:
        _kill_descendants(os.getpid())


def _run(copies: Path, workspace: Path, timeout: float, kernels: dict | None) -> list[dict]:
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
        kernel_config=kernels,
    )
    return [
        {
            "notebook": r.notebook,
            "seconds": r.seconds,
            "error": r.error,
            "output_bytes": r.output.stat().st_size if r.output.exists() else 0,
        }
        for r in runs
    ]


if __name__ == "__main__":  # the runner of a caller with threads (see _start_runner)
    _runner(Path(sys.argv[1]), json.loads(sys.argv[2]), os.getppid())
