"""Builders for exercise 10's artifacts: the improved lab (`lab/`) and `self_assessment.json`.

`write_lab` writes a valid leak-free, versioned split of the real OULAD learners, as the
exercise's solution does; `log_lab_run` logs a run of the lab through the real MLflow API.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pandas as pd

from tests.helpers.workspace import OULAD, sha256_file, write_csv_gz

VALID_RATINGS = {
    "problem_and_metric": 4,
    "data_and_runs": 3,
    "evaluation_and_serving": 3,
    "monitoring_and_retirement": 2,
}
SUMMARY = "Split by learner into versioned train, validation and test files"


def lab_version(splits: dict) -> str:
    lines = "".join(f"{name}:{splits[name]['sha256']}\n" for name in sorted(splits))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def write_lab_manifest(ws: Path, manifest: dict) -> None:
    (ws / "lab" / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def write_improvement(ws: Path, kind: str = "test_set", summary: str = SUMMARY) -> None:
    (ws / "lab").mkdir(parents=True, exist_ok=True)
    text = json.dumps({"kind": kind, "summary": summary, "test_accuracy": 0.79}, indent=2)
    (ws / "lab" / "improvement.json").write_text(text, encoding="utf-8")


def write_lab(ws: Path, kind: str = "test_set", rows: int = 3000) -> dict:
    """Split the first `rows` OULAD registrations by learner (no learner in two splits), write
    the files, `lab/manifest.json` and `lab/improvement.json`; return the manifest."""
    frame = pd.read_csv(OULAD / "studentInfo.csv.gz").head(rows)
    bucket = frame["id_student"] % 20
    parts = {"train": bucket < 14, "valid": (bucket >= 14) & (bucket < 17), "test": bucket >= 17}
    splits = {}
    for name, mask in parts.items():
        rel = f"lab/{name}.csv.gz"
        write_csv_gz(frame[mask], ws / rel)
        splits[name] = {"path": rel, "sha256": sha256_file(ws / rel), "rows": int(mask.sum())}
    manifest = {"version": lab_version(splits), "key": "id_student", "splits": splits}
    write_lab_manifest(ws, manifest)
    write_improvement(ws, kind)
    return manifest


def log_lab_run(ws: Path, *, metric: float = 0.78, status: str = "FINISHED") -> str:
    """Log one run of the lab (a param and a metric) in experiment `typical-lab`."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{ws.resolve()}/mlflow.db")
    found = client.get_experiment_by_name("typical-lab")
    experiment = (
        found.experiment_id
        if found
        else client.create_experiment(
            "typical-lab", artifact_location=(ws.resolve() / "mlartifacts").as_uri()
        )
    )
    run = client.create_run(experiment, run_name="random-forest")
    client.log_param(run.info.run_id, "max_depth", 10)
    client.log_metric(run.info.run_id, "val_accuracy", metric)
    client.set_terminated(run.info.run_id, status)
    return run.info.run_id


def write_self_assessment(ws: Path, ratings: dict | None = None) -> None:
    text = json.dumps(VALID_RATINGS if ratings is None else ratings, indent=2)
    (ws / "self_assessment.json").write_text(text, encoding="utf-8")
