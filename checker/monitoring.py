"""`monitoring/report.json`, the drift and health report of stage 06, and the `monitored` check.

The check recomputes the report from files: PSI and KS of every feature from the split files the
manifest names, prediction drift and performance by presentation from `monitoring/scores.csv.gz`,
latency p95 and error rate from `serving/requests.jsonl`. Then it checks that each alert fired
exactly when its value is over its threshold, and that the decision follows from the alerts.

`checker.metrics.psi` is the course's definition; a learner's own PSI must agree with it within 1e-6, the
tolerance of exercise 09's hidden tests, so the same definition is graded the same way twice.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from functools import cached_property

from checker.contract import valid_json
from checker.errors import Invalid
from checker.manifest import MANIFEST, file_bytes, parse_split, read_manifest, split_table
from checker.metrics import (
    ks_statistic,
    percentile,
    psi,
    recall_at_budget_bounds,
    roc_auc,
)
from checker.problem import problem_fields
from checker.registry import Problems, check
from checker.table import Column, Table
from checker.workspace import Workspace

REPORT = "monitoring/report.json"
SCORES = "monitoring/scores.csv.gz"
REQUESTS = "serving/requests.jsonl"
PROBLEM = "problem.yaml"
STAGE = "06-monitoring.ipynb (cells 'Your turn (1 of 3)', 'Your turn (2 of 3)' and 'Your turn (3 of 3)')"
REFERENCE, CURRENT, VALID = "train", "production", "valid"
TOLERANCE = 0.01  # absolute, for AUC, recall at budget and the auc_drop alert
# Absolute, for PSI, KS and prediction PSI (and their alerts): one definition computes the same
# number to the last digits, and a PSI without its missing bin is off by far more than this.
DRIFT_TOLERANCE = 1e-6
SERVING_TOLERANCE = 1e-6  # relative, for p95 and error rate (both recompute exactly)
SCORE_COLUMNS = ("split", "id_student", "code_presentation", "y_true", "y_score")
SERVING_RULES = ("latency_p95_ms", "error_rate")
REQUIRED_RULES = ("feature_psi_max", "prediction_psi", "auc_drop")


# --- the course's figures (the metrics are `checker.metrics`') ----------------------------------


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
    return split_table(ws, manifest, name)[0]


def _manifest(ws: Workspace) -> dict:
    """The manifest, with the features and the label monitoring needs."""
    manifest = read_manifest(ws)
    features = manifest.get("features")
    if not (isinstance(features, list) and features and all(isinstance(f, str) for f in features)):
        raise Invalid(
            f"{MANIFEST}: features: expected the list of feature columns, found {features!r}"
        )
    label = manifest.get("label")
    if not isinstance(label, str):
        raise Invalid(f"{MANIFEST}: label: expected the label column, found {label!r}")
    return manifest


def _far(claimed: float, recomputed: float, tolerance: float = TOLERANCE) -> bool:
    return abs(claimed - recomputed) > tolerance


# --- the check ------------------------------------------------------------------------------


def _feature_problems(
    report: dict, manifest: dict, reference: Table, current: Table
) -> Generator[str, None, dict[str, float]]:
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
        if _far(entry["psi"], expected, DRIFT_TOLERANCE):
            yield f"{field}.psi: expected {expected:.6f} (the course's PSI recomputed from the splits, missing values in a bin of their own, tolerance {DRIFT_TOLERANCE:g}), found {entry['psi']!r}"
        stat = ref.versus(cur, ks_statistic)
        if stat is None:
            if entry["ks_stat"] is not None or entry["ks_pvalue"] is not None:
                yield f"{field}.ks_stat: expected null for a categorical column, found {entry['ks_stat']!r}"
        elif entry["ks_stat"] is None or entry["ks_pvalue"] is None:
            yield f"{field}.ks_stat: expected the KS statistic of a numeric column ({stat:.4f}), found null"
        elif _far(entry["ks_stat"], stat, DRIFT_TOLERANCE):
            yield f"{field}.ks_stat: expected {stat:.6f} (scipy.stats.ks_2samp, tolerance {DRIFT_TOLERANCE:g}), found {entry['ks_stat']!r}"
    return recomputed


def _score_problems(
    ws: Workspace, manifest: dict, splits: dict[str, Table]
) -> Generator[str, None, dict[str, _Scores] | None]:
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

    def __init__(self, frame) -> None:
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
    report = yield from valid_json(ws, REPORT, "monitoring_report")
    if report is None:
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


def _prediction_problems(
    ws: Workspace, report: dict, by_split: dict[str, _Scores]
) -> Generator[str, None, dict[str, float]]:
    """Yield problems with prediction drift and decay; return the recomputed alert figures."""
    recomputed = {}
    expected = recomputed["prediction_psi"] = psi(
        by_split[REFERENCE].y_score, by_split[CURRENT].y_score
    )
    if _far(report["prediction_psi"], expected, DRIFT_TOLERANCE):
        yield f"{REPORT}: prediction_psi: expected {expected:.6f} (PSI of the train vs production y_score in {SCORES}), found {report['prediction_psi']!r}"
    yield from _decay_problems(report, by_split[CURRENT], problem_fields(ws).get("budget"))
    try:
        aucs = [roc_auc(y, s) for y, s in by_split[CURRENT].by_presentation.values()]
        valid = by_split[VALID]
        recomputed["auc_drop"] = roc_auc(valid.y_true, valid.y_score.floats) - min(aucs)
    except ValueError:  # a presentation with one class only: no AUC to compare
        pass
    return recomputed


def _serving_problems(ws: Workspace, report: dict) -> Generator[str, None, dict[str, float]]:
    """Yield problems with the serving figures; return them recomputed from the request log."""
    records = read_requests(ws)
    recomputed = {
        "latency_p95_ms": percentile((r["latency_ms"] for r in records), 95),
        "error_rate": error_rate(records),
    }
    for key, rule in (("p95_ms", "latency_p95_ms"), ("error_rate", "error_rate")):
        claimed, value = report["serving"][key], recomputed[rule]
        if claimed is None or _far(claimed, value, _tolerance(rule, value)):
            yield f"{REPORT}: serving.{key}: expected {value:.6g} (recomputed from {REQUESTS}), found {claimed!r}"
    return recomputed


DRIFT_RULES = ("feature_psi_max", "prediction_psi")


def _tolerance(rule: str, value: float) -> float:
    """PSI within `DRIFT_TOLERANCE`, the AUC drop within `TOLERANCE`; p95 and error rate
    recompute exactly."""
    if rule in SERVING_RULES:
        return abs(value) * SERVING_TOLERANCE + 1e-9
    return DRIFT_TOLERANCE if rule in DRIFT_RULES else TOLERANCE


def _alert_problems(ws: Workspace, report: dict, recomputed: dict[str, float]) -> Problems:
    alerts = report["alerts"]
    rules = [a["rule"] for a in alerts]
    required = REQUIRED_RULES + (SERVING_RULES if ws.exists(REQUESTS) else ())
    absent = [r for r in required if r not in rules]
    if absent:
        yield f"{REPORT}: alerts: expected the rules {', '.join(required)}, found no {', '.join(absent)}"
    for rule in sorted({r for r in rules if rules.count(r) > 1}):
        yield f"{REPORT}: alerts: expected each rule once, found {rule!r} {rules.count(rule)} times"
    budget = problem_fields(ws).get("latency_p95_ms")
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
    serving = [r for r in fired if r in SERVING_RULES]
    if serving and report["decision"] != "rollback":
        yield f"{REPORT}: decision: expected 'rollback' because a serving alert fired ({', '.join(serving)}): users are hurt now, so roll back first, then retrain; found {report['decision']!r}"
    elif fired and report["decision"] == "keep":
        yield f"{REPORT}: decision: expected retrain or rollback because alerts fired ({', '.join(fired)}), found 'keep'"
