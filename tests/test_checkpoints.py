"""The `checkpointed` check: re-hashed checkpoints, contiguous epochs, index vs store, lineage."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sqlite3
from pathlib import Path

import pytest

import checker
from tests.helpers.problem import VALID_PROBLEM, write_problem
from tests.helpers.training import (
    BASELINE_GRID,
    EPOCHS,
    RESUME_AFTER,
    TrainingRuns,
    add_training_runs,
)
from tests.helpers.untrusted import deadline, failed, snapshot
from tests.helpers.untrusted import fails_with as check_fails_with

STORE = "mlflow.db"


@pytest.fixture(scope="session")
def training_template(
    valid_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, TrainingRuns]:
    """The foundation workspace plus a finished, a crashed and a resumed run with checkpoints."""
    ws = Path(shutil.copytree(valid_template, tmp_path_factory.mktemp("training") / "ws"))
    version = json.loads((ws / "data" / "manifest.json").read_text())["version"]
    return ws, add_training_runs(ws, version)


@pytest.fixture
def trained(training_template: tuple[Path, TrainingRuns], tmp_path: Path):
    """A fresh copy of the valid training workspace and its run ids, for a test to break."""
    template, runs = training_template
    return Path(shutil.copytree(template, tmp_path / "workspace", symlinks=True)), runs


def messages(ws: Path) -> list[str]:
    return failed("checkpointed", ws).messages


def fails_with(ws: Path, *fragments: str) -> str:
    return check_fails_with("checkpointed", ws, *fragments)


def index_path(ws: Path, run_id: str) -> Path:
    return ws / "checkpoints" / run_id / "index.json"


def edit_index(ws: Path, run_id: str, change) -> dict:
    document = json.loads(index_path(ws, run_id).read_text())
    change(document)
    index_path(ws, run_id).write_text(json.dumps(document))
    return document


def sql(ws: Path, statement: str, params: tuple = ()) -> None:
    """Change the store the way a hand edit would (the check itself never writes)."""
    with sqlite3.connect(ws / STORE) as db:
        db.execute(statement, params)
    db.close()


# --- the valid workspace ------------------------------------------------------------------------


def test_the_valid_training_workspace_passes(trained):
    ws, _ = trained
    report = checker.check_all(ws, only=["metrics_logged", "checkpointed"])
    assert report.failures() == []
    assert report.score == 20


def test_the_check_never_writes_to_the_workspace(trained):
    ws, _ = trained
    before = snapshot(ws)
    checker.check("checkpointed", ws)
    assert snapshot(ws) == before


def test_a_checkpoint_is_never_unpickled(trained, tmp_path: Path):
    """A checkpoint whose bytes would run code when loaded: the check hashes it and passes."""
    ws, runs = trained
    marker = tmp_path / "the-checker-loaded-a-pickle"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    path = ws / "checkpoints" / runs.finished / "epoch-001.joblib"
    path.write_bytes(pickle.dumps(Payload()))
    digest = checker.workspace.sha256_file(path)
    edit_index(ws, runs.finished, lambda d: d["epochs"][0].update(sha256=digest))
    result = checker.check("checkpointed", ws).results[0]
    assert result.passed, result.messages
    assert not marker.exists()


# --- violations -----------------------------------------------------------------------------------


def test_no_checkpoints_folder(trained):
    ws, _ = trained
    shutil.rmtree(ws / "checkpoints")
    fails_with(ws, "checkpoints/:", "expected one folder per training run", "found none")


def test_a_run_folder_without_its_index(trained):
    ws, runs = trained
    index_path(ws, runs.finished).unlink()
    fails_with(ws, f"checkpoints/{runs.finished}/index.json", "found no such file")


def test_tampered_checkpoint_bytes(trained):
    ws, runs = trained
    path = ws / "checkpoints" / runs.finished / "epoch-002.joblib"
    path.write_bytes(path.read_bytes() + b"\x00")
    message = fails_with(ws, "epochs[1].sha256", "the file changed after it was indexed")
    assert message.startswith(f"checkpoints/{runs.finished}/index.json")


def test_a_gap_in_the_epochs(trained):
    ws, runs = trained
    edit_index(ws, runs.finished, lambda d: d["epochs"].pop(1))
    fails_with(ws, f"checkpoints/{runs.finished}/index.json: epochs:", "found 1, 3, 4 (no epoch 2)")
    # the store logged epoch 2 of this finished run, so a checkpoint is missing for it too
    fails_with(ws, "expected a checkpoint for every epoch", "found none for step 2")


def test_a_repeated_epoch(trained):
    ws, runs = trained
    edit_index(ws, runs.finished, lambda d: d["epochs"].insert(1, d["epochs"][0]))
    fails_with(ws, "epochs:", "each once, found 1, 1, 2, 3, 4")


def test_a_missing_checkpoint_file(trained):
    ws, runs = trained
    (ws / "checkpoints" / runs.crashed / "epoch-001.joblib").unlink()
    fails_with(ws, "epochs[0].path", f"checkpoints/{runs.crashed}/epoch-001.joblib not found")


def test_an_index_metric_that_is_not_the_store_value(trained):
    ws, runs = trained
    edit_index(ws, runs.finished, lambda d: d["epochs"][2].update(val_roc_auc=0.99))
    fails_with(ws, "epochs[2].val_roc_auc: expected 0.7", "(mlflow.db, run", "step 3), found 0.99")


def test_an_index_metric_the_store_never_logged(trained):
    ws, runs = trained
    sql(ws, "DELETE FROM metrics WHERE run_uuid = ? AND step = 4", (runs.finished,))
    fails_with(ws, "epochs[3].val_roc_auc", "found no val_roc_auc logged at that step")


def test_a_finished_run_with_an_epoch_that_has_no_checkpoint(trained):
    ws, runs = trained
    sql(
        ws,
        "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
        "VALUES ('val_roc_auc', 0.8, 1, ?, 5, 0)",
        (runs.finished,),
    )
    fails_with(ws, "expected a checkpoint for every epoch", "found none for step 5")


def test_a_path_to_another_runs_checkpoint(trained):
    ws, runs = trained
    other = f"checkpoints/{runs.crashed}/epoch-001.joblib"
    digest = checker.workspace.sha256_file(ws / other)
    edit_index(ws, runs.finished, lambda d: d["epochs"][0].update(path=other, sha256=digest))
    fails_with(ws, f"expected checkpoints/{runs.finished}/epoch-001.joblib, found {other}")


def test_an_index_that_names_another_run(trained):
    ws, runs = trained
    edit_index(ws, runs.finished, lambda d: d.update(run_id=runs.crashed))
    fails_with(ws, "run_id: expected", "(the name of its folder)")


def test_a_folder_named_after_no_run(trained):
    ws, runs = trained
    ghost = "f" * 32
    os.rename(ws / "checkpoints" / runs.finished, ws / "checkpoints" / ghost)
    edit_index(ws, ghost, lambda d: d.update(run_id=ghost))
    fails_with(ws, f"checkpoints/{ghost}/index.json: run_id", "which is not one")


def test_an_index_that_breaks_the_schema(trained):
    ws, runs = trained
    edit_index(ws, runs.finished, lambda d: d["epochs"][0].update(epoch=0, sha256="abc"))
    fails_with(ws, "epochs[0].epoch: expected at least 1, found 0")
    fails_with(ws, "epochs[0].sha256: expected text matching")


# --- the resumed run ------------------------------------------------------------------------------


def test_no_resumed_run(trained):
    ws, _ = trained
    sql(ws, "DELETE FROM tags WHERE key LIKE 'resumed_from_%'")
    fails_with(ws, "mlflow.db: tags: expected a run tagged resumed_from_run", "found none")


def test_a_resumed_run_pointing_at_no_run(trained):
    ws, runs = trained
    sql(ws, "UPDATE tags SET value = ? WHERE key = 'resumed_from_run'", ("0" * 32,))
    fails_with(ws, "tag resumed_from_run: expected the id of a run in mlflow.db", "0" * 32)
    fails_with(ws, "expected a resumed run that FINISHED and whose lineage checks out")


def test_a_resumed_run_pointing_at_itself(trained):
    ws, runs = trained
    sql(ws, "UPDATE tags SET value = run_uuid WHERE key = 'resumed_from_run'")
    fails_with(ws, "tag resumed_from_run", "found the run's own id")


def test_a_resumed_run_pointing_at_an_epoch_never_checkpointed(trained):
    ws, runs = trained
    sql(ws, "UPDATE tags SET value = '7' WHERE key = 'resumed_from_epoch'")
    fails_with(
        ws,
        "tag resumed_from_epoch: expected an epoch checkpointed in",
        f"checkpoints/{runs.crashed}/index.json (1, 2), found 7",
    )


def test_a_resume_epoch_that_is_not_a_number(trained):
    ws, _ = trained
    sql(ws, "UPDATE tags SET value = 'last' WHERE key = 'resumed_from_epoch'")
    fails_with(ws, "tag resumed_from_epoch: expected the epoch number", "found 'last'")


def test_a_resumed_history_that_does_not_start_after_the_resume_epoch(trained):
    ws, runs = trained
    sql(
        ws,
        "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
        "VALUES ('train_loss', 0.5, 1, ?, ?, 0)",
        (runs.resumed, RESUME_AFTER),
    )
    fails_with(
        ws, "metrics: expected only epochs after the resume epoch 2, found train_loss at step 2"
    )


def test_a_resumed_index_that_starts_at_epoch_one(trained):
    ws, runs = trained
    edit_index(ws, runs.resumed, lambda d: [e.update(epoch=e["epoch"] - 2) for e in d["epochs"]])
    fails_with(ws, f"checkpoints/{runs.resumed}/index.json: epochs:", "first epoch to be 3")


def test_a_resumed_run_without_checkpoints(trained):
    ws, runs = trained
    shutil.rmtree(ws / "checkpoints" / runs.resumed)
    fails_with(ws, f"checkpoints/{runs.resumed}/index.json: expected the resumed run's own")


def test_a_resumed_run_that_did_not_finish(trained):
    ws, runs = trained
    sql(ws, "UPDATE runs SET status = 'FAILED' WHERE run_uuid = ?", (runs.resumed,))
    fails_with(
        ws,
        "mlflow.db: runs: expected a resumed run that FINISHED",
        "found none among 1 resumed run(s)",
    )


# --- hostile input --------------------------------------------------------------------------------


def test_a_path_that_climbs_out_of_the_workspace(trained):
    ws, runs = trained
    edit_index(ws, runs.finished, lambda d: d["epochs"][0].update(path="../outside.joblib"))
    fails_with(ws, "epochs[0].path: expected a path relative to the workspace without '..'")


def test_an_absolute_path(trained):
    ws, runs = trained
    edit_index(ws, runs.finished, lambda d: d["epochs"][0].update(path="/etc/passwd"))
    fails_with(ws, "epochs[0].path: expected a path relative to the workspace")


def test_a_checkpoint_symlinked_out_of_the_workspace(trained, tmp_path: Path):
    ws, runs = trained
    outside = tmp_path / "outside.joblib"
    path = ws / "checkpoints" / runs.finished / "epoch-001.joblib"
    outside.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(outside)
    fails_with(ws, "epochs[0].path", "leads outside the workspace")


def test_the_checkpoints_folder_symlinked_out_of_the_workspace(trained, tmp_path: Path):
    ws, _ = trained
    shutil.move(ws / "checkpoints", tmp_path / "elsewhere")
    (ws / "checkpoints").symlink_to(tmp_path / "elsewhere")
    fails_with(ws, "checkpoints/: leads outside the workspace")


def test_a_checkpoint_that_is_a_fifo(trained):
    ws, runs = trained
    path = ws / "checkpoints" / runs.finished / "epoch-001.joblib"
    path.unlink()
    os.mkfifo(path)
    with deadline(10):
        fails_with(ws, "epochs[0].path", "to be a regular file")


def test_an_index_that_is_not_json(trained):
    ws, runs = trained
    index_path(ws, runs.crashed).write_text('{"run_id": NaN,')
    fails_with(ws, f"checkpoints/{runs.crashed}/index.json: expected valid JSON")


def test_a_store_that_is_not_a_database(trained):
    ws, _ = trained
    (ws / STORE).write_bytes(b"not a database")
    fails_with(ws, "mlflow.db: expected an sqlite database")


# --- the real chain -------------------------------------------------------------------------------


# --- the choices: on the declared success metric (issue 10) ------------------------------------


def retag(ws: Path, run_id: str, key: str, value: str | None) -> None:
    sql(ws, "DELETE FROM tags WHERE run_uuid = ? AND key = ?", (run_id, key))
    if value is not None:
        sql(ws, "INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)", (key, value, run_id))


def choose_candidate(ws: Path, runs: TrainingRuns, run_id: str, epoch: int) -> None:
    retag(ws, runs.finished, "best", None)
    retag(ws, run_id, "best", "true")
    retag(ws, run_id, "best_epoch", str(epoch))


def choose_baseline(ws: Path, runs: TrainingRuns, C: float) -> None:
    for run_id in runs.baselines:
        retag(ws, run_id, "role", "baseline_trial")
    chosen = runs.baselines[BASELINE_GRID.index(C)]
    retag(ws, chosen, "role", "baseline")
    retag(ws, chosen, "model_uri", "models:/m-other")


def test_a_best_candidate_chosen_on_roc_auc_fails(trained):
    ws, runs = trained
    choose_candidate(ws, runs, runs.resumed, EPOCHS)  # the highest val_roc_auc
    message = fails_with(ws, "best_epoch: expected the highest val_recall_at_budget among its kind")
    assert "mlp-a" in message and "at step 2" in message and "not on another" in message


def test_a_later_epoch_of_the_best_run_is_not_the_best(trained):
    ws, runs = trained
    retag(ws, runs.finished, "best_epoch", str(EPOCHS))
    fails_with(ws, "best_epoch: expected the highest val_recall_at_budget", "at step 2")


def test_a_best_epoch_the_run_never_logged_fails(trained):
    ws, runs = trained
    retag(ws, runs.finished, "best_epoch", "99")
    fails_with(ws, "tag best_epoch: expected an epoch at which the run logged val_recall_at_budget")


@pytest.mark.parametrize("count", [0, 2])
def test_exactly_one_best_candidate(trained, count: int):
    ws, runs = trained
    if count == 0:
        retag(ws, runs.finished, "best", None)
    else:
        retag(ws, runs.resumed, "best", "true")
    fails_with(ws, "expected exactly one finished run tagged best=true", f"found {count}")


def test_a_baseline_chosen_on_roc_auc_fails(trained):
    ws, runs = trained
    choose_baseline(ws, runs, 1.0)  # the highest val_roc_auc, not the highest recall at budget
    fails_with(
        ws, "role=baseline: expected the highest val_recall_at_budget", "baseline-logreg-C0.1"
    )


def test_two_baselines_fail(trained):
    ws, runs = trained
    retag(ws, runs.baselines[0], "role", "baseline")
    fails_with(ws, "expected exactly one finished run tagged role=baseline", "found 2")


def test_a_baseline_without_its_model_fails(trained):
    ws, runs = trained
    retag(ws, runs.baseline, "model_uri", None)
    fails_with(ws, "tag model_uri: expected the baseline's logged model")


def test_a_candidate_that_never_logged_the_declared_metric_fails(trained):
    ws, runs = trained
    sql(
        ws,
        "DELETE FROM metrics WHERE run_uuid = ? AND key = 'val_recall_at_budget'",
        (runs.resumed,),
    )
    fails_with(ws, "mlp-b-resumed", "expected val_recall_at_budget logged")


def test_the_declared_metric_comes_from_problem_yaml(trained):
    ws, runs = trained
    write_problem(ws, VALID_PROBLEM.replace("metric: recall_at_budget", "metric: roc_auc"))
    fails_with(ws, "expected the highest val_roc_auc among its kind")
    choose_candidate(ws, runs, runs.resumed, EPOCHS)
    choose_baseline(ws, runs, 1.0)
    report = checker.check_all(ws, only=["checkpointed"])
    assert report.failures() == []


def test_runs_of_another_data_version_do_not_compete(trained):
    ws, runs = trained
    rival = runs.baselines[BASELINE_GRID.index(1.0)]
    sql(
        ws,
        "UPDATE metrics SET value = 0.9 WHERE run_uuid = ? AND key = 'val_recall_at_budget'",
        (rival,),
    )
    fails_with(ws, "role=baseline: expected the highest", "has 0.900000")
    retag(ws, rival, "data_version", "f" * 64)  # trained on other data: not a rival
    assert checker.check_all(ws, only=["checkpointed"]).failures() == []


@pytest.mark.slow
def test_the_solution_chain_checkpoints_and_a_tampered_checkpoint_fails(chain_workspace: Path):
    ws = chain_workspace
    result = checker.check("checkpointed", ws).results[0]
    assert result.passed, result.messages
    with sqlite3.connect(f"file:{ws / STORE}?mode=ro", uri=True) as db:
        [(resumed, source, epoch)] = db.execute(
            "SELECT a.run_uuid, a.value, b.value FROM tags a JOIN tags b "
            "ON a.run_uuid = b.run_uuid AND b.key = 'resumed_from_epoch' "
            "WHERE a.key = 'resumed_from_run'"
        ).fetchall()
    db.close()
    assert sorted(p.name for p in (ws / "checkpoints" / source).glob("*.joblib"))[-1] == (
        f"epoch-{int(epoch):03d}.joblib"
    )
    first = json.loads(index_path(ws, resumed).read_text())["epochs"][0]
    (ws / first["path"]).write_bytes(b"tampered")
    fails_with(ws, "epochs[0].sha256", "the file changed after it was indexed")
