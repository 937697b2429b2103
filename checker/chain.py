"""Run the course's notebooks in order, from one process, into one workspace (papermill).

Used by `make demo`, by the notebook tests and by `bench/chain_speed.py`. One process matters:
importing papermill costs about 1.5 s and its CLI about 3 s per notebook on a small machine.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions" / "lifecycle"
RELEASE = ROOT / "notebooks" / "lifecycle"
DATA_DIR = ROOT / "datasets" / "oulad"
# The CI sample: enough data for every check to pass, small enough for a 2-core machine.
CI_PARAMETERS = {"SAMPLE_FRAC": 0.3, "EPOCHS": 4}


@dataclass(frozen=True)
class NotebookRun:
    notebook: str
    output: Path
    seconds: float
    error: str | None = None


def stage_notebooks(folder: Path = SOLUTIONS) -> list[Path]:
    """The notebooks of a folder in run order (their names sort in run order)."""
    return sorted(p for p in folder.glob("[0-9][0-9]-*.ipynb"))


def run_chain(
    notebooks: Iterable[Path],
    workspace: Path,
    out_dir: Path,
    parameters: dict | None = None,
    *,
    stop_on_error: bool = True,
    log=print,  # noqa: ANN001
) -> list[NotebookRun]:
    """Execute `notebooks` in order with papermill; each gets WORKSPACE, DATA_DIR and `parameters`.

    Executed copies go to `out_dir`. With `stop_on_error`, the first failing notebook ends the
    chain (later stages need its artifacts); its error is recorded in the returned run.
    """
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("papermill").setLevel(logging.WARNING)
    import papermill as pm

    workspace = Path(workspace).resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {"WORKSPACE": str(workspace), "DATA_DIR": str(DATA_DIR)} | (parameters or {})
    runs = []
    for notebook in notebooks:
        notebook = Path(notebook)
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
            )
        except pm.PapermillExecutionError as exc:
            error = f"{exc.ename}: {exc.evalue}"
        run = NotebookRun(notebook.name, output, time.perf_counter() - start, error)
        runs.append(run)
        log(
            f"{'ok ' if error is None else 'ERR'} {notebook.name:<36} {run.seconds:6.1f} s"
            + (f"  {error}" if error else "")
        )
        if error and stop_on_error:
            break
    return runs
