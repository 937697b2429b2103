"""The course's PSI and the `monitored` check (stage 06)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

import checker
from checker import monitoring
from checker.metrics import percentile, psi
from tests.helpers.monitoring import build_monitoring_workspace, write_report
from tests.helpers.untrusted import failed

REPORT = "monitoring/report.json"


def check(ws: Path) -> checker.CheckResult:
    return checker.check("monitored", ws).results[0]


def messages(ws: Path) -> str:
    return "\n".join(failed("monitored", ws).messages)


def term(p: float, q: float) -> float:
    return (q - p) * math.log(q / p)


def test_serving_figures() -> None:
    records = [
        {"latency_ms": float(i), "status": 500 if i == 3 else 200, "fallback": i == 7}
        for i in range(1, 21)
    ]
    assert percentile((r["latency_ms"] for r in records), 95) == pytest.approx(19.05)
    assert monitoring.error_rate(records) == pytest.approx(2 / 20)


# --- the check ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def monitoring_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_monitoring_workspace(tmp_path_factory.mktemp("monitoring") / "workspace")


@pytest.fixture
def ws(monitoring_template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(monitoring_template, tmp_path / "workspace", symlinks=True))


def load(ws: Path) -> dict:
    return json.loads((ws / REPORT).read_text())


def edit(ws: Path, change) -> None:
    report = load(ws)
    change(report)
    write_report(ws, report)


def alert(report: dict, rule: str) -> dict:
    return next(a for a in report["alerts"] if a["rule"] == rule)


def test_valid_workspace_passes(ws: Path) -> None:
    result = check(ws)
    assert result.passed, result.messages
    assert result.points == result.max_points == 10


def test_valid_report_says_code_module_drifts_most(ws: Path) -> None:
    features = load(ws)["features"]
    assert max(features, key=lambda f: features[f]["psi"]) == "code_module"
    assert features["code_module"]["psi"] > 1.0
    assert features["gender"]["psi"] < 0.1


def test_check_never_writes(ws: Path) -> None:
    def snapshot() -> dict:
        return {
            p.relative_to(ws): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(ws.rglob("*"))
            if p.is_file()
        }

    before = snapshot()
    check(ws)
    assert snapshot() == before


def test_tampered_psi_fails(ws: Path) -> None:
    edit(ws, lambda r: r["features"]["gender"].update(psi=0.5))
    assert "monitoring/report.json: features.gender.psi: expected 0.00" in messages(ws)
    assert "recomputed from the splits" in messages(ws)


def test_psi_within_tolerance_passes(ws: Path) -> None:
    edit(ws, lambda r: r["features"]["gender"].update(psi=r["features"]["gender"]["psi"] + 5e-7))
    assert check(ws).passed


def psi_without_the_missing_bin(reference: pd.Series, current: pd.Series) -> float:
    """A plausible mistake: the course's PSI over the non-missing values only."""
    return psi(reference.dropna(), current.dropna())


def test_a_psi_without_the_missing_bin_fails(ws: Path) -> None:
    """The report is consistent with itself (the alert carries the learner's largest PSI), but
    every PSI leaves the missing values out; on features with missing values that is off by
    less than 0.01 yet far more than the tolerance, the tolerance of exercise 09's hidden tests."""
    manifest = json.loads((ws / "data" / "manifest.json").read_text())
    train, production = (
        pd.read_csv(ws / manifest["splits"][n]["path"]) for n in ("train", "production")
    )

    def wrong(report: dict) -> None:
        for column, entry in report["features"].items():
            entry["psi"] = psi_without_the_missing_bin(train[column], production[column])
        alert(report, "feature_psi_max")["value"] = max(
            e["psi"] for e in report["features"].values()
        )

    edit(ws, wrong)
    result = check(ws)
    assert not result.passed and "06-monitoring.ipynb" in result.hint
    offenders = [m for m in result.messages if ".psi: expected" in m]
    assert offenders and all("missing values in a bin of their own" in m for m in offenders)
    for column in ("imd_band", "score_mean_60"):
        expected = psi(train[column], production[column])
        found = psi_without_the_missing_bin(train[column], production[column])
        assert 1e-6 < abs(expected - found) < 0.01  # inside the old tolerance, outside the new
        assert any(m.startswith(f"{REPORT}: features.{column}.psi: expected") for m in offenders)


def test_missing_feature_fails(ws: Path) -> None:
    edit(ws, lambda r: r["features"].pop("imd_band"))
    text = messages(ws)
    assert "features: expected every feature in data/manifest.json, found no imd_band" in text


def test_unknown_feature_fails(ws: Path) -> None:
    edit(ws, lambda r: r["features"].update(shoe_size={"psi": 0, "ks_stat": 0, "ks_pvalue": 1}))
    assert "features.shoe_size: expected a column of the train and production splits" in messages(
        ws
    )


def test_ks_of_a_categorical_column_must_be_null(ws: Path) -> None:
    edit(ws, lambda r: r["features"]["gender"].update(ks_stat=0.1, ks_pvalue=0.5))
    assert "features.gender.ks_stat: expected null for a categorical column" in messages(ws)


def test_tampered_ks_fails(ws: Path) -> None:
    edit(ws, lambda r: r["features"]["studied_credits"].update(ks_stat=0.9))
    assert "features.studied_credits.ks_stat: expected 0.0" in messages(ws)


def test_alert_fired_inconsistent_fails(ws: Path) -> None:
    edit(ws, lambda r: alert(r, "prediction_psi").update(fired=True))
    text = messages(ws)
    assert "alerts[1] (prediction_psi).fired: expected false (value" in text
    assert "<= threshold 0.25), found true" in text


def test_alert_value_must_be_the_recomputed_figure(ws: Path) -> None:
    edit(ws, lambda r: alert(r, "feature_psi_max").update(value=0.2, fired=False))
    assert "alerts[0] (feature_psi_max).value: expected 1.7" in messages(ws)


def test_keep_despite_a_fired_alert_fails(ws: Path) -> None:
    edit(ws, lambda r: r.update(decision="keep"))
    text = messages(ws)
    assert "decision: expected retrain or rollback because alerts fired (feature_psi_max" in text


def test_retrain_when_a_serving_alert_fired_fails(ws: Path) -> None:
    def slow(report: dict) -> None:
        alert(report, "latency_p95_ms").update(threshold=0.001, fired=True)
        report["decision"] = "retrain"

    edit(ws, slow)
    (ws / "problem.yaml").write_text(
        (ws / "problem.yaml").read_text().replace("latency_p95_ms: 200", "latency_p95_ms: 0.001")
    )
    result = check(ws)
    assert "06-monitoring.ipynb" in result.hint
    assert result.messages == [
        f"{REPORT}: decision: expected 'rollback' because a serving alert fired "
        "(latency_p95_ms): users are hurt now, so roll back first, then retrain; found 'retrain'"
    ]


def test_rollback_when_a_serving_alert_fired_passes(ws: Path) -> None:
    def slow(report: dict) -> None:
        alert(report, "latency_p95_ms").update(threshold=0.001, fired=True)
        report["decision"] = "rollback"

    edit(ws, slow)
    (ws / "problem.yaml").write_text(
        (ws / "problem.yaml").read_text().replace("latency_p95_ms: 200", "latency_p95_ms: 0.001")
    )
    assert check(ws).passed, check(ws).messages


def test_keep_without_fired_alerts_passes(ws: Path) -> None:
    def quiet(report: dict) -> None:
        for a in report["alerts"]:
            a["threshold"] = max(a["threshold"], a["value"] + 1)
            a["fired"] = False
        report["decision"] = "keep"

    edit(ws, quiet)
    assert check(ws).passed


def test_bad_decision_value_fails(ws: Path) -> None:
    edit(ws, lambda r: r.update(decision="panic"))
    assert (
        "monitoring/report.json: decision: expected one of retrain, rollback, keep, found 'panic'"
        in (messages(ws))
    )


def test_missing_required_rule_fails(ws: Path) -> None:
    edit(ws, lambda r: r.update(alerts=[a for a in r["alerts"] if a["rule"] != "auc_drop"]))
    assert "alerts: expected the rules feature_psi_max, prediction_psi, auc_drop" in messages(ws)
    assert "found no auc_drop" in messages(ws)


def test_duplicate_rule_fails(ws: Path) -> None:
    edit(ws, lambda r: r["alerts"].append(dict(r["alerts"][0])))
    assert "alerts: expected each rule once, found 'feature_psi_max' 2 times" in messages(ws)


def test_latency_threshold_must_be_the_budget(ws: Path) -> None:
    edit(ws, lambda r: alert(r, "latency_p95_ms").update(threshold=1000))
    assert (
        "(latency_p95_ms).threshold: expected 200 (constraints.latency_p95_ms in problem.yaml)"
        in (messages(ws))
    )


def test_report_missing_fails(ws: Path) -> None:
    (ws / REPORT).unlink()
    assert (
        messages(ws)
        == "monitoring/report.json: file monitoring/report.json not found in the workspace"
    )


def test_non_finite_number_fails(ws: Path) -> None:
    text = (ws / REPORT).read_text()
    (ws / REPORT).write_text(
        text.replace('"prediction_psi": 0.', '"prediction_psi": NaN, "x": 0.', 1)
    )
    assert "monitoring/report.json: expected valid JSON, found NaN is not allowed" in messages(ws)


def test_bad_json_fails(ws: Path) -> None:
    (ws / REPORT).write_text('{"reference": "train",')
    assert "monitoring/report.json: expected valid JSON, found a syntax error" in messages(ws)


def test_schema_problems_are_named(ws: Path) -> None:
    edit(ws, lambda r: (r.pop("serving"), r.update(reference="valid")))
    text = messages(ws)
    assert "monitoring/report.json: serving: expected this field, found it missing" in text
    assert "monitoring/report.json: reference: expected 'train', found 'valid'" in text


def test_path_escape_in_the_manifest_fails(ws: Path) -> None:
    manifest = json.loads((ws / "data/manifest.json").read_text())
    manifest["splits"]["production"]["path"] = "../../etc/passwd"
    (ws / "data/manifest.json").write_text(json.dumps(manifest))
    assert messages(ws) == (
        "data/manifest.json: splits.production.path: expected a path relative to the workspace "
        "without '..', found '../../etc/passwd'"
    )


def test_symlink_out_of_the_workspace_fails(ws: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.json"
    shutil.move(ws / REPORT, outside)
    os.symlink(outside, ws / REPORT)
    assert "monitoring/report.json leads outside the workspace" in messages(ws)


def test_manifest_without_features_fails(ws: Path) -> None:
    manifest = json.loads((ws / "data/manifest.json").read_text())
    del manifest["features"]
    (ws / "data/manifest.json").write_text(json.dumps(manifest))
    assert "data/manifest.json: features: expected the list of feature columns, found None" in (
        messages(ws)
    )


def test_tampered_prediction_psi_fails(ws: Path) -> None:
    edit(ws, lambda r: r.update(prediction_psi=r["prediction_psi"] + 0.2))
    assert "prediction_psi: expected 0.0" in messages(ws)
    assert "(PSI of the train vs production y_score in monitoring/scores.csv.gz)" in messages(ws)


def test_tampered_decay_fails(ws: Path) -> None:
    def tamper(report: dict) -> None:
        report["decay"][0]["roc_auc"] = 0.99
        report["decay"][1]["rows"] += 1

    edit(ws, tamper)
    text = messages(ws)
    assert "decay[2014B].roc_auc: expected 0.7" in text
    assert "decay[2014J].rows: expected" in text


def test_decay_must_cover_each_presentation(ws: Path) -> None:
    edit(ws, lambda r: r["decay"].pop())
    assert "decay: expected one entry per production presentation ['2014B', '2014J']" in messages(
        ws
    )


def test_scores_must_follow_the_split(ws: Path) -> None:
    scores = pd.read_csv(ws / monitoring.SCORES)
    train = scores["split"] == "train"
    scores.loc[train, "y_true"] = 1 - scores.loc[train, "y_true"]
    scores.to_csv(ws / monitoring.SCORES, index=False, compression={"method": "gzip", "mtime": 0})
    assert "monitoring/scores.csv.gz: split train: y_true: expected the at_risk column" in messages(
        ws
    )


def test_scores_missing_fails(ws: Path) -> None:
    (ws / monitoring.SCORES).unlink()
    assert "monitoring/scores.csv.gz: file monitoring/scores.csv.gz not found" in messages(ws)


def test_tampered_p95_fails(ws: Path) -> None:
    edit(ws, lambda r: r["serving"].update(p95_ms=r["serving"]["p95_ms"] / 2))
    assert "serving.p95_ms: expected 24.38" in messages(ws)
    assert "(recomputed from serving/requests.jsonl)" in messages(ws)


def test_error_rate_counts_server_errors_and_fallbacks(ws: Path) -> None:
    log = ws / monitoring.REQUESTS
    records = [json.loads(line) for line in log.read_text().splitlines()]
    records[0]["status"] = 503
    log.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert "serving.error_rate: expected 0.0125 (recomputed from serving/requests.jsonl)" in (
        messages(ws)
    )


def test_without_a_request_log_serving_must_be_null(ws: Path) -> None:
    (ws / monitoring.REQUESTS).unlink()
    assert "serving.p95_ms: expected null (serving/requests.jsonl does not exist)" in messages(ws)

    def no_serving(report: dict) -> None:
        report["serving"] = {"p95_ms": None, "error_rate": None}
        report["alerts"] = [a for a in report["alerts"] if a["rule"] in monitoring.REQUIRED_RULES]

    edit(ws, no_serving)
    assert check(ws).passed


def test_bad_request_log_line_fails(ws: Path) -> None:
    log = ws / monitoring.REQUESTS
    bad = json.loads(log.read_text().splitlines()[-1]) | {"latency_ms": -1}
    log.write_text(log.read_text() + json.dumps(bad) + "\n")
    assert "serving/requests.jsonl: line 401: latency_ms: expected at least 0, found -1" in (
        messages(ws)
    )
    log.write_text("not json\n")
    assert "serving/requests.jsonl: line 1: expected valid JSON" in messages(ws)


# --- the real chain -----------------------------------------------------------------------------


@pytest.mark.slow
def test_monitored_passes_on_the_solution_chain(chain_workspace: Path) -> None:
    result = check(chain_workspace)
    assert result.passed, result.messages
    report = load(chain_workspace)
    features = report["features"]
    assert max(features, key=lambda f: features[f]["psi"]) == "code_module"
    assert report["decision"] in {"retrain", "rollback"}


def test_tampered_recall_fails(ws: Path) -> None:
    edit(ws, lambda r: r["decay"][1].update(recall_at_budget=0.95))
    assert "decay[2014J].recall_at_budget: expected 0.4" in messages(ws)


# --- concept drift: calibration, prediction drift by presentation, the slice table -------------

SLICES = "monitoring/slices.csv"
HINT = "06-monitoring.ipynb"


def slice_frame(ws: Path) -> pd.DataFrame:
    return pd.read_csv(ws / SLICES)


def failing(ws: Path) -> list[str]:
    result = check(ws)
    assert not result.passed and HINT in result.hint
    return result.messages


def test_the_valid_report_names_score_mean_60_in_bbb_2014j(ws: Path) -> None:
    """On the CI sample (0.3) the course's criterion still finds the drift of the full data."""
    drift = load(ws)["concept_drift"]
    assert drift["feature"] == "score_mean_60"
    assert drift["slice"] == {"code_module": "BBB", "code_presentation": "2014J"}
    assert drift["concept_shift"] > 0.1 and drift["psi"] > 0.5
    assert alert(load(ws), "concept_drift")["fired"] is True
    assert list(slice_frame(ws).columns) == list(monitoring.SLICE_COLUMNS)
    manifest = json.loads((ws / "data" / "manifest.json").read_text())
    train, production = (
        pd.read_csv(ws / manifest["splits"][n]["path"]) for n in ("train", "production")
    )
    assert psi(train["score_mean_60"], production["score_mean_60"]) < 0.1  # "stable" overall


def runner_up(ws: Path) -> pd.Series:
    table = slice_frame(ws)
    eligible = table[
        (table["rows"] >= monitoring.MIN_SLICE_ROWS)
        & (table["reference_rows"] >= monitoring.MIN_REFERENCE_ROWS)
    ].sort_values("concept_shift", ascending=False)
    return eligible.iloc[1]


def point_at(report: dict, row: pd.Series) -> None:
    """The learner's concept drift, consistent with the table, but for another row."""
    report["concept_drift"].update(
        feature=row["feature"],
        slice={"code_module": row["code_module"], "code_presentation": row["code_presentation"]},
        rows=int(row["rows"]),
        **{k: float(row[k]) for k in ("psi", "relation_auc_reference", "relation_auc")},
        concept_shift=float(row["concept_shift"]),
    )


def test_a_slice_that_is_not_the_largest_shift_fails(ws: Path) -> None:
    second = runner_up(ws)
    edit(ws, lambda r: point_at(r, second))
    [message] = failing(ws)
    assert message.startswith(
        f"{REPORT}: concept_drift: expected feature 'score_mean_60' in slice BBB 2014J (the "
        "largest concept_shift, 0.1"
    )
    assert (
        "among slices with at least 300 production rows and 100 train rows of their module"
        in message
    )
    assert (
        f"found feature {second['feature']!r} in slice {second['code_module']} "
        f"{second['code_presentation']} (concept_shift {second['concept_shift']:.4f})"
    ) in message


def test_the_largest_shift_of_a_slice_too_small_to_judge_fails(ws: Path) -> None:
    """Without the minimum row count, noise can win: a small slice is not eligible."""
    table = slice_frame(ws)
    small = table[table["rows"] < monitoring.MIN_SLICE_ROWS].dropna(subset=["concept_shift"])
    row = small.sort_values("concept_shift", ascending=False).iloc[0]
    edit(ws, lambda r: point_at(r, row))
    [message] = failing(ws)
    assert "expected feature 'score_mean_60' in slice BBB 2014J" in message
    assert message.endswith("(not eligible)")


def test_the_minimum_row_counts_are_the_courses(ws: Path) -> None:
    edit(ws, lambda r: r["concept_drift"].update(min_rows=50))
    assert failing(ws) == [
        f"{REPORT}: concept_drift.min_rows: expected 300 (the course's minimum, so that noise in "
        "a small slice cannot win), found 50"
    ]


def test_a_slice_that_does_not_exist_fails(ws: Path) -> None:
    edit(ws, lambda r: r["concept_drift"]["slice"].update(code_module="ZZZ"))
    [message] = failing(ws)
    assert "which is not a manifest feature in a production slice" in message


def test_the_numbers_behind_the_choice_must_be_the_tables(ws: Path) -> None:
    edit(ws, lambda r: r["concept_drift"].update(psi=0.08))
    [message] = failing(ws)
    assert message.startswith(f"{REPORT}: concept_drift.psi: expected 0.9")
    assert "(the slice table's BBB 2014J score_mean_60, recomputed), found 0.08" in message


def test_the_rows_behind_the_choice_must_be_the_tables(ws: Path) -> None:
    edit(ws, lambda r: r["concept_drift"].update(rows=1000))
    [message] = failing(ws)
    assert message.startswith(f"{REPORT}: concept_drift.rows: expected 554 (the slice table's")
    assert message.endswith("found 1000")


def test_concept_drift_is_required(ws: Path) -> None:
    edit(ws, lambda r: r.pop("concept_drift"))
    assert f"{REPORT}: concept_drift: expected this field, found it missing" in failing(ws)


def test_a_slice_table_number_off_fails(ws: Path) -> None:
    table = slice_frame(ws)
    at = table.index[(table["code_module"] == "BBB") & (table["code_presentation"] == "2014J")
                     & (table["feature"] == "score_mean_60")][0]  # fmt: skip
    expected = table.loc[at, "psi"]
    table.loc[at, "psi"] = 0.08
    table.to_csv(ws / SLICES, index=False)
    assert failing(ws) == [
        f"{SLICES}: row {at + 2} (BBB 2014J score_mean_60): psi: expected {expected:.6f} "
        "(tolerance 1e-06), recomputed from the split files and monitoring/scores.csv.gz, "
        "found np.float64(0.08)"
    ]


def test_a_figure_that_is_undefined_must_be_empty(ws: Path) -> None:
    """A module new in 2014 (CCC) has no 2013 relation to lose."""
    table = slice_frame(ws)
    at = table.index[table["code_module"] == "CCC"][0]
    table.loc[at, "relation_auc_reference"] = 0.5
    table.to_csv(ws / SLICES, index=False)
    [message] = failing(ws)
    assert message.startswith(f"{SLICES}: row {at + 2} (CCC ")
    assert (
        "relation_auc_reference: expected empty (undefined: one class only, or no train rows of the module)"
        in message
    )


def test_the_slice_table_needs_every_slice_and_feature(ws: Path) -> None:
    table = slice_frame(ws)
    table[table["feature"] != "gender"].to_csv(ws / SLICES, index=False)
    [message] = failing(ws)
    assert message.startswith(
        f"{SLICES}: rows: expected one row per production slice (code_module, code_presentation) "
        f"and manifest feature, {len(table)} rows, found {len(table) - 13}; missing AAA 2014J gender"
    )


def test_a_slice_table_with_text_for_numbers_gets_a_message(ws: Path) -> None:
    table = slice_frame(ws).astype({"rows": object})
    table.loc[0, "rows"] = "many"
    table.to_csv(ws / SLICES, index=False)
    [message] = failing(ws)
    assert message.startswith(f"{SLICES}: row 2 (AAA 2014J ")
    assert message.endswith(
        "rows: expected 98, recomputed from the split files and monitoring/scores.csv.gz, "
        "found 'many'"
    )


def test_the_slice_table_missing_fails(ws: Path) -> None:
    (ws / SLICES).unlink()
    assert f"{SLICES}: file {SLICES} not found in the workspace" in failing(ws)


def test_many_wrong_figures_are_counted_not_all_listed(ws: Path) -> None:
    table = slice_frame(ws)
    table["psi"] = table["psi"] + 1
    table.to_csv(ws / SLICES, index=False)
    messages = failing(ws)
    assert len(messages) == monitoring.MAX_ROW_MESSAGES + 1
    assert messages[-1] == (
        f"{SLICES}: and {len(table) - monitoring.MAX_ROW_MESSAGES} more figures differ from the "
        "recomputed slice table"
    )


def test_the_concept_drift_rule_must_follow_its_value(ws: Path) -> None:
    edit(ws, lambda r: alert(r, "concept_drift").update(fired=False))
    text = messages(ws)
    assert "(concept_drift).fired: expected true (value 0.1" in text
    assert "> threshold 0.05), found false" in text


def test_the_concept_drift_rule_carries_the_largest_shift(ws: Path) -> None:
    edit(ws, lambda r: alert(r, "concept_drift").update(value=0.01, fired=False))
    assert "(concept_drift).value: expected 0.1" in messages(ws)


def test_the_concept_drift_rule_is_required(ws: Path) -> None:
    edit(ws, lambda r: r.update(alerts=[a for a in r["alerts"] if a["rule"] != "concept_drift"]))
    assert "found no concept_drift" in messages(ws)


def test_keep_when_only_concept_drift_fired_fails(ws: Path) -> None:
    def only_concept_drift(report: dict) -> None:
        for a in report["alerts"]:
            if a["rule"] != "concept_drift" and a["fired"]:
                a["threshold"], a["fired"] = a["value"] + 1, False
        report["decision"] = "keep"

    edit(ws, only_concept_drift)
    assert failing(ws) == [
        f"{REPORT}: decision: expected retrain or rollback because alerts fired (concept_drift), "
        "found 'keep'"
    ]


def test_tampered_calibration_fails(ws: Path) -> None:
    def tamper(report: dict) -> None:
        report["calibration"][1]["bins"][0]["count"] += 3

    edit(ws, tamper)
    [message] = failing(ws)
    assert message.startswith(f"{REPORT}: calibration[2014J].bins[0].count: expected ")
    assert "(recomputed from the 2014J rows of monitoring/scores.csv.gz)" in message


def test_calibration_needs_each_presentation(ws: Path) -> None:
    edit(ws, lambda r: r["calibration"].pop())
    assert failing(ws) == [
        f"{REPORT}: calibration: expected one entry per production presentation "
        "['2014B', '2014J'], found ['2014B']"
    ]


def test_calibration_bins_must_be_the_courses(ws: Path) -> None:
    edit(ws, lambda r: r["calibration"][0]["bins"].pop(0))
    [message] = failing(ws)
    assert message.startswith(
        f"{REPORT}: calibration[2014B].bins: expected the non-empty bins of width 0.1 starting at"
    )


def test_tampered_prediction_psi_by_presentation_fails(ws: Path) -> None:
    edit(ws, lambda r: r["prediction_psi_by_presentation"].update({"2014J": 0.3}))
    [message] = failing(ws)
    assert message.startswith(f"{REPORT}: prediction_psi_by_presentation.2014J: expected 0.0")
    assert (
        "(PSI of the train y_score vs the 2014J y_score in monitoring/scores.csv.gz), found 0.3"
        in message
    )


def test_prediction_psi_by_presentation_needs_each_presentation(ws: Path) -> None:
    edit(ws, lambda r: r["prediction_psi_by_presentation"].pop("2014B"))
    assert failing(ws) == [
        f"{REPORT}: prediction_psi_by_presentation: expected one entry per production "
        "presentation ['2014B', '2014J'], found ['2014J']"
    ]


def test_splits_without_the_slice_columns_get_a_message(ws: Path) -> None:
    manifest = json.loads((ws / "data/manifest.json").read_text())
    rel = manifest["splits"]["production"]["path"]
    frame = pd.read_csv(ws / rel).rename(columns={"code_module": "module"})
    frame.to_csv(ws / rel, index=False, compression={"method": "gzip", "mtime": 0})
    text = messages(ws)
    assert (
        f"{rel}: columns: expected code_module, code_presentation (the slices of the monitoring, kept by 02-data-preparation.ipynb), found no code_module"
        in text
    )
