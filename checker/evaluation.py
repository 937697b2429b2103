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

import numpy as np

from checker.contract import valid_json
from checker.errors import Invalid
from checker.manifest import manifest_field, read_manifest, split_table
from checker.metrics import (
    average_precision,
    brier,
    calibration_bins,
    confusion,
    flagged_share,
    ks_statistic,
    label_metrics,
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
    """`metric` per group with at least `min_positives` positive learners, and every group's count
    of positives."""
    values, positives = {}, {}
    for name in sorted(set(groups)):
        mask = groups == name
        positives[name] = int(y[mask].sum())
        if positives[name] >= min_positives:
            values[name] = label_metrics(confusion(y[mask], p[mask]))[metric]
    return values, positives


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
    budget, threshold = report["budget"], report["threshold"]
    expected, low, high = threshold_bounds(s, budget)
    if not low - TOLERANCE <= threshold <= high + TOLERANCE:
        yield (
            f"{REPORT}: threshold: expected the 1 - budget quantile of the valid scores "
            f"(np.quantile of y_score in {VALID_SCORES} at {1 - budget:g}: {expected:.6f}, "
            f"anything from {low:.6f} to {high:.6f}), found {threshold!r}, which flags "
            f"{flagged_share(s, threshold):.1%} of the valid learners against a budget of "
            f"{budget:.0%}: choose the threshold on the valid split, from the budget, never on test"
        )


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
