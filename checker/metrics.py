"""The metrics the checker recomputes, one definition each, with numpy only.

Every check that recomputes a figure (stage 04's evaluation, stage 05's latency summary, stage
06's monitoring report, the lab exercise) calls the function here. Each matches the library a
notebook uses (scikit-learn, scipy, numpy); `tests/test_metrics.py` holds them to it. Importing
`sklearn.metrics` or `scipy.stats` would cost a grading process a second or more, so none is
imported here.
"""

from __future__ import annotations

import math

import numpy as np

# --- choosing a decision threshold -------------------------------------------------------------


def threshold_bounds(scores: np.ndarray, budget: float) -> tuple[float, float, float]:
    """The decision threshold that flags a `budget` share of `scores` (stage 04's rule), as
    (threshold, lowest accepted, highest accepted).

    The threshold is the `1 - budget` quantile of the scores (`np.quantile`, linear). Any value
    from the order statistic just below the two that quantile sits between to the one just
    above them is accepted: other quantile methods (`lower`, `higher`, `nearest`) and a top-k
    cut with k = floor or ceil of budget x n land there, a threshold of another split does not.
    """
    s = np.sort(np.asarray(scores, dtype=float))
    if not s.size:
        raise ValueError("a threshold needs at least one score")
    position = (s.size - 1) * (1 - budget)
    low = s[max(0, math.floor(position) - 1)]
    high = s[min(s.size - 1, math.ceil(position) + 1)]
    return float(np.quantile(s, 1 - budget)), float(low), float(high)


def flagged_share(scores: np.ndarray, threshold: float) -> float:
    """The share of `scores` at or above `threshold`: the learners the decision flags."""
    s = np.asarray(scores, dtype=float)
    return float(np.mean(s >= threshold)) if s.size else 0.0
