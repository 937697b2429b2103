"""Builders for the `retired` check: a registry after stage 07, made through the real MLflow API.

`build_retired_workspace` logs three tiny sklearn pipelines, registers them as versions 1-3 of
`at-risk-day60`, then retires one the way stage 07 does: aliases moved, model-version tags set,
the model files copied to `archive/at-risk-day60-v<N>/` with a `SHA256SUMS`, and a dated entry in
`MODEL_CARD.md`. Two shapes, like the notebook's two branches:

- `promoted`: the retrained version 3 won; champion -> 3, challenger -> 2, version 1 retired;
- `held`: the champion held; champion -> 1, challenger -> 2, the retrained version 3 retired.

No notebook runs here, so the tests of the check stay fast.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
from pathlib import Path

MODEL = "at-risk-day60"
REASON = {
    "promoted": "replaced by version 3, retrained on 2013 and 2014B, better on 2014J",
    "held": "lost the comparison with champion version 1 on 2014J by more than the margin",
}


def uri(ws: Path) -> str:
    return f"sqlite:///{ws.resolve() / 'mlflow.db'}"


def sha256sums(folder: Path) -> str:
    """sha256sum's format for every file under `folder` but SHA256SUMS, paths relative to it."""
    lines = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "SHA256SUMS"):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{digest}  {path.relative_to(folder).as_posix()}\n")
    return "".join(lines)


def write_sums(folder: Path) -> None:
    (folder / "SHA256SUMS").write_text(sha256sums(folder), encoding="utf-8")


def model_card(retired: int, reason: str, day: str) -> str:
    return f"""# Model card: {MODEL}

## Intended use
Rank learners by risk of failing or withdrawing, at day 60, so tutors can call the top 30%.

## Retirement
- version {retired} retired on {day}: {reason}
"""


def _log_versions(ws: Path, count: int = 3) -> None:
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    import mlflow
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    client = mlflow.MlflowClient(tracking_uri=uri(ws))
    experiment = client.create_experiment(
        MODEL, artifact_location=(ws.resolve() / "mlartifacts").as_uri()
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    y = (x[:, 0] + rng.normal(scale=0.5, size=40) > 0).astype(int)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri(ws))
    try:
        for i in range(count):
            model = LogisticRegression(C=10.0**-i).fit(x, y)
            with mlflow.start_run(experiment_id=experiment, run_name=f"model-{i + 1}"):
                info = mlflow.sklearn.log_model(
                    model,
                    name="model",
                    pip_requirements=["scikit-learn"],
                    serialization_format="cloudpickle",
                )
            mlflow.register_model(info.model_uri, MODEL)
    finally:
        mlflow.set_tracking_uri(previous)


def retire(ws: Path, version: int, reason: str, day: str | None = None) -> None:
    """Retire `version` as stage 07 does: aliases off, tags on, archive, model card."""
    import mlflow

    day = day or dt.date.today().isoformat()
    client = mlflow.MlflowClient(tracking_uri=uri(ws))
    for alias in client.get_model_version(MODEL, str(version)).aliases:
        client.delete_registered_model_alias(MODEL, alias)
    for key, value in {
        "lifecycle_state": "retired",
        "retired_on": day,
        "retired_reason": reason,
    }.items():
        client.set_model_version_tag(MODEL, str(version), key, value)
    folder = ws / "archive" / f"{MODEL}-v{version}"
    folder.mkdir(parents=True, exist_ok=True)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri(ws))  # models:/ URIs resolve through the global registry URI
    try:
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{MODEL}/{version}", dst_path=str(folder)
        )
    finally:
        mlflow.set_tracking_uri(previous)
    write_sums(folder)
    (ws / "MODEL_CARD.md").write_text(model_card(version, reason, day), encoding="utf-8")


def build_retired_workspace(ws: Path, branch: str = "promoted") -> Path:
    """A workspace that passes `retired`, in the shape of one of stage 07's two branches."""
    import mlflow

    ws.mkdir(parents=True, exist_ok=True)
    _log_versions(ws)
    client = mlflow.MlflowClient(tracking_uri=uri(ws))
    client.set_registered_model_alias(MODEL, "challenger", "2")
    if branch == "promoted":
        client.set_registered_model_alias(MODEL, "champion", "3")
        retire(ws, 1, REASON[branch])
    elif branch == "held":
        client.set_registered_model_alias(MODEL, "champion", "1")
        retire(ws, 3, REASON[branch])
    else:
        raise ValueError(f"branch: expected promoted or held, found {branch!r}")
    return ws
