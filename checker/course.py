"""Small helpers the course notebooks share: find the data, open the workspace, name the store.

They keep the notebooks' set-up cells to two lines, the same in a checkout, in `make demo` and in
an nbgrader submission folder (`submitted/<learner>/lifecycle/`), where the data sit further up.
"""

from __future__ import annotations

import os
from pathlib import Path

from checker.errors import CheckerError

DATA_MARKER = Path("datasets") / "oulad" / "studentInfo.csv.gz"


def find_data(data_dir: str | Path | None = None, start: str | Path | None = None) -> Path:
    """The folder holding the OULAD tables.

    `data_dir` wins when given; then the `OULAD_DIR` environment variable; then the first
    `datasets/oulad/` found walking up from `start` (the notebook's folder). Nothing is downloaded.
    """
    if data_dir is None:
        data_dir = os.environ.get("OULAD_DIR") or None
    if data_dir is not None:
        path = Path(data_dir).expanduser().resolve()
        if not (path / "studentInfo.csv.gz").is_file():
            raise CheckerError(
                f"DATA_DIR {str(path)!r} holds no studentInfo.csv.gz: point it at datasets/oulad"
            )
        return path
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / DATA_MARKER).is_file():
            return folder / DATA_MARKER.parent
    raise CheckerError(
        f"no datasets/oulad/ found above {here}: set DATA_DIR in the parameters cell "
        "or the OULAD_DIR environment variable to the folder holding the OULAD tables"
    )


# Which notebook writes each artifact a later notebook reads.
WRITTEN_BY = {
    "problem.yaml": "01-problem-definition.ipynb",
    "data/manifest.json": "02-data-preparation.ipynb",
    "mlflow.db": "03-training.ipynb",
    "evaluation/report.json": "04-evaluation.ipynb",
    "serving/requests.jsonl": "05-deployment.ipynb",
    "monitoring/report.json": "06-monitoring.ipynb",
    "lifecycle_map.yaml": "08-exercise-lifecycle-map.ipynb",
}


def open_workspace(workspace: str | Path, needs: tuple[str, ...] | list[str] = ()) -> Path:
    """Create (if needed) and return the absolute workspace folder.

    `needs` names the artifacts (keys of `WRITTEN_BY`) this notebook reads from earlier ones; when
    one is missing, a `CheckerError` says which notebook to run first, instead of a bare
    `FileNotFoundError` several cells later.
    """
    path = Path(workspace).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    for artifact in needs:
        if not (path / artifact).is_file():
            writer = WRITTEN_BY[artifact]
            raise CheckerError(
                f"this notebook reads {artifact} from your workspace {str(path)!r}, and it is not "
                f"there yet: run {writer} first (its last cell is the self-check), then this one. "
                f"If you did, check that both notebooks use the same WORKSPACE parameter."
            )
    return path


def tracking_uri(workspace: str | Path) -> str:
    """The MLflow tracking URI of a workspace: its embedded sqlite store `mlflow.db`."""
    return f"sqlite:///{Path(workspace).resolve() / 'mlflow.db'}"


def artifact_location(workspace: str | Path) -> str:
    """Where runs in this workspace keep their artifacts: `<workspace>/mlartifacts`."""
    return (Path(workspace).resolve() / "mlartifacts").as_uri()
