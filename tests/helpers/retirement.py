"""Builders for the `retired` check: a registry after stage 07, made through the real MLflow API.

`build_retired_workspace` logs three tiny sklearn pipelines, registers them as versions 1-3 of
`at-risk-day60`, then retires one the way stage 07 does: aliases moved, model-version tags set,
the model files copied to `archive/at-risk-day60-v<N>/` with a `SHA256SUMS`, and a dated entry in
`MODEL_CARD.md`. Two shapes, like the notebook's two branches:

- `promoted`: the fixed version 3 won the paired comparison; champion -> 3, challenger -> 2,
  version 1 (the champion that served) retired, and a reloaded server's log;
- `held`: the champion held; champion -> 1, challenger -> 2, the new version 3 rejected (no
  alias, `lifecycle_state=rejected`), nothing retired.

Around the registry, the iteration's other traces: `problem.yaml` (the declared metric),
`data/manifest.json` with a small production split (2014B, 2014J), `monitoring/report.json`'s
`concept_drift`, stage 05's `serving/requests.jsonl` (versions 1 and 2 served), and
`iteration/comparison.json` with `iteration/scores.csv`, computed with the real
`checker.metrics.paired_difference`. No notebook runs here, so the tests of the check stay fast.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import uuid
from pathlib import Path

MODEL = "at-risk-day60"
REASON = {
    "promoted": "served as champion until replaced by version 3, better on 2014J",
    "held": "did not beat champion version 1 on 2014J: the interval reaches 0",
}
ROUNDS = 200  # the fewest rounds the check accepts: fast, and the rule still decides
SEED = 7
LEARNERS = 160  # 2014J learners of the small production split
RULE = "promote when the lower bound of the 95% paired bootstrap interval of the gain is above 0"
CONCEPT_DRIFT = {
    "feature": "score_mean_60",
    "slice": {"code_module": "BBB", "code_presentation": "2014J"},
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
    archive(ws, version, ws / "archive" / f"{MODEL}-v{version}")
    (ws / "MODEL_CARD.md").write_text(model_card(version, reason, day), encoding="utf-8")


def archive(ws: Path, version: int, folder: Path) -> None:
    """Copy the model files of `version` into `folder`, with their SHA256SUMS."""
    import mlflow

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


def request(id_student: int, version: str | None, alias: str, moment: dt.datetime) -> dict:
    """One line of a server's request log, as serving/app.py writes it."""
    return {
        "time": moment.isoformat(timespec="milliseconds"),
        "request_id": uuid.uuid4().hex,
        "id_student": id_student,
        "model_version": version,
        "alias": alias,
        "score": 0.4,
        "latency_ms": 5.0,
        "status": 200,
        "fallback": False,
        "fallback_reason": None,
    }


def write_log(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def _write_inputs(ws: Path) -> None:
    """problem.yaml, the manifest and its production split, monitoring's concept_drift, and the
    request log of stage 05 (champion v1 and challenger v2 served, an hour ago)."""
    import numpy as np
    import pandas as pd

    (ws / "problem.yaml").write_text(
        "success:\n  metric: recall_at_budget\n  target: 0.5\n  budget: 0.3\n", encoding="utf-8"
    )
    rng = np.random.default_rng(3)
    presentations = ["2014B"] * 40 + ["2014J"] * LEARNERS
    production = pd.DataFrame(
        {
            "id_student": np.arange(1000, 1000 + len(presentations)),
            "code_module": rng.choice(["AAA", "BBB"], size=len(presentations)),
            "code_presentation": presentations,
            "at_risk": (rng.random(len(presentations)) < 0.4).astype(int),
        }
    )
    (ws / "data").mkdir(exist_ok=True)
    production.to_csv(ws / "data" / "production.csv", index=False)
    manifest = {
        "key": "id_student",
        "label": "at_risk",
        "splits": {"production": {"path": "data/production.csv"}},
    }
    (ws / "data" / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (ws / "monitoring").mkdir(exist_ok=True)
    (ws / "monitoring" / "report.json").write_text(
        json.dumps({"concept_drift": CONCEPT_DRIFT}), encoding="utf-8"
    )
    hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    write_log(
        ws / "serving" / "requests.jsonl",
        [
            request(
                1000 + i,
                "2" if i % 5 == 0 else "1",
                "challenger" if i % 5 == 0 else "champion",
                hour_ago,
            )
            for i in range(120)
        ],
    )


def scores(ws: Path, better: bool):
    """Both models' scores on the 2014J learners: the new one informative when `better`."""
    import numpy as np
    import pandas as pd

    production = pd.read_csv(ws / "data" / "production.csv")
    rows = production[production["code_presentation"] == "2014J"]
    y = rows["at_risk"].to_numpy()
    rng = np.random.default_rng(11)
    old = rng.random(len(y))
    new = np.clip(0.6 * y + 0.4 * rng.random(len(y)), 0, 1) if better else old.copy()
    return pd.DataFrame(
        {
            "id_student": rows["id_student"].to_numpy(),
            "code_presentation": rows["code_presentation"].to_numpy(),
            "code_module": rows["code_module"].to_numpy(),
            "y_true": y,
            "score_champion": old,
            "score_new": new,
        }
    )


def comparison(frame, verdict: str | None = None, **fields) -> dict:
    """iteration/comparison.json for `frame` (iteration/scores.csv), recomputed for real."""
    from checker.metrics import paired_difference, score_metric

    result = paired_difference(
        frame["y_true"],
        frame["score_champion"],
        frame["score_new"],
        score_metric("recall_at_budget", 0.3),
        ROUNDS,
        SEED,
    )
    promote = result["low"] is not None and result["low"] > 0
    return {
        "metric": "recall_at_budget",
        "budget": 0.3,
        "presentation": "2014J",
        **CONCEPT_DRIFT,
        "fixed_feature": "score_mean_60_z",
        "versions": {"champion": "1", "new": "3"},
        **{k: result[k] for k in ("seed", "rounds", "level", "rounds_used")},
        **{k: result[k] for k in ("estimate", "low", "high", "share_better")},
        "rule": RULE,
        "verdict": verdict or ("promote" if promote else "hold"),
        "retired": "1" if promote else None,
    } | fields


def write_comparison(ws: Path, document: dict) -> None:
    (ws / "iteration").mkdir(exist_ok=True)
    (ws / "iteration" / "comparison.json").write_text(
        json.dumps(document, indent=2), encoding="utf-8"
    )


def reload_log(ws: Path, champion: str = "3", count: int = 60) -> None:
    """The reloaded server's log: now, champion `champion` and challenger 2 answering."""
    now = dt.datetime.now(dt.UTC)
    write_log(
        ws / "iteration" / "serving" / "requests.jsonl",
        [
            request(
                1040 + i,
                "2" if i % 5 == 0 else champion,
                "challenger" if i % 5 == 0 else "champion",
                now,
            )
            for i in range(count)
        ],
    )


def build_retired_workspace(ws: Path, branch: str = "promoted") -> Path:
    """A workspace that passes `retired`, in the shape of one of stage 07's two branches."""
    import mlflow

    ws.mkdir(parents=True, exist_ok=True)
    _log_versions(ws)
    _write_inputs(ws)
    client = mlflow.MlflowClient(tracking_uri=uri(ws))
    client.set_registered_model_alias(MODEL, "challenger", "2")
    if branch not in ("promoted", "held"):
        raise ValueError(f"branch: expected promoted or held, found {branch!r}")
    frame = scores(ws, better=branch == "promoted")
    (ws / "iteration").mkdir(exist_ok=True)
    frame.to_csv(ws / "iteration" / "scores.csv", index=False)
    document = comparison(frame)
    assert document["verdict"] == ("promote" if branch == "promoted" else "hold"), document
    write_comparison(ws, document)
    if branch == "promoted":
        client.set_registered_model_alias(MODEL, "champion", "3")
        retire(ws, 1, REASON[branch])
        reload_log(ws)
    else:
        client.set_registered_model_alias(MODEL, "champion", "1")
        client.set_model_version_tag(MODEL, "3", "lifecycle_state", "rejected")
        client.set_model_version_tag(MODEL, "3", "rejected_reason", REASON[branch])
    return ws
