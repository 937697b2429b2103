"""The `evaluated` check (checker/evaluation.py): a valid evaluation passes, and every way of
breaking `evaluation/` (a number that does not recompute, predictions that are not the test
split, hostile files) fails with a message naming the file and the field."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import checker
from checker import evaluation
from checker.evaluation import evaluated
from tests.helpers.evaluation import (
    BASELINE_PREDICTIONS,
    BUDGET,
    PREDICTIONS,
    REPORT,
    VALID_SCORES,
    build_evaluation,
    load_baseline,
    load_predictions,
    load_report,
    recompute_uncertainty,
    write_baseline,
    write_predictions,
    write_report,
)
from tests.helpers.untrusted import edit_manifest, failed, snapshot
from tests.helpers.untrusted import fails_with as check_fails_with


@pytest.fixture(scope="module")
def evaluation_template(valid_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("evaluation") / "workspace"
    ws = Path(shutil.copytree(valid_template, root, symlinks=True))
    build_evaluation(ws)
    return ws


@pytest.fixture
def ws(evaluation_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of a workspace with a valid evaluation, for a test to break."""
    return Path(shutil.copytree(evaluation_template, tmp_path / "workspace", symlinks=True))


def messages(ws: Path) -> list[str]:
    return failed("evaluated", ws, seconds=20).messages


def fails_with(ws: Path, *fragments: str) -> str:
    return check_fails_with("evaluated", ws, *fragments, seconds=20)


def edit_report(ws: Path, change: Callable[[dict], None]) -> None:
    report = load_report(ws)
    change(report)
    write_report(ws, report)


# --- the valid evaluation --------------------------------------------------------------------


def test_a_valid_evaluation_passes(ws: Path):
    result = evaluated(ws)
    assert result.passed, result.messages
    assert result.points == result.max_points == 10


def test_it_is_registered_and_runs_through_check_all(ws: Path):
    report = checker.check_all(ws, only=["evaluated"])
    assert report.passed, report.failures()


def test_the_check_never_modifies_the_workspace(ws: Path):
    before = snapshot(ws)
    evaluated(ws)
    edit_report(ws, lambda r: r["metrics"].update(roc_auc=0.99))
    before = snapshot(ws)
    evaluated(ws)
    assert snapshot(ws) == before


def test_a_workspace_without_problem_yaml_is_checked_against_the_report_alone(ws: Path):
    (ws / "problem.yaml").unlink()
    assert evaluated(ws).passed


def test_the_report_may_carry_more_than_the_contract(ws: Path):
    edit_report(ws, lambda r: r.update(notes="reviewed by the data team", rows=1))
    edit_report(ws, lambda r: r["metrics"].update(log_loss=0.5))
    assert evaluated(ws).passed


# --- numbers that do not recompute -----------------------------------------------------------


@pytest.mark.parametrize(
    "metric", ["accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "brier"]
)
def test_a_tampered_metric_fails(ws: Path, metric: str):
    report = load_report(ws)
    true = report["metrics"][metric]
    report["metrics"][metric] = round(true + 0.01 if true < 0.9 else true - 0.01, 6)
    write_report(ws, report)
    fails_with(
        ws, f"{REPORT}: metrics.{metric}: expected {true:.6f} (recomputed from {PREDICTIONS})"
    )


def test_a_metric_off_by_less_than_the_tolerance_passes(ws: Path):
    edit_report(ws, lambda r: r["metrics"].update(roc_auc=r["metrics"]["roc_auc"] + 5e-7))
    assert evaluated(ws).passed


def test_a_tampered_recall_at_budget_fails(ws: Path):
    edit_report(ws, lambda r: r["metrics"].update(recall_at_budget=0.99))
    fails_with(
        ws,
        f"{REPORT}: metrics.recall_at_budget: expected ",
        "learners with the highest y_score",
        "found 0.99",
    )


def test_recall_at_budget_may_round_the_number_of_calls_either_way(ws: Path):
    pred = load_predictions(ws)
    y, s = pred["y_true"].to_numpy(), pred["y_score"].to_numpy()
    calls = 0.3 * len(y)
    for k in (int(np.floor(calls)), int(np.ceil(calls))):
        top = np.argsort(-s, kind="stable")[:k]
        value = float(y[top].sum() / y.sum())

        def use(report: dict, value: float = value) -> None:
            report["metrics"]["recall_at_budget"] = value
            report["robustness"]["clean"]["recall_at_budget"] = value
            report["success"].update(value=value, met=value >= report["success"]["target"])

        edit_report(ws, use)
        assert evaluated(ws).passed, (k, evaluated(ws).messages)


def test_a_wrong_confusion_matrix_fails(ws: Path):
    report = load_report(ws)
    tp = report["confusion_matrix"]["tp"]
    report["confusion_matrix"]["tp"] = tp + 5
    write_report(ws, report)
    fails_with(ws, f"{REPORT}: confusion_matrix.tp: expected {tp} (recomputed", f"found {tp + 5}")


def test_tampered_calibration_bins_fail(ws: Path):
    edit_report(ws, lambda r: r["calibration"]["bins"][0].update(fraction_positive=0.5))
    fails_with(ws, f"{REPORT}: calibration.bins[0].fraction_positive: expected")


def test_calibration_with_a_bin_left_out_fails(ws: Path):
    edit_report(ws, lambda r: r["calibration"]["bins"].pop(0))
    fails_with(ws, f"{REPORT}: calibration.bins: expected the non-empty bins of width 0.1")


def test_a_fake_group_gap_fails(ws: Path):
    report = load_report(ws)
    gap = report["groups"]["imd_band"]["gap"]
    assert gap > 0.1  # deprivation bands differ in this made-up evaluation
    report["groups"]["imd_band"].update(gap=0.05, within_limit=True)
    write_report(ws, report)
    fails_with(
        ws, f"{REPORT}: groups.imd_band.gap: expected {gap:.6f} (the largest minus the smallest"
    )


def test_a_fake_group_value_fails(ws: Path):
    edit_report(ws, lambda r: r["groups"]["disability"]["values"].update(Y=1.0))
    fails_with(ws, f"{REPORT}: groups.disability.values.Y: expected", "recall recomputed")


def test_a_group_too_small_to_measure_may_not_enter_the_gap(ws: Path):
    # age_band 55<= has fewer than 10 at-risk learners in the test split
    edit_report(ws, lambda r: r["groups"]["age_band"]["values"].update({"55<=": 0.0}))
    fails_with(
        ws,
        f"{REPORT}: groups.age_band.values: expected the groups with at least 10 positive learners",
    )


def test_learners_without_an_attribute_are_a_group_of_their_own(ws: Path):
    report = load_report(ws)
    assert "missing" in report["groups"]["imd_band"]["values"]
    edit_report(ws, lambda r: r["groups"]["imd_band"]["values"].pop("missing"))
    fails_with(ws, f"{REPORT}: groups.imd_band.values: expected the groups", "'missing'")


def test_a_gap_within_limit_that_is_not_fails(ws: Path):
    edit_report(ws, lambda r: r["groups"]["imd_band"].update(within_limit=True))
    fails_with(ws, f"{REPORT}: groups.imd_band.within_limit: expected false (gap 0.1")


def test_a_gap_judged_against_a_limit_of_its_own_is_consistent_without_problem_yaml(ws: Path):
    (ws / "problem.yaml").unlink()
    edit_report(ws, lambda r: r["groups"]["imd_band"].update(max_gap=0.5))
    assert not evaluated(ws).passed  # within_limit false, but 0.18 <= 0.5
    edit_report(ws, lambda r: r["groups"]["imd_band"].update(within_limit=True))
    recompute_uncertainty(ws)  # the gate judges each gap against its own limit
    assert evaluated(ws).passed


def test_a_fairness_limit_other_than_problem_yaml_fails(ws: Path):
    edit_report(ws, lambda r: r["groups"]["gender"].update(max_gap=0.5))
    fails_with(
        ws,
        f"{REPORT}: groups.gender.max_gap: expected 0.1 (problem.yaml constraints.max_fairness_gap)",
    )


def test_fewer_than_two_sensitive_attributes_fail(ws: Path):
    edit_report(ws, lambda r: r.update(groups={"gender": r["groups"]["gender"]}))
    fails_with(ws, f"{REPORT}: groups: expected")


def test_a_clean_scenario_unlike_the_metrics_fails(ws: Path):
    edit_report(ws, lambda r: r["robustness"]["clean"].update(roc_auc=0.99))
    fails_with(ws, f"{REPORT}: robustness.clean.roc_auc: expected")


def test_a_tampered_drift_statistic_fails(ws: Path):
    edit_report(
        ws,
        lambda r: r["drift"]["splits"]["test"]["features"]["studied_credits"].update(ks_stat=0.5),
    )
    fails_with(
        ws,
        f"{REPORT}: drift.splits.test.features.studied_credits.ks_stat: expected",
        "recomputed from the split files",
    )


def test_a_drifted_list_that_ignores_the_p_values_fails(ws: Path):
    edit_report(ws, lambda r: r["drift"]["splits"]["production"].update(drifted=[]))
    report = load_report(ws)
    if not any(
        s["ks_pvalue"] < 0.01 for s in report["drift"]["splits"]["production"]["features"].values()
    ):
        edit_report(ws, lambda r: r["drift"]["splits"]["production"].update(drifted=["x"]))
    fails_with(ws, f"{REPORT}: drift.splits.production.drifted: expected the features")


def test_drift_against_a_split_the_manifest_does_not_name_fails(ws: Path):
    edit_report(ws, lambda r: r["drift"].update(reference="everything"))
    fails_with(ws, f"{REPORT}: drift: expected splits named in data/manifest.json")


def test_a_data_version_other_than_the_manifests_fails(ws: Path):
    edit_report(ws, lambda r: r.update(data_version="0" * 64))
    fails_with(ws, f"{REPORT}: data_version: expected", f"found {'0' * 64}")


# --- problem.yaml ----------------------------------------------------------------------------


def test_a_success_metric_other_than_problem_yaml_fails(ws: Path):
    def swap(report: dict) -> None:
        report["success"].update(metric="roc_auc", value=report["metrics"]["roc_auc"])
        report["success"]["met"] = report["success"]["value"] >= report["success"]["target"]

    edit_report(ws, swap)
    fails_with(
        ws,
        f"{REPORT}: success.metric: expected 'recall_at_budget' (problem.yaml success.metric), "
        "found 'roc_auc'",
    )


def test_a_budget_other_than_problem_yaml_fails(ws: Path):
    edit_report(ws, lambda r: r.update(budget=0.2))
    fails_with(ws, f"{REPORT}: budget: expected 0.3 (problem.yaml success.budget), found 0.2")


def test_a_success_value_unlike_the_metric_fails(ws: Path):
    edit_report(ws, lambda r: r["success"].update(value=0.9, met=True))
    fails_with(ws, f"{REPORT}: success.value: expected")


def test_a_target_met_that_is_not_fails(ws: Path):
    edit_report(ws, lambda r: r["success"].update(met=not r["success"]["met"]))
    fails_with(ws, f"{REPORT}: success.met: expected")


# --- predictions that are not the test split --------------------------------------------------


def test_predictions_on_other_learners_fail(ws: Path):
    pred = load_predictions(ws)
    pred.loc[:9, "id_student"] = np.arange(10) + 9_000_000
    write_predictions(ws, pred)
    fails_with(
        ws,
        f"{PREDICTIONS}: id_student, code_presentation: expected the {len(pred)} rows of the test "
        "split (data/test.csv.gz)",
        "10 not in the test split (for example 9000000/",
        "10 test rows missing",
    )


def test_predictions_on_the_validation_split_fail(ws: Path):
    import pandas as pd

    valid = pd.read_csv(ws / "data" / "valid.csv.gz")
    pred = load_predictions(ws).head(len(valid)).copy()
    pred["id_student"] = valid["id_student"].to_numpy()[: len(pred)]
    write_predictions(ws, pred)
    fails_with(ws, f"{PREDICTIONS}: id_student, code_presentation: expected the")


def test_predictions_missing_a_learner_fail(ws: Path):
    write_predictions(ws, load_predictions(ws).iloc[1:])
    fails_with(ws, "0 not in the test split", "1 test rows missing")


def test_predictions_in_another_order_pass_with_the_baseline_and_intervals_in_that_order(ws: Path):
    order = np.random.default_rng(0).permutation(len(load_predictions(ws)))
    write_predictions(ws, load_predictions(ws).iloc[order])
    assert f"{BASELINE_PREDICTIONS}: id_student: expected the rows of {PREDICTIONS}" in "\n".join(
        messages(ws)
    )
    write_baseline(ws, load_baseline(ws).iloc[order])
    # the bootstrap resamples rows by position: intervals of the old order no longer recompute
    fails_with(ws, f"{REPORT}: uncertainty.success.low: expected")
    recompute_uncertainty(ws)
    assert evaluated(ws).passed, messages(ws)


def test_y_true_that_is_not_the_label_fails(ws: Path):
    pred = load_predictions(ws)
    pred.loc[:4, "y_true"] = 1 - pred.loc[:4, "y_true"]
    write_predictions(ws, pred)
    fails_with(
        ws, f"{PREDICTIONS}: y_true: expected the test split's at_risk on every row, found 5"
    )


def test_a_group_attribute_that_is_not_the_learners_fails(ws: Path):
    pred = load_predictions(ws)
    pred["gender"] = "F"
    write_predictions(ws, pred)
    fails_with(ws, f"{PREDICTIONS}: gender: expected the test split's gender on every row")


def test_nan_scores_fail(ws: Path):
    pred = load_predictions(ws)
    pred.loc[3, "y_score"] = np.nan
    write_predictions(ws, pred)
    fails_with(
        ws, f"{PREDICTIONS}: y_score: expected a probability in [0, 1] on every row, found 1"
    )


@pytest.mark.parametrize("bad", ["1.5", "-0.1", "inf", "high"])
def test_scores_that_are_not_probabilities_fail(ws: Path, bad: str):
    pred = load_predictions(ws).astype({"y_score": object})
    pred.loc[0, "y_score"] = bad
    write_predictions(ws, pred)
    fails_with(ws, f"{PREDICTIONS}: y_score: expected a probability in [0, 1]")


def test_labels_that_are_not_zero_or_one_fail(ws: Path):
    pred = load_predictions(ws)
    pred.loc[0, "y_pred"] = 2
    write_predictions(ws, pred)
    fails_with(ws, f"{PREDICTIONS}: y_pred: expected 0 or 1 on every row, found 1 other values")


def test_decisions_that_do_not_follow_the_threshold_fail(ws: Path):
    pred = load_predictions(ws)
    pred["y_pred"] = 1 - pred["y_pred"]
    write_predictions(ws, pred)
    fails_with(ws, f"{PREDICTIONS}: y_pred: expected 1 where y_score >= threshold")


# --- the threshold: chosen on the valid split, from the budget ---------------------------------


def test_a_threshold_tuned_on_the_test_split_fails(ws: Path):
    """The report is consistent with itself (y_pred, metrics, groups all follow the threshold),
    but the threshold is the test scores' quantile: the test split chose it."""
    build_evaluation(ws, choose_threshold=lambda valid, test: float(np.quantile(test, 0.72)))
    [message] = messages(ws)
    assert message.startswith(f"{REPORT}: threshold: expected the 1 - budget quantile of the valid")
    assert f"y_score in {VALID_SCORES} at 0.7:" in message
    assert "against a budget of 30%" in message and "never on test" in message


def test_a_threshold_at_the_wrong_quantile_fails_and_says_how_many_it_flags(ws: Path):
    build_evaluation(ws, choose_threshold=lambda valid, test: float(np.quantile(valid, BUDGET)))
    [message] = messages(ws)
    share = re.search(r"which flags (\d+\.\d)% of the valid learners", message)
    assert share and 65 < float(share.group(1)) < 75, message


@pytest.mark.parametrize("method", ["lower", "higher", "nearest", "midpoint"])
def test_a_threshold_by_another_quantile_method_passes(ws: Path, method: str):
    def chosen(valid: np.ndarray, test: np.ndarray) -> float:
        return float(np.quantile(valid, 1 - BUDGET, method=method))

    build_evaluation(ws, choose_threshold=chosen)
    assert evaluated(ws).passed


def test_a_threshold_from_a_top_k_cut_passes(ws: Path):
    def top_k(valid: np.ndarray, test: np.ndarray) -> float:
        return float(np.sort(valid)[::-1][math.ceil(BUDGET * len(valid)) - 1])

    build_evaluation(ws, choose_threshold=top_k)
    assert evaluated(ws).passed


def test_missing_valid_scores_fail(ws: Path):
    (ws / VALID_SCORES).unlink()
    fails_with(ws, VALID_SCORES)


def test_valid_scores_of_other_learners_fail(ws: Path):
    scores = pd.read_csv(ws / VALID_SCORES)
    scores.loc[0, "id_student"] = 1
    scores.to_csv(ws / VALID_SCORES, index=False)
    fails_with(ws, f"{VALID_SCORES}: id_student, code_presentation: expected the")


def test_valid_scores_that_are_not_probabilities_fail(ws: Path):
    scores = pd.read_csv(ws / VALID_SCORES)
    scores.loc[0, "y_score"] = 1.5
    scores.to_csv(ws / VALID_SCORES, index=False)
    fails_with(ws, f"{VALID_SCORES}: y_score: expected a probability in [0, 1]")


def test_valid_scores_with_other_labels_fail(ws: Path):
    scores = pd.read_csv(ws / VALID_SCORES)
    scores["y_true"] = 1 - scores["y_true"]
    scores.to_csv(ws / VALID_SCORES, index=False)
    fails_with(ws, f"{VALID_SCORES}: y_true: expected the valid split's at_risk")


def test_a_missing_column_fails(ws: Path):
    write_predictions(ws, load_predictions(ws).drop(columns=["y_pred"]))
    fails_with(
        ws, f"{PREDICTIONS}: columns: expected id_student, code_presentation", "found no y_pred"
    )


def test_a_group_attribute_missing_from_the_predictions_fails(ws: Path):
    write_predictions(ws, load_predictions(ws).drop(columns=["age_band"]))
    fails_with(ws, f"{PREDICTIONS}: columns: expected", "found no age_band")


def test_empty_predictions_fail(ws: Path):
    (ws / PREDICTIONS).write_text("", encoding="utf-8")
    fails_with(ws, f"{PREDICTIONS}: expected a readable CSV with a header row")


# --- the baseline on the test split (issue 10) -----------------------------------------------


def test_the_valid_evaluation_scores_the_baseline_and_gates_to_a_canary(ws: Path):
    report = load_report(ws)
    assert len(load_baseline(ws)) == len(load_predictions(ws))
    assert report["gate"]["verdict"] == "canary" and report["uncertainty"]["rounds"] == 200
    assert report["robustness_verdict"] == {
        "passed": False,
        "failed": ["gaussian_noise", "unseen_category"],
    }


@pytest.mark.parametrize("metric", ["roc_auc", "pr_auc", "brier", "recall_at_budget"])
def test_a_tampered_baseline_metric_fails(ws: Path, metric: str):
    edit_report(ws, lambda r: r["baseline"]["metrics"].update({metric: 0.999}))
    fails_with(ws, f"{REPORT}: baseline.metrics.{metric}: expected", BASELINE_PREDICTIONS)


def test_missing_baseline_predictions_fail(ws: Path):
    (ws / BASELINE_PREDICTIONS).unlink()
    fails_with(ws, f"{BASELINE_PREDICTIONS}: file {BASELINE_PREDICTIONS} not found")


def test_baseline_predictions_of_fewer_learners_fail(ws: Path):
    write_baseline(ws, load_baseline(ws).iloc[1:])
    fails_with(ws, f"{BASELINE_PREDICTIONS}: rows: expected the", "in the same order")


def test_baseline_scores_that_are_not_probabilities_fail(ws: Path):
    frame = load_baseline(ws).astype({"y_score": object})
    frame.loc[0, "y_score"] = "high"
    write_baseline(ws, frame)
    fails_with(ws, f"{BASELINE_PREDICTIONS}: y_score: expected a probability in [0, 1]")


def test_baseline_decisions_that_do_not_follow_its_threshold_fail(ws: Path):
    edit_report(ws, lambda r: r["baseline"].update(threshold=0.01))
    fails_with(
        ws, f"{BASELINE_PREDICTIONS}: y_pred: expected 1 where y_score >= baseline.threshold"
    )


def test_a_baseline_threshold_not_chosen_on_its_validation_scores_fails(ws: Path):
    frame = load_baseline(ws)
    threshold = float(np.quantile(frame["y_score"], 0.5))
    write_baseline(ws, frame.assign(y_pred=(frame["y_score"] >= threshold).astype(int)))
    edit_report(ws, lambda r: r["baseline"].update(threshold=threshold))
    recompute_uncertainty(ws)
    fails_with(
        ws,
        f"{REPORT}: baseline.threshold: expected the 1 - budget quantile of the valid scores",
        "baseline_score",
        "flags",
    )


def test_valid_scores_without_the_baselines_column_fail(ws: Path):
    scores = pd.read_csv(ws / VALID_SCORES).drop(columns=["baseline_score"])
    scores.to_csv(ws / VALID_SCORES, index=False)
    fails_with(ws, f"{VALID_SCORES}: columns: expected a column baseline_score")


def test_a_baseline_that_is_not_the_run_tagged_baseline_fails(ws: Path):
    edit_report(ws, lambda r: r["baseline"].update(run_id=r["model"]["run_id"]))
    fails_with(ws, f"{REPORT}: baseline.role: expected the run stage 05 registers as version 1")


def test_a_baseline_run_missing_from_the_store_fails(ws: Path):
    edit_report(ws, lambda r: r["baseline"].update(run_id="e" * 32))
    fails_with(ws, f"{REPORT}: baseline.run_id: expected a run in mlflow.db, found no run")


# --- the intervals, the comparison, the gate (issue 10) ----------------------------------------


def test_intervals_computed_with_fewer_rounds_than_recorded_fail(ws: Path):
    edit_report(ws, lambda r: r["uncertainty"].update(rounds=300))
    fails_with(ws, f"{REPORT}: uncertainty.success.low: expected", "300 rounds")
    fails_with(ws, f"{REPORT}: uncertainty.groups.gender.low: expected")


def test_intervals_computed_with_another_seed_than_recorded_fail(ws: Path):
    edit_report(ws, lambda r: r["uncertainty"].update(seed=43))
    fails_with(ws, f"{REPORT}: uncertainty.success.high: expected", "seed 43")


def test_intervals_recorded_with_their_own_seed_and_rounds_pass(ws: Path):
    recompute_uncertainty(ws, seed=7, rounds=250)
    assert evaluated(ws).passed, messages(ws)


def test_fewer_than_200_rounds_are_refused(ws: Path):
    recompute_uncertainty(ws, rounds=100)
    fails_with(ws, f"{REPORT}: uncertainty.rounds: expected at least 200 bootstrap rounds", "100")


def test_a_tampered_gap_interval_fails(ws: Path):
    edit_report(ws, lambda r: r["uncertainty"]["groups"]["imd_band"].update(low=0.0))
    fails_with(ws, f"{REPORT}: uncertainty.groups.imd_band.low: expected")


def test_a_tampered_gap_difference_with_the_baseline_fails(ws: Path):
    edit_report(
        ws, lambda r: r["uncertainty"]["groups"]["gender"]["versus_baseline"].update(high=0.9)
    )
    fails_with(ws, f"{REPORT}: uncertainty.groups.gender.versus_baseline.high: expected")


def test_an_interval_for_a_group_not_reported_is_missing_fails(ws: Path):
    edit_report(ws, lambda r: r["uncertainty"]["groups"].pop("age_band"))
    fails_with(ws, f"{REPORT}: uncertainty.groups: expected an interval for every attribute")


def test_a_tampered_paired_difference_fails(ws: Path):
    edit_report(ws, lambda r: r["comparison"].update(estimate=0.2))
    fails_with(ws, f"{REPORT}: comparison.estimate: expected", "paired bootstrap")


def test_a_candidate_claimed_better_than_the_interval_says_fails(ws: Path):
    edit_report(ws, lambda r: r["comparison"].update(better=True))
    fails_with(ws, f"{REPORT}: comparison.better: expected false")


def test_a_gate_verdict_that_does_not_follow_its_numbers_fails(ws: Path):
    edit_report(ws, lambda r: r["gate"].update(verdict="hold", reasons=["not sure"]))
    fails_with(ws, f"{REPORT}: gate.verdict: expected 'canary' by the gate's rule", "found 'hold'")


def test_a_gate_flag_that_does_not_follow_the_interval_fails(ws: Path):
    edit_report(ws, lambda r: r["gate"]["success"].update(clearly_below=True))
    fails_with(ws, f"{REPORT}: gate.success.clearly_below: expected false")


def test_a_gate_bound_unlike_the_interval_fails(ws: Path):
    edit_report(ws, lambda r: r["gate"]["fairness"]["gaps"]["gender"].update(low=0.5))
    fails_with(ws, f"{REPORT}: gate.fairness.gaps.gender.low: expected")


def _missing_the_target(report: dict) -> None:
    report["success"].update(target=0.99, met=False)
    report["gate"]["success"].update(target=0.99, clearly_below=True)


def test_a_candidate_clearly_below_its_target_must_be_held(ws: Path):
    (ws / "problem.yaml").unlink()  # the report's own target, 0.99
    edit_report(ws, _missing_the_target)
    fails_with(ws, f"{REPORT}: gate.verdict: expected 'hold'", "below the target", "found 'canary'")
    edit_report(ws, lambda r: r["gate"].update(verdict="hold"))
    fails_with(ws, f"{REPORT}: gate.reasons: expected the reasons for the hold in words")
    edit_report(ws, lambda r: r["gate"].update(reasons=["recall at budget is below 0.99"]))
    assert evaluated(ws).passed, messages(ws)


def test_a_gap_clearly_over_the_limit_and_wider_than_the_baselines_must_be_held(ws: Path):
    report = load_report(ws)
    imd = report["gate"]["fairness"]["gaps"]["imd_band"]
    assert imd["clearly_over"] and not imd["wider_than_baseline"]  # over, as wide: a canary

    def wider(report: dict) -> None:  # a candidate whose gap is wider than the baseline's
        report["uncertainty"]["groups"]["imd_band"]["versus_baseline"].update(low=0.01)
        report["gate"]["fairness"]["gaps"]["imd_band"].update(
            versus_baseline_low=0.01, wider_than_baseline=True
        )

    edit_report(ws, wider)
    fails_with(ws, f"{REPORT}: uncertainty.groups.imd_band.versus_baseline.low: expected")
    fails_with(
        ws,
        f"{REPORT}: gate.verdict: expected 'hold' by the gate's rule",
        "the imd_band gap is over the limit and wider than the baseline's",
    )


def test_a_scenario_passed_beyond_its_tolerance_fails(ws: Path):
    edit_report(ws, lambda r: r["robustness"]["gaussian_noise"].update(passed=True))
    fails_with(ws, f"{REPORT}: robustness.gaussian_noise.passed: expected false", "tolerance 0.05")


def test_a_scenario_that_crashed_cannot_pass(ws: Path):
    edit_report(ws, lambda r: r["robustness"]["unseen_category"].update(passed=True))
    fails_with(ws, f"{REPORT}: robustness.unseen_category.passed: expected false", "ValueError")


def test_a_scenario_without_a_tolerance_fails(ws: Path):
    edit_report(ws, lambda r: r["robustness"]["gaussian_noise"].pop("tolerance"))
    fails_with(ws, f"{REPORT}: robustness.gaussian_noise: expected a tolerance")


def test_a_wider_tolerance_changes_the_verdict_consistently(ws: Path):
    def tolerant(report: dict) -> None:
        report["robustness"]["gaussian_noise"].update(tolerance=0.5, passed=True)

    edit_report(ws, tolerant)
    fails_with(
        ws, f"{REPORT}: robustness_verdict: expected passed false with failed ['unseen_category']"
    )
    edit_report(
        ws, lambda r: r.update(robustness_verdict={"passed": False, "failed": ["unseen_category"]})
    )
    assert evaluated(ws).passed, messages(ws)


def test_a_report_without_a_gate_fails(ws: Path):
    edit_report(ws, lambda r: r.pop("gate"))
    fails_with(ws, f"{REPORT}: gate: expected this field, found it missing")


# --- the model -------------------------------------------------------------------------------


def test_a_run_that_is_not_in_the_store_fails(ws: Path):
    edit_report(ws, lambda r: r["model"].update(run_id="f" * 32))
    fails_with(ws, f"{REPORT}: model.run_id: expected a run in mlflow.db, found no run {'f' * 32}")


def test_a_role_other_than_the_runs_tag_fails(ws: Path):
    edit_report(ws, lambda r: r["model"].update(role="baseline"))
    fails_with(ws, f"{REPORT}: model.role: expected 'candidate' (the run's tag role in mlflow.db)")


# --- broken and hostile files ----------------------------------------------------------------


def test_a_missing_report_fails(ws: Path):
    (ws / REPORT).unlink()
    fails_with(ws, f"{REPORT}: file {REPORT} not found in the workspace")


def test_missing_predictions_fail(ws: Path):
    (ws / PREDICTIONS).unlink()
    fails_with(ws, f"{PREDICTIONS}: file {PREDICTIONS} not found in the workspace")


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("{not json", "expected valid JSON, found a syntax error"),
        ('{"metrics": NaN}', "expected valid JSON"),
        ('{"split": "test", "split": "test"}', "duplicate key"),
        ("[" * 10_000 + "]" * 10_000, "levels of nesting"),
    ],
    ids=["syntax", "nan", "duplicate", "deep"],
)
def test_bad_json_fails(ws: Path, text: str, fragment: str):
    (ws / REPORT).write_text(text, encoding="utf-8")
    fails_with(ws, f"{REPORT}: ", fragment)


def test_a_report_of_another_split_fails(ws: Path):
    edit_report(ws, lambda r: r.update(split="valid"))
    fails_with(ws, f"{REPORT}: split: expected")


def test_a_report_missing_a_section_fails(ws: Path):
    edit_report(ws, lambda r: r.pop("groups"))
    fails_with(ws, f"{REPORT}: groups: expected this field, found it missing")


def test_predictions_symlinked_out_of_the_workspace_fail(ws: Path):
    outside = ws.parent / "outside.csv"
    shutil.copy(ws / PREDICTIONS, outside)
    (ws / PREDICTIONS).unlink()
    (ws / PREDICTIONS).symlink_to(outside)
    fails_with(ws, f"{PREDICTIONS}: {PREDICTIONS} leads outside the workspace")


def test_a_report_symlinked_out_of_the_workspace_fails(ws: Path):
    outside = ws.parent / "outside.json"
    shutil.copy(ws / REPORT, outside)
    (ws / REPORT).unlink()
    (ws / REPORT).symlink_to(outside)
    fails_with(ws, "leads outside the workspace")


def test_a_test_split_path_escaping_the_workspace_fails(ws: Path):
    shutil.copy(ws / "data" / "test.csv.gz", ws.parent / "test.csv.gz")
    edit_manifest(ws, lambda m: m["splits"]["test"].update(path="../test.csv.gz"))
    fails_with(
        ws, "data/manifest.json: splits.test.path: expected a path relative to the workspace"
    )


def test_a_fifo_for_predictions_does_not_hang_the_check(ws: Path):
    (ws / PREDICTIONS).unlink()
    os.mkfifo(ws / PREDICTIONS)
    fails_with(ws, f"expected {PREDICTIONS} to be a regular file")


def test_oversized_predictions_fail(ws: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(evaluation, "MAX_PREDICTIONS_BYTES", 1000)
    fails_with(ws, f"{PREDICTIONS}: {PREDICTIONS} is", "over the limit of 1,000 bytes")


def test_a_report_that_is_a_directory_fails(ws: Path):
    (ws / REPORT).unlink()
    (ws / REPORT).mkdir()
    fails_with(ws, f"expected {REPORT} to be a regular file")


# --- the numpy metrics agree with scikit-learn and scipy ----------------------------------------


# --- the real chain ---------------------------------------------------------------------------


@pytest.mark.slow
def test_the_solution_chain_passes_and_a_tampered_report_fails(chain_workspace: Path):
    assert evaluated(chain_workspace).passed, evaluated(chain_workspace).messages
    report = json.loads((chain_workspace / REPORT).read_text(encoding="utf-8"))
    assert report["model"]["role"] == "candidate" and report["baseline"]["role"] == "baseline"
    assert report["gate"]["verdict"] == "canary" and report["uncertainty"]["rounds"] >= 200
    assert len(report["groups"]) >= 2 and {"clean"} < set(report["robustness"])
    edit_report(chain_workspace, lambda r: r["metrics"].update(f1=r["metrics"]["f1"] / 2))
    fails_with(chain_workspace, f"{REPORT}: metrics.f1: expected")
