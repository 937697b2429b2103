"""The metrics the checker recomputes, one definition each.

Every check that recomputes a figure calls the function here: stage 04's evaluation (ROC AUC,
PR AUC, Brier score, the label metrics, recall at budget, calibration bins, KS, the decision
threshold), stage 05's latency percentiles, stage 06's monitoring (PSI, KS, ROC AUC, recall at
budget, p95). The stage notebooks import the helpers they are given from here too
(`from checker.metrics import recall_at_budget`). Each function matches the library a notebook
uses (scikit-learn, scipy, numpy) and `tests/test_metrics.py` holds it to that library. Only numpy
is imported: `sklearn.metrics` or `scipy.stats` would cost every grading process a second or more.

Inputs are array-likes (lists, numpy arrays, pandas Series); `psi` and `ks_statistic` also take
the checker's table columns (`checker.table.Column`), whose sorted values are computed once per
file. Two choices are the course's, stated once here:

- **Missing values.** NaN, None and +-inf are missing. PSI counts them in a bin of their own; KS
  drops them (`scipy.stats.ks_2samp` on the finite values).
- **Recall at budget.** Tutors call `budget x n` learners, a count that is rarely whole, and break
  ties at the cut somehow. `recall_at_budget_bounds` is the range a fair answer may take: from
  the recall among the floor(budget x n) top learners, ties broken against the positives, to the
  recall among the ceil(budget x n), ties broken for them. With fewer than 1/budget rows the
  floor is 0 learners: nobody called, recall 0. `recall_at_budget` is the value stage 01 teaches
  (the fractional call, ties in expectation); it always lies in that range.
- **Uncertainty.** Every interval is a seeded percentile bootstrap (`bootstrap_interval`,
  `paired_difference`): `np.random.default_rng(seed)` draws the resamples in a fixed order, so a
  notebook and the checker that use the same seed get the same interval, to the last digit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from checker.table import Column

CALIBRATION_BINS = 10
EMPTY_SHARE = 1e-4  # the share an empty PSI bin gets, so that ln(q/p) stays finite
QUANTILES = tuple(i / 10 for i in range(1, 10))  # PSI's bin edges: the reference's deciles


def _labels(y_true: Any) -> np.ndarray:
    return np.asarray(y_true, dtype=int)


def _scores(y_score: Any) -> np.ndarray:
    return np.asarray(y_score, dtype=float)


# --- ranking: ROC AUC, PR AUC -----------------------------------------------------------------


def roc_auc(y_true: Any, y_score: Any) -> float:
    """Area under the ROC curve (`sklearn.metrics.roc_auc_score`): the Mann-Whitney statistic,
    ties sharing their average rank. ValueError unless both classes are present."""
    y, s = _labels(y_true), _scores(y_score)
    positives = int(y.sum())
    negatives = len(y) - positives
    if not positives or not negatives:
        raise ValueError("ROC AUC needs both classes")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = average_rank[inverse]
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _ranked(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative true and false positives at each distinct score, highest score first."""
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s) - 1]
    tps = np.cumsum(y_sorted)[last]
    return tps, (last + 1) - tps


def average_precision(y_true: Any, y_score: Any) -> float:
    """PR AUC as average precision (`sklearn.metrics.average_precision_score`): the sum over
    thresholds of precision times the gain in recall, not the trapezoidal area."""
    y, s = _labels(y_true), _scores(y_score)
    if not y.sum():
        raise ValueError("average precision needs at least one positive")
    tps, fps = _ranked(y, s)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def brier(y_true: Any, y_score: Any) -> float:
    """Mean squared distance between probability and outcome (`brier_score_loss`)."""
    return float(np.mean((_scores(y_score) - _labels(y_true)) ** 2))


# --- decisions: the confusion matrix and the label metrics --------------------------------------


def confusion(y_true: Any, y_pred: Any) -> dict[str, int]:
    """`tn`, `fp`, `fn`, `tp` of 0/1 decisions (`confusion_matrix(...).ravel()`)."""
    y, p = _labels(y_true), _labels(y_pred)
    return {
        "tn": int(np.sum((y == 0) & (p == 0))),
        "fp": int(np.sum((y == 0) & (p == 1))),
        "fn": int(np.sum((y == 1) & (p == 0))),
        "tp": int(np.sum((y == 1) & (p == 1))),
    }


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0  # scikit-learn's zero_division=0


def label_metrics(cm: dict[str, int]) -> dict[str, float]:
    """accuracy, precision, recall, f1 and selection_rate of a confusion matrix (0 when
    undefined, scikit-learn's `zero_division=0`)."""
    tn, fp, fn, tp = cm["tn"], cm["fp"], cm["fn"], cm["tp"]
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {
        "accuracy": _ratio(tp + tn, tn + fp + fn + tp),
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        "selection_rate": _ratio(tp + fp, tn + fp + fn + tp),
    }


# --- recall at budget ---------------------------------------------------------------------------


def recall_at_k(y_true: Any, y_score: Any, k: int) -> tuple[float, float]:
    """Recall among the k highest scores, as (lowest, highest) over the ways to break ties at the
    cut; equal when no tie straddles the k-th score. k <= 0 calls nobody: (0, 0)."""
    y, s = _labels(y_true), _scores(y_score)
    positives = int(y.sum())
    if not positives:
        raise ValueError("recall needs at least one positive")
    k = min(len(s), k)
    if k <= 0:
        return 0.0, 0.0
    cut = np.sort(s)[::-1][k - 1]
    above, tied = s > cut, s == cut
    taken = k - int(above.sum())
    pos_above, pos_tied = int(y[above].sum()), int(y[tied].sum())
    neg_tied = int(tied.sum()) - pos_tied
    low = pos_above + max(0, taken - neg_tied)
    high = pos_above + min(taken, pos_tied)
    return low / positives, high / positives


def recall_at_budget_bounds(y_true: Any, y_score: Any, budget: float) -> tuple[float, float]:
    """The range a fair recall at budget may take (the module's docstring): from the floor
    (budget x n) top learners with ties broken against, to the ceil(budget x n) with ties for."""
    calls = budget * len(_labels(y_true))
    low, _ = recall_at_k(y_true, y_score, math.floor(calls))
    _, high = recall_at_k(y_true, y_score, math.ceil(calls))
    return float(low), float(high)


def recall_at_budget(y_true: Any, y_score: Any, budget: float) -> float:
    """Stage 01's recall at budget: the share of at-risk learners among the `budget` share of
    learners with the highest scores, counting a fractional last call and picking among tied
    learners at random (in expectation). Within `recall_at_budget_bounds`."""
    y, s = _labels(y_true).astype(float), _scores(y_score)
    if not y.sum():
        raise ValueError("recall needs at least one positive")
    calls = budget * len(y)
    values, inverse, counts = np.unique(
        -s, return_inverse=True, return_counts=True
    )  # highest first
    found = np.bincount(inverse.ravel(), weights=y, minlength=values.size)
    before = np.cumsum(counts) - counts  # learners called before each group of tied scores
    take = np.clip(calls - before, 0, counts)  # how many of each group are called
    return float(np.sum(found * take / counts) / y.sum())


# --- the decision threshold -------------------------------------------------------------------


def threshold_bounds(y_score: Any, budget: float) -> tuple[float, float, float]:
    """The decision threshold that flags a `budget` share of the scores (stage 04's rule), as
    (threshold, lowest accepted, highest accepted).

    The threshold is the `1 - budget` quantile of the scores (`np.quantile`, linear). Any value
    from the order statistic just below the two that quantile sits between to the one just
    above them is accepted: other quantile methods (`lower`, `higher`, `nearest`) and a top-k cut
    with k = floor or ceil of budget x n land there; a threshold of another split does not.
    """
    s = np.sort(_scores(y_score))
    if not s.size:
        raise ValueError("a threshold needs at least one score")
    position = (s.size - 1) * (1 - budget)
    low = s[max(0, math.floor(position) - 1)]
    high = s[min(s.size - 1, math.ceil(position) + 1)]
    return float(np.quantile(s, 1 - budget)), float(low), float(high)


def flagged_share(y_score: Any, threshold: float) -> float:
    """The share of scores at or above `threshold`: the learners the decision flags."""
    s = _scores(y_score)
    return float(np.mean(s >= threshold)) if s.size else 0.0


# --- calibration --------------------------------------------------------------------------------


def calibration_bins(y_true: Any, y_score: Any, bins: int = CALIBRATION_BINS) -> list[dict]:
    """Equal-width bins on [0, 1] (each (lower, upper], the first one closed), non-empty ones only,
    as `sklearn.calibration.calibration_curve(strategy="uniform")` bins them."""
    y, s = _labels(y_true), _scores(y_score)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.searchsorted(edges[1:-1], s, side="left")
    out = []
    for i in range(bins):
        mask = index == i
        if mask.any():
            out.append(
                {
                    "lower": float(edges[i]),
                    "upper": float(edges[i + 1]),
                    "count": int(mask.sum()),
                    "mean_score": float(s[mask].mean()),
                    "fraction_positive": float(y[mask].mean()),
                }
            )
    return out


# --- drift: PSI and KS --------------------------------------------------------------------------


def _column(values: Any) -> Column:
    import pandas as pd

    from checker.table import Column

    return values if isinstance(values, Column) else Column(pd.Series(values))


def is_numeric(values: Any) -> bool:
    """Numeric for PSI and KS: pandas reads the values as numbers (booleans are categories)."""
    return _column(values).numeric


def psi_counts(reference: Any, current: Any) -> tuple[list[str], list[int], list[int]]:
    """The bins of the course's PSI, with the reference's and the current's count in each.

    Numeric (both numeric): the bin edges are the reference's deciles, `np.quantile` at 0.1, ...,
    0.9 (linear) of its finite values, duplicates dropped; the bins are (-inf, q1], (q1, q2], ...,
    (qk, inf), then one bin for missing values (NaN and +-inf). Categorical (otherwise): one bin
    per category (as text) seen in either, then one for missing values.
    """
    ref, cur = _column(reference), _column(current)
    if ref.numeric and cur.numeric:
        present = ref.finite
        edges = np.unique(np.quantile(present, QUANTILES)) if present.size else np.array([])
        labels = [f"<= {e:g}" for e in edges] + [f"> {edges[-1]:g}" if edges.size else "all"]

        def count(column: Column) -> list[int]:
            bins = np.searchsorted(edges, column.finite, side="left")
            counts = np.bincount(bins, minlength=edges.size + 1).tolist()
            return [*counts, len(column) - column.finite.size]

        return [*labels, "missing"], count(ref), count(cur)
    ref_counts, cur_counts = ref.counts, cur.counts
    categories = sorted(set(ref_counts) | set(cur_counts))
    return (
        [*categories, "missing"],
        [ref_counts.get(c, 0) for c in categories] + [ref.missing],
        [cur_counts.get(c, 0) for c in categories] + [cur.missing],
    )


def shares(counts: Sequence[int]) -> np.ndarray:
    """Counts as proportions of all rows, with empty bins set to `EMPTY_SHARE`."""
    total = sum(counts)
    if total == 0:
        raise ValueError("PSI needs at least one row in each sample")
    p = np.asarray(counts, dtype=float) / total
    p[p == 0] = EMPTY_SHARE
    return p


def psi(reference: Any, current: Any) -> float:
    """Population stability index of `current` against `reference`: sum((q - p) * ln(q / p))
    over the bins of `psi_counts`, p and q the shares of all rows (`shares`)."""
    _, ref, cur = psi_counts(reference, current)
    p, q = shares(ref), shares(cur)
    return float(np.sum((q - p) * np.log(q / p)))


def psi_bin_index(reference: Any, values: Any) -> np.ndarray:
    """The PSI bin of each of `values` (in their order), the bins being those `psi_counts` cuts
    from `reference`: numeric (both numeric) 0 to k for (-inf, q1], ..., (qk, inf) and k + 1 for
    missing (NaN, +-inf); categorical, the position of the category (as text) among the
    reference's sorted categories, their count for missing, and -1 for a category the reference
    never shows."""
    ref, cur = _column(reference), _column(values)
    if ref.numeric and cur.numeric:
        present = ref.finite
        edges = np.unique(np.quantile(present, QUANTILES)) if present.size else np.array([])
        floats = cur.floats
        finite = np.isfinite(floats)
        index = np.full(len(floats), edges.size + 1, dtype=int)
        index[finite] = np.searchsorted(edges, floats[finite], side="left")
        return index
    categories = sorted(ref.counts)
    position = {c: i for i, c in enumerate(categories)}
    import pandas as pd

    return np.array(
        [
            len(categories) if pd.isna(v) else position.get(str(v), -1)
            for v in cur.series.to_numpy(dtype=object)
        ],
        dtype=int,
    )


def relation_scores(reference: Any, y_reference: Any, values: Any) -> np.ndarray:
    """The relation between a feature and the outcome that `reference` shows, used as a score:
    for each of `values`, the share of positives among the reference rows of its PSI bin
    (`psi_bin_index`). A bin without reference rows gets the reference's overall share."""
    y = _labels(y_reference)
    if not y.size:
        raise ValueError("a relation needs at least one reference row")
    ref_bins = psi_bin_index(reference, reference)
    cur_bins = psi_bin_index(reference, values)
    size = int(max(ref_bins.max(initial=0), cur_bins.max(initial=0))) + 2  # -1 maps to the end
    totals = np.bincount(ref_bins % size, minlength=size)
    positives = np.bincount(ref_bins % size, weights=y, minlength=size)
    rate = np.where(totals > 0, positives / np.maximum(totals, 1), y.mean())
    return rate[cur_bins % size]


def concept_shift(
    reference: Any,
    y_reference: Any,
    before: Any,
    y_before: Any,
    after: Any,
    y_after: Any,
) -> dict[str, float]:
    """How much a feature's relation to the outcome moved between two samples of one slice.

    The relation is the reference's share of positives per PSI bin of the feature
    (`relation_scores`). `relation_auc_reference` is the ROC AUC with which that relation ranks
    the `before` rows (the slice's module in the reference period), `relation_auc` the one with
    which it ranks the `after` rows (the slice now); `concept_shift` is the first minus the
    second: how much ranking power the old meaning of the feature lost. A shift of the base
    rate alone leaves it at 0. ValueError unless both samples hold both classes."""
    auc_before = roc_auc(y_before, relation_scores(reference, y_reference, before))
    auc_after = roc_auc(y_after, relation_scores(reference, y_reference, after))
    return {
        "relation_auc_reference": auc_before,
        "relation_auc": auc_after,
        "concept_shift": auc_before - auc_after,
    }


def ks_statistic(reference: Any, current: Any) -> float | None:
    """The two-sample Kolmogorov-Smirnov statistic (`scipy.stats.ks_2samp(...).statistic`) of
    the finite values of two numeric samples; None for a categorical one or an empty side."""
    ref, cur = _column(reference), _column(current)
    if not (ref.numeric and cur.numeric):
        return None
    a, b = ref.finite, cur.finite
    if not a.size or not b.size:
        return None
    both = np.concatenate([a, b])
    gap = (
        np.searchsorted(a, both, side="right") / a.size
        - np.searchsorted(b, both, side="right") / b.size
    )
    return float(np.abs(gap).max())


# --- percentiles --------------------------------------------------------------------------------


def percentile(values: Iterable[float], q: float) -> float:
    """`numpy.percentile(values, q)` with its default linear interpolation."""
    array = np.asarray(list(values), dtype=float)
    if not array.size:
        raise ValueError("a percentile needs at least one value")
    return float(np.percentile(array, q))


# --- uncertainty: the seeded bootstrap ----------------------------------------------------------

BOOTSTRAP_LEVEL = 0.95


def bootstrap_samples(sizes: int | Sequence[int], rounds: int, seed: int) -> list[list[np.ndarray]]:
    """The resamples of a seeded bootstrap: for each of `rounds` rounds, one array of row
    indices per sample, drawn with replacement, as many as the sample has rows.

    One generator, `np.random.default_rng(seed)`, draws round by round and, within a round,
    sample by sample (`rng.integers(0, n, size=n)`), so the same seed gives the same resamples
    in a notebook and in the checker. Two samples (a canary's arms) are resampled independently;
    a paired comparison resamples one sample and scores both models on the same rows.
    """
    if rounds < 1:
        raise ValueError("a bootstrap needs at least one round")
    ns = [sizes] if isinstance(sizes, int) else list(sizes)
    if not ns or min(ns) < 1:
        raise ValueError("a bootstrap needs at least one row in each sample")
    rng = np.random.default_rng(seed)
    return [[rng.integers(0, n, size=n) for n in ns] for _ in range(rounds)]


def bootstrap_interval(
    statistic: Callable[..., float],
    sizes: int | Sequence[int],
    rounds: int,
    seed: int,
    level: float = BOOTSTRAP_LEVEL,
) -> dict[str, Any]:
    """A percentile bootstrap interval of `statistic`.

    `statistic(*indices)` gets one array of row indices per sample (`bootstrap_samples`) and
    returns a number; `estimate` is its value on all rows (`np.arange(n)` for each sample).
    `low` and `high` are the `(1 - level) / 2` and `(1 + level) / 2` quantiles (`np.quantile`,
    linear) of its values over the rounds where it is defined: a round where it raises
    ValueError (say a resample with no positive) or returns NaN is left out, and `rounds_used`
    says how many remained. With none, `low` and `high` are None.
    """
    ns = [sizes] if isinstance(sizes, int) else list(sizes)
    estimate = float(statistic(*(np.arange(n) for n in ns)))
    values = []
    for indices in bootstrap_samples(ns, rounds, seed):
        try:
            value = float(statistic(*indices))
        except ValueError:
            continue
        if math.isfinite(value):
            values.append(value)
    low = high = None
    if values:
        low, high = (float(v) for v in np.quantile(values, [(1 - level) / 2, (1 + level) / 2]))
    return {
        "estimate": estimate,
        "low": low,
        "high": high,
        "level": level,
        "rounds": rounds,
        "rounds_used": len(values),
        "seed": seed,
    }


def paired_difference(
    y_true: Any,
    score_old: Any,
    score_new: Any,
    metric: Callable[[np.ndarray, np.ndarray], float],
    rounds: int,
    seed: int,
    level: float = BOOTSTRAP_LEVEL,
) -> dict[str, Any]:
    """`metric(new) - metric(old)` on the same learners, with its paired bootstrap interval
    (both models scored on each resample's rows) and `share_better`: the share of used rounds in
    which the new model scored higher. `metric(y_true, y_score)` is any function here, for
    example `lambda y, s: recall_at_budget(y, s, 0.3)`."""
    y, old, new = _labels(y_true), _scores(score_old), _scores(score_new)
    if not (len(y) == len(old) == len(new)):
        raise ValueError("a paired comparison needs one score of each model per learner")
    wins: list[bool] = []

    def gain(rows: np.ndarray) -> float:
        value = float(metric(y[rows], new[rows]) - metric(y[rows], old[rows]))
        if math.isfinite(value):
            wins.append(value > 0)
        return value

    out = bootstrap_interval(gain, len(y), rounds, seed, level)
    rounds_won = wins[1:]  # the first call is the estimate on all rows
    out["share_better"] = float(np.mean(rounds_won)) if rounds_won else None
    return out


# --- a metric by name, and the gap between groups ---------------------------------------------

SCORE_METRICS = ("recall_at_budget", "roc_auc", "pr_auc")  # of the scores: no threshold
LABEL_METRICS = ("recall", "precision", "f1", "accuracy", "selection_rate")  # of decisions


def metric_value(
    name: str, y_true: Any, y_score: Any, budget: float, y_pred: Any | None = None
) -> float:
    """The metric `name` (problem.yaml's `success.metric`) of scores, the one way every stage
    computes it: `recall_at_budget`, `roc_auc` and `pr_auc` of `y_score`; a label metric
    (`recall`, `precision`, `f1`, `accuracy`) of the decisions `y_pred`, or, without them, of
    the decisions at the `1 - budget` quantile of the scores (the budget's threshold)."""
    if name == "recall_at_budget":
        return recall_at_budget(y_true, y_score, budget)
    if name == "roc_auc":
        return roc_auc(y_true, y_score)
    if name == "pr_auc":
        return average_precision(y_true, y_score)
    if name not in LABEL_METRICS:
        raise ValueError(f"unknown metric {name!r}")
    if y_pred is None:
        s = _scores(y_score)
        y_pred = (s >= np.quantile(s, 1 - budget)).astype(int)
    return label_metrics(confusion(y_true, y_pred))[name]


def _per_group(
    y_true: Any, y_pred: Any, groups: Any, metric: str, min_positives: int
) -> tuple[np.ndarray, np.ndarray]:
    """The group names and `metric` of each group with at least `min_positives` positives, as
    arrays: counts by `np.bincount`, the formulas of `label_metrics` (0 when undefined)."""
    if metric not in LABEL_METRICS:
        raise ValueError(f"unknown group metric {metric!r}")
    y, p = _labels(y_true), _labels(y_pred)
    g = np.asarray(groups)
    if g.dtype.kind in "iu" and g.size:  # codes already (a bootstrap encodes the names once)
        codes, size = g, int(g.max()) + 1
        names = np.arange(size).astype(str)
    else:
        names, codes = np.unique(g.astype(str), return_inverse=True)
        codes, size = codes.ravel(), names.size
    positives = np.bincount(codes, weights=y, minlength=size)
    keep = positives >= min_positives
    tp = np.bincount(codes, weights=y * p, minlength=size)[keep]
    if metric == "recall":  # the course's fairness metric: the fast path of a bootstrap
        return names[keep], tp / positives[keep]
    n = np.bincount(codes, minlength=size).astype(float)[keep]
    flagged = np.bincount(codes, weights=p, minlength=size)[keep]
    pos = positives[keep]
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(flagged > 0, tp / flagged, 0.0)
        recall = tp / pos
        if metric == "precision":
            values = precision
        elif metric == "f1":
            total = precision + recall
            values = np.where(total > 0, 2 * precision * recall / total, 0.0)
        elif metric == "accuracy":
            values = (n - pos - flagged + 2 * tp) / n
        else:
            values = flagged / n
    return names[keep], values


def group_values(
    y_true: Any, y_pred: Any, groups: Any, metric: str = "recall", min_positives: int = 10
) -> dict[str, float]:
    """`metric` of the decisions per group (names as text), for the groups with at least
    `min_positives` learners with y_true = 1 (stage 04's fairness table). `groups` may also be
    integer codes (0, 1, ...), named by their number: a bootstrap encodes the names once."""
    names, values = _per_group(y_true, y_pred, groups, metric, min_positives)
    return {str(k): float(v) for k, v in zip(names.tolist(), values.tolist(), strict=True)}


def group_gap(
    y_true: Any, y_pred: Any, groups: Any, metric: str = "recall", min_positives: int = 10
) -> float:
    """The largest minus the smallest `group_values`; ValueError when fewer than two groups
    have `min_positives` positives (a bootstrap round where the gap is undefined)."""
    _, values = _per_group(y_true, y_pred, groups, metric, min_positives)
    if values.size < 2:
        raise ValueError("a gap needs two groups with enough positives")
    return float(values.max() - values.min())


def score_metric(name: str, budget: float | None = None) -> Callable[[Any, Any], float]:
    """`metric(y_true, y_score)` for any success metric problem.yaml may declare: `metric_value`
    with the budget bound. A ranking metric (`SCORE_METRICS`) scores the ranking; a label metric
    (`recall`, `precision`, `f1`, `accuracy`) the decisions that flag the `budget` share with the
    highest scores. What a canary's arms (stage 05) and a paired comparison (stage 07) bootstrap.
    ValueError for another name, or for a metric that needs the budget without one in (0, 1]."""
    if name not in SCORE_METRICS + LABEL_METRICS:
        known = ", ".join(SCORE_METRICS + LABEL_METRICS)
        raise ValueError(f"expected a success metric ({known}), found {name!r}")
    if name not in ("roc_auc", "pr_auc") and (budget is None or not 0 < budget <= 1):
        raise ValueError(f"{name} needs a budget in (0, 1], found {budget!r}")
    return lambda y_true, y_score: metric_value(name, y_true, y_score, budget or 0.0)
