"""checker/metrics.py: one definition per metric, held to scikit-learn, scipy and numpy."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from checker import metrics
from checker.metrics import EMPTY_SHARE, psi, psi_counts


def term(p: float, q: float) -> float:
    return (q - p) * math.log(q / p)


def samples(seed: int, trials: int = 60):
    """Labels with both classes and scores, every other trial with heavy ties (and scores
    exactly on the calibration edges)."""
    rng = np.random.default_rng(seed)
    for trial in range(trials):
        n = int(rng.integers(10, 300))
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]
        s = rng.random(n)
        yield y, (np.round(s, 1) if trial % 2 else s)


# --- parity with scikit-learn -------------------------------------------------------------------


def test_ranking_metrics_match_scikit_learn():
    for y, s in samples(0):
        assert metrics.roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
        assert metrics.average_precision(y, s) == pytest.approx(
            skm.average_precision_score(y, s), abs=1e-12
        )
        assert metrics.brier(y, s) == pytest.approx(skm.brier_score_loss(y, s), abs=1e-12)


def test_label_metrics_match_scikit_learn():
    for y, s in samples(1):
        for threshold in (0.0, 0.5, 1.1):  # 1.1: nobody flagged, precision undefined -> 0
            p = (s >= threshold).astype(int)
            cm = metrics.confusion(y, p)
            assert list(cm.values()) == skm.confusion_matrix(y, p, labels=[0, 1]).ravel().tolist()
            found = metrics.label_metrics(cm)
            for name, reference in (
                ("accuracy", skm.accuracy_score(y, p)),
                ("precision", skm.precision_score(y, p, zero_division=0)),
                ("recall", skm.recall_score(y, p, zero_division=0)),
                ("f1", skm.f1_score(y, p, zero_division=0)),
            ):
                assert found[name] == pytest.approx(reference, abs=1e-12), name
            assert found["selection_rate"] == pytest.approx(p.mean(), abs=1e-12)


def test_calibration_bins_match_calibration_curve():
    for y, s in samples(2):
        fraction, mean = calibration_curve(y, s, n_bins=10, strategy="uniform")
        bins = metrics.calibration_bins(y, s)
        assert [b["fraction_positive"] for b in bins] == pytest.approx(list(fraction), abs=1e-12)
        assert [b["mean_score"] for b in bins] == pytest.approx(list(mean), abs=1e-12)
        assert sum(b["count"] for b in bins) == len(y)


def test_roc_auc_by_hand_and_with_one_class():
    assert metrics.roc_auc([0, 0, 1, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.2, 0.9]) == pytest.approx(
        8 / 9
    )
    assert metrics.roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) == pytest.approx(0.875)  # a tie
    with pytest.raises(ValueError, match="both classes"):
        metrics.roc_auc([1, 1], [0.2, 0.3])


# --- parity with scipy: KS ----------------------------------------------------------------------


def test_ks_statistic_matches_scipy_on_the_finite_values():
    rng = np.random.default_rng(3)
    for _ in range(40):
        a = rng.normal(size=int(rng.integers(5, 300))).round(int(rng.integers(0, 3)))
        b = rng.normal(0.3, 1.2, size=int(rng.integers(5, 300))).round(1)
        assert metrics.ks_statistic(a, b) == pytest.approx(ks_2samp(a, b).statistic, abs=1e-12)


def test_ks_statistic_drops_missing_values_and_infinities():
    """The stated definition: NaN and +-inf are missing, as in PSI; stage 04's KS and stage 06's
    are this one function."""
    rng = np.random.default_rng(4)
    a = rng.normal(size=200).round(1)
    b = rng.normal(0.5, size=150).round(1)
    dirty = pd.Series(np.r_[a, [np.nan, np.inf, -np.inf, np.inf]])
    expected = ks_2samp(a, b).statistic
    assert metrics.ks_statistic(dirty, b) == pytest.approx(expected, abs=1e-12)
    assert metrics.ks_statistic(pd.Series(["a", "b"]), pd.Series(["a"])) is None
    assert metrics.ks_statistic(pd.Series([np.nan, np.inf]), b) is None


# --- recall at budget ---------------------------------------------------------------------------


def test_recall_at_budget_lies_within_its_bounds_as_every_fair_count_does():
    rng = np.random.default_rng(5)
    for _ in range(200):
        n = int(rng.integers(2, 200))
        y = rng.integers(0, 2, n)
        y[0] = 1
        s = np.round(rng.random(n), int(rng.integers(1, 3)))
        budget = float(rng.uniform(0.05, 0.95))
        low, high = metrics.recall_at_budget_bounds(y, s, budget)
        assert low - 1e-12 <= metrics.recall_at_budget(y, s, budget) <= high + 1e-12
        for k in {math.floor(budget * n), math.ceil(budget * n)}:
            top = np.argsort(-s, kind="stable")[:k]
            assert low - 1e-12 <= y[top].sum() / y.sum() <= high + 1e-12


def test_recall_at_budget_with_fewer_than_one_over_budget_rows_may_call_nobody():
    """budget x n < 1: the floor is nobody called (recall 0), the ceil one learner."""
    y, s = np.array([1, 0, 0]), np.array([0.9, 0.2, 0.1])
    assert metrics.recall_at_budget_bounds(y, s, 0.2) == (0.0, 1.0)
    assert metrics.recall_at_budget(y, s, 0.2) == pytest.approx(0.6)  # 0.6 of a call
    assert metrics.recall_at_k(y, s, 0) == (0.0, 0.0)


def test_recall_at_budget_bounds_cover_rounding_and_ties() -> None:
    y = [1, 0, 1, 0, 1, 0, 0, 0, 0, 1]
    s = [0.9, 0.8, 0.8, 0.8, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    low, high = metrics.recall_at_budget_bounds(y, s, 0.25)  # 2.5 calls
    assert (low, high) == (0.25, 0.5)  # floor 2, tie lost: 1 of 4; ceil 3, ties won: 2 of 4
    assert low <= metrics.recall_at_budget(y, s, 0.25) <= high
    assert metrics.recall_at_budget_bounds(y, s, 0.5) == (0.75, 0.75)


def test_recall_at_k_breaks_ties_both_ways():
    y = np.array([1, 0, 1, 0, 1, 0])
    s = np.array([0.9, 0.5, 0.5, 0.5, 0.1, 0.2])
    assert metrics.recall_at_k(y, s, 1) == (1 / 3, 1 / 3)
    assert metrics.recall_at_k(y, s, 2) == (1 / 3, 2 / 3)  # one of three tied learners
    assert metrics.recall_at_k(y, s, 4) == (2 / 3, 2 / 3)  # all three tied learners


# --- the decision threshold -------------------------------------------------------------------


def test_threshold_bounds_hold_the_quantile_and_its_neighbours():
    s = np.arange(10) / 10  # 0.0 ... 0.9
    threshold, low, high = metrics.threshold_bounds(s, 0.3)
    assert threshold == pytest.approx(np.quantile(s, 0.7))  # 0.63
    assert (low, high) == (0.5, 0.8)
    assert metrics.flagged_share(s, threshold) == pytest.approx(0.3)
    assert metrics.flagged_share(s, np.quantile(s, 0.3)) == pytest.approx(0.7)


# --- percentiles ---------------------------------------------------------------------------------


def test_percentile_is_numpys():
    rng = np.random.default_rng(6)
    for _ in range(30):
        values = rng.exponential(10, size=int(rng.integers(1, 500))).tolist()
        for q in (50, 95, 99):
            assert metrics.percentile(values, q) == pytest.approx(np.percentile(values, q))
    assert metrics.percentile([1.0, 2.0, 3.0, 4.0], 95) == pytest.approx(3.85)
    with pytest.raises(ValueError, match="at least one value"):
        metrics.percentile([], 95)


# --- PSI -----------------------------------------------------------------------------------------


def test_psi_of_identical_samples_is_zero() -> None:
    numbers = pd.Series(np.random.default_rng(0).normal(size=500))
    words = pd.Series(["a", "b", "b", None, "c"] * 20)
    assert psi(numbers, numbers) == 0.0
    assert psi(words, words.sample(frac=1.0, random_state=1)) == 0.0


def test_psi_of_two_categories_by_hand() -> None:
    reference = pd.Series(["a"] * 50 + ["b"] * 50)
    current = pd.Series(["a"] * 80 + ["b"] * 20)
    # p = (0.5, 0.5), q = (0.8, 0.2); the empty missing bin is 1e-4 on both sides and adds 0.
    expected = 0.3 * math.log(0.8 / 0.5) + (-0.3) * math.log(0.2 / 0.5)
    assert psi(reference, current) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.415888, abs=1e-6)


def test_psi_of_numbers_uses_reference_deciles() -> None:
    reference = pd.Series(np.arange(1, 11, dtype=float))  # deciles 1.9, 2.8, ..., 9.1: 1 per bin
    current = pd.Series([1.0] * 5 + [10.0] * 5)  # all in the first and the last bin
    labels, ref, cur = psi_counts(reference, current)
    assert labels[0] == "<= 1.9" and labels[-2] == "> 9.1" and labels[-1] == "missing"
    assert ref == [1] * 10 + [0]
    assert cur == [5] + [0] * 8 + [5, 0]
    expected = 2 * term(0.1, 0.5) + 8 * term(0.1, EMPTY_SHARE)
    assert psi(reference, current) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(6.80823, abs=1e-5)


def test_psi_bins_are_closed_on_the_right() -> None:
    reference = pd.Series(np.arange(1, 11, dtype=float))
    _, _, cur = psi_counts(reference, pd.Series([1.9, 1.9000001, 9.1, 9.2]))
    assert cur == [1, 1] + [0] * 6 + [1, 1, 0]


def test_psi_counts_a_new_category() -> None:
    reference = pd.Series(["AAA"] * 60 + ["BBB"] * 40)
    current = pd.Series(["AAA"] * 45 + ["BBB"] * 30 + ["CCC"] * 25)
    labels, ref, cur = psi_counts(reference, current)
    assert labels == ["AAA", "BBB", "CCC", "missing"]
    assert ref == [60, 40, 0, 0] and cur == [45, 30, 25, 0]
    expected = term(0.6, 0.45) + term(0.4, 0.30) + term(EMPTY_SHARE, 0.25)
    assert psi(reference, current) == pytest.approx(expected, abs=1e-12)
    assert psi(reference, current) > 1.0  # one new category alone is a huge shift


def test_psi_puts_missing_values_in_their_own_bin() -> None:
    reference = pd.Series(["x"] * 90 + [None] * 10)
    current = pd.Series(["x"] * 50 + [np.nan] * 50)
    assert psi_counts(reference, current)[1:] == ([90, 10], [50, 50])
    assert psi(reference, current) == pytest.approx(term(0.9, 0.5) + term(0.1, 0.5), abs=1e-12)
    numbers = pd.Series(np.r_[np.arange(1, 11, dtype=float), [np.nan] * 10])
    labels, ref, cur = psi_counts(numbers, pd.Series([np.nan, np.inf, 5.0, 5.0]))
    assert ref[-1] == 10 and cur[-1] == 2  # NaN and infinity count as missing
    assert sum(cur) == 4


def test_psi_of_an_all_missing_reference_has_one_value_bin() -> None:
    labels, ref, cur = psi_counts(pd.Series([np.nan] * 4), pd.Series([1.0, np.nan]))
    assert labels == ["all", "missing"] and ref == [0, 4] and cur == [1, 1]


def test_psi_needs_rows() -> None:
    with pytest.raises(ValueError, match="at least one row"):
        psi(pd.Series([], dtype=float), pd.Series([1.0]))


# --- the seeded bootstrap -------------------------------------------------------------------------


def test_bootstrap_samples_are_seeded_and_drawn_sample_by_sample() -> None:
    a = metrics.bootstrap_samples((5, 3), rounds=2, seed=7)
    b = metrics.bootstrap_samples((5, 3), rounds=2, seed=7)
    assert [[x.tolist() for x in r] for r in a] == [[x.tolist() for x in r] for r in b]
    rng = np.random.default_rng(7)
    expected = [[rng.integers(0, 5, size=5), rng.integers(0, 3, size=3)] for _ in range(2)]
    assert [[x.tolist() for x in r] for r in a] == [[x.tolist() for x in r] for r in expected]
    assert metrics.bootstrap_samples(4, rounds=1, seed=1)[0][0].shape == (4,)
    with pytest.raises(ValueError):
        metrics.bootstrap_samples(0, rounds=1, seed=1)


def test_bootstrap_interval_of_a_mean_matches_the_percentiles_of_the_resampled_means() -> None:
    x = np.random.default_rng(3).normal(size=200)
    got = metrics.bootstrap_interval(lambda rows: x[rows].mean(), len(x), rounds=300, seed=11)
    means = [x[rows].mean() for (rows,) in metrics.bootstrap_samples(len(x), 300, 11)]
    assert got["estimate"] == pytest.approx(x.mean())
    assert got["low"] == pytest.approx(np.quantile(means, 0.025))
    assert got["high"] == pytest.approx(np.quantile(means, 0.975))
    assert got["low"] < x.mean() < got["high"]
    assert (got["rounds"], got["rounds_used"], got["seed"], got["level"]) == (300, 300, 11, 0.95)


def test_bootstrap_interval_leaves_out_rounds_where_the_statistic_is_undefined() -> None:
    y = np.array([1] + [0] * 9)  # most resamples hold no positive: recall is undefined there
    s = np.linspace(1, 0, 10)
    got = metrics.bootstrap_interval(
        lambda rows: metrics.recall_at_budget(y[rows], s[rows], 0.3), 10, rounds=50, seed=0
    )
    assert 0 < got["rounds_used"] < 50
    assert got["estimate"] == 1.0


def test_paired_difference_scores_both_models_on_the_same_rows() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, size=300)
    old = rng.random(300)
    new = np.clip(old + 0.4 * y, 0, 1)  # the new model ranks the positives higher
    got = metrics.paired_difference(y, old, new, metrics.roc_auc, rounds=200, seed=2)
    assert got["estimate"] == pytest.approx(metrics.roc_auc(y, new) - metrics.roc_auc(y, old))
    assert got["low"] > 0 and got["share_better"] == 1.0
    same = metrics.paired_difference(y, old, old, metrics.roc_auc, rounds=20, seed=2)
    assert (same["low"], same["high"], same["share_better"]) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        metrics.paired_difference(y, old, new[:-1], metrics.roc_auc, rounds=5, seed=2)


# --- a metric by name, the per-group metrics and their gap ----------------------------------------


def _groups_case(seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 400)
    p = np.where(rng.random(400) < 0.7, y, 1 - y)
    groups = rng.choice(np.array(["F", "M", "X", "tiny"]), 400, p=[0.45, 0.45, 0.08, 0.02])
    return y, p, groups


@pytest.mark.parametrize("metric", ["recall", "precision", "f1", "accuracy", "selection_rate"])
def test_group_values_match_scikit_learn_per_group(metric: str) -> None:
    y, p, groups = _groups_case()
    found = metrics.group_values(y, p, groups, metric, min_positives=10)
    scorers = {
        "recall": skm.recall_score,
        "precision": lambda a, b: skm.precision_score(a, b, zero_division=0),
        "f1": skm.f1_score,
        "accuracy": skm.accuracy_score,
        "selection_rate": lambda a, b: float(np.mean(b)),
    }
    expected = {
        g: float(scorers[metric](y[groups == g], p[groups == g]))
        for g in sorted(set(groups))
        if y[groups == g].sum() >= 10
    }
    assert set(found) == set(expected) and "tiny" not in found
    for group, value in expected.items():
        assert found[group] == pytest.approx(value, abs=1e-12)


def test_group_gap_is_the_same_with_names_or_integer_codes() -> None:
    y, p, groups = _groups_case()
    codes = np.unique(groups, return_inverse=True)[1]
    values = metrics.group_values(y, p, groups)
    assert metrics.group_gap(y, p, groups) == max(values.values()) - min(values.values())
    assert metrics.group_gap(y, p, groups) == metrics.group_gap(y, p, codes)


def test_group_gap_needs_two_groups_with_enough_positives() -> None:
    y, p, groups = _groups_case()
    with pytest.raises(ValueError, match="two groups"):
        metrics.group_gap(y, p, groups, min_positives=10_000)


def test_metric_value_names_each_metric_once() -> None:
    y, p, _ = _groups_case()
    s = np.clip(p * 0.6 + np.random.default_rng(0).random(len(p)) * 0.4, 0, 1)
    assert metrics.metric_value("roc_auc", y, s, 0.3) == pytest.approx(skm.roc_auc_score(y, s))
    assert metrics.metric_value("pr_auc", y, s, 0.3) == pytest.approx(
        skm.average_precision_score(y, s)
    )
    assert metrics.metric_value("recall_at_budget", y, s, 0.3) == metrics.recall_at_budget(
        y, s, 0.3
    )
    assert metrics.metric_value("recall", y, s, 0.3, p) == skm.recall_score(y, p)
    at_budget = (s >= np.quantile(s, 0.7)).astype(int)
    assert metrics.metric_value("precision", y, s, 0.3) == skm.precision_score(y, at_budget)
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.metric_value("log_loss", y, s, 0.3)


def test_score_metric_names_the_success_metrics_that_score_a_ranking() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 300)
    s = np.clip(0.5 * y + 0.6 * rng.random(300), 0, 1)
    recall = metrics.score_metric("recall_at_budget", 0.3)
    assert recall(y, s) == metrics.recall_at_budget(y, s, 0.3)
    assert math.isclose(metrics.score_metric("roc_auc")(y, s), skm.roc_auc_score(y, s))
    assert math.isclose(metrics.score_metric("pr_auc")(y, s), skm.average_precision_score(y, s))
    with pytest.raises(ValueError, match="needs a budget in"):
        metrics.score_metric("recall_at_budget")
    with pytest.raises(ValueError, match="needs a budget in"):
        metrics.score_metric("f1")
    with pytest.raises(ValueError, match="expected a success metric"):
        metrics.score_metric("log_loss")
    flagged = (s >= np.quantile(s, 0.7)).astype(int)  # the budget's share with the highest scores
    f1 = metrics.score_metric("f1", 0.3)
    assert math.isclose(f1(y, s), skm.f1_score(y, flagged))


# --- concept drift: the relation between a feature and the outcome -----------------------------


def test_psi_bin_index_uses_the_bins_of_psi() -> None:
    reference = pd.Series(np.arange(1.0, 11.0))  # deciles 1.9, 2.8, ..., 9.1
    values = pd.Series([1.0, 1.9, 2.0, 10.0, np.nan, np.inf])
    index = metrics.psi_bin_index(reference, values)
    assert index.tolist() == [0, 0, 1, 9, 10, 10]  # (-inf, 1.9], (1.9, 2.8], ..., missing
    _, _, counts = psi_counts(reference, values)
    assert np.bincount(metrics.psi_bin_index(reference, values), minlength=11).tolist() == counts


def test_psi_bin_index_of_categories_marks_the_unseen_and_the_missing() -> None:
    reference = pd.Series(["b", "a", None, "a"])
    index = metrics.psi_bin_index(reference, pd.Series(["a", "b", "new", None]))
    assert index.tolist() == [0, 1, -1, 2]  # a, b, not in the reference, missing


def test_relation_scores_are_the_reference_rates_per_bin() -> None:
    reference = pd.Series(["a", "a", "a", "a", "b", "b", None, None])
    y = [1, 1, 1, 0, 0, 1, 0, 0]
    scores = metrics.relation_scores(reference, y, pd.Series(["a", "b", None, "new"]))
    assert scores.tolist() == pytest.approx([0.75, 0.5, 0.0, 4 / 8])  # new: the overall rate


def test_concept_shift_sees_a_changed_relation_but_not_a_changed_base_rate() -> None:
    rng = np.random.default_rng(7)
    x = pd.Series(rng.random(4000))
    y = (rng.random(4000) < np.where(x < 0.3, 0.9, 0.2)).astype(int)  # low x: at risk
    # More at risk, the same learners per class: half the others left (a base-rate shift).
    riskier = (y == 1) | (np.arange(4000) % 2 == 0)
    same = metrics.concept_shift(x, y, x, y, x[riskier], y[riskier])
    assert y[riskier].mean() > y.mean() + 0.15
    assert abs(same["concept_shift"]) < 0.02
    flat = (rng.random(4000) < 0.5).astype(int)  # x no longer says anything
    moved = metrics.concept_shift(x, y, x, y, x, flat)
    assert moved["relation_auc_reference"] == pytest.approx(skm.roc_auc_score(y, np.where(
        x < 0.3, 1, 0)), abs=0.05)  # fmt: skip
    assert moved["concept_shift"] > 0.25
    assert moved["concept_shift"] == pytest.approx(
        moved["relation_auc_reference"] - moved["relation_auc"]
    )
    with pytest.raises(ValueError, match="both classes"):
        metrics.concept_shift(x, y, x, y, x, np.zeros(4000))
