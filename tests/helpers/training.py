"""Builders for stage 03's artifacts: training runs in `mlflow.db` and their `checkpoints/`.

`add_training_runs` writes what `03-training.ipynb` writes, in miniature and without training
anything: through the real MLflow API, one candidate run that finished, one that crashed after
epoch 2 and one that resumed it, each with per-epoch metrics and a checkpoint per epoch listed in
`checkpoints/<run_id>/index.json`. The checkpoint files are small joblib files: the checker only
hashes them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

EXPERIMENT = "at-risk-day60"
EPOCHS = 4
RESUME_AFTER = 2


BEST_EPOCH = 2  # the finished run's epoch with the highest val_recall_at_budget
BASELINE_GRID = (0.01, 0.1, 1.0)  # C of the baseline trials; 0.1 has the best recall at budget


@dataclass(frozen=True)
class TrainingRuns:
    finished: str  # a candidate trained for EPOCHS epochs, the best (best=true at BEST_EPOCH)
    crashed: str  # a candidate that stopped after RESUME_AFTER epochs (status FAILED)
    resumed: str  # a new run that loaded the crashed run's last checkpoint and finished
    baselines: tuple[str, ...] = ()  # the baseline trials, one per C of BASELINE_GRID
    baseline: str = ""  # the chosen one (role=baseline, model_uri), C = 0.1


def val_roc_auc(run: int, epoch: int) -> float:
    """A learning curve with many digits, so a value that lost precision would show."""
    return 0.7 + 0.021 * epoch - 0.0013 * epoch**2 + 0.000123456789 * run


def val_recall_at_budget(run: int, epoch: int) -> float:
    """Peaks at epoch 2 of run 0, while val_roc_auc peaks at epoch 4 of run 1 (the resumed run):
    a choice on ROC AUC is not the choice on the declared metric."""
    return 0.55 + 0.03 * epoch - 0.008 * epoch**2 - 0.005 * run + 0.0000123456789 * epoch


def write_checkpoint(ws: Path, run_id: str, epoch: int, auc: float, index: dict) -> None:
    """Dump a stand-in model for `epoch` and record it in the run's index.json."""
    import joblib

    folder = ws / "checkpoints" / run_id
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"epoch-{epoch:03d}.joblib"
    joblib.dump({"epoch": epoch, "weights": [0.1 * epoch] * 8}, path)
    index["epochs"].append(
        {
            "epoch": epoch,
            "path": path.relative_to(ws).as_posix(),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "val_roc_auc": auc,
        }
    )
    (folder / "index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")


def add_training_runs(ws: Path, data_version: str = "0" * 64) -> TrainingRuns:
    """Add a finished, a crashed and a resumed candidate run (with checkpoints) to `ws`."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    ws = ws.resolve()
    client = MlflowClient(tracking_uri=f"sqlite:///{ws}/mlflow.db")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else client.create_experiment(EXPERIMENT, artifact_location=(ws / "mlartifacts").as_uri())
    )
    base = {"data_version": data_version, "role": "candidate", "model_family": "mlp"}

    def train(number: int, name: str, epochs: range, status: str, tags: dict | None = None) -> str:
        run = client.create_run(experiment_id, run_name=name, tags=base | (tags or {}))
        run_id = run.info.run_id
        index = {"run_id": run_id, "epochs": []}
        client.log_batch(run_id, params=[Param("hidden_units", "16"), Param("epochs", "4")])
        for epoch in epochs:
            auc = val_roc_auc(number, epoch)
            metrics = {
                "val_roc_auc": auc,
                "val_pr_auc": auc - 0.05,
                "val_recall_at_budget": val_recall_at_budget(number, epoch),
                "train_loss": 0.7 / epoch,
            }
            client.log_batch(
                run_id, metrics=[Metric(k, v, 1_700_000_000_000, epoch) for k, v in metrics.items()]
            )
            write_checkpoint(ws, run_id, epoch, auc, index)
        client.set_terminated(run_id, status)
        return run_id

    finished = train(0, "mlp-a", range(1, EPOCHS + 1), "FINISHED")
    crashed = train(1, "mlp-b", range(1, RESUME_AFTER + 1), "FAILED")
    resumed = train(
        1,
        "mlp-b-resumed",
        range(RESUME_AFTER + 1, EPOCHS + 1),
        "FINISHED",
        {"resumed_from_run": crashed, "resumed_from_epoch": str(RESUME_AFTER)},
    )
    client.set_tag(finished, "best", "true")
    client.set_tag(finished, "best_epoch", str(BEST_EPOCH))
    client.set_tag(finished, "model_uri", "models:/m-candidate")
    baselines = []
    for C in BASELINE_GRID:  # recall at budget: best at C = 0.1; ROC AUC: best at C = 1
        run = client.create_run(
            experiment_id,
            run_name=f"baseline-logreg-C{C:g}",
            tags={"data_version": data_version, "role": "baseline_trial"}
            | {"model_family": "logistic_regression"},
        )
        recall = {0.01: 0.52, 0.1: 0.561234, 1.0: 0.55}[C]
        client.log_batch(
            run.info.run_id,
            params=[Param("C", str(C)), Param("max_iter", "1000")],
            metrics=[
                Metric("val_roc_auc", 0.80 + 0.001 * C, 1_700_000_000_000, 0),
                Metric("val_recall_at_budget", recall, 1_700_000_000_000, 0),
                Metric("train_loss", 0.5, 1_700_000_000_000, 0),
            ],
        )
        client.set_terminated(run.info.run_id, "FINISHED")
        baselines.append(run.info.run_id)
    chosen = baselines[BASELINE_GRID.index(0.1)]
    client.set_tag(chosen, "role", "baseline")
    client.set_tag(chosen, "model_uri", "models:/m-baseline")
    return TrainingRuns(finished, crashed, resumed, tuple(baselines), chosen)
