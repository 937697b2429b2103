"""The `lab_improved` check on lab/ (exercise 10), and the typical lab it improves on.

One valid workspace per kind of improvement, one test per broken rule (asserting the message),
hostile inputs, and the helpers that find and show the lab.
"""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

import checker
import checker.lab
from checker.errors import CheckerError
from checker.lab import LAB, find_lab, lab_markdown
from tests.helpers.lab import (
    SUMMARY,
    lab_version,
    log_lab_run,
    write_improvement,
    write_lab,
    write_lab_manifest,
)
from tests.helpers.untrusted import failed, snapshot

ROOT = Path(__file__).resolve().parents[1]
HINT = "revisit 10-exercise-lab-review.ipynb (cell 'Your turn 2: improve your copy of the lab')"
LAB_MANIFEST = "lab/manifest.json"


def run(ws: Path) -> checker.CheckResult:
    return checker.check("lab_improved", ws)["lab_improved"]


def messages(ws: Path) -> list[str]:
    result = failed("lab_improved", ws, seconds=20)
    assert result.hint == HINT
    return result.messages


def manifest_of(ws: Path) -> dict:
    return json.loads((ws / LAB_MANIFEST).read_text(encoding="utf-8"))


def edit_manifest(ws: Path, change: Callable[[dict], None]) -> dict:
    manifest = manifest_of(ws)
    change(manifest)
    write_lab_manifest(ws, manifest)
    return manifest


@pytest.fixture
def lab(workspace: Path) -> Path:
    """A foundation workspace plus a valid `test_set` improvement."""
    write_lab(workspace)
    return workspace


# --- valid improvements ---------------------------------------------------------------------------


def test_a_leak_free_versioned_test_set_passes(lab: Path):
    before = snapshot(lab)
    result = run(lab)
    assert result.passed, result.messages
    assert (result.points, result.max_points) == (10, 10)
    assert snapshot(lab) == before


def test_versioning_passes_with_any_split_names(lab: Path):
    write_improvement(lab, "versioning")

    def one_file(m: dict) -> None:
        m["splits"] = {"all": m["splits"]["train"]}
        m["version"] = lab_version(m["splits"])

    edit_manifest(lab, one_file)
    assert run(lab).passed, run(lab).messages


def test_tracked_runs_pass(workspace: Path):
    write_improvement(workspace, "tracking")
    log_lab_run(workspace)
    result = run(workspace)
    assert result.passed, result.messages


def test_it_runs_through_check_all(lab: Path):
    report = checker.check_all(lab, only=["lab_improved"])
    assert report.score == report.max_score == 10


# --- broken improvements --------------------------------------------------------------------------


def test_no_improvement_file_is_named(workspace: Path):
    assert messages(workspace) == [
        "lab/improvement.json: file lab/improvement.json not found in the workspace"
    ]


def test_an_unknown_kind_is_named(lab: Path):
    write_improvement(lab, "refactoring")
    assert messages(lab) == [
        "lab/improvement.json: kind: expected one of test_set, versioning, tracking, found "
        "'refactoring'"
    ]


@pytest.mark.parametrize(
    ("summary", "reason"),
    [
        ("TODO", "a placeholder (TODO, TBD, '...' or <...>)"),
        ("Better split", "only 2 words (at least 4 needed)"),
    ],
)
def test_a_summary_that_is_no_sentence_is_named(lab: Path, summary: str, reason: str):
    write_improvement(lab, "test_set", summary)
    assert messages(lab) == [
        "lab/improvement.json: summary: expected a sentence saying what you changed, found "
        f"{summary!r}, {reason}"
    ]


def test_a_missing_lab_manifest_is_named(lab: Path):
    (lab / LAB_MANIFEST).unlink()
    assert messages(lab) == ["lab/manifest.json: file lab/manifest.json not found in the workspace"]


def test_a_split_file_changed_after_versioning_is_named(lab: Path):
    claimed = manifest_of(lab)["splits"]["test"]["sha256"]
    with gzip.open(lab / "lab" / "test.csv.gz", "ab") as handle:
        handle.write(b"")  # same rows, new bytes: a new gzip member
    found = checker.workspace.sha256_file(lab / "lab" / "test.csv.gz")
    assert found != claimed
    assert messages(lab) == [
        f"lab/manifest.json: splits.test.sha256: expected {found} (the sha256 of "
        f"lab/test.csv.gz), found {claimed}",
        f"lab/manifest.json: version: expected {lab_version(_with(manifest_of(lab), test=found))} "
        "(sha256 of the sorted '<split>:<sha256>' lines), found "
        f"{manifest_of(lab)['version']}",
    ]


def _with(manifest: dict, **hashes: str) -> dict:
    splits = {n: dict(s) for n, s in manifest["splits"].items()}
    for name, digest in hashes.items():
        splits[name]["sha256"] = digest
    return splits


def test_a_wrong_row_count_is_named(lab: Path):
    rows = manifest_of(lab)["splits"]["train"]["rows"]
    edit_manifest(lab, lambda m: m["splits"]["train"].update(rows=rows + 1))
    assert messages(lab) == [
        f"lab/manifest.json: splits.train.rows: expected {rows} (rows in lab/train.csv.gz), "
        f"found {rows + 1}"
    ]


def test_a_wrong_version_is_named(lab: Path):
    manifest = edit_manifest(lab, lambda m: m.update(version="0" * 64))
    assert messages(lab) == [
        f"lab/manifest.json: version: expected {lab_version(manifest['splits'])} (sha256 of the "
        f"sorted '<split>:<sha256>' lines), found {'0' * 64}"
    ]


def test_a_learner_in_train_and_test_is_a_leak(workspace: Path):
    write_lab(workspace)
    # Rebuild the test split with one training learner added, then version it honestly.
    import pandas as pd

    from tests.helpers.workspace import sha256_file, write_csv_gz

    train = pd.read_csv(workspace / "lab" / "train.csv.gz")
    test = pd.read_csv(workspace / "lab" / "test.csv.gz")
    leaked = pd.concat([test, train.head(1)])
    write_csv_gz(leaked, workspace / "lab" / "test.csv.gz")

    def rehash(m: dict) -> None:
        m["splits"]["test"].update(
            sha256=sha256_file(workspace / "lab" / "test.csv.gz"), rows=len(leaked)
        )
        m["version"] = lab_version(m["splits"])

    edit_manifest(workspace, rehash)
    learner = train["id_student"].iloc[0]
    assert messages(workspace) == [
        "lab/manifest.json: splits.test and splits.train: expected no id_student in both, found "
        f"1 shared (for example {learner}): the test set leaks"
    ]


def test_a_test_set_needs_a_test_split(lab: Path):
    def drop_test(m: dict) -> None:
        del m["splits"]["test"]
        m["version"] = lab_version(m["splits"])

    edit_manifest(lab, drop_test)
    assert messages(lab) == [
        "lab/manifest.json: splits: expected a train and a test split, found no test"
    ]


def test_an_empty_test_split_is_named(lab: Path):
    from tests.helpers.workspace import sha256_file

    (lab / "lab" / "test.csv.gz").write_bytes(gzip.compress(b"id_student,code_module\n", mtime=0))

    def rehash(m: dict) -> None:
        m["splits"]["test"].update(sha256=sha256_file(lab / "lab" / "test.csv.gz"), rows=0)
        m["version"] = lab_version(m["splits"])

    edit_manifest(lab, rehash)
    assert messages(lab) == [
        "lab/manifest.json: splits.test: expected rows to test on, found an empty test split"
    ]


def test_a_key_that_is_not_a_column_is_named(lab: Path):
    edit_manifest(lab, lambda m: m.update(key="learner"))
    assert messages(lab) == [
        f"lab/manifest.json: key: expected a column of lab/{name}.csv.gz, found 'learner' is not one"
        for name in ("train", "valid", "test")
    ]


def test_a_manifest_without_hashes_is_named(lab: Path):
    edit_manifest(lab, lambda m: m["splits"]["valid"].pop("sha256"))
    assert messages(lab) == [
        "lab/manifest.json: splits.valid.sha256: expected this field, found it missing"
    ]


def test_versioning_does_not_ask_for_a_test_split_but_checks_hashes(lab: Path):
    write_improvement(lab, "versioning")
    edit_manifest(lab, lambda m: m["splits"]["train"].update(sha256="a" * 64))
    (message,) = messages(lab)  # the version recomputes from the real files, so it still holds
    assert message.startswith("lab/manifest.json: splits.train.sha256: expected ")
    assert message.endswith(f"found {'a' * 64}")


# --- tracking ---------------------------------------------------------------------------------------


def test_tracking_without_the_experiment_is_named(workspace: Path):
    write_improvement(workspace, "tracking")
    assert messages(workspace) == [
        "mlflow.db: experiments: expected an experiment named 'typical-lab', found "
        "['Default', 'at-risk-day60']"
    ]


def test_tracking_with_only_a_failed_run_is_named(workspace: Path):
    write_improvement(workspace, "tracking")
    log_lab_run(workspace, status="FAILED")
    assert messages(workspace) == [
        "mlflow.db: experiment typical-lab: expected a FINISHED run, found none (a crashed or "
        "RUNNING run does not count)"
    ]


def test_tracking_a_nan_metric_is_named(workspace: Path):
    write_improvement(workspace, "tracking")
    run_id = log_lab_run(workspace, metric=float("nan"))
    assert messages(workspace) == [
        f"mlflow.db: experiment typical-lab: run {run_id[:8]}: metric val_accuracy: expected "
        "finite values, found NaN or infinity"
    ]


def test_tracking_a_run_without_params_is_named(workspace: Path):
    write_improvement(workspace, "tracking")
    run_id = log_lab_run(workspace)
    with sqlite3.connect(workspace / "mlflow.db") as db:
        db.execute("DELETE FROM params WHERE run_uuid = ?", (run_id,))
    db.close()
    assert messages(workspace) == [
        "mlflow.db: experiment typical-lab: expected a run with at least one param and one "
        "metric, found 0 run(s) with params and 1 with metrics"
    ]


def test_tracking_without_a_store_is_named(lab: Path):
    write_improvement(lab, "tracking")
    (lab / "mlflow.db").unlink()
    assert messages(lab) == ["mlflow.db: file mlflow.db not found in the workspace"]


# --- hostile ----------------------------------------------------------------------------------------


def test_a_split_path_climbing_out_is_refused(lab: Path):
    edit_manifest(lab, lambda m: m["splits"]["test"].update(path="../../etc/passwd"))
    found = messages(lab)
    assert found[0] == (
        "lab/manifest.json: splits.test.path: expected a path relative to the workspace without "
        "'..', found '../../etc/passwd'"
    )


def test_a_split_file_symlinked_out_is_refused(lab: Path, tmp_path: Path):
    outside = tmp_path / "outside.csv.gz"
    outside.write_bytes((lab / "lab" / "test.csv.gz").read_bytes())
    (lab / "lab" / "test.csv.gz").unlink()
    os.symlink(outside, lab / "lab" / "test.csv.gz")
    found = messages(lab)
    assert found[0].startswith(
        "lab/manifest.json: splits.test.path: lab/test.csv.gz leads outside the workspace"
    )


def test_a_fifo_split_does_not_hang(lab: Path):
    (lab / "lab" / "test.csv.gz").unlink()
    os.mkfifo(lab / "lab" / "test.csv.gz")
    found = messages(lab)
    assert found[0] == (
        "lab/manifest.json: splits.test.path: expected lab/test.csv.gz to be a regular file, "
        "found something else"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{", "lab/improvement.json: expected valid JSON, found a syntax error at line 1"),
        ('["test_set"]', "lab/improvement.json: (top level): expected a value of type object"),
        ('{"kind": "test_set", "summary": NaN}', "lab/improvement.json: expected valid JSON"),
    ],
)
def test_an_unreadable_improvement_is_named(lab: Path, text: str, expected: str):
    (lab / "lab" / "improvement.json").write_text(text, encoding="utf-8")
    (message,) = messages(lab)
    assert message.startswith(expected)


def test_a_store_that_is_not_sqlite_is_named(lab: Path):
    write_improvement(lab, "tracking")
    (lab / "mlflow.db").write_text("not a database")
    assert messages(lab) == [
        "mlflow.db: expected an sqlite database (an MLflow store), found another kind of file"
    ]


# --- the typical lab ----------------------------------------------------------------------------------


def test_the_lab_is_found_from_the_notebooks():
    assert find_lab(ROOT / "solutions" / "lifecycle") == ROOT / LAB
    assert find_lab(ROOT / "notebooks" / "lifecycle") == ROOT / LAB


def test_no_lab_outside_a_clone_says_what_to_do(tmp_path: Path):
    with pytest.raises(CheckerError, match="open this notebook from a clone of the course"):
        find_lab(tmp_path)


def test_the_lab_is_typical_and_committed_clean():
    notebook = json.loads((ROOT / LAB).read_text(encoding="utf-8"))
    code = "\n".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code")
    assert "train_test_split" in code, "the lab splits rows at random"
    for absent in ("mlflow", "manifest", "sha256", "GroupShuffleSplit", "X_test"):
        assert absent not in code, f"the typical lab should not have {absent}"
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


def test_the_lab_reads_as_markdown():
    text = lab_markdown(ROOT / LAB)
    assert text.count("```python") == sum(
        c["cell_type"] == "code"
        for c in json.loads((ROOT / LAB).read_text(encoding="utf-8"))["cells"]
    )
    assert "> # Lab 4: Predicting student results" in text


def test_the_summary_of_the_valid_builder_is_a_sentence():
    assert checker.lifecycle_map.placeholder_reason(SUMMARY) is None
