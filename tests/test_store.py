"""The `metrics_logged` check and the read-only reader of mlflow.db.

Runs are changed through MLflow's own API where it has one (tags, statuses, NaN and infinite
metrics), and with plain sqlite3 where it has none (removing params or metrics). Every case also
checks that grading left the workspace byte for byte as it was: no `-journal`, `-wal` or `-shm`.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path

import mlflow
import pytest
from alembic.script import ScriptDirectory

import checker
from checker import store as store_module
from checker.errors import Invalid
from checker.store import KNOWN_REVISIONS, open_store
from checker.workspace import Workspace
from tests.helpers.untrusted import (
    HOSTILE_STORE,
    MANIFEST,
    RECURSIVE_VIEW,
    deadline,
    failed,
    load_manifest,
    snapshot,
    sql,
)

HINT = "revisit 03-training.ipynb (cell 'Your turn: log one epoch')"
EXPERIMENT = "at-risk-day60"
TWO_RUNS = (
    "mlflow.db: runs: expected an experiment with at least 2 FINISHED runs, found 1 "
    "(runs that crashed or are still RUNNING do not count)"
)
TABLES = "experiments, runs, params, metrics, tags"


def grade(ws: Path) -> checker.CheckResult:
    """Run the check with a time limit, and check it changed nothing in the workspace."""
    before = snapshot(ws)
    with deadline(10):
        result = checker.check("metrics_logged", ws)["metrics_logged"]
    after = snapshot(ws)
    sqlite_files = [name for name in after if name.endswith(("-journal", "-wal", "-shm"))]
    assert not [name for name in sqlite_files if name not in before], "grading left sqlite files"
    assert after == before, "grading changed the workspace"
    return result


def messages(ws: Path) -> list[str]:
    return failed("metrics_logged", ws, seconds=10).messages


def client(ws: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{ws}/mlflow.db")


def runs(ws: Path) -> dict[str, str]:
    """Run name -> run id, as MLflow sees them."""
    mlf = client(ws)
    experiment = mlf.get_experiment_by_name(EXPERIMENT)
    return {r.info.run_name: r.info.run_id for r in mlf.search_runs([experiment.experiment_id])}


def label(ws: Path, name: str) -> str:
    return f"run {name} ({runs(ws)[name][:8]})"


def test_the_valid_store_passes(workspace: Path):
    result = grade(workspace)
    assert result.passed, result.messages
    assert (result.points, result.max_points) == (10, 10)


# --- runs -----------------------------------------------------------------------------------------


def test_one_finished_run_is_not_enough(workspace: Path):
    client(workspace).set_terminated(runs(workspace)["run-1"], "FAILED")
    assert messages(workspace) == [TWO_RUNS]


def test_a_crashed_run_does_not_count_or_break_anything(workspace: Path):
    mlf = client(workspace)
    experiment = mlf.get_experiment_by_name(EXPERIMENT).experiment_id
    crashed = mlf.create_run(experiment, run_name="crashed")  # no tag, no params
    mlf.log_metric(crashed.info.run_id, "val_auc", float("nan"), step=0)
    mlf.set_terminated(crashed.info.run_id, "FAILED")
    assert grade(workspace).passed
    mlf.set_terminated(runs(workspace)["run-0"], "FAILED")
    assert messages(workspace) == [TWO_RUNS]


def test_running_and_killed_runs_do_not_count(workspace: Path):
    mlf = client(workspace)
    experiment = mlf.get_experiment_by_name(EXPERIMENT).experiment_id
    mlf.create_run(experiment, run_name="still-running")
    killed = mlf.create_run(experiment, run_name="killed")
    mlf.set_terminated(killed.info.run_id, "KILLED")
    mlf.set_terminated(runs(workspace)["run-0"], "FAILED")
    assert messages(workspace) == [TWO_RUNS]


def test_a_deleted_run_does_not_count(workspace: Path):
    client(workspace).delete_run(runs(workspace)["run-0"])
    assert messages(workspace) == [TWO_RUNS]


def test_the_runs_must_share_an_experiment(workspace: Path):
    mlf = client(workspace)
    other = mlf.create_experiment("other")
    run = mlf.create_run(other, run_name="lonely", tags={"data_version": "x"})
    mlf.set_terminated(run.info.run_id, "FINISHED")
    mlf.set_terminated(runs(workspace)["run-0"], "FAILED")
    assert messages(workspace) == [TWO_RUNS]


def test_an_empty_store_has_no_runs(workspace: Path):
    sql(workspace, "PRAGMA foreign_keys = OFF; DELETE FROM runs;")
    assert messages(workspace) == [TWO_RUNS.replace("found 1", "found 0")]


# --- what each run must carry ---------------------------------------------------------------------


def test_a_run_without_the_data_version_tag_is_named(workspace: Path):
    client(workspace).delete_tag(runs(workspace)["run-0"], "data_version")
    assert messages(workspace) == [
        f"mlflow.db: {label(workspace, 'run-0')}: tag data_version: expected the manifest's "
        "version, found no tag"
    ]


def test_a_data_version_not_matching_the_manifest_is_named(workspace: Path):
    client(workspace).set_tag(runs(workspace)["run-1"], "data_version", "0" * 64)
    version = load_manifest(workspace)["version"]
    assert messages(workspace) == [
        f"mlflow.db: {label(workspace, 'run-1')}: tag data_version: expected {version} "
        f"(data/manifest.json), found {'0' * 64}"
    ]


def test_without_a_manifest_the_tag_cannot_match(workspace: Path):
    (workspace / MANIFEST).unlink()
    assert messages(workspace) == [
        f"mlflow.db: {label(workspace, name)}: tag data_version: expected to match "
        "data/manifest.json's version, found no readable manifest"
        for name in ("run-0", "run-1")
    ]


def test_a_run_without_params_is_named(workspace: Path):
    run_id = runs(workspace)["run-1"]
    sql(workspace, f"DELETE FROM params WHERE run_uuid = '{run_id}';")
    assert messages(workspace) == [
        f"mlflow.db: {label(workspace, 'run-1')}: params: expected at least one logged param, "
        "found none"
    ]


def test_a_run_without_a_val_metric_is_named(workspace: Path):
    run_id = runs(workspace)["run-0"]
    for table in ("metrics", "latest_metrics"):
        sql(
            workspace,
            f"UPDATE {table} SET key = 'auc_val' WHERE key = 'val_auc' AND run_uuid = '{run_id}';",
        )
    assert messages(workspace) == [
        f"mlflow.db: {label(workspace, 'run-0')}: metrics: expected at least one metric named "
        "val_*, found none"
    ]


def test_a_history_of_two_steps_is_too_short(workspace: Path):
    sql(workspace, "DELETE FROM metrics WHERE step >= 2;")
    assert messages(workspace) == [
        "mlflow.db: metrics: expected a run with a metric history of 3 or more steps (log once "
        "per epoch with step=epoch), found at most 2"
    ]


def test_three_values_at_one_step_are_not_a_history(workspace: Path):
    sql(workspace, "DELETE FROM metrics WHERE step >= 1;")
    mlf = client(workspace)
    for value in (0.1, 0.2, 0.3):
        mlf.log_metric(runs(workspace)["run-0"], "val_auc", value, step=0)
    assert messages(workspace) == [
        "mlflow.db: metrics: expected a run with a metric history of 3 or more steps (log once "
        "per epoch with step=epoch), found at most 1"
    ]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_metric_that_is_not_finite_is_named(workspace: Path, value: float):
    run_id = runs(workspace)["run-1"]
    client(workspace).log_metric(run_id, "val_auc", value, step=3)
    assert messages(workspace) == [
        f"mlflow.db: run {run_id[:8]}: metric val_auc: expected finite values, found NaN or "
        "infinity"
    ]


def test_every_problem_is_reported_at_once(workspace: Path):
    mlf, ids = client(workspace), runs(workspace)
    mlf.delete_tag(ids["run-0"], "data_version")
    mlf.log_metric(ids["run-1"], "train_loss", float("nan"), step=3)
    sql(workspace, f"DELETE FROM params WHERE run_uuid = '{ids['run-1']}';")
    found = messages(workspace)
    assert len(found) == 3
    assert "tag data_version" in found[0] and "params" in found[1] and "train_loss" in found[2]


# --- an untrusted store ---------------------------------------------------------------------------


def test_a_text_file_is_not_a_store(workspace: Path):
    HOSTILE_STORE["store_text"](workspace)
    assert messages(workspace) == [
        "mlflow.db: expected an sqlite database (an MLflow store), found another kind of file"
    ]


def test_an_empty_file_is_not_a_store(workspace: Path):
    (workspace / "mlflow.db").write_bytes(b"")
    assert messages(workspace) == [
        "mlflow.db: expected an sqlite database (an MLflow store), found another kind of file"
    ]


def test_an_empty_sqlite_database_has_no_mlflow_tables(workspace: Path):
    HOSTILE_STORE["store_empty_sqlite"](workspace)
    assert messages(workspace) == [
        f"mlflow.db: expected MLflow tables {TABLES}, found no table {TABLES} "
        "(and no alembic_version table: not an MLflow store)"
    ]


def test_a_missing_store_is_named(workspace: Path):
    (workspace / "mlflow.db").unlink()
    assert messages(workspace) == ["mlflow.db: file mlflow.db not found in the workspace"]


def test_a_recursive_view_named_runs_fails_fast(workspace: Path):
    HOSTILE_STORE["store_recursive_view"](workspace)
    start = time.monotonic()
    assert messages(workspace) == [
        f"mlflow.db: expected MLflow tables {TABLES}, found no table runs"
    ]
    assert time.monotonic() - start < 3


def test_a_runaway_query_is_stopped_after_the_time_limit(workspace: Path):
    sql(workspace, RECURSIVE_VIEW)
    before = snapshot(workspace)
    start = time.monotonic()
    with deadline(10), open_store(Workspace(workspace)) as store, pytest.raises(Invalid) as caught:
        store.query("SELECT count(*) FROM runs")
    elapsed = time.monotonic() - start
    assert str(caught.value) == (
        "mlflow.db: a query ran longer than 2 s and was stopped (a recursive view or trigger?)"
    )
    assert store_module.QUERY_SECONDS <= elapsed < store_module.QUERY_SECONDS + 3
    assert snapshot(workspace) == before


def test_the_reader_cannot_write(workspace: Path):
    before = snapshot(workspace)
    with open_store(Workspace(workspace)) as store:
        for statement in ("DELETE FROM runs", "CREATE TABLE t (x)", "PRAGMA user_version = 7"):
            with pytest.raises(Invalid, match="readonly|read-only|query_only"):
                store.query(statement)
        store.query("PRAGMA query_only = OFF")  # the file is still opened read-only
        with pytest.raises(Invalid, match="attempt to write a readonly database"):
            store.query("DELETE FROM runs")
    assert snapshot(workspace) == before


def test_a_write_cut_short_is_refused_not_rolled_back(workspace: Path):
    db = workspace / "mlflow.db"
    connection = sqlite3.connect(db, isolation_level=None)
    connection.execute("PRAGMA cache_size = 1")  # spill changed pages into the file mid-write
    connection.execute("BEGIN")
    for table in ("metrics", "latest_metrics", "params", "tags", "runs"):
        connection.execute(f"UPDATE {table} SET run_uuid = run_uuid || 'x'")
    crashed = {suffix: Path(f"{db}{suffix}").read_bytes() for suffix in ("", "-journal")}
    assert crashed["-journal"].startswith(store_module.JOURNAL_MAGIC)  # a hot journal
    connection.execute("ROLLBACK")
    connection.close()
    for suffix, data in crashed.items():  # the files as a killed kernel leaves them
        Path(f"{db}{suffix}").write_bytes(data)
    assert messages(workspace) == [  # messages() also checks the journal was left alone
        "mlflow.db: expected every change saved into mlflow.db, found unsaved changes in "
        "mlflow.db-journal (close the program that writes to the store, then check again)"
    ]


def test_triggers_never_fire_and_do_not_matter(workspace: Path):
    sql(
        workspace,
        "CREATE TRIGGER wipe AFTER INSERT ON runs BEGIN DELETE FROM runs; END;"
        "CREATE TRIGGER refuse BEFORE UPDATE ON tags BEGIN SELECT RAISE(FAIL, 'no'); END;",
    )
    assert grade(workspace).passed


def test_an_unknown_revision_is_named_when_tables_are_missing(workspace: Path):
    HOSTILE_STORE["store_unknown_revision"](workspace)
    assert messages(workspace) == [
        f"mlflow.db: expected MLflow tables {TABLES}, found no table tags "
        "(schema revision 'ffffffffffff', not one this checker knows)"
    ]


def test_an_unknown_revision_with_every_table_still_grades(workspace: Path):
    sql(workspace, "UPDATE alembic_version SET version_num = 'ffffffffffff';")
    assert grade(workspace).passed


def test_a_malformed_schema_is_reported(workspace: Path):
    HOSTILE_STORE["store_malformed_schema"](workspace)
    assert messages(workspace) == [
        "mlflow.db: expected a readable sqlite database, found: malformed database schema (tags) "
        "- incomplete input"
    ]


def test_corrupt_pages_are_reported(workspace: Path):
    HOSTILE_STORE["store_corrupt_pages"](workspace)
    (message,) = messages(workspace)
    assert message.startswith("mlflow.db: expected a readable sqlite database, found: ")


@pytest.mark.parametrize("case", ["store_fifo", "store_directory"])
def test_a_store_that_is_not_a_regular_file_fails_without_hanging(workspace: Path, case: str):
    HOSTILE_STORE[case](workspace)
    assert messages(workspace) == [
        "mlflow.db: expected mlflow.db to be a regular file, found something else"
    ]


def test_a_store_symlinked_out_of_the_workspace_fails(workspace: Path):
    HOSTILE_STORE["store_symlink_out"](workspace)
    outside = (workspace.parent / "outside.db").resolve()
    assert messages(workspace) == [
        f"mlflow.db: mlflow.db leads outside the workspace (a symlink to {outside})"
    ]


def test_a_store_over_the_size_cap_fails(workspace: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(store_module, "MAX_DATA_BYTES", 1000)
    size = (workspace / "mlflow.db").stat().st_size
    assert messages(workspace) == [
        f"mlflow.db: mlflow.db is {size:,} bytes, over the limit of 1,000 bytes"
    ]


def test_a_wal_mode_store_is_read_without_creating_files(workspace: Path):
    connection = sqlite3.connect(workspace / "mlflow.db")
    assert connection.execute("PRAGMA journal_mode = WAL").fetchone() == ("wal",)
    connection.close()
    assert sorted(os.listdir(workspace)) == ["data", "lifecycle_map.yaml", "mlflow.db"]
    assert grade(workspace).passed  # grade() also checks no -wal or -shm appeared


def test_a_wal_mode_store_with_unsaved_changes_is_refused(workspace: Path):
    db = workspace / "mlflow.db"
    connection = sqlite3.connect(db)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA wal_autocheckpoint = 0")
    connection.execute("UPDATE runs SET status = 'FAILED'")
    connection.commit()
    pending = {suffix: Path(f"{db}{suffix}").read_bytes() for suffix in ("-wal", "-shm")}
    connection.close()  # checkpoints and removes the log; put it back as a crash would leave it
    for suffix, data in pending.items():
        Path(f"{db}{suffix}").write_bytes(data)
    assert messages(workspace) == [
        "mlflow.db: expected every change saved into mlflow.db, found unsaved changes in "
        "mlflow.db-wal (close the program that writes to the store, then check again)"
    ]


# --- the reader agrees with MLflow ----------------------------------------------------------------


def test_the_reader_sees_what_mlflow_sees(workspace: Path):
    mlf = client(workspace)
    mlf.log_metric(runs(workspace)["run-1"], "val_auc", float("nan"), step=3)
    experiment = mlf.get_experiment_by_name(EXPERIMENT)
    expected = {
        r.info.run_id: (r.info.run_name, r.info.status, r.data.tags.get("data_version"))
        for r in mlf.search_runs([experiment.experiment_id])
    }
    histories = {
        (run_id, key): [(m.step, m.value) for m in mlf.get_metric_history(run_id, key)]
        for run_id in expected
        for key in mlf.get_run(run_id).data.metrics
    }
    params = {run_id: mlf.get_run(run_id).data.params for run_id in expected}
    with open_store(Workspace(workspace)) as store:
        found = {
            run_id: (name, status, tag)
            for run_id, name, status, tag in store.query(
                "SELECT r.run_uuid, r.name, r.status, t.value FROM runs r "
                "LEFT JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = 'data_version' "
                "WHERE r.experiment_id = ?",
                (int(experiment.experiment_id),),
            )
        }
        found_histories: dict[tuple[str, str], list[tuple[int, float]]] = {}
        for run_id, key, step, value, is_nan in store.query(
            "SELECT run_uuid, key, step, value, is_nan FROM metrics ORDER BY timestamp, step"
        ):
            found_histories.setdefault((run_id, key), []).append(
                (step, float("nan") if is_nan else value)
            )
        found_params: dict[str, dict[str, str]] = {}
        for run_id, key, value in store.query("SELECT run_uuid, key, value FROM params"):
            found_params.setdefault(run_id, {})[key] = value
    assert found == expected
    assert len(found) == 2
    assert repr(sorted(found_histories.items())) == repr(sorted(histories.items()))  # nan
    assert all(len(h) >= 3 for h in found_histories.values())
    assert found_params == params


def test_the_fixture_store_is_a_known_revision(valid_template: Path):
    connection = sqlite3.connect(f"file:{valid_template / 'mlflow.db'}?mode=ro", uri=True)
    (revision,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    connection.close()
    assert revision in KNOWN_REVISIONS, (
        f"the installed MLflow writes schema revision {revision}: check that the checker's "
        "queries still hold, then add it to checker.store.KNOWN_REVISIONS"
    )


def test_the_installed_mlflow_head_is_a_known_revision():
    migrations = Path(mlflow.__file__).parent / "store" / "db_migrations"
    assert set(ScriptDirectory(str(migrations)).get_heads()) <= KNOWN_REVISIONS


def test_the_store_is_never_migrated_by_grading(workspace: Path):
    sql(workspace, "UPDATE alembic_version SET version_num = 'ffffffffffff';")
    grade(workspace)
    copy = workspace.parent / "copy.db"
    shutil.copy(workspace / "mlflow.db", copy)
    connection = sqlite3.connect(copy)
    assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [
        ("ffffffffffff",)
    ]
    connection.close()


def test_one_grading_shares_one_connection_closed_with_the_workspace(workspace: Path):
    ws = Workspace(workspace)
    with open_store(ws) as first, open_store(ws) as second:
        assert first is second
        assert first.query("SELECT count(*) FROM runs")[0][0] > 0
    ws.close()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        first._db.execute("SELECT 1")
    with open_store(ws) as again:  # a closed Workspace opens afresh
        assert again is not first and again.query("SELECT count(*) FROM runs")
    ws.close()
