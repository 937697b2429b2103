"""`evaluation/`: the one evaluation of the chosen model on the test split, and the `evaluated`
check.

The check trusts no number in `evaluation/report.json`. It reads `evaluation/predictions.csv`,
makes sure its rows are the test split's rows with the test split's labels and groups, and
recomputes from them every metric, the confusion matrix, the calibration bins, recall at the
budget, the per-group metrics and their gaps (the definitions are `checker.metrics`'); it checks
the threshold against the validation scores and recomputes the KS statistics of the drift section
from the split files.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Generator

import numpy as np

from checker.contract import valid_json
from checker.errors import Invalid
from checker.manifest import manifest_field, read_manifest, split_table
from checker.metrics import (
    SCORE_METRICS,
    average_precision,
    bootstrap_interval,
    brier,
    calibration_bins,
    confusion,
    flagged_share,
    group_gap,
    group_values,
    ks_statistic,
    label_metrics,
    metric_value,
    paired_difference,
    recall_at_budget_bounds,
    roc_auc,
    threshold_bounds,
)
from checker.problem import problem_fields
from checker.registry import Problems, check
from checker.store import open_store
from checker.table import Column, Table, parse
from checker.workspace import Workspace

PREDICTIONS = "evaluation/predictions.csv"
BASELINE_PREDICTIONS = "evaluation/baseline_predictions.csv"
BASELINE_COLUMNS = ("id_student", "code_presentation", "y_true", "y_score", "y_pred")
BASELINE_VALID_COLUMN = "baseline_score"  # the baseline's scores in valid_scores.csv
MIN_ROUNDS = 200  # fewer bootstrap rounds give intervals too coarse to gate on
BOOTSTRAP_TOLERANCE = 1e-9  # the same seed gives the same resamples: the same numbers
VALID_SCORES = "evaluation/valid_scores.csv"
VALID_SCORE_COLUMNS = ("id_student", "code_presentation", "y_true", "y_score")
REPORT = "evaluation/report.json"
PROBLEM = "problem.yaml"
MANIFEST = "data/manifest.json"
STORE = "mlflow.db"
STAGE = "04-evaluation.ipynb (cells 'Your turn 1', 'Your turn 2' and 'Your turn 3')"
TOLERANCE = 1e-6
MAX_PREDICTIONS_BYTES = 50_000_000
GROUP_ATTRIBUTES = ("gender", "disability", "imd_band", "age_band")
PREDICTION_COLUMNS = ("id_student", "code_presentation", "y_true", "y_score", "y_pred")
MISSING_GROUP = "missing"  # the group name of a learner whose attribute is not recorded
MAX_EXAMPLES = 3


def _ks(a: Column, b: Column) -> float | None:
    return ks_statistic(a, b)


def group_labels(values) -> np.ndarray:
    """Group names as strings; a missing value is its own group, `missing`."""
    return values.astype(object).where(values.notna(), MISSING_GROUP).astype(str).to_numpy()


def group_metric(
    y: np.ndarray, p: np.ndarray, groups: np.ndarray, metric: str, min_positives: int
) -> tuple[dict[str, float], dict[str, int]]:
    """`metric` per group with at least `min_positives` positive learners
    (`checker.metrics.group_values`), and every group's count of positives."""
    positives = {name: int(y[groups == name].sum()) for name in sorted(set(groups))}
    return group_values(y, p, groups, metric, min_positives), positives


# --- Reading the artifacts.


def _close(found: object, expected: float) -> bool:
    return (
        isinstance(found, int | float)
        and not isinstance(found, bool)
        and abs(float(found) - expected) <= TOLERANCE
    )


def _examples(items) -> str:
    items = list(items)
    more = ", ..." if len(items) > MAX_EXAMPLES else ""
    return ", ".join(str(i) for i in items[:MAX_EXAMPLES]) + more


def read_predictions(ws: Workspace) -> Table:
    path = ws.resolve(PREDICTIONS, what=PREDICTIONS, max_bytes=MAX_PREDICTIONS_BYTES)
    text = {"code_presentation": str} | dict.fromkeys(GROUP_ATTRIBUTES, str)
    return parse(path.read_bytes(), PREDICTIONS, how="predictions", dtype=text)


def read_valid_scores(ws: Workspace) -> Table:
    path = ws.resolve(VALID_SCORES, what=VALID_SCORES, max_bytes=MAX_PREDICTIONS_BYTES)
    return parse(
        path.read_bytes(), VALID_SCORES, how="valid scores", dtype={"code_presentation": str}
    )


def _labelled_split(
    ws: Workspace, manifest: dict, name: str, key: str, label: str
) -> tuple[Table, str]:
    """A split with the key, presentation and label columns predictions are compared on."""
    table, rel = split_table(ws, manifest, name)
    for column in (key, "code_presentation", label):
        if column not in table.frame.columns:
            raise Invalid(f"{rel}: columns: expected a column {column!r}, found none")
    return table, rel


def _threshold_problems(
    ws: Workspace, report: dict, manifest: dict, key: str, label: str
) -> Problems:
    """The threshold was chosen on the valid split by the budget: it is the `1 - budget` quantile
    of the valid scores stage 04 saved (`threshold_bounds`)."""
    import pandas as pd

    scores = read_valid_scores(ws)
    frame = scores.frame
    missing = [c for c in VALID_SCORE_COLUMNS if c not in frame.columns]
    if missing:
        yield f"{VALID_SCORES}: columns: expected {', '.join(VALID_SCORE_COLUMNS)}, found no {', '.join(missing)}"
        return
    s = pd.to_numeric(frame["y_score"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(s) | (s < 0) | (s > 1)
    if len(s) == 0 or bad.any():
        yield f"{VALID_SCORES}: y_score: expected a probability in [0, 1] on every row of the valid split, found {int(bad.sum())} missing, non-numeric or out-of-range values in {len(s)} rows"
        return
    if (
        frame["code_presentation"].isna().any()
        or pd.to_numeric(frame["id_student"], errors="coerce").isna().any()
    ):
        yield f"{VALID_SCORES}: id_student, code_presentation: expected a learner and a presentation on every row, found blanks"
        return
    valid, rel = _labelled_split(ws, manifest, "valid", key, label)
    if _tally(scores, "id_student") != _tally(valid, key):
        yield f"{VALID_SCORES}: id_student, code_presentation: expected the {len(valid)} rows of the valid split ({rel}), found {len(frame)} rows that are not its rows"
        return
    if pd.to_numeric(frame["y_true"], errors="coerce").isna().any() or _tally(
        scores, "id_student", "y_true"
    ) != _tally(valid, key, label):
        yield f"{VALID_SCORES}: y_true: expected the valid split's {label} on every row, found other labels"
        return
    yield from _quantile_problems("threshold", "y_score", s, report["budget"], report["threshold"])


def _column_problems(pred: Table, attributes: list[str]) -> list[str]:
    """What is wrong with the predictions' columns, worked out once per file."""
    return pred.derive(
        ("columns", tuple(attributes)), lambda: list(_columns(pred.frame, attributes))
    )


def _columns(frame, attributes: list[str]) -> Problems:
    import pandas as pd

    wanted = [*PREDICTION_COLUMNS, *attributes]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        yield (
            f"{PREDICTIONS}: columns: expected {', '.join(wanted)}, found no {', '.join(missing)}"
        )
        return
    if len(frame) == 0:
        yield f"{PREDICTIONS}: rows: expected one row per learner of the test split, found none"
        return
    for column in ("id_student", "y_true", "y_pred"):
        numbers = pd.to_numeric(frame[column], errors="coerce")
        bad = ~numbers.isin([0, 1]) if column != "id_student" else numbers.isna()
        bad |= numbers.isna() | (numbers != numbers.round())
        if bad.any():
            expected = "an integer" if column == "id_student" else "0 or 1"
            yield (
                f"{PREDICTIONS}: {column}: expected {expected} on every row, found "
                f"{int(bad.sum())} other values (for example {_examples(frame[column][bad])})"
            )
    scores = pd.to_numeric(frame["y_score"], errors="coerce")
    bad = scores.isna() | ~np.isfinite(scores) | (scores < 0) | (scores > 1)
    if bad.any():
        yield (
            f"{PREDICTIONS}: y_score: expected a probability in [0, 1] on every row, found "
            f"{int(bad.sum())} missing, non-numeric or out-of-range values "
            f"(for example {_examples(frame['y_score'][bad])})"
        )
    if frame["code_presentation"].isna().any():
        yield f"{PREDICTIONS}: code_presentation: expected a presentation on every row, found blanks"


def _labels(frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """y_true, y_score and y_pred as arrays (read-only)."""
    arrays = (
        frame["y_true"].to_numpy(dtype="int64"),
        frame["y_score"].to_numpy(dtype=float),
        frame["y_pred"].to_numpy(dtype="int64"),
    )
    for array in arrays:
        array.flags.writeable = False
    return arrays


def _test_split(ws: Workspace) -> tuple[dict, Table, str, str]:
    manifest = read_manifest(ws)
    key = manifest_field(manifest, "key", "id_student")
    label = manifest_field(manifest, "label", "at_risk")
    table, _ = _labelled_split(ws, manifest, "test", key, label)
    return manifest, table, key, label


def _rows(*columns) -> Counter:
    return Counter(zip(*columns, strict=True))


def _ids(table: Table, key: str) -> tuple[np.ndarray, np.ndarray]:
    """The (learner, presentation) of every row, computed once per file."""

    def compute() -> tuple[np.ndarray, np.ndarray]:
        frame = table.frame
        return (
            frame[key].astype("int64").to_numpy(),
            frame["code_presentation"].astype(str).to_numpy(),
        )

    return table.derive(("ids", key), compute)


def _groups(table: Table, attribute: str) -> np.ndarray:
    return table.derive(("groups", attribute), lambda: group_labels(table.frame[attribute]))


def _tally(table: Table, key: str, column: str | None = None, groups: bool = False) -> Counter:
    """Rows as a multiset of (learner, presentation[, a column's value]), once per file."""

    def compute() -> Counter:
        ids = _ids(table, key)
        if column is None:
            return _rows(*ids)
        values = (
            _groups(table, column) if groups else table.frame[column].astype("int64").to_numpy()
        )
        return _rows(*ids, values)

    return table.derive(("tally", key, column, groups), compute)


def _split_problems(
    pred: Table, split: Table, key: str, label: str, rel: str, attributes: list[str]
) -> Problems:
    """The predictions are the test split's rows (as a multiset of learner and presentation), with
    its labels and its group attributes."""
    have, want = _tally(pred, "id_student"), _tally(split, key)
    if have != want:
        extra, absent = have - want, want - have

        def some(rows: Counter) -> str:
            return f" (for example {_examples(f'{i}/{p}' for i, p in rows)})" if rows else ""

        yield (
            f"{PREDICTIONS}: id_student, code_presentation: expected the {len(split)} rows of the "
            f"test split ({rel}), found {len(pred)} rows; {sum(extra.values())} not in the test "
            f"split{some(extra)}, {sum(absent.values())} test rows missing{some(absent)}"
        )
        return
    if not split.derive(("binary", label), lambda: bool(split.frame[label].isin([0, 1]).all())):
        raise Invalid(f"{rel}: {label}: expected 0 or 1 on every row, found other values")
    have, want = _tally(pred, "id_student", "y_true"), _tally(split, key, label)
    differ = have - want if have != want else None
    if differ:
        yield (
            f"{PREDICTIONS}: y_true: expected the test split's {label} on every row, found "
            f"{sum(differ.values())} rows that differ (for example id_student/presentation "
            f"{_examples(f'{i}/{p}' for i, p, _ in differ)})"
        )
    for attribute in attributes:
        if attribute not in split.frame.columns:
            yield f"{rel}: columns: expected a column {attribute!r} to group learners by, found none"
            continue
        have = _tally(pred, "id_student", attribute, groups=True)
        want = _tally(split, key, attribute, groups=True)
        differ = have - want if have != want else None
        if differ:
            yield (
                f"{PREDICTIONS}: {attribute}: expected the test split's {attribute} on every row, "
                f"found {sum(differ.values())} rows that differ"
            )


def _metric_problems(report: dict, y: np.ndarray, s: np.ndarray, p: np.ndarray) -> Problems:
    source = f"(recomputed from {PREDICTIONS})"
    cm = confusion(y, p)
    for name, count in cm.items():
        claimed = report["confusion_matrix"][name]
        if claimed != count:
            yield f"{REPORT}: confusion_matrix.{name}: expected {count} {source}, found {claimed}"
    recomputed = label_metrics(cm) | {"brier": brier(y, s)}
    if 0 < y.sum() < len(y):
        recomputed |= {"roc_auc": roc_auc(y, s), "pr_auc": average_precision(y, s)}
    else:
        yield f"{PREDICTIONS}: y_true: expected both classes (0 and 1) in the test split, found one"
    for name, value in recomputed.items():
        if name in report["metrics"] and not _close(report["metrics"][name], value):
            yield f"{REPORT}: metrics.{name}: expected {value:.6f} {source}, found {report['metrics'][name]!r}"
    if y.sum() == 0:
        return
    found = report["metrics"]["recall_at_budget"]
    low, high = recall_at_budget_bounds(y, s, report["budget"])
    if not low - TOLERANCE <= found <= high + TOLERANCE:
        shown = f"{low:.6f}" if high - low < TOLERANCE else f"between {low:.6f} and {high:.6f}"
        yield (
            f"{REPORT}: metrics.recall_at_budget: expected {shown}, the recall among the "
            f"{report['budget']} x {len(y)} learners with the highest y_score {source}, "
            f"found {found!r}"
        )


def _calibration_problems(report: dict, y: np.ndarray, s: np.ndarray) -> Problems:
    expected = calibration_bins(y, s)
    found = report["calibration"]["bins"]
    field = f"{REPORT}: calibration.bins"
    if [round(b["lower"], 6) for b in found] != [round(b["lower"], 6) for b in expected]:
        yield (
            f"{field}: expected the non-empty bins of width 0.1 starting at "
            f"{[round(b['lower'], 1) for b in expected]}, found bins starting at "
            f"{[b['lower'] for b in found]}"
        )
        return
    for i, (have, want) in enumerate(zip(found, expected, strict=True)):
        for name in ("upper", "count", "mean_score", "fraction_positive"):
            if not _close(have[name], want[name]):
                yield f"{field}[{i}].{name}: expected {want[name]:.6g} (recomputed from {PREDICTIONS}), found {have[name]!r}"


def _group_problems(report: dict, pred: Table, y: np.ndarray, p: np.ndarray, limit) -> Problems:
    for attribute, entry in report["groups"].items():
        field = f"{REPORT}: groups.{attribute}"
        labels = _groups(pred, attribute)
        values, positives = group_metric(y, p, labels, entry["metric"], entry["min_positives"])
        if set(entry["values"]) != set(values):
            yield (
                f"{field}.values: expected the groups with at least {entry['min_positives']} "
                f"positive learners {sorted(values)}, found {sorted(entry['values'])} "
                f"(positives per group: {positives})"
            )
            continue
        for group, value in values.items():
            if not _close(entry["values"][group], value):
                yield (
                    f"{field}.values.{group}: expected {value:.6f} ({entry['metric']} recomputed "
                    f"from {PREDICTIONS}), found {entry['values'][group]!r}"
                )
        gap = max(values.values()) - min(values.values()) if values else 0.0
        if not _close(entry["gap"], gap):
            yield (
                f"{field}.gap: expected {gap:.6f} (the largest minus the smallest recomputed "
                f"{entry['metric']}), found {entry['gap']!r}"
            )
        if limit is not None and not _close(entry["max_gap"], limit):
            yield f"{field}.max_gap: expected {limit} ({PROBLEM} constraints.max_fairness_gap), found {entry['max_gap']!r}"
        elif entry["max_gap"] is not None and entry["within_limit"] != (gap <= entry["max_gap"]):
            yield (
                f"{field}.within_limit: expected {str(gap <= entry['max_gap']).lower()} (gap "
                f"{gap:.4f} against max_gap {entry['max_gap']}), found {entry['within_limit']!r}"
            )


def _robustness_problems(report: dict) -> Problems:
    for name in ("roc_auc", "recall_at_budget"):
        found = report["robustness"]["clean"][name]
        expected = report["metrics"][name]
        if not _close(found, expected):
            yield (
                f"{REPORT}: robustness.clean.{name}: expected {expected!r} (metrics.{name}: the "
                f"clean scenario is the unperturbed test split), found {found!r}"
            )


def _drift_problems(ws: Workspace, report: dict, manifest: dict, tables: dict) -> Problems:
    drift = report["drift"]
    splits = manifest["splits"]
    names = [drift["reference"], *drift["splits"]]
    for name in names:
        if name not in splits:
            yield f"{REPORT}: drift: expected splits named in {MANIFEST} {sorted(splits)}, found {name!r}"
            return
    for name in names:
        if name not in tables:
            tables[name], _ = split_table(ws, manifest, name)
    reference = tables[drift["reference"]]
    for name, entry in drift["splits"].items():
        current = tables[name]
        for feature, stats in entry["features"].items():
            field = f"{REPORT}: drift.splits.{name}.features.{feature}"
            columns = (reference.frame.get(feature), current.frame.get(feature))
            if any(c is None or c.dtype.kind not in "iuf" for c in columns):
                yield f"{field}: expected a numeric column of both {drift['reference']} and {name}, found none"
                continue
            stat = reference.column(feature).versus(current.column(feature), _ks)
            if stat is None:  # no finite value on a side: nothing to compare
                continue
            if not _close(stats["ks_stat"], stat):
                yield f"{field}.ks_stat: expected {stat:.6f} (recomputed from the split files), found {stats['ks_stat']!r}"
        drifted = sorted(
            f for f, st in entry["features"].items() if st["ks_pvalue"] < drift["alpha"]
        )
        if sorted(entry["drifted"]) != drifted:
            yield (
                f"{REPORT}: drift.splits.{name}.drifted: expected the features with ks_pvalue "
                f"below alpha {drift['alpha']} {drifted}, found {sorted(entry['drifted'])}"
            )


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _success_problems(report: dict, problem: dict) -> Problems:
    success = report["success"]
    if "metric" in problem and success["metric"] != problem["metric"]:
        yield f"{REPORT}: success.metric: expected {problem['metric']!r} ({PROBLEM} success.metric), found {success['metric']!r}"
    if _number(problem.get("target")) and not _close(success["target"], problem["target"]):
        yield f"{REPORT}: success.target: expected {problem['target']!r} ({PROBLEM} success.target), found {success['target']!r}"
    if _number(problem.get("budget")) and not _close(report["budget"], problem["budget"]):
        yield f"{REPORT}: budget: expected {problem['budget']!r} ({PROBLEM} success.budget), found {report['budget']!r}"
    value = report["metrics"][success["metric"]]
    if not _close(success["value"], value):
        yield f"{REPORT}: success.value: expected {value!r} (metrics.{success['metric']}), found {success['value']!r}"
    met = success["value"] >= success["target"]
    if success["met"] != met:
        yield (
            f"{REPORT}: success.met: expected {str(met).lower()} ({success['metric']} "
            f"{success['value']} against target {success['target']}), found {str(success['met']).lower()}"
        )


def _model_problems(ws: Workspace, report: dict) -> Problems:
    run_id, role = report["model"]["run_id"], report["model"]["role"]
    with open_store(ws) as store:
        store.require(("runs", "tags"))
        rows = store.query(
            "SELECT lifecycle_stage FROM runs WHERE run_uuid = ?",
            (run_id,),
        )
        if not rows:
            yield f"{REPORT}: model.run_id: expected a run in {STORE}, found no run {run_id}"
            return
        tag = store.query("SELECT value FROM tags WHERE run_uuid = ? AND key = 'role'", (run_id,))
        found = tag[0][0] if tag else None
        if found != role:
            yield f"{REPORT}: model.role: expected {found!r} (the run's tag role in {STORE}), found {role!r}"


# --- The baseline, the intervals, the comparison and the gate (issue 10).


def _same(found: object, expected: float | None, tolerance: float = BOOTSTRAP_TOLERANCE) -> bool:
    """A recomputed bound: both None, or numbers within `tolerance`."""
    if expected is None or found is None:
        return found is None and expected is None
    return (
        isinstance(found, int | float)
        and not isinstance(found, bool)
        and abs(float(found) - expected) <= tolerance
    )


def _shown(value: float | None) -> str:
    return "null" if value is None else f"{value:.9f}"


def _interval_problems(field: str, found: dict, expected: dict, how: str) -> Problems:
    for name in ("estimate", "low", "high"):
        if not _same(found.get(name), expected[name]):
            yield f"{REPORT}: {field}.{name}: expected {_shown(expected[name])} ({how}), found {found.get(name)!r}"


def read_baseline_predictions(ws: Workspace) -> Table:
    path = ws.resolve(
        BASELINE_PREDICTIONS, what=BASELINE_PREDICTIONS, max_bytes=MAX_PREDICTIONS_BYTES
    )
    return parse(
        path.read_bytes(),
        BASELINE_PREDICTIONS,
        how="baseline predictions",
        dtype={"code_presentation": str},
    )


def _baseline_scores(
    ws: Workspace, report: dict, pred: Table
) -> Generator[str, None, tuple[np.ndarray, np.ndarray] | None]:
    """The baseline's test scores and decisions, row for row with predictions.csv, once they are
    the same learners, probabilities, and decisions at the baseline's threshold."""
    import pandas as pd

    frame = read_baseline_predictions(ws).frame
    missing = [c for c in BASELINE_COLUMNS if c not in frame.columns]
    if missing:
        yield f"{BASELINE_PREDICTIONS}: columns: expected {', '.join(BASELINE_COLUMNS)}, found no {', '.join(missing)}"
        return None
    ours = pred.frame
    if len(frame) != len(ours):
        yield (
            f"{BASELINE_PREDICTIONS}: rows: expected the {len(ours)} rows of {PREDICTIONS}, in the "
            f"same order (the paired comparison scores both models on the same learners), found {len(frame)}"
        )
        return None
    for column in ("id_student", "code_presentation", "y_true"):
        theirs = frame[column].astype(str).to_numpy()
        differ = int(np.sum(theirs != ours[column].astype(str).to_numpy()))
        if differ:
            yield (
                f"{BASELINE_PREDICTIONS}: {column}: expected the rows of {PREDICTIONS} in the same "
                f"order (row i is the same learner in both files), found {differ} rows that differ"
            )
            return None
    scores = pd.to_numeric(frame["y_score"], errors="coerce")
    bad = scores.isna() | ~np.isfinite(scores) | (scores < 0) | (scores > 1)
    if bad.any():
        yield f"{BASELINE_PREDICTIONS}: y_score: expected a probability in [0, 1] on every row, found {int(bad.sum())} other values"
        return None
    decisions = pd.to_numeric(frame["y_pred"], errors="coerce")
    if not decisions.isin([0, 1]).all():
        yield f"{BASELINE_PREDICTIONS}: y_pred: expected 0 or 1 on every row, found other values"
        return None
    s, p = scores.to_numpy(dtype=float), decisions.to_numpy(dtype="int64")
    threshold = report["baseline"]["threshold"]
    wrong = int(np.sum(p != (s >= threshold)))
    if wrong:
        yield (
            f"{BASELINE_PREDICTIONS}: y_pred: expected 1 where y_score >= baseline.threshold "
            f"({threshold} in {REPORT}) and 0 elsewhere, found {wrong} rows that differ"
        )
        return None
    return s, p


def _baseline_threshold_problems(ws: Workspace, report: dict) -> Problems:
    import pandas as pd

    frame = read_valid_scores(ws).frame
    if BASELINE_VALID_COLUMN not in frame.columns:
        yield f"{VALID_SCORES}: columns: expected a column {BASELINE_VALID_COLUMN} (the baseline's validation scores its threshold is chosen on), found none"
        return
    s = pd.to_numeric(frame[BASELINE_VALID_COLUMN], errors="coerce").to_numpy(dtype=float)
    if len(s) == 0 or (~np.isfinite(s) | (s < 0) | (s > 1)).any():
        yield f"{VALID_SCORES}: {BASELINE_VALID_COLUMN}: expected a probability in [0, 1] on every row, found other values"
        return
    yield from _quantile_problems(
        "baseline.threshold",
        BASELINE_VALID_COLUMN,
        s,
        report["budget"],
        report["baseline"]["threshold"],
    )


def _quantile_problems(
    field: str, column: str, s: np.ndarray, budget: float, threshold: float
) -> Problems:
    """A decision threshold (`field` of the report) must be the `1 - budget` quantile of the
    valid scores in `column` of valid_scores.csv (`threshold_bounds`)."""
    expected, low, high = threshold_bounds(s, budget)
    if not low - TOLERANCE <= threshold <= high + TOLERANCE:
        yield (
            f"{REPORT}: {field}: expected the 1 - budget quantile of the valid scores "
            f"(np.quantile of {column} in {VALID_SCORES} at {1 - budget:g}: {expected:.6f}, "
            f"anything from {low:.6f} to {high:.6f}), found {threshold!r}, which flags "
            f"{flagged_share(s, threshold):.1%} of the valid learners against a budget of "
            f"{budget:.0%}: choose the threshold on the valid split, from the budget, never on test"
        )


def _baseline_metric_problems(report: dict, y: np.ndarray, s: np.ndarray) -> Problems:
    source = f"(recomputed from {BASELINE_PREDICTIONS})"
    claimed = report["baseline"]["metrics"]
    if 0 < y.sum() < len(y):
        for name, value in (
            ("roc_auc", roc_auc(y, s)),
            ("pr_auc", average_precision(y, s)),
            ("brier", brier(y, s)),
        ):
            if not _close(claimed[name], value):
                yield f"{REPORT}: baseline.metrics.{name}: expected {value:.6f} {source}, found {claimed[name]!r}"
        low, high = recall_at_budget_bounds(y, s, report["budget"])
        if not low - TOLERANCE <= claimed["recall_at_budget"] <= high + TOLERANCE:
            yield f"{REPORT}: baseline.metrics.recall_at_budget: expected between {low:.6f} and {high:.6f} {source}, found {claimed['recall_at_budget']!r}"


def _baseline_run_problems(ws: Workspace, report: dict) -> Problems:
    run_id, role = report["baseline"]["run_id"], report["baseline"]["role"]
    with open_store(ws) as store:
        store.require(("runs", "tags"))
        if not store.query("SELECT 1 FROM runs WHERE run_uuid = ?", (run_id,)):
            yield f"{REPORT}: baseline.run_id: expected a run in {STORE}, found no run {run_id}"
            return
        tag = store.query("SELECT value FROM tags WHERE run_uuid = ? AND key = 'role'", (run_id,))
        found = tag[0][0] if tag else None
        if found != "baseline" or role != "baseline":
            yield (
                f"{REPORT}: baseline.role: expected the run stage 05 registers as version 1, "
                f"tagged role=baseline in {STORE}, found role {role!r} for a run tagged {found!r}"
            )


def _bootstrap_settings(section: str, entry: dict) -> Generator[str, None, bool]:
    if entry["rounds"] < MIN_ROUNDS:
        yield (
            f"{REPORT}: {section}.rounds: expected at least {MIN_ROUNDS} bootstrap rounds "
            f"(fewer give intervals too coarse to gate on; the course uses 1000), found {entry['rounds']}"
        )
        return False
    return True


def _uncertainty_problems(
    report: dict, pred: Table, y: np.ndarray, s: np.ndarray, p: np.ndarray, bp: np.ndarray
) -> Problems:
    unc = report["uncertainty"]
    if not (yield from _bootstrap_settings("uncertainty", unc)):
        return
    seed, rounds, level, budget = unc["seed"], unc["rounds"], unc["level"], report["budget"]
    how = f"the bootstrap of {PREDICTIONS} with seed {seed}, {rounds} rounds, level {level}"
    metric = report["success"]["metric"]
    if unc["success"]["metric"] != metric:
        yield f"{REPORT}: uncertainty.success.metric: expected {metric!r} (success.metric), found {unc['success']['metric']!r}"
    else:
        expected = bootstrap_interval(
            lambda rows: metric_value(metric, y[rows], s[rows], budget, p[rows]),
            len(y),
            rounds,
            seed,
            level,
        )
        yield from _interval_problems("uncertainty.success", unc["success"], expected, how)
    if set(unc["groups"]) != set(report["groups"]):
        yield f"{REPORT}: uncertainty.groups: expected an interval for every attribute of groups {sorted(report['groups'])}, found {sorted(unc['groups'])}"
        return
    for attribute, entry in unc["groups"].items():
        group = report["groups"][attribute]
        labels = np.unique(_groups(pred, attribute), return_inverse=True)[1].ravel()
        name, least = group["metric"], group["min_positives"]

        def gap(decisions: np.ndarray, rows: np.ndarray) -> float:
            return group_gap(y[rows], decisions[rows], labels[rows], name, least)  # noqa: B023

        expected = bootstrap_interval(lambda rows: gap(p, rows), len(y), rounds, seed, level)
        yield from _interval_problems(f"uncertainty.groups.{attribute}", entry, expected, how)
        expected = bootstrap_interval(
            lambda rows: gap(p, rows) - gap(bp, rows), len(y), rounds, seed, level
        )
        yield from _interval_problems(
            f"uncertainty.groups.{attribute}.versus_baseline",
            entry["versus_baseline"],
            expected,
            how + f", candidate's gap minus the baseline's from {BASELINE_PREDICTIONS}",
        )


def _comparison_problems(report: dict, y: np.ndarray, s: np.ndarray, bs: np.ndarray) -> Problems:
    cmp = report["comparison"]
    if not (yield from _bootstrap_settings("comparison", cmp)):
        return
    metric, budget = cmp["metric"], report["budget"]
    success = report["success"]["metric"]
    wanted = success if success in SCORE_METRICS else "recall_at_budget"
    if metric != wanted:
        yield f"{REPORT}: comparison.metric: expected {wanted!r} (success.metric, or recall_at_budget for a label metric), found {metric!r}"
        return
    expected = paired_difference(
        y,
        bs,
        s,
        lambda yy, ss: metric_value(metric, yy, ss, budget),
        cmp["rounds"],
        cmp["seed"],
        cmp["level"],
    )
    how = (
        f"candidate minus baseline, paired bootstrap of {PREDICTIONS} and {BASELINE_PREDICTIONS} "
        f"with seed {cmp['seed']}, {cmp['rounds']} rounds"
    )
    yield from _interval_problems("comparison", cmp, expected, how)
    for flag, value in (
        ("better", expected["low"] is not None and expected["low"] > 0),
        ("worse", expected["high"] is not None and expected["high"] < 0),
    ):
        if cmp[flag] != value:
            yield f"{REPORT}: comparison.{flag}: expected {str(value).lower()} (the interval [{_shown(expected['low'])}, {_shown(expected['high'])}] against 0), found {cmp[flag]!r}"


GATE_RULE = (
    "hold when the success metric's upper bound is below the target, when the paired difference "
    "with the baseline has its upper bound below 0, or when a group's gap has its lower bound "
    "above the fairness limit and its paired difference with the baseline's gap has its lower "
    "bound above 0; canary otherwise"
)


def _gate_problems(report: dict) -> Problems:
    """The gate's numbers are the report's intervals, its flags follow from them, and its verdict
    follows from its flags by the contract's rule."""
    gate, unc, cmp = report["gate"], report["uncertainty"], report["comparison"]
    problems: list[str] = []
    success = gate["success"]
    target = report["success"]["target"]
    if not _close(success["target"], target):
        problems.append(
            f"{REPORT}: gate.success.target: expected {target!r} (success.target), found {success['target']!r}"
        )
    for bound in ("low", "high"):
        if not _same(success[bound], unc["success"][bound]):
            problems.append(
                f"{REPORT}: gate.success.{bound}: expected {unc['success'][bound]!r} (uncertainty.success.{bound}), found {success[bound]!r}"
            )
    high = unc["success"]["high"]
    below = high is not None and high < target
    if success["clearly_below"] != below:
        problems.append(
            f"{REPORT}: gate.success.clearly_below: expected {str(below).lower()} (upper bound {high} against target {target}), found {success['clearly_below']!r}"
        )
    limits = {e["max_gap"] for e in report["groups"].values()}
    limit = next(iter(limits)) if len(limits) == 1 else None
    fairness = gate["fairness"]
    if len(limits) == 1 and not _same(fairness["max_gap"], limit, TOLERANCE):
        problems.append(
            f"{REPORT}: gate.fairness.max_gap: expected {limit!r} (the groups' max_gap), found {fairness['max_gap']!r}"
        )
    held_by_gap = []
    if set(fairness["gaps"]) != set(unc["groups"]):
        problems.append(
            f"{REPORT}: gate.fairness.gaps: expected every attribute of uncertainty.groups {sorted(unc['groups'])}, found {sorted(fairness['gaps'])}"
        )
    else:
        for attribute, entry in fairness["gaps"].items():
            interval = unc["groups"][attribute]
            field = f"{REPORT}: gate.fairness.gaps.{attribute}"
            for bound in ("low", "high"):
                if not _same(entry[bound], interval[bound]):
                    problems.append(
                        f"{field}.{bound}: expected {interval[bound]!r} (uncertainty.groups.{attribute}.{bound}), found {entry[bound]!r}"
                    )
            versus = interval["versus_baseline"]["low"]
            if not _same(entry["versus_baseline_low"], versus):
                problems.append(
                    f"{field}.versus_baseline_low: expected {versus!r} (uncertainty.groups.{attribute}.versus_baseline.low), found {entry['versus_baseline_low']!r}"
                )
            low, limit = interval["low"], report["groups"][attribute]["max_gap"]
            over = limit is not None and low is not None and low > limit
            wider = versus is not None and versus > 0
            if entry["clearly_over"] != over:
                problems.append(
                    f"{field}.clearly_over: expected {str(over).lower()} (lower bound {low} against the limit {limit}), found {entry['clearly_over']!r}"
                )
            if entry["wider_than_baseline"] != wider:
                problems.append(
                    f"{field}.wider_than_baseline: expected {str(wider).lower()} (lower bound {versus} of the gap's difference with the baseline's, against 0), found {entry['wider_than_baseline']!r}"
                )
            if over and wider:
                held_by_gap.append(attribute)
    versus = gate["versus_baseline"]
    for bound in ("low", "high"):
        if not _same(versus[bound], cmp[bound]):
            problems.append(
                f"{REPORT}: gate.versus_baseline.{bound}: expected {cmp[bound]!r} (comparison.{bound}), found {versus[bound]!r}"
            )
    worse = cmp["high"] is not None and cmp["high"] < 0
    if versus["clearly_worse"] != worse:
        problems.append(
            f"{REPORT}: gate.versus_baseline.clearly_worse: expected {str(worse).lower()} (upper bound {cmp['high']} against 0), found {versus['clearly_worse']!r}"
        )
    yield from problems
    if problems:
        return
    why = ["the success metric is below the target at its upper bound"] if below else []
    why += (
        ["the candidate is worse than the baseline at the difference's upper bound"]
        if worse
        else []
    )
    why += [f"the {a} gap is over the limit and wider than the baseline's" for a in held_by_gap]
    verdict = "hold" if why else "canary"
    if gate["verdict"] != verdict:
        because = "; ".join(why) if why else "nothing in the numbers rules the candidate out"
        yield f"{REPORT}: gate.verdict: expected {verdict!r} by the gate's rule ({GATE_RULE}): {because}; found {gate['verdict']!r}"
    elif verdict == "hold" and not gate["reasons"]:
        yield f"{REPORT}: gate.reasons: expected the reasons for the hold in words (stage 05 shows them), found none"


def _robustness_verdict_problems(report: dict) -> Problems:
    robustness = report["robustness"]
    clean = robustness["clean"]
    failed = []
    for name, entry in robustness.items():
        if name == "clean":
            continue
        field = f"{REPORT}: robustness.{name}"
        if "tolerance" not in entry or "passed" not in entry:
            yield f"{field}: expected a tolerance (the largest drop from clean accepted) and passed (true or false), found {'no tolerance' if 'tolerance' not in entry else 'no passed'}"
            continue
        values = [entry[k] for k in ("roc_auc", "recall_at_budget")]
        drops = [
            clean[k] - v
            for k, v in zip(("roc_auc", "recall_at_budget"), values, strict=True)
            if v is not None
        ]
        passed = (
            entry.get("error") is None
            and len(drops) == 2
            and max(drops) <= entry["tolerance"] + 1e-12
        )
        if entry["passed"] != passed:
            shown = ", ".join(f"{d:.4f}" for d in drops) or "no numbers"
            yield (
                f"{field}.passed: expected {str(passed).lower()} (drops from clean in roc_auc, "
                f"recall_at_budget: {shown}; error {entry.get('error')!r}; tolerance "
                f"{entry['tolerance']}), found {entry['passed']!r}"
            )
        if not passed:
            failed.append(name)
    verdict = report["robustness_verdict"]
    if verdict["passed"] != (not failed) or sorted(verdict["failed"]) != sorted(failed):
        yield f"{REPORT}: robustness_verdict: expected passed {str(not failed).lower()} with failed {sorted(failed)} (the scenarios' verdicts), found passed {verdict['passed']!r} with failed {sorted(verdict['failed'])}"


def _new_problems(ws: Workspace, report: dict, pred: Table, y, s, p) -> Problems:
    """Issue 10: the baseline on the test split, the intervals, the comparison and the gate."""
    yield from _robustness_verdict_problems(report)
    yield from _baseline_run_problems(ws, report)
    yield from _baseline_threshold_problems(ws, report)
    scores = yield from _baseline_scores(ws, report, pred)
    if scores is None:
        return
    bs, bp = scores
    yield from _baseline_metric_problems(report, y, bs)
    yield from _uncertainty_problems(report, pred, y, s, p, bp)
    yield from _comparison_problems(report, y, s, bs)
    yield from _gate_problems(report)


@check("evaluated", stage=STAGE)
def evaluated(ws: Workspace) -> Problems:
    """The report's every number recomputes from the predictions, which are the test split."""
    report = yield from valid_json(ws, REPORT, "evaluation_report")
    if report is None:
        return
    pred = read_predictions(ws)
    attributes = list(report["groups"])
    problems = _column_problems(pred, attributes)
    if problems:
        yield from problems
        return
    manifest, split, key, label = _test_split(ws)
    if report["data_version"] != manifest.get("version"):
        yield f"{REPORT}: data_version: expected {manifest.get('version')} ({MANIFEST} version), found {report['data_version']}"
    problems = list(
        _split_problems(pred, split, key, label, manifest["splits"]["test"]["path"], attributes)
    )
    yield from problems
    if problems:
        return
    y, s, p = pred.derive("y", lambda: _labels(pred.frame))
    threshold = report["threshold"]
    wrong = int(np.sum(p != (s >= threshold)))
    if wrong:
        yield (
            f"{PREDICTIONS}: y_pred: expected 1 where y_score >= threshold ({threshold} in "
            f"{REPORT}) and 0 elsewhere, found {wrong} rows that differ"
        )
        return
    yield from _threshold_problems(ws, report, manifest, key, label)
    yield from _metric_problems(report, y, s, p)
    yield from _calibration_problems(report, y, s)
    problem = problem_fields(ws)
    limit = problem.get("max_fairness_gap")
    yield from _group_problems(report, pred, y, p, limit)
    yield from _robustness_problems(report)
    yield from _success_problems(report, problem)
    yield from _drift_problems(ws, report, manifest, {"test": split})
    yield from _model_problems(ws, report)
    yield from _new_problems(ws, report, pred, y, s, p)
