"""A valid `evaluation/` (stage 04) on top of a foundation workspace (`tests.helpers.workspace.build_workspace`).

The report is computed the way 04-evaluation.ipynb computes it (scikit-learn, scipy and stage
01's recall-at-budget function), independently of `checker.evaluation`'s numpy metrics, so the
tests hold the checker's recomputation to the libraries the notebook uses. The scores are made up
(a noisy function of the label, rounded so that ties occur): no model is trained.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd

from tests.helpers.problem import write_problem

PREDICTIONS = "evaluation/predictions.csv"
BASELINE_PREDICTIONS = "evaluation/baseline_predictions.csv"
VALID_SCORES = "evaluation/valid_scores.csv"
REPORT = "evaluation/report.json"
GROUPS = ["gender", "disability", "imd_band", "age_band"]
BUDGET = 0.3
MAX_GAP = 0.1
MIN_POSITIVES = 10
SEED = 42
ROUNDS = 200  # the fewest the checker accepts: the tests stay fast
LEVEL = 0.95
TOLERANCES = {"gaussian_noise": 0.05, "unseen_category": 0.10}


def recall_at_budget(y_true, score, budget: float) -> float:
    """Stage 01's definition: fractional calls, ties picked at random (in expectation)."""
    y = np.asarray(y_true, dtype=float)
    s = np.asarray(score, dtype=float)
    calls = budget * len(y)
    found = taken = 0.0
    for value in np.unique(s)[::-1]:
        tied = s == value
        take = min(tied.sum(), calls - taken)
        if take <= 0:
            break
        found += y[tied].sum() * take / tied.sum()
        taken += take
    return float(found / y.sum())


def candidate_run(ws: Path) -> str:
    """Tag the store's first run `role=candidate`, `best=true` (as stage 03 does); its id."""
    return _tag_run(ws, 0, {"role": "candidate", "best": "true"})


def baseline_run(ws: Path) -> str:
    """Tag the store's second run `role=baseline` (stage 03's chosen baseline); its id."""
    return _tag_run(ws, 1, {"role": "baseline"})


def _tag_run(ws: Path, position: int, tags: dict[str, str]) -> str:
    connection = sqlite3.connect(ws / "mlflow.db")
    try:
        (run_id,) = connection.execute(
            "SELECT run_uuid FROM runs ORDER BY start_time, run_uuid LIMIT 1 OFFSET ?", (position,)
        ).fetchone()
        connection.executemany(
            "INSERT OR REPLACE INTO tags (key, value, run_uuid) VALUES (?, ?, ?)",
            [(key, value, run_id) for key, value in tags.items()],
        )
        connection.commit()
    finally:
        connection.close()
    return run_id


def scores_for(y: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logit = 1.6 * (y - 0.5) + rng.normal(0, 1.0, len(y))
    return np.round(1 / (1 + np.exp(-logit)), 3)  # 3 decimals: ties, as a tree model makes


def group_entry(predictions: pd.DataFrame, attribute: str) -> dict:
    from sklearn.metrics import recall_score

    labels = predictions[attribute].fillna("missing").astype(str)
    values = {}
    for group, rows in predictions.groupby(labels):
        if rows["y_true"].sum() >= MIN_POSITIVES:
            values[group] = float(recall_score(rows["y_true"], rows["y_pred"]))
    gap = max(values.values()) - min(values.values())
    return {
        "metric": "recall",
        "min_positives": MIN_POSITIVES,
        "values": values,
        "gap": gap,
        "max_gap": MAX_GAP,
        "within_limit": gap <= MAX_GAP,
    }


def drift_section(splits: dict[str, pd.DataFrame], features: list[str]) -> dict:
    from scipy.stats import ks_2samp

    drift: dict = {"reference": "train", "alpha": 0.01, "splits": {}}
    for name in ("test", "production"):
        stats = {}
        for column in features:
            result = ks_2samp(splits["train"][column].dropna(), splits[name][column].dropna())
            stats[column] = {"ks_stat": float(result.statistic), "ks_pvalue": float(result.pvalue)}
        drifted = sorted(c for c, s in stats.items() if s["ks_pvalue"] < drift["alpha"])
        drift["splits"][name] = {"features": stats, "drifted": drifted}
    return drift


def valid_quantile(valid_scores: np.ndarray, test_scores: np.ndarray) -> float:
    """Stage 04's rule: the 1 - budget quantile of the validation scores."""
    return float(np.quantile(valid_scores, 1 - BUDGET))


def uncertainty_sections(
    predictions: pd.DataFrame,
    baseline: pd.DataFrame,
    report: dict,
    seed: int = SEED,
    rounds: int = ROUNDS,
) -> dict:
    """`uncertainty`, `comparison` and `gate` as 04-evaluation.ipynb computes them, from the rows
    of the two prediction files in their order (the bootstrap resamples rows by position)."""
    from checker.metrics import bootstrap_interval, group_gap, metric_value, paired_difference

    y = predictions["y_true"].to_numpy()
    s, p = predictions["y_score"].to_numpy(), predictions["y_pred"].to_numpy()
    bs, bp = baseline["y_score"].to_numpy(), baseline["y_pred"].to_numpy()
    metric, budget = report["success"]["metric"], report["budget"]

    def interval(statistic) -> dict:
        found = bootstrap_interval(statistic, len(y), rounds, seed, LEVEL)
        return {k: found[k] for k in ("estimate", "low", "high", "rounds_used")}

    groups = {}
    for attribute in report["groups"]:
        labels = predictions[attribute].fillna("missing").astype(str).to_numpy()

        def gap(decisions, rows, labels=labels):
            return group_gap(y[rows], decisions[rows], labels[rows], "recall", MIN_POSITIVES)

        groups[attribute] = {
            "metric": "recall",
            **interval(lambda rows, gap=gap: gap(p, rows)),
            "versus_baseline": interval(lambda rows, gap=gap: gap(p, rows) - gap(bp, rows)),
        }
    success = {
        "metric": metric,
        **interval(lambda r: metric_value(metric, y[r], s[r], budget, p[r])),
    }
    difference = paired_difference(
        y, bs, s, lambda a, b: metric_value("recall_at_budget", a, b, budget), rounds, seed, LEVEL
    )
    comparison = {
        "metric": "recall_at_budget",
        "old": "baseline",
        "new": "candidate",
        "seed": seed,
        "rounds": rounds,
        "level": LEVEL,
        **{k: difference[k] for k in ("estimate", "low", "high", "rounds_used", "share_better")},
        "better": difference["low"] > 0,
        "worse": difference["high"] < 0,
    }
    uncertainty = {
        "seed": seed,
        "rounds": rounds,
        "level": LEVEL,
        "success": success,
        "groups": groups,
    }
    return {
        "uncertainty": uncertainty,
        "comparison": comparison,
        "gate": gate_for(report, uncertainty, comparison),
    }


def gate_for(report: dict, uncertainty: dict, comparison: dict) -> dict:
    """The contract's gate: hold only for what the intervals rule out."""
    target = report["success"]["target"]
    limit = next(iter(report["groups"].values()))["max_gap"]
    high = uncertainty["success"]["high"]
    gaps, reasons = {}, []
    for attribute, entry in uncertainty["groups"].items():
        own = report["groups"][attribute]["max_gap"]
        over = own is not None and entry["low"] > own
        wider = entry["versus_baseline"]["low"] > 0
        gaps[attribute] = {
            "low": entry["low"],
            "high": entry["high"],
            "clearly_over": over,
            "versus_baseline_low": entry["versus_baseline"]["low"],
            "wider_than_baseline": wider,
        }
        if over and wider:
            reasons.append(f"the {attribute} gap is over the limit and wider than the baseline's")
    if high < target:
        reasons.append("the success metric is below the target at its upper bound")
    if comparison["worse"]:
        reasons.append("the candidate is worse than the baseline")
    return {
        "rule": "canary unless the intervals rule the candidate out",
        "verdict": "hold" if reasons else "canary",
        "success": {
            "metric": report["success"]["metric"],
            "target": target,
            "low": uncertainty["success"]["low"],
            "high": high,
            "clearly_below": high < target,
        },
        "fairness": {"max_gap": limit, "gaps": gaps},
        "versus_baseline": {
            "low": comparison["low"],
            "high": comparison["high"],
            "clearly_worse": comparison["worse"],
        },
        "reasons": reasons,
    }


def robustness_verdicts(robustness: dict) -> dict:
    """Each scenario's tolerance and verdict, and the overall verdict, as stage 04 states them."""
    clean = robustness["clean"]
    for name, tolerance in TOLERANCES.items():
        entry = robustness[name]
        drops = [
            clean[k] - entry[k] for k in ("roc_auc", "recall_at_budget") if entry[k] is not None
        ]
        entry["tolerance"] = tolerance
        entry["passed"] = entry.get("error") is None and len(drops) == 2 and max(drops) <= tolerance
    failed = sorted(n for n in TOLERANCES if not robustness[n]["passed"])
    return {"passed": not failed, "failed": failed}


def recompute_uncertainty(ws: Path, **settings) -> dict:
    """Rewrite the report's intervals, comparison and gate from the files as they are now."""
    report = load_report(ws)
    report |= uncertainty_sections(load_predictions(ws), load_baseline(ws), report, **settings)
    write_report(ws, report)
    return report


def build_evaluation(ws: Path, seed: int = 4, choose_threshold=valid_quantile) -> dict:
    """Write problem.yaml (if absent), evaluation/predictions.csv, evaluation/valid_scores.csv
    and evaluation/report.json; `choose_threshold(valid_scores, test_scores)` sets the threshold."""
    from sklearn import metrics as skm
    from sklearn.calibration import calibration_curve

    if not (ws / "problem.yaml").exists():
        write_problem(ws)
    manifest = json.loads((ws / "data" / "manifest.json").read_text(encoding="utf-8"))
    splits = {n: pd.read_csv(ws / s["path"]) for n, s in manifest["splits"].items()}
    test = splits["test"]
    y_true = test["at_risk"].to_numpy()
    y_score = scores_for(y_true, seed)
    valid = splits["valid"]
    valid_score = scores_for(valid["at_risk"].to_numpy(), seed + 1)
    threshold = choose_threshold(valid_score, y_score)
    baseline_score = scores_for(y_true, seed + 7)
    baseline_valid = scores_for(valid["at_risk"].to_numpy(), seed + 8)
    baseline_threshold = float(np.quantile(baseline_valid, 1 - BUDGET))
    y_pred = (y_score >= threshold).astype(int)
    predictions = pd.DataFrame(
        {
            "id_student": test["id_student"],
            "code_presentation": test["code_presentation"],
            "y_true": y_true,
            "y_score": y_score,
            "y_pred": y_pred,
        }
    ).join(test[GROUPS])
    baseline = predictions[["id_student", "code_presentation", "y_true"]].assign(
        y_score=baseline_score, y_pred=(baseline_score >= baseline_threshold).astype(int)
    )
    tn, fp, fn, tp = (int(v) for v in skm.confusion_matrix(y_true, y_pred).ravel())
    metrics = {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "precision": float(skm.precision_score(y_true, y_pred, zero_division=0)),
        "recall": float(skm.recall_score(y_true, y_pred)),
        "f1": float(skm.f1_score(y_true, y_pred)),
        "roc_auc": float(skm.roc_auc_score(y_true, y_score)),
        "pr_auc": float(skm.average_precision_score(y_true, y_score)),
        "brier": float(skm.brier_score_loss(y_true, y_score)),
        "recall_at_budget": recall_at_budget(y_true, y_score, BUDGET),
    }
    fraction, mean_score = calibration_curve(y_true, y_score, n_bins=10)
    edges = np.linspace(0, 1, 11)
    index = np.searchsorted(edges[1:-1], y_score)
    counts = np.bincount(index, minlength=10)
    occupied = [i for i in range(10) if counts[i]]
    calibration = {
        "bins": [
            {
                "lower": float(edges[i]),
                "upper": float(edges[i + 1]),
                "count": int(counts[i]),
                "mean_score": float(m),
                "fraction_positive": float(f),
            }
            for i, m, f in zip(occupied, mean_score, fraction, strict=True)
        ]
    }
    clean = {k: metrics[k] for k in ("roc_auc", "recall_at_budget")}
    report = {
        "model": {"run_id": candidate_run(ws), "role": "candidate"},
        "split": "test",
        "data_version": manifest["version"],
        "threshold": threshold,
        "budget": BUDGET,
        "metrics": metrics,
        "confusion_matrix": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
        "calibration": calibration,
        "success": {
            "metric": "recall_at_budget",
            "target": 0.5,
            "value": metrics["recall_at_budget"],
            "met": metrics["recall_at_budget"] >= 0.5,
        },
        "groups": {a: group_entry(predictions, a) for a in GROUPS},
        "robustness": {
            "clean": {"description": "the test split as it is", **clean},
            "gaussian_noise": {  # recall falls by 0.08: over its tolerance of 0.05
                "roc_auc": metrics["roc_auc"] - 0.01,
                "recall_at_budget": metrics["recall_at_budget"] - 0.08,
            },
            "unseen_category": {"roc_auc": None, "recall_at_budget": None, "error": "ValueError"},
        },
        "drift": drift_section(splits, ["num_of_prev_attempts", "studied_credits"]),
        "baseline": {
            "run_id": baseline_run(ws),
            "role": "baseline",
            "predictions": BASELINE_PREDICTIONS,
            "threshold": baseline_threshold,
            "metrics": {
                "roc_auc": float(skm.roc_auc_score(y_true, baseline_score)),
                "pr_auc": float(skm.average_precision_score(y_true, baseline_score)),
                "brier": float(skm.brier_score_loss(y_true, baseline_score)),
                "recall_at_budget": recall_at_budget(y_true, baseline_score, BUDGET),
            },
        },
    }
    report["robustness_verdict"] = robustness_verdicts(report["robustness"])
    report |= uncertainty_sections(predictions, baseline, report)
    (ws / "evaluation").mkdir(exist_ok=True)
    predictions.to_csv(ws / PREDICTIONS, index=False)
    baseline.to_csv(ws / BASELINE_PREDICTIONS, index=False)
    pd.DataFrame(
        {
            "id_student": valid["id_student"],
            "code_presentation": valid["code_presentation"],
            "y_true": valid["at_risk"],
            "y_score": valid_score,
            "baseline_score": baseline_valid,
        }
    ).to_csv(ws / VALID_SCORES, index=False)
    write_report(ws, report)
    return report


def load_report(ws: Path) -> dict:
    return json.loads((ws / REPORT).read_text(encoding="utf-8"))


def write_report(ws: Path, report: dict) -> None:
    (ws / REPORT).write_text(json.dumps(report, indent=2, allow_nan=False), encoding="utf-8")


def load_predictions(ws: Path) -> pd.DataFrame:
    return pd.read_csv(ws / PREDICTIONS, dtype={a: str for a in GROUPS})


def write_predictions(ws: Path, frame: pd.DataFrame) -> None:
    frame.to_csv(ws / PREDICTIONS, index=False)


def load_baseline(ws: Path) -> pd.DataFrame:
    return pd.read_csv(ws / BASELINE_PREDICTIONS, dtype={"code_presentation": str})


def write_baseline(ws: Path, frame: pd.DataFrame) -> None:
    frame.to_csv(ws / BASELINE_PREDICTIONS, index=False)
