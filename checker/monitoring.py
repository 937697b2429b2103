"""`monitoring/report.json`, the drift and health report of stage 06, and the `monitored` check.

The check recomputes the report from files: PSI and KS of every feature from the split files the
manifest names, prediction drift and performance by presentation from `monitoring/scores.csv.gz`,
latency p95 and error rate from `serving/requests.jsonl`. Then it checks that each alert fired
exactly when its value is over its threshold, and that the decision follows from the alerts.

`psi` below is the course's definition; a learner's own PSI must agree with it within 0.01.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from functools import cached_property

from checker.contract import schema_problems
from checker.errors import Invalid
from checker.manifest import MANIFEST, file_bytes, load_split, parse_split
from checker.registry import Problems, check
from checker.table import Column, Table
from checker.workspace import Workspace

REPORT = "monitoring/report.json"
SCORES = "monitoring/scores.csv.gz"
REQUESTS = "serving/requests.jsonl"
PROBLEM = "problem.yaml"
STAGE = "06-monitoring.ipynb (cells 'Your turn (1 of 3)', 'Your turn (2 of 3)' and 'Your turn (3 of 3)')"
REFERENCE, CURRENT, VALID = "train", "production", "valid"
EMPTY_SHARE = 1e-4  # the share an empty bin gets, so that ln(q/p) stays finite
QUANTILES = tuple(i / 10 for i in range(1, 10))
TOLERANCE = 0.01  # absolute, for PSI, KS, prediction PSI, AUC, recall and the alert values
SERVING_TOLERANCE = 1e-6  # relative, for p95 and error rate (both recompute exactly)
SCORE_COLUMNS = ("split", "id_student", "code_presentation", "y_true", "y_score")
SERVING_RULES = ("latency_p95_ms", "error_rate")
REQUIRED_RULES = ("feature_psi_max", "prediction_psi", "auc_drop")


# --- the course's figures -------------------------------------------------------------------


def is_numeric(series) -> bool:  # noqa: ANN001 - a pandas Series
    """Numeric for PSI and KS: pandas reads the column as numbers (booleans are categories)."""
    return _column(series).numeric


def _column(values) -> Column:  # noqa: ANN001
    """A checker Column for a pandas Series or array-like (a Column stays as it is)."""
    import pandas as pd

    return values if isinstance(values, Column) else Column(pd.Series(values))


def psi_counts(reference, current) -> tuple[list[str], list[int], list[int]]:  # noqa: ANN001
    """The bins of the course's PSI, with the reference's and the current's count in each.

    Numeric (both columns numeric): bin edges are the reference's deciles, `np.quantile` at
    0.1, ..., 0.9 (linear interpolation) on its non-missing values, duplicates dropped; the bins
    are (-inf, q1], (q1, q2], ..., (qk, inf), then one bin for missing values (NaN and +-inf).
    Categorical (otherwise): one bin per category (as text) seen in either, then one for missing.
    Takes pandas Series, array-likes or the checker's table columns (whose sorted values and
    category counts are computed once per file).
    """
    import numpy as np

    reference, current = _column(reference), _column(current)
    if reference.numeric and current.numeric:
        present = reference.finite
        edges = np.unique(np.quantile(present, QUANTILES)) if present.size else np.array([])
        labels = [f"<= {e:g}" for e in edges] + [f"> {edges[-1]:g}" if edges.size else "all"]

        def count(column: Column) -> list[int]:
            bins = np.searchsorted(edges, column.finite, side="left")
            counts = np.bincount(bins, minlength=edges.size + 1).tolist()
            return [*counts, len(column) - column.finite.size]

        return [*labels, "missing"], count(reference), count(current)

    ref_counts, cur_counts = reference.counts, current.counts
    categories = sorted(set(ref_counts) | set(cur_counts))
    return (
        [*categories, "missing"],
        [ref_counts.get(c, 0) for c in categories] + [reference.missing],
        [cur_counts.get(c, 0) for c in categories] + [current.missing],
    )


def shares(counts: Sequence[int]):  # noqa: ANN201 - a numpy array
    """Counts as proportions of all rows, with empty bins set to `EMPTY_SHARE`."""
    import numpy as np

    total = sum(counts)
    if total == 0:
        raise ValueError("PSI needs at least one row in each sample")
    p = np.asarray(counts, dtype=float) / total
    p[p == 0] = EMPTY_SHARE
    return p


def psi(reference, current) -> float:  # noqa: ANN001 - pandas Series or array-likes
    """Population stability index of `current` against `reference`: sum((q - p) * ln(q / p))."""
    import numpy as np

    _, ref, cur = psi_counts(reference, current)
    p, q = shares(ref), shares(cur)
    return float(np.sum((q - p) * np.log(q / p)))


def ks_stat(reference, current) -> float | None:  # noqa: ANN001
    """The two-sample Kolmogorov-Smirnov statistic (the largest gap between the two empirical
    CDFs, as `scipy.stats.ks_2samp` computes it) on the finite values of a numeric column;
    None for a categorical column or when a side has no values. Plain numpy: importing
    scipy.stats would cost a grade cell seconds."""
    import numpy as np

    reference, current = _column(reference), _column(current)
    if not (reference.numeric and current.numeric):
        return None
    ref, cur = reference.finite, current.finite
    if not ref.size or not cur.size:
        return None
    values = np.concatenate([ref, cur])
    gap = (
        np.searchsorted(ref, values, side="right") / ref.size
        - np.searchsorted(cur, values, side="right") / cur.size
    )
    return float(np.abs(gap).max())


def roc_auc(y_true, y_score) -> float:  # noqa: ANN001
    """Area under the ROC curve (ties share their average rank, as in scikit-learn)."""
    import numpy as np

    y = np.asarray(y_true, dtype=int)
    positives = int(y.sum())
    negatives = len(y) - positives
    if not positives or not negatives:
        raise ValueError("ROC AUC needs both classes")
    from checker.evaluation import roc_auc as mann_whitney  # one definition for stages 04 and 06

    return mann_whitney(y, np.asarray(y_score, dtype=float))


def recall_at_budget(y_true, y_score, budget: float) -> float:  # noqa: ANN001
    """Recall among the top ceil(budget * n) learners by score (stable sort, highest first)."""
    import numpy as np

    y = np.asarray(y_true, dtype=int)
    if not y.sum():
        raise ValueError("recall needs at least one positive")
    k = math.ceil(budget * len(y))
    top = np.argsort(-np.asarray(y_score, dtype=float), kind="stable")[:k]
    return float(y[top].sum() / y.sum())


def recall_at_budget_bounds(y_true, y_score, budget: float) -> tuple[float, float]:  # noqa: ANN001
    """The values a fair recall at budget may take: from the floor(budget * n) top learners with
    ties at the cut broken against the positives, to the ceil(budget * n) with ties broken for
    them. Rounding the number of calls either way or sorting ties another way lands in between."""
    import numpy as np

    y = np.asarray(y_true, dtype=int)
    s = np.asarray(y_score, dtype=float)
    if not y.sum():
        raise ValueError("recall needs at least one positive")

    def positives_in_top(k: int, ties_for: bool) -> int:
        if k <= 0:
            return 0
        cut = np.sort(s)[::-1][min(k, len(s)) - 1]
        above, tied = s > cut, s == cut
        taken = min(k, len(s)) - int(above.sum())
        pos_tied = int(y[tied].sum())
        neg_tied = int(tied.sum()) - pos_tied
        extra = min(taken, pos_tied) if ties_for else max(0, taken - neg_tied)
        return int(y[above].sum()) + extra

    calls = budget * len(y)
    low = positives_in_top(math.floor(calls), ties_for=False)
    high = positives_in_top(math.ceil(calls), ties_for=True)
    return low / y.sum(), high / y.sum()


def p95(latencies: Iterable[float]) -> float:
    """95th percentile of the latencies, `numpy.percentile` (linear interpolation)."""
    import numpy as np

    return float(np.percentile(np.asarray(list(latencies), dtype=float), 95))


def is_error(record: dict) -> bool:
    """A request the model did not answer itself: a server error (status >= 500) or a fallback."""
    return record["status"] >= 500 or record["fallback"] is True


def error_rate(records: Sequence[dict]) -> float:
    """Share of requests that are errors in the sense of `is_error`."""
    return sum(is_error(r) for r in records) / len(records)


# --- reading the artifacts ------------------------------------------------------------------


def read_requests(ws: Workspace) -> list[dict]:
    """The request log's records, read once per grading by stage 05's strict reader (every line
    strict JSON and valid against `schemas/serving_request.schema.json`); else `Invalid`."""
    from checker.serving import read_log

    records = [record for _, record in read_log(ws)]
    if not records:
        raise Invalid(f"{REQUESTS}: expected at least one request, found an empty log")
    return records


def _split(ws: Workspace, manifest: dict, name: str) -> Table:
    split = manifest["splits"].get(name)
    if not isinstance(split, dict) or not isinstance(split.get("path"), str):
        raise Invalid(f"{MANIFEST}: splits.{name}.path: expected the {name} split, found none")
    return load_split(ws, split["path"], f"{MANIFEST}: splits.{name}.path")


def _manifest(ws: Workspace) -> dict:
    manifest = ws.read_json(MANIFEST)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("splits"), dict):
        raise Invalid(f"{MANIFEST}: splits: expected the splits object, found none")
    features = manifest.get("features")
    if not (isinstance(features, list) and features and all(isinstance(f, str) for f in features)):
        raise Invalid(
            f"{MANIFEST}: features: expected the list of feature columns, found {features!r}"
        )
    label = manifest.get("label")
    if not isinstance(label, str):
        raise Invalid(f"{MANIFEST}: label: expected the label column, found {label!r}")
    return manifest


def _problem_number(ws: Workspace, section: str, key: str) -> float | None:
    """A number from problem.yaml, or None when the file or the field is not usable."""
    try:
        problem = ws.read_yaml(PROBLEM)
    except Invalid:
        return None
    part = problem.get(section) if isinstance(problem, dict) else None
    value = part.get(key) if isinstance(part, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _far(claimed: float, recomputed: float, tolerance: float = TOLERANCE) -> bool:
    return abs(claimed - recomputed) > tolerance


# --- the check ------------------------------------------------------------------------------


def _feature_problems(report: dict, manifest: dict, reference: Table, current: Table) -> Problems:
    """Yield problems with the features' PSI and KS; return the recomputed PSI by column."""
    listed, recomputed = report["features"], {}
    absent = [f for f in manifest["features"] if f not in listed]
    if absent:
        yield f"{REPORT}: features: expected every feature in {MANIFEST}, found no {', '.join(absent)}"
    for column, entry in listed.items():
        field = f"{REPORT}: features.{column}"
        if column not in reference.frame.columns or column not in current.frame.columns:
            yield f"{field}: expected a column of the train and production splits, found no such column"
            continue
        ref, cur = reference.column(column), current.column(column)
        expected = recomputed[column] = ref.versus(cur, psi)
        if _far(entry["psi"], expected):
            yield f"{field}.psi: expected {expected:.4f} (recomputed from the splits, tolerance {TOLERANCE}), found {entry['psi']!r}"
        stat = ref.versus(cur, ks_stat)
        if stat is None:
            if entry["ks_stat"] is not None or entry["ks_pvalue"] is not None:
                yield f"{field}.ks_stat: expected null for a categorical column, found {entry['ks_stat']!r}"
        elif entry["ks_stat"] is None or entry["ks_pvalue"] is None:
            yield f"{field}.ks_stat: expected the KS statistic of a numeric column ({stat:.4f}), found null"
        elif _far(entry["ks_stat"], stat):
            yield f"{field}.ks_stat: expected {stat:.4f} (scipy.stats.ks_2samp, tolerance {TOLERANCE}), found {entry['ks_stat']!r}"
    return recomputed


def _score_problems(ws: Workspace, manifest: dict, splits: dict[str, Table]) -> Problems:
    """Check monitoring/scores.csv.gz row by row against the splits; yield problems; return the
    scores by split (the generator's return value) when they are usable."""
    import numpy as np

    raw, digest = file_bytes(ws, SCORES, SCORES)
    scores = parse_split(raw, SCORES, digest)
    missing = [c for c in SCORE_COLUMNS if c not in scores.frame.columns]
    if missing:
        yield f"{SCORES}: columns: expected {list(SCORE_COLUMNS)}, found no {', '.join(missing)}"
        return None
    values = scores.column("y_score").floats
    if not (np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()):
        yield f"{SCORES}: y_score: expected finite risk scores in [0, 1], found {int((~np.isfinite(values) | (values < 0) | (values > 1)).sum())} outside"
        return None
    label, by_split, usable = manifest["label"], {}, True
    parts = scores.derive("by split", lambda: _by_split(scores))
    for name, table in splits.items():
        part = parts.get(name)
        rel = manifest["splits"][name]["path"]
        found = len(part.ids) if part is not None else 0
        if found != len(table):
            yield f"{SCORES}: split {name}: expected {len(table)} rows (one per row of {rel}, in its order), found {found}"
            usable = False
            continue
        frame = table.frame
        same_ids = np.array_equal(part.ids, frame[manifest["key"]].to_numpy())
        if not same_ids or label not in frame.columns:
            yield f"{SCORES}: split {name}: id_student: expected the {manifest['key']} column of {rel}, row for row, found other learners or another order"
            usable = False
        elif not np.array_equal(part.y_true, frame[label].to_numpy()):
            yield f"{SCORES}: split {name}: y_true: expected the {label} column of {rel}, row for row, found other labels"
            usable = False
        by_split[name] = part
    return by_split if usable else None


class _Scores:
    """The rows of one split in monitoring/scores.csv.gz, as arrays (read-only)."""

    def __init__(self, frame) -> None:  # noqa: ANN001 - a pandas DataFrame
        self.ids = frame["id_student"].to_numpy()
        self.y_true = frame["y_true"].to_numpy()
        self.y_score = Column(frame["y_score"])
        self.presentation = frame["code_presentation"].to_numpy(dtype=object)

    @cached_property
    def by_presentation(self) -> dict:
        """Presentation -> (y_true, y_score) of its rows, in the order of the file."""
        import pandas as pd

        groups = pd.Series(range(len(self.ids))).groupby(self.presentation, sort=True).indices
        scores = self.y_score.floats
        return {p: (self.y_true[i], scores[i]) for p, i in groups.items()}


def _by_split(scores: Table) -> dict[str, _Scores]:
    frame = scores.frame
    return {str(name): _Scores(part) for name, part in frame.groupby("split", sort=False)}


def _decay_problems(report: dict, production: _Scores, budget: float | None) -> Problems:
    claimed = {d["presentation"]: d for d in report["decay"]}
    groups = production.by_presentation
    expected = sorted(str(p) for p in groups)
    if sorted(claimed) != expected or len(claimed) != len(report["decay"]):
        yield f"{REPORT}: decay: expected one entry per production presentation {expected}, found {[d['presentation'] for d in report['decay']]}"
        return
    for presentation, (y_true, y_score) in groups.items():
        entry, field = claimed[str(presentation)], f"{REPORT}: decay[{presentation}]"
        if entry["rows"] != len(y_true):
            yield f"{field}.rows: expected {len(y_true)} (production rows of {presentation}), found {entry['rows']}"
        try:
            auc = roc_auc(y_true, y_score)
        except ValueError:
            auc = None
        if auc is not None and _far(entry["roc_auc"], auc):
            yield f"{field}.roc_auc: expected {auc:.4f} (recomputed from {SCORES}), found {entry['roc_auc']!r}"
        if budget is not None and y_true.sum():
            low, high = recall_at_budget_bounds(y_true, y_score, budget)
            if not low - TOLERANCE <= entry["recall_at_budget"] <= high + TOLERANCE:
                shown = f"{low:.4f}" if high - low < 1e-4 else f"{low:.4f} to {high:.4f}"
                yield f"{field}.recall_at_budget: expected {shown} (recall in the top {budget:g} of {SCORES} by y_score), found {entry['recall_at_budget']!r}"


@check("monitored", stage=STAGE)
def monitored(ws: Workspace) -> Problems:
    """The report's drift, decay and serving figures recompute from the files; each alert fired
    exactly when its value is over its threshold; the decision follows from the alerts."""
    report = ws.read_json(REPORT)
    problems = schema_problems("monitoring_report", report, REPORT)
    if problems:
        yield from problems
        return
    manifest = _manifest(ws)
    reference, current = _split(ws, manifest, REFERENCE), _split(ws, manifest, CURRENT)
    recomputed: dict[str, float] = {}  # the figures the well-known alert rules must carry
    psis = yield from _feature_problems(report, manifest, reference, current)
    if psis:
        recomputed["feature_psi_max"] = max(psis.values())
    splits = {REFERENCE: reference, VALID: _split(ws, manifest, VALID), CURRENT: current}
    by_split = yield from _score_problems(ws, manifest, splits)
    if by_split is not None:
        recomputed |= yield from _prediction_problems(ws, report, by_split)
    if ws.exists(REQUESTS):
        recomputed |= yield from _serving_problems(ws, report)
    else:
        for key, value in report["serving"].items():
            if value is not None:
                yield f"{REPORT}: serving.{key}: expected null ({REQUESTS} does not exist), found {value!r}"
    yield from _alert_problems(ws, report, recomputed)


def _prediction_problems(ws: Workspace, report: dict, by_split: dict[str, _Scores]) -> Problems:
    """Yield problems with prediction drift and decay; return the recomputed alert figures."""
    recomputed = {}
    expected = recomputed["prediction_psi"] = psi(
        by_split[REFERENCE].y_score, by_split[CURRENT].y_score
    )
    if _far(report["prediction_psi"], expected):
        yield f"{REPORT}: prediction_psi: expected {expected:.4f} (PSI of the train vs production y_score in {SCORES}), found {report['prediction_psi']!r}"
    yield from _decay_problems(report, by_split[CURRENT], _problem_number(ws, "success", "budget"))
    try:
        aucs = [roc_auc(y, s) for y, s in by_split[CURRENT].by_presentation.values()]
        valid = by_split[VALID]
        recomputed["auc_drop"] = roc_auc(valid.y_true, valid.y_score.floats) - min(aucs)
    except ValueError:  # a presentation with one class only: no AUC to compare
        pass
    return recomputed


def _serving_problems(ws: Workspace, report: dict) -> Problems:
    """Yield problems with the serving figures; return them recomputed from the request log."""
    records = read_requests(ws)
    recomputed = {
        "latency_p95_ms": p95(r["latency_ms"] for r in records),
        "error_rate": error_rate(records),
    }
    for key, rule in (("p95_ms", "latency_p95_ms"), ("error_rate", "error_rate")):
        claimed, value = report["serving"][key], recomputed[rule]
        if claimed is None or _far(claimed, value, _tolerance(rule, value)):
            yield f"{REPORT}: serving.{key}: expected {value:.6g} (recomputed from {REQUESTS}), found {claimed!r}"
    return recomputed


def _tolerance(rule: str, value: float) -> float:
    """PSI, AUC and recall within `TOLERANCE`; p95 and error rate recompute exactly."""
    return abs(value) * SERVING_TOLERANCE + 1e-9 if rule in SERVING_RULES else TOLERANCE


def _alert_problems(ws: Workspace, report: dict, recomputed: dict[str, float]) -> Problems:
    alerts = report["alerts"]
    rules = [a["rule"] for a in alerts]
    required = REQUIRED_RULES + (SERVING_RULES if ws.exists(REQUESTS) else ())
    absent = [r for r in required if r not in rules]
    if absent:
        yield f"{REPORT}: alerts: expected the rules {', '.join(required)}, found no {', '.join(absent)}"
    for rule in sorted({r for r in rules if rules.count(r) > 1}):
        yield f"{REPORT}: alerts: expected each rule once, found {rule!r} {rules.count(rule)} times"
    budget = _problem_number(ws, "constraints", "latency_p95_ms")
    for i, alert in enumerate(alerts):
        rule, value, threshold = alert["rule"], alert["value"], alert["threshold"]
        field = f"{REPORT}: alerts[{i}] ({rule})"
        over = value > threshold
        if alert["fired"] != over:
            yield f"{field}.fired: expected {str(over).lower()} (value {value:.4g} {'>' if over else '<='} threshold {threshold:.4g}), found {str(alert['fired']).lower()}"
        if rule in recomputed and _far(value, recomputed[rule], _tolerance(rule, recomputed[rule])):
            yield f"{field}.value: expected {recomputed[rule]:.4g} (recomputed), found {value!r}"
        if rule == "latency_p95_ms" and budget is not None and threshold != budget:
            yield f"{field}.threshold: expected {budget:g} (constraints.latency_p95_ms in {PROBLEM}), found {threshold!r}"
    fired = [a["rule"] for a in alerts if a["fired"]]
    if fired and report["decision"] == "keep":
        yield f"{REPORT}: decision: expected retrain or rollback because alerts fired ({', '.join(fired)}), found 'keep'"
