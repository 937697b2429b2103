"""Re-run a learner's notebooks in a separate, limited process, for `checker grade --execute`.

The learner's notebooks are copied into a scratch folder (only regular `NN-*.ipynb` files, size
capped) and executed there with papermill by a child process in its own session, under a memory
limit (`RLIMIT_AS`, inherited by the kernel), a per-cell timeout and a wall-clock cap for the
whole run. Infinite loops, crashes, memory hogs and huge outputs become a failure message for that
learner; the grader's own process never runs learner code.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import nbformat

DATASETS = Path(__file__).resolve().parents[1] / "datasets"
MAX_NOTEBOOK_BYTES = 20_000_000  # a submitted notebook (inputs; outputs are not needed)
MAX_OUTPUT_BYTES = 50_000_000  # what one executed notebook may weigh with its outputs


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
    command = [sys.executable, "-m", "checker.execute", str(copies), str(workspace), str(timeout)]
    env = os.environ | {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    limit = memory_mb * 1024 * 1024

    def limit_child() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    wall = timeout * len(notebooks) + 60
    child = subprocess.Popen(
        command,
        cwd=scratch,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=limit_child,  # noqa: PLW1509 - no threads in the worker at this point
        start_new_session=True,
    )
    try:
        child.wait(timeout=wall)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        return workspace, f"the notebooks ran longer than {wall:.0f} s in all and were stopped"
    finally:
        # The kernel and anything it started share the session: none may survive.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
    summary = scratch / "runs.json"
    if not summary.is_file():
        code = child.returncode
        why = "ran out of memory" if code in (-signal.SIGKILL, 137) else f"exited with code {code}"
        return workspace, f"executing the notebooks failed: the runner {why} (limit {memory_mb} MB)"
    runs = json.loads(summary.read_text(encoding="utf-8"))
    errors = [f"{r['notebook']}: {r['error']}" for r in runs if r["error"]]
    heavy = [r["notebook"] for r in runs if r["output_bytes"] > MAX_OUTPUT_BYTES]
    if heavy:
        errors.append(f"{', '.join(heavy)}: outputs over {MAX_OUTPUT_BYTES // 1_000_000} MB")
    return workspace, "; ".join(errors) or None


def _child(copies: Path, workspace: Path, timeout: float) -> None:
    """The child process: run the copied notebooks in order; write runs.json beside them."""
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


if __name__ == "__main__":
    _child(Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]))
