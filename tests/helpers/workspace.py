"""Builders for valid workspaces, made from the real OULAD tables and a real MLflow store.

Tests copy a valid workspace and then break one thing in it. The builders write exactly the
artifact contract in `checker/README.md`; they are also used by `bench/`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
OULAD = ROOT / "datasets" / "oulad"
FEATURES = [
    "id_student",
    "code_module",
    "code_presentation",
    "gender",
    "region",
    "highest_education",
    "imd_band",
    "age_band",
    "num_of_prev_attempts",
    "studied_credits",
    "disability",
    "at_risk",
]

VALID_MAP = """\
use_case: Flag learners at risk of not completing an Open University module by day 60
stages:
  problem_definition:
    tasks:
      - Agree the at-risk label and the day-60 cut-off with tutors
  data_preparation:
    tasks:
      - Split learners by id_student so nobody lands in two splits
      - Drop date_unregistration because it leaks the withdrawn label
  training:
    tasks:
      - Train a logistic regression baseline before anything fancier
  evaluation:
    tasks:
      - Compare recall across gender and disability groups on the test split
  deployment:
    tasks:
      - Serve the champion behind a canary with a safe fallback
  monitoring:
    tasks:
      - Track PSI of every input feature against the training data
  retirement:
    tasks:
      - Archive the old model and record why it was retired
failure_modes:
  - stage: monitoring
    failure: A new module appears in production that training never saw
    signal: {name: psi_code_module, threshold: 0.25, direction: above}
    action: Retrain on recent presentations and review with the course team
lab_review:
  lab: typical-lab.ipynb
  covers: [data_preparation, training]
  ignores: [problem_definition, evaluation, deployment, monitoring, retirement]
  improvement: Split by student and keep an untouched test set
"""


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def column_stats(frame: pd.DataFrame) -> dict:
    stats = {}
    for column in frame.columns:
        series = frame[column]
        entry: dict = {"missing": int(series.isna().sum())}
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            entry |= {
                "mean": float(series.mean()),
                "std": float(series.std()),
                "min": float(series.min()),
                "max": float(series.max()),
            }
        else:
            entry["top"] = {str(k): int(v) for k, v in series.value_counts().head(5).items()}
        stats[column] = entry
    return stats


def write_csv_gz(frame: pd.DataFrame, path: Path) -> None:
    """Deterministic gzip: a fixed mtime and no file name in the header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = frame.to_csv(index=False).encode("utf-8")
    with path.open("wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(data)


def oulad_frame() -> pd.DataFrame:
    info = pd.read_csv(OULAD / "studentInfo.csv.gz")
    info["at_risk"] = info["final_result"].isin(["Fail", "Withdrawn"]).astype(int)
    return info[FEATURES]


def write_splits(ws: Path) -> dict:
    """Split 2013 by student into train/valid/test, keep 2014 as production; write the manifest."""
    frame = oulad_frame()
    y2013 = frame[frame["code_presentation"].str.startswith("2013")]
    bucket = y2013["id_student"] % 20
    parts = {
        "train": y2013[bucket < 14],
        "valid": y2013[(bucket >= 14) & (bucket < 17)],
        "test": y2013[bucket >= 17],
        "production": frame[frame["code_presentation"].str.startswith("2014")],
    }
    return write_manifest(ws, parts, sources=["studentInfo"])


def write_manifest(ws: Path, parts: dict[str, pd.DataFrame], sources: list[str], **extra) -> dict:
    """Write each part as `data/<name>.csv.gz` and `data/manifest.json` describing them (contract
    v1); `extra` adds top-level fields such as `label` and `features` (stage 02)."""
    splits = {}
    for name, part in parts.items():
        rel = f"data/{name}.csv.gz"
        write_csv_gz(part, ws / rel)
        back = pd.read_csv(ws / rel)
        splits[name] = {
            "path": rel,
            "sha256": sha256_file(ws / rel),
            "rows": len(back),
            "columns": {c: str(back[c].dtype) for c in back.columns},
            "stats": column_stats(back),
        }
    lines = "".join(f"{n}:{splits[n]['sha256']}\n" for n in sorted(splits))
    manifest = {
        "version": hashlib.sha256(lines.encode()).hexdigest(),
        "key": "id_student",
        **extra,
        "source": [
            {"path": f"datasets/oulad/{s}.csv.gz", "sha256": sha256_file(OULAD / f"{s}.csv.gz")}
            for s in sources
        ],
        "splits": splits,
    }
    (ws / "data" / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest


def log_runs(ws: Path, version: str, runs: int = 2, epochs: int = 3) -> None:
    """Log `runs` finished runs through the real MLflow API into `ws/mlflow.db`."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    uri = f"sqlite:///{ws.resolve()}/mlflow.db"
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment(
        "at-risk-day60", artifact_location=(ws.resolve() / "mlartifacts").as_uri()
    )
    for i in range(runs):
        run = client.create_run(experiment, run_name=f"run-{i}", tags={"data_version": version})
        client.log_param(run.info.run_id, "C", 10.0**-i)
        for epoch in range(epochs):
            client.log_metric(
                run.info.run_id, "val_auc", 0.7 + 0.01 * epoch + 0.001 * i, step=epoch
            )
            client.log_metric(run.info.run_id, "train_loss", 0.6 - 0.05 * epoch, step=epoch)
        client.set_terminated(run.info.run_id, "FINISHED")


def build_workspace(ws: Path) -> Path:
    """A workspace that passes every foundation check."""
    ws.mkdir(parents=True, exist_ok=True)
    manifest = write_splits(ws)
    log_runs(ws, manifest["version"])
    (ws / "lifecycle_map.yaml").write_text(VALID_MAP, encoding="utf-8")
    return ws


def learner_notebook(
    *sources: str, parameters: str = 'WORKSPACE = "workspace"\nDATA_DIR = None'
) -> str:
    """A small learner notebook (JSON text): a `parameters` cell, then one code cell per source."""
    import nbformat

    cells = [nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]})]
    cells += [nbformat.v4.new_code_cell(s) for s in sources]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nbformat.writes(nb)


def unpack_cell(folder: Path) -> str:
    """A cell that recreates `folder`'s files in WORKSPACE, from a tar.gz inside the cell's source:
    a learner's work that needs nothing outside a sandbox."""
    import base64
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(folder, arcname=".")
    blob = base64.b64encode(buffer.getvalue()).decode()
    return (
        "import base64, io, tarfile\n"
        f"with tarfile.open(fileobj=io.BytesIO(base64.b64decode({blob!r}))) as tar:\n"
        "    tar.extractall(WORKSPACE, filter='data')\n"
    )
