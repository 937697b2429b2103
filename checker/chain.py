"""Run the course's notebooks in order, from one process, into one workspace (papermill).

Used by `make demo`, by the notebook tests and by `bench/chain_speed.py`. One process matters:
importing papermill costs about 1.5 s and its CLI about 3 s per notebook on a small machine.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions" / "lifecycle"
RELEASE = ROOT / "notebooks" / "lifecycle"
DATA_DIR = ROOT / "datasets" / "oulad"
# The CI sample: enough data for every check to pass, small enough for a 2-core machine.
CI_PARAMETERS = {"SAMPLE_FRAC": 0.3, "EPOCHS": 4}
# The full course, passed explicitly: a default edited (and autosaved) in a notebook's parameters
# cell must never turn a `--full` run into a sample run. tests/test_chain.py keeps these equal to
# the defaults the solution notebooks declare.
FULL_PARAMETERS = {"SAMPLE_FRAC": 1.0, "EPOCHS": 20}


@dataclass(frozen=True)
class NotebookRun:
    notebook: str
    output: Path
    seconds: float
    error: str | None = None


def stage_notebooks(folder: Path = SOLUTIONS) -> list[Path]:
    """The notebooks of a folder in run order (their names sort in run order)."""
    return sorted(p for p in folder.glob("[0-9][0-9]-*.ipynb"))


def _start_kernel(cwd: Path):
    """Start a python3 kernel now; it boots in its own process while the caller works on."""
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(cwd))
    return km


def run_chain(
    notebooks: Iterable[Path],
    workspace: Path,
    out_dir: Path,
    parameters: dict | None = None,
    *,
    stop_on_error: bool = True,
    overlap: bool = True,
    after: Callable[[NotebookRun], None] | None = None,
    log: Callable[[str], None] = print,
    execution_timeout: float | None = None,
    save_each_cell: bool = True,
    ipc_kernels: bool = False,
    kernel_config: dict | None = None,
) -> list[NotebookRun]:
    """Execute `notebooks` in order with papermill; each gets WORKSPACE, DATA_DIR and `parameters`.

    Executed copies go to `out_dir`. With `overlap`, the next notebook's kernel starts while the
    current notebook runs, hiding most of a kernel's 0.6-0.8 s start. With `stop_on_error`, the
    first failing notebook ends the chain (later stages need its artifacts); its error is in the
    returned run. `after` is called after each notebook (tests snapshot the workspace there).
    `execution_timeout` caps each cell, in seconds. With `save_each_cell`, papermill rewrites the
    executed copy at every cell's start and end, so a long run can be watched; without it, the
    copy is written once at the end (not at all after a timeout or a dead kernel), which saves
    about 0.8 s of CPU in four notebooks. With `ipc_kernels` (papermill's own kernels only), a
    kernel talks over Unix sockets instead of TCP ports on 127.0.0.1: processes that start kernels
    at the same moment can pick the same free port, and the losing kernel dies at start
    ("ZMQError: Address already in use"), which parallel grading must not turn into a learner's
    failed notebook. `kernel_config` is more traitlets configuration for papermill's kernels
    (with `ipc_kernels`): `checker.execute` configures the sandbox of learner kernels there.
    """
    from traitlets.config import Config

    ipc = Config({"KernelManager": {"transport": "ipc"}, **(kernel_config or {})})
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # nothing leaves the machine
    logging.getLogger("papermill").setLevel(logging.WARNING)
    logging.getLogger("traitlets").setLevel(logging.ERROR)
    import papermill as pm

    notebooks = [Path(n) for n in notebooks]
    workspace = Path(workspace).resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {"WORKSPACE": str(workspace), "DATA_DIR": str(DATA_DIR)} | (parameters or {})
    runs: list[NotebookRun] = []
    upcoming = _start_kernel(notebooks[0].parent) if overlap and notebooks else None
    try:
        for i, notebook in enumerate(notebooks):
            km, upcoming = upcoming, None
            if overlap and i + 1 < len(notebooks):
                upcoming = _start_kernel(notebooks[i + 1].parent)
            output = out_dir / notebook.name
            start = time.perf_counter()
            error = None
            try:
                pm.execute_notebook(
                    str(notebook),
                    str(output),
                    parameters=params,
                    cwd=str(notebook.parent),
                    kernel_name="python3",
                    progress_bar=False,
                    execution_timeout=execution_timeout,
                    request_save_on_cell_execute=save_each_cell,
                    **({"km": km} if km is not None else {}),
                    **({"config": ipc} if ipc_kernels and km is None else {}),
                )
            except pm.PapermillExecutionError as exc:
                error = f"{exc.ename}: {exc.evalue}"
            except Exception as exc:  # a cell timeout, a dead kernel, an unreadable notebook
                error = f"{exc.__class__.__name__}: {str(exc).strip()[:300]}"
            finally:
                if km is not None:
                    km.shutdown_kernel(now=True)
            run = NotebookRun(notebook.name, output, time.perf_counter() - start, error)
            runs.append(run)
            log(
                f"{'ok ' if error is None else 'ERR'} {notebook.name:<36} {run.seconds:6.1f} s"
                + (f"  {error}" if error else "")
            )
            if after is not None:
                after(run)
            if error and stop_on_error:
                break
    finally:
        if upcoming is not None:
            upcoming.shutdown_kernel(now=True)
    return runs


def demo_parameters(full: bool) -> dict:
    """The parameters `make demo` passes: always explicit, whatever a notebook's defaults say."""
    return dict(FULL_PARAMETERS if full else CI_PARAMETERS)


def main(argv: list[str] | None = None) -> int:
    """`python -m checker.chain --out build/demo`: the demo behind `make demo`."""
    import argparse
    import shutil

    parser = argparse.ArgumentParser(prog="python -m checker.chain", description=main.__doc__)
    parser.add_argument(
        "--out", default="build/demo", help="folder for the workspace and notebooks"
    )
    parser.add_argument(
        "--full", action="store_true", help="all the data, all epochs (not the CI sample)"
    )
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    workspace, executed = out / "workspace", out / "notebooks"
    for folder in (workspace, executed):
        shutil.rmtree(folder, ignore_errors=True)
    notebooks = stage_notebooks()
    parameters = demo_parameters(args.full)
    settings = ", ".join(f"{k}={v}" for k, v in parameters.items())
    print(
        f"Running {len(notebooks)} stage notebooks into a fresh workspace "
        f"({'full data' if args.full else 'CI sample'}: {settings})"
    )
    start = time.perf_counter()
    runs = run_chain(notebooks, workspace, executed, parameters)
    elapsed = time.perf_counter() - start

    import checker

    report = checker.check_all(workspace)
    print()
    print(report)
    print()
    print(f"Executed notebooks: {executed}")
    print(f"Workspace:          {workspace}")
    print("Plots:              inside the executed notebooks (open them in JupyterLab: make lab)")
    print(f"Wall time:          {elapsed:.1f} s")
    failed = [r for r in runs if r.error]
    if failed:
        print(f"FAILED: {failed[0].notebook}: {failed[0].error}")
        return 1
    return 0 if report.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
