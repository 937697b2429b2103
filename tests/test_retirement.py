"""The `retired` check: a valid retirement passes in both branches of stage 07; each broken trace
(registry, archive, model card) fails with a message that names it."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

import checker.retirement  # noqa: F401 - registers the check
from checker.registry import CHECKS
from tests.helpers.retirement import (
    MODEL,
    archive,
    build_retired_workspace,
    comparison,
    model_card,
    reload_log,
    uri,
    write_comparison,
    write_log,
    write_sums,
)
from tests.helpers.untrusted import deadline, failed
from tests.helpers.untrusted import fails_with as check_fails_with

RETIRED = {"promoted": 1, "held": 3}
TODAY = dt.date.today().isoformat()


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("retired")
    return {b: build_retired_workspace(root / b / "workspace", b) for b in RETIRED}


@pytest.fixture
def ws(templates: dict[str, Path], tmp_path: Path) -> Path:
    """A fresh copy of the `promoted` workspace: version 1 retired, champion -> 3."""
    return Path(shutil.copytree(templates["promoted"], tmp_path / "workspace", symlinks=True))


def client(ws: Path):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri(ws))


def messages(ws: Path) -> list[str]:
    result = CHECKS["retired"](ws)
    assert result.passed is (not result.messages)
    return result.messages


def one(ws: Path, *fragments: str) -> str:
    """The check fails, and one message holds every fragment."""
    return check_fails_with("retired", ws, *fragments)


ARCHIVE = Path("archive") / f"{MODEL}-v1"


# -- valid ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("branch", list(RETIRED))
def test_a_valid_retirement_passes_in_both_branches(templates, branch):
    result = CHECKS["retired"](templates[branch])
    assert result.passed, result.messages
    assert result.points == result.max_points == 10


def test_the_check_never_modifies_the_workspace(ws):
    def snapshot() -> dict[str, tuple[str, int]]:
        return {
            str(p.relative_to(ws)): (
                hashlib.sha256(p.read_bytes()).hexdigest(),
                p.stat().st_mtime_ns,
            )
            for p in sorted(ws.rglob("*"))
            if p.is_file()
        }

    before = snapshot()
    assert messages(ws) == []
    (ws / ARCHIVE / "SHA256SUMS").write_text("", encoding="utf-8")  # a failing run neither
    broken = snapshot()
    assert messages(ws)
    assert snapshot() == broken
    assert before.keys() == broken.keys()


def test_every_retired_version_needs_all_its_traces(ws):
    client(ws).set_model_version_tag(MODEL, "2", "lifecycle_state", "retired")
    client(ws).delete_registered_model_alias(MODEL, "challenger")
    found = messages(ws)
    assert any("archive/at-risk-day60-v2/SHA256SUMS" in m for m in found), found
    assert any("found none naming version 2" in m for m in found), found
    assert not any("version 1" in m for m in found), found


# -- the registry --------------------------------------------------------------------------------


def test_no_retired_version_fails(ws):
    client(ws).delete_model_version_tag(MODEL, "1", "lifecycle_state")
    message = one(ws, "expected a version of at-risk-day60 tagged lifecycle_state=retired")
    assert "found none (versions: 1 (untagged), 2 (untagged), 3 (untagged))" in message


def test_a_retired_version_that_still_has_an_alias_fails(ws):
    client(ws).set_registered_model_alias(MODEL, "champion", "1")
    one(ws, "registered_model_aliases", "expected no alias on retired version 1, found champion")


def test_a_missing_champion_fails(ws):
    client(ws).delete_registered_model_alias(MODEL, "champion")
    one(ws, "expected alias 'champion' on at-risk-day60, found challenger->2")


def test_a_champion_on_a_deleted_version_fails(ws):
    with sqlite3.connect(ws / "mlflow.db") as db:
        db.execute("UPDATE model_versions SET current_stage = 'Deleted_Internal' WHERE version = 3")
    one(ws, "champion: expected a live version, found version 3, which was deleted")


def test_a_champion_on_an_unregistered_version_fails(ws):
    with sqlite3.connect(ws / "mlflow.db") as db:
        db.execute("UPDATE registered_model_aliases SET version = 9 WHERE alias = 'champion'")
    one(ws, "champion: expected an existing version of at-risk-day60, found version 9")


def test_no_registered_model_fails(tmp_path):
    import mlflow

    mlflow.MlflowClient(tracking_uri=uri(tmp_path)).create_experiment("x")
    one(tmp_path, "registered_models: expected a registered model named at-risk-day60")


def test_no_store_fails(tmp_path):
    one(tmp_path, "mlflow.db", "not found in the workspace")


def test_a_store_that_is_not_sqlite_fails(ws):
    (ws / "mlflow.db").write_text("not a database", encoding="utf-8")
    one(ws, "mlflow.db: expected an sqlite database")


# -- the archive ---------------------------------------------------------------------------------


def test_a_changed_archive_file_fails(ws):
    with (ws / ARCHIVE / "model.pkl").open("ab") as handle:
        handle.write(b"tampered")
    one(ws, "SHA256SUMS: line", "model.pkl: expected sha256", "(recomputed): the archive changed")


def test_a_changed_mlmodel_is_reported_once(ws):
    with (ws / ARCHIVE / "MLmodel").open("a", encoding="utf-8") as handle:
        handle.write("model_id: m-someone-else\n")
    found = messages(ws)
    assert len(found) == 1 and "MLmodel: expected sha256" in found[0], found


def test_a_missing_archive_fails(ws):
    shutil.rmtree(ws / ARCHIVE)
    one(ws, "archive/at-risk-day60-v1/SHA256SUMS: expected the archive of retired version 1")


def test_a_listed_file_that_is_missing_fails(ws):
    (ws / ARCHIVE / "conda.yaml").unlink()
    one(ws, "SHA256SUMS: line", "file archive/at-risk-day60-v1/conda.yaml not found")


@pytest.mark.parametrize("path", ["../../data/train.csv.gz", "/etc/hostname", "../v2/MLmodel"])
def test_a_path_escaping_the_archive_fails(ws, path):
    with (ws / ARCHIVE / "SHA256SUMS").open("a", encoding="utf-8") as handle:
        handle.write(f"{'0' * 64}  {path}\n")
    one(ws, "SHA256SUMS: line 7: expected a path inside archive/at-risk-day60-v1/", path)


def test_a_symlink_out_of_the_workspace_fails(ws, tmp_path):
    outside = tmp_path / "outside.pkl"
    shutil.copy(ws / ARCHIVE / "model.pkl", outside)
    (ws / ARCHIVE / "model.pkl").unlink()
    (ws / ARCHIVE / "model.pkl").symlink_to(outside)
    one(ws, "SHA256SUMS: line", "model.pkl leads outside the workspace")


def test_a_symlink_to_the_live_artifacts_is_not_an_archive(ws):
    live = next((ws / "mlartifacts").rglob("model.pkl"))
    (ws / ARCHIVE / "model.pkl").unlink()
    (ws / ARCHIVE / "model.pkl").symlink_to(live)
    write_sums(ws / ARCHIVE)
    one(ws, "expected a file inside archive/at-risk-day60-v1/", "(archive copies, not links)")


def test_an_archive_folder_that_is_a_link_fails(ws):
    source = next((ws / "mlartifacts").rglob("MLmodel")).parent
    shutil.rmtree(ws / ARCHIVE)
    (ws / ARCHIVE).symlink_to(source)
    write_sums(source)
    one(ws, "archive/at-risk-day60-v1: expected a folder of copies, found a link to mlartifacts")


def test_a_fifo_in_the_archive_fails_without_hanging(ws):
    (ws / ARCHIVE / "model.pkl").unlink()
    os.mkfifo(ws / ARCHIVE / "model.pkl")
    with deadline(10):
        one(
            ws,
            "SHA256SUMS: line",
            "expected archive/at-risk-day60-v1/model.pkl to be a regular file",
        )


def test_a_malformed_sums_line_fails(ws):
    with (ws / ARCHIVE / "SHA256SUMS").open("a", encoding="utf-8") as handle:
        handle.write("d41d8cd98f00b204e9800998ecf8427e  MLmodel\n")  # an md5, not a sha256
    one(ws, "SHA256SUMS: line 7: expected '<64 hex digits>  <path>' (sha256sum format)")


def test_an_empty_sums_file_fails(ws):
    (ws / ARCHIVE / "SHA256SUMS").write_text("", encoding="utf-8")
    one(ws, "expected the archived model files listed with their sha256, found none")


def test_an_archive_without_the_mlmodel_file_fails(ws):
    (ws / ARCHIVE / "MLmodel").unlink()
    write_sums(ws / ARCHIVE)
    one(ws, "expected the archived model's MLmodel file among the listed files")


def test_an_archive_of_another_version_fails(ws):
    shutil.rmtree(ws / ARCHIVE)
    archive(ws, 3, ws / ARCHIVE)
    one(ws, "archive/at-risk-day60-v1/MLmodel: model_id: expected m-", "holds another model")


# -- the model card ------------------------------------------------------------------------------


def card(ws: Path, entry: str) -> None:
    text = model_card(1, "x", TODAY).replace(f"- version 1 retired on {TODAY}: x", entry)
    (ws / "MODEL_CARD.md").write_text(text, encoding="utf-8")


def test_a_missing_model_card_fails(ws):
    (ws / "MODEL_CARD.md").unlink()
    one(ws, "MODEL_CARD.md: expected a model card, found no such file")


def test_a_card_without_a_retirement_section_fails(ws):
    (ws / "MODEL_CARD.md").write_text("# Model card\n\n## Intended use\nTutors.\n", "utf-8")
    one(ws, "MODEL_CARD.md: expected a section headed '## Retirement', found none")


def test_a_card_without_an_entry_for_the_version_fails(ws):
    card(ws, f"- version 2 retired on {TODAY}: replaced by a better model on 2014J")
    one(ws, "## Retirement: expected an entry '- version 1 retired on YYYY-MM-DD: <why>'")


def test_an_entry_under_another_heading_does_not_count(ws):
    text = model_card(1, "superseded by version 3 on the 2014J data", TODAY)
    text = text.replace("## Retirement\n", "## Retirement\n\n## History\n")
    (ws / "MODEL_CARD.md").write_text(text, encoding="utf-8")
    one(ws, "found none naming version 1")


def test_an_undated_entry_fails(ws):
    card(ws, "- version 1 retired: replaced by version 3 on the 2014J data")
    one(ws, "version 1: expected '- version 1 retired on YYYY-MM-DD: <why>'")


@pytest.mark.parametrize("day", ["yesterday", "2026-13-01", "26-11-2026"])
def test_an_invalid_date_fails(ws, day):
    card(ws, f"- version 1 retired on {day}: replaced by version 3 on the 2014J data")
    one(ws, "version 1: expected a date YYYY-MM-DD after 'retired on'", repr(day))


def test_a_date_before_the_version_existed_fails(ws):
    client(ws).delete_model_version_tag(MODEL, "1", "retired_on")
    card(ws, "- version 1 retired on 1999-01-01: replaced by version 3 on the 2014J data")
    one(ws, "version 1: expected a date on or after", "(when version 1 was registered)")


def test_a_date_in_the_future_fails(ws):
    client(ws).delete_model_version_tag(MODEL, "1", "retired_on")
    card(ws, "- version 1 retired on 2999-01-01: replaced by version 3 on the 2014J data")
    one(ws, "version 1: expected a date no later than today")


def test_a_date_that_disagrees_with_the_tag_fails(ws):
    client(ws).set_model_version_tag(MODEL, "1", "retired_on", "2000-01-01")
    card(ws, f"- version 1 retired on {TODAY}: replaced by version 3 on the 2014J data")
    one(ws, "expected the date of the model-version tag retired_on (2000-01-01)")


@pytest.mark.parametrize("reason", ["", "TODO", "<why>", "old"])
def test_an_entry_without_a_reason_fails(ws, reason):
    card(ws, f"- version 1 retired on {TODAY}: {reason}".rstrip())
    one(ws, "version 1: expected a reason after the date")


def test_one_good_entry_is_enough(ws):
    card(
        ws,
        "- version 1 retired on soon: TODO\n"
        f"- version 1 retired on {TODAY}: replaced by version 3 on the 2014J data",
    )
    assert messages(ws) == []


def test_a_card_that_is_a_fifo_fails_without_hanging(ws):
    (ws / "MODEL_CARD.md").unlink()
    os.mkfifo(ws / "MODEL_CARD.md")
    with deadline(10):
        one(ws, "MODEL_CARD.md: expected MODEL_CARD.md to be a regular file")


def test_a_card_that_is_not_utf8_fails(ws):
    (ws / "MODEL_CARD.md").write_bytes(b"# Model card\n\xff\xfe\n")
    one(ws, "MODEL_CARD.md: expected UTF-8 text")


def test_a_huge_card_fails(ws):
    (ws / "MODEL_CARD.md").write_text("x" * 300_000, encoding="utf-8")
    one(ws, "MODEL_CARD.md", "over the limit")


def test_a_card_that_is_a_symlink_out_fails(ws, tmp_path):
    outside = tmp_path / "card.md"
    shutil.copy(ws / "MODEL_CARD.md", outside)
    (ws / "MODEL_CARD.md").unlink()
    (ws / "MODEL_CARD.md").symlink_to(outside)
    one(ws, "MODEL_CARD.md", "leads outside the workspace")


# -- the iteration: the paired comparison ----------------------------------------------------------

COMPARISON = Path("iteration") / "comparison.json"
SCORES = Path("iteration") / "scores.csv"
RELOAD = Path("iteration") / "serving" / "requests.jsonl"


@pytest.fixture
def held(templates: dict[str, Path], tmp_path: Path) -> Path:
    """A fresh copy of the `held` workspace: champion -> 1, version 3 rejected, nothing retired."""
    return Path(shutil.copytree(templates["held"], tmp_path / "held", symlinks=True))


def recorded(ws: Path) -> dict:
    return json.loads((ws / COMPARISON).read_text(encoding="utf-8"))


def rewrite(ws: Path, **fields) -> None:
    write_comparison(ws, recorded(ws) | fields)


def test_the_held_branch_retires_nothing_and_rejects_the_new_version(templates):
    ws = templates["held"]
    assert recorded(ws)["verdict"] == "hold" and recorded(ws)["low"] <= 0
    assert not (ws / "archive").exists() and not (ws / RELOAD).exists()
    assert client(ws).get_model_version(MODEL, "3").tags["lifecycle_state"] == "rejected"
    assert messages(ws) == []


def test_a_missing_comparison_fails(ws):
    (ws / COMPARISON).unlink()
    one(ws, "iteration/comparison.json: expected the paired comparison", "found no such file")


def test_too_few_rounds_fail(ws):
    rewrite(ws, rounds=100)
    one(ws, "iteration/comparison.json: rounds: expected at least 200, found 100")


def test_a_comparison_that_is_not_strict_json_fails(ws):
    (ws / COMPARISON).write_text('{"estimate": NaN}', encoding="utf-8")
    one(ws, "iteration/comparison.json", "NaN")


@pytest.mark.parametrize("field", ["estimate", "low", "high", "share_better"])
def test_a_recorded_number_that_does_not_recompute_fails(ws, field):
    rewrite(ws, **{field: recorded(ws)[field] + (-1e-6 if field == "share_better" else 1e-6)})
    message = one(
        ws,
        f"iteration/comparison.json: {field}: expected",
        "(recomputed from iteration/scores.csv with seed 7, 200 rounds",
    )
    assert f"found {recorded(ws)[field]!r}" in message


def test_numbers_from_another_seed_fail(ws):
    rewrite(ws, seed=8)
    one(ws, "iteration/comparison.json: low: expected", "with seed 8, 200 rounds")


def test_changed_scores_fail(ws):
    frame = pd.read_csv(ws / SCORES)
    frame.loc[5, "score_new"] = 1 - frame.loc[5, "score_new"]
    frame.to_csv(ws / SCORES, index=False)
    one(ws, "iteration/comparison.json: ", ": expected", "recomputed from iteration/scores.csv")


def test_scores_of_other_learners_fail(ws):
    frame = pd.read_csv(ws / SCORES)
    frame.drop(index=3).to_csv(ws / SCORES, index=False)
    one(
        ws,
        "iteration/scores.csv: expected one row per 2014J learner of the production split",
        "160 rows, found 159",
    )


def test_scores_in_another_order_fail(ws):
    frame = pd.read_csv(ws / SCORES)
    frame.iloc[::-1].to_csv(ws / SCORES, index=False)
    one(
        ws,
        "iteration/scores.csv: line 2: id_student: expected 1040 (the same learners as data/production.csv)",
    )


def test_a_changed_label_fails(ws):
    frame = pd.read_csv(ws / SCORES)
    frame.loc[0, "y_true"] = 1 - frame.loc[0, "y_true"]
    frame.to_csv(ws / SCORES, index=False)
    one(ws, "iteration/scores.csv: line 2: y_true: expected")


def test_a_score_outside_0_1_fails(ws):
    frame = pd.read_csv(ws / SCORES)
    frame.loc[2, "score_champion"] = 1.5
    frame.to_csv(ws / SCORES, index=False)
    one(
        ws,
        "iteration/scores.csv: line 4: score_champion: expected a risk score in [0, 1], found 1.5",
    )


def test_a_scores_file_without_a_model_column_fails(ws):
    pd.read_csv(ws / SCORES).drop(columns="score_new").to_csv(ws / SCORES, index=False)
    one(ws, "iteration/scores.csv: expected the columns", "(missing score_new)")


def test_a_missing_scores_file_fails(ws):
    (ws / SCORES).unlink()
    one(
        ws,
        "iteration/scores.csv: expected both models' scores on the same learners, found no such file",
    )


def test_a_scores_file_that_is_a_fifo_fails_without_hanging(ws):
    (ws / SCORES).unlink()
    os.mkfifo(ws / SCORES)
    with deadline(10):
        one(ws, "iteration/scores.csv", "regular file")


def test_another_metric_than_the_declared_one_fails(ws):
    frame = pd.read_csv(ws / SCORES)
    document = comparison(frame)
    from checker.metrics import paired_difference, roc_auc

    auc = paired_difference(
        frame["y_true"], frame["score_champion"], frame["score_new"], roc_auc, 200, 7
    )
    write_comparison(
        ws,
        document
        | {k: auc[k] for k in ("estimate", "low", "high", "share_better")}
        | {"metric": "roc_auc", "budget": None},
    )
    found = failed("retired", ws).messages
    assert found == [
        "iteration/comparison.json: metric: expected recall_at_budget (problem.yaml success.metric, the declared success metric), found roc_auc"
    ], found


def test_another_slice_than_stage_06_found_fails(ws):
    rewrite(ws, slice={"code_module": "AAA", "code_presentation": "2014J"})
    one(
        ws,
        "iteration/comparison.json: slice: expected {'code_module': 'BBB', 'code_presentation': '2014J'} (monitoring/report.json concept_drift.slice, what stage 06 found)",
    )


def test_a_promotion_the_interval_does_not_support_fails(held):
    rewrite(held, verdict="promote")
    one(
        held,
        "iteration/comparison.json: verdict: expected hold (the rule: promote when the lower bound",
        "found promote",
    )


def test_a_hold_the_interval_contradicts_fails(ws):
    rewrite(ws, verdict="hold", retired=None)
    one(ws, "iteration/comparison.json: verdict: expected promote", "found hold")


def test_a_promotion_the_registry_does_not_show_fails(ws):
    client(ws).set_registered_model_alias(MODEL, "champion", "2")
    one(
        ws,
        "registered_model_aliases: champion: expected version 3 (the new model, iteration/comparison.json verdict promote), found version 2",
    )


def test_a_wrong_retired_field_fails(ws):
    rewrite(ws, retired="2")
    one(
        ws,
        "iteration/comparison.json: retired: expected 1 (the champion the new model replaced), found '2'",
    )


def test_versions_that_are_not_registered_fail(ws):
    rewrite(ws, versions={"champion": "1", "new": "9"})
    one(
        ws,
        "iteration/comparison.json: versions.new: expected a registered version of at-risk-day60, found version 9",
    )


def test_a_hold_that_moved_the_champion_fails(held):
    client(held).set_registered_model_alias(MODEL, "champion", "3")
    one(
        held,
        "champion: expected version 1 (the champion holds, iteration/comparison.json verdict hold), found version 3",
    )


def test_a_rejected_version_with_an_alias_fails(held):
    client(held).set_registered_model_alias(MODEL, "challenger", "3")
    one(held, "expected no alias on the rejected version 3, found challenger")


# -- the iteration: retire what served, and reload ----------------------------------------------------


def test_retiring_a_version_that_never_served_fails(held):
    """Today's old rule: the champion held, so the new version (which never served) was retired."""
    client(held).set_model_version_tag(MODEL, "3", "lifecycle_state", "retired")
    message = one(
        held, "version 3 is tagged lifecycle_state=retired: expected a version that served"
    )
    assert (
        "(a model_version of serving/requests.jsonl), found it never answered a request (versions that served: 1, 2)"
        in message
    )


def test_a_retired_champion_missing_from_the_request_log_fails(ws):
    lines = (ws / "serving" / "requests.jsonl").read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if json.loads(line)["model_version"] != "1"]
    (ws / "serving" / "requests.jsonl").write_text("\n".join(kept) + "\n", encoding="utf-8")
    one(
        ws,
        "version 1 is tagged lifecycle_state=retired: expected a version that served",
        "(versions that served: 2)",
    )


def test_a_missing_request_log_fails(ws):
    (ws / "serving" / "requests.jsonl").unlink()
    one(
        ws,
        "serving/requests.jsonl: expected stage 05's request log (which versions served), found no such file",
    )


def test_a_missing_reload_log_fails(ws):
    (ws / RELOAD).unlink()
    one(
        ws,
        "iteration/serving/requests.jsonl: expected the log of the server reloaded after the retirement, found no such file",
    )


def test_a_reloaded_server_that_answers_with_the_retired_version_fails(ws):
    records = [json.loads(line) for line in (ws / RELOAD).read_text(encoding="utf-8").splitlines()]
    records[4] |= {"model_version": "1"}
    write_log(ws / RELOAD, records)
    one(
        ws,
        "iteration/serving/requests.jsonl: line 5: model_version: expected any version but the retired 1, found 1",
    )


def test_a_reload_log_from_before_the_retirement_fails(ws):
    shutil.copy(ws / "serving" / "requests.jsonl", ws / RELOAD)
    found = failed("retired", ws).messages
    assert any(
        "line 1: time: expected a request after the last one of serving/requests.jsonl" in m
        for m in found
    ), found
    assert any("model_version: expected any version but the retired 1" in m for m in found), found


def test_a_reload_log_with_too_few_requests_fails(ws):
    reload_log(ws, count=10)
    one(
        ws,
        "iteration/serving/requests.jsonl: expected at least 50 requests to the reloaded server, found 10",
    )


def test_a_reload_log_without_the_new_champion_fails(ws):
    reload_log(ws, champion="2")
    one(
        ws,
        "iteration/serving/requests.jsonl: expected requests answered by the champion, version 3, found champion answers from versions 2",
    )


def test_a_model_that_fails_on_the_reloaded_server_fails(ws):
    lines = (ws / RELOAD).read_text(encoding="utf-8").splitlines()
    broken = json.loads(lines[0]) | {
        "model_version": "3",
        "alias": "champion",
        "fallback": True,
        "fallback_reason": "challenger v2 raised KeyError: 'score_mean_60_z'",
    }
    (ws / RELOAD).write_text("\n".join([json.dumps(broken), *lines[1:]]) + "\n", encoding="utf-8")
    one(
        ws,
        "iteration/serving/requests.jsonl: line 1: fallback_reason: expected every model of the "
        "reloaded server to answer, found \"challenger v2 raised KeyError: 'score_mean_60_z'\"",
    )


def test_a_broken_reload_log_line_fails(ws):
    with (ws / RELOAD).open("a", encoding="utf-8") as handle:
        handle.write("{not json\n")
    one(ws, "iteration/serving/requests.jsonl: line 61")


def test_a_reload_log_that_is_a_fifo_fails_without_hanging(ws):
    (ws / RELOAD).unlink()
    os.mkfifo(ws / RELOAD)
    with deadline(10):
        one(ws, "iteration/serving/requests.jsonl", "regular file")


# -- the solution chain --------------------------------------------------------------------------


@pytest.mark.slow
def test_the_solution_chain_retires_a_version(chain_workspace):
    result = CHECKS["retired"](chain_workspace)
    assert result.passed, result.messages
    document = recorded(chain_workspace)
    assert document["verdict"] == "promote" and document["low"] > 0, document  # the fix wins
    served = {
        json.loads(line)["model_version"]
        for line in (chain_workspace / "serving" / "requests.jsonl")
        .read_text(encoding="utf-8")
        .splitlines()
    }
    after = {
        json.loads(line)["model_version"]
        for line in (chain_workspace / RELOAD).read_text(encoding="utf-8").splitlines()
    }
    assert document["retired"] in served and document["retired"] not in after
    assert document["versions"]["new"] in after
    [sums] = list((chain_workspace / "archive").glob("*/SHA256SUMS"))
    (sums.parent / "model.pkl").write_bytes(b"tampered")
    rewrite(chain_workspace, estimate=document["estimate"] + 0.01)
    found = CHECKS["retired"](chain_workspace).messages
    assert any("the archive changed" in m for m in found), found
    assert any("iteration/comparison.json: estimate: expected" in m for m in found), found
