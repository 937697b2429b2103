"""`monitoring/report.json`, the drift and health report of stage 06, and the `monitored` check.

The check recomputes the report from files: PSI and KS of every feature from the split files the
manifest names, prediction drift, calibration and performance by presentation from
`monitoring/scores.csv.gz`, the slice table `monitoring/slices.csv` (PSI, decay and concept shift
per module x presentation) from both, latency p95 and error rate from `serving/requests.jsonl`.
Then it checks that the concept drift the report names is the slice and feature the course's
criterion picks, that each alert fired exactly when its value is over its threshold, and that
the decision follows from the alerts.

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
    calibration_bins,
    ks_statistic,
    percentile,
    psi,
    recall_at_budget,
    recall_at_budget_bounds,
    relation_scores,
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
STAGE = "06-monitoring.ipynb (cells 'Your turn (1 of 4)' to 'Your turn (4 of 4)')"
SLICES = "monitoring/slices.csv"
SLICE_KEYS = ("code_module", "code_presentation")
SLICE_COLUMNS = (
    *SLICE_KEYS,
    "feature",
    "rows",  # production rows of the slice
    "at_risk_rate",  # share of the label among them
    "roc_auc",  # of the monitored model's y_score on them (empty with one class)
    "recall_at_budget",  # of the same (empty without positives)
    "psi",  # of the feature, train (all modules) -> the slice
    "reference_rows",  # train rows of the slice's module
    "relation_auc_reference",  # the train relation's ROC AUC on those rows
    "relation_auc",  # ... on the slice's rows
    "concept_shift",  # relation_auc_reference - relation_auc
)
# The course's criterion for the concept drift to report: among slices with at least
# MIN_SLICE_ROWS production rows whose module has at least MIN_REFERENCE_ROWS train rows, the
# slice and feature with the largest concept shift. Smaller slices are in the table but cannot
# win: the ROC AUC of one feature on 300 learners has a standard error near 0.03, and on the
# CI sample a 277-row slice showed a shift of 0.13 that the full data puts at 0.03.
MIN_SLICE_ROWS = 300
MIN_REFERENCE_ROWS = 100
REFERENCE, CURRENT, VALID = "train", "production", "valid"
TOLERANCE = 0.01  # absolute, for AUC, recall at budget and the auc_drop alert
# Absolute, for PSI, KS and prediction PSI (and their alerts): one definition computes the same
# number to the last digits, and a PSI without its missing bin is off by far more than this.
DRIFT_TOLERANCE = 1e-6
SERVING_TOLERANCE = 1e-6  # relative, for p95 and error rate (both recompute exactly)
SCORE_COLUMNS = ("split", "id_student", "code_presentation", "y_true", "y_score")
SERVING_RULES = ("latency_p95_ms", "error_rate")
REQUIRED_RULES = ("feature_psi_max", "prediction_psi", "auc_drop", "concept_drift")


# --- the course's figures (the metrics are `checker.metrics`') ----------------------------------


def is_error(record: dict) -> bool:
    """A request the model did not answer itself: a server error (status >= 500) or a fallback."""
    return record["status"] >= 500 or record["fallback"] is True


def error_rate(records: Sequence[dict]) -> float:
    """Share of requests that are errors in the sense of `is_error`."""
    return sum(is_error(r) for r in records) / len(records)


def _maybe(metric, *args) -> float | None:
    """A metric's value, or None where it is undefined (one class only, no positives)."""
    try:
        return float(metric(*args))
    except ValueError:
        return None


def slice_table(
    reference, current, y_score, features: Sequence[str], label: str, budget: float | None
) -> list[dict]:
    """The slice table: one row per production slice (module x presentation) and feature, with
    the fields of `SLICE_COLUMNS` (None where a figure is undefined).

    `reference` and `current` are the train and production frames, `y_score` the monitored
    model's scores of the production rows in order. Every figure is `checker.metrics`': the
    feature's PSI from all of train to the slice, and its concept shift (`concept_shift`'s
    definition: the train relation, its ROC AUC on the module's train rows and on the slice)."""
    import numpy as np

    y_ref = reference[label].to_numpy(dtype=int)
    y_cur = current[label].to_numpy(dtype=int)
    scores = np.asarray(y_score, dtype=float)
    slices = current.groupby(list(SLICE_KEYS), sort=True).indices
    modules = reference.groupby("code_module", sort=True).indices
    decay = {
        key: (
            _maybe(roc_auc, y_cur[i], scores[i]),
            None if budget is None else _maybe(recall_at_budget, y_cur[i], scores[i], budget),
        )
        for key, i in slices.items()
    }
    rows = []
    for feature in features:
        ref_values, cur_values = reference[feature], current[feature]
        related_ref = relation_scores(ref_values, y_ref, ref_values)
        related_cur = relation_scores(ref_values, y_ref, cur_values)
        for (module, presentation), i in slices.items():
            before = modules.get(module, np.array([], dtype=int))
            auc_before = _maybe(roc_auc, y_ref[before], related_ref[before])
            auc_after = _maybe(roc_auc, y_cur[i], related_cur[i])
            defined = auc_before is not None and auc_after is not None
            rows.append(
                {
                    "code_module": str(module),
                    "code_presentation": str(presentation),
                    "feature": feature,
                    "rows": len(i),
                    "at_risk_rate": float(y_cur[i].mean()),
                    "roc_auc": decay[module, presentation][0],
                    "recall_at_budget": decay[module, presentation][1],
                    "psi": psi(ref_values, cur_values.iloc[i]),
                    "reference_rows": len(before),
                    "relation_auc_reference": auc_before,
                    "relation_auc": auc_after,
                    "concept_shift": auc_before - auc_after if defined else None,  # type: ignore[operator]
                }
            )
    return rows


def eligible(row: dict) -> bool:
    """A slice the criterion may pick: enough rows now and in its module's past, a shift."""
    return (
        row["rows"] >= MIN_SLICE_ROWS
        and row["reference_rows"] >= MIN_REFERENCE_ROWS
        and row["concept_shift"] is not None
    )


def strongest_shift(rows: Sequence[dict]) -> dict | None:
    """The course's criterion: the eligible row with the largest concept shift (None if none)."""
    candidates = [r for r in rows if eligible(r)]
    return max(candidates, key=lambda r: r["concept_shift"]) if candidates else None


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

    def __init__(self, frame, digest: str) -> None:
        self.digest = digest  # of the scores file and the split's name: what the rows came from
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
    return {
        str(name): _Scores(part, f"{scores.sha256}:{name}")
        for name, part in frame.groupby("split", sort=False)
    }


def _per_presentation(
    report: dict, key: str, production: _Scores
) -> tuple[dict[str, dict], str | None]:
    """The entries of `report[key]` by presentation, or the problem when they are not exactly
    one per production presentation."""
    entries = report[key]
    claimed = {e["presentation"]: e for e in entries}
    expected = sorted(str(p) for p in production.by_presentation)
    if sorted(claimed) != expected or len(claimed) != len(entries):
        found = [e["presentation"] for e in entries]
        return (
            {},
            f"{REPORT}: {key}: expected one entry per production presentation {expected}, found {found}",
        )
    return claimed, None


def _decay_problems(report: dict, production: _Scores, budget: float | None) -> Problems:
    claimed, problem = _per_presentation(report, "decay", production)
    if problem:
        yield problem
        return
    groups = production.by_presentation
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
        yield from _calibration_problems(report, by_split[CURRENT])
        recomputed |= yield from _slice_problems(
            ws, report, manifest, reference, current, by_split[CURRENT]
        )
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
    claimed, groups = report["prediction_psi_by_presentation"], by_split[CURRENT].by_presentation
    if sorted(claimed) != sorted(str(p) for p in groups):
        yield f"{REPORT}: prediction_psi_by_presentation: expected one entry per production presentation {sorted(str(p) for p in groups)}, found {sorted(claimed)}"
    else:
        for presentation, (_, y_score) in groups.items():
            value = psi(by_split[REFERENCE].y_score, y_score)
            found = claimed[str(presentation)]
            if _far(found, value, DRIFT_TOLERANCE):
                yield f"{REPORT}: prediction_psi_by_presentation.{presentation}: expected {value:.6f} (PSI of the train y_score vs the {presentation} y_score in {SCORES}), found {found!r}"
    yield from _decay_problems(report, by_split[CURRENT], problem_fields(ws).get("budget"))
    try:
        aucs = [roc_auc(y, s) for y, s in by_split[CURRENT].by_presentation.values()]
        valid = by_split[VALID]
        recomputed["auc_drop"] = roc_auc(valid.y_true, valid.y_score.floats) - min(aucs)
    except ValueError:  # a presentation with one class only: no AUC to compare
        pass
    return recomputed


def _calibration_problems(report: dict, production: _Scores) -> Problems:
    """The reliability curve of each production presentation (`calibration_bins`)."""
    entries, problem = _per_presentation(report, "calibration", production)
    if problem:
        yield problem
        return
    claimed = {p: entry["bins"] for p, entry in entries.items()}
    groups = production.by_presentation
    for presentation, (y_true, y_score) in groups.items():
        want, have = calibration_bins(y_true, y_score), claimed[str(presentation)]
        field = f"{REPORT}: calibration[{presentation}].bins"
        if [round(b["lower"], 6) for b in have] != [round(b["lower"], 6) for b in want]:
            yield f"{field}: expected the non-empty bins of width 0.1 starting at {[round(b['lower'], 1) for b in want]} (checker.metrics.calibration_bins over the {presentation} rows of {SCORES}), found bins starting at {[b['lower'] for b in have]}"
            continue
        for i, (found, value) in enumerate(zip(have, want, strict=True)):
            for name in ("upper", "count", "mean_score", "fraction_positive"):
                if _far(found[name], value[name], DRIFT_TOLERANCE):
                    yield f"{field}[{i}].{name}: expected {value[name]:.6g} (recomputed from the {presentation} rows of {SCORES}), found {found[name]!r}"


MAX_ROW_MESSAGES = 8  # problems named one by one in the slice table, then a count


def _slice_frame_problems(ws: Workspace, expected: list[dict]) -> Problems:
    """Check monitoring/slices.csv row by row against the recomputed slice table."""
    import math

    import pandas as pd

    raw, digest = file_bytes(ws, SLICES, SLICES)
    frame = parse_split(raw, SLICES, digest).frame
    missing = [c for c in SLICE_COLUMNS if c not in frame.columns]
    if missing:
        yield f"{SLICES}: columns: expected {list(SLICE_COLUMNS)}, found no {', '.join(missing)}"
        return
    keys = [
        (str(m), str(p), str(f))
        for m, p, f in zip(
            frame["code_module"], frame["code_presentation"], frame["feature"], strict=True
        )
    ]
    want = {(r["code_module"], r["code_presentation"], r["feature"]): r for r in expected}
    if sorted(keys) != sorted(want):
        absent = sorted(set(want) - set(keys))
        extra = sorted(set(keys) - set(want))
        twice = sorted({k for k in keys if keys.count(k) > 1})
        yield (
            f"{SLICES}: rows: expected one row per production slice (code_module, code_presentation) "
            f"and manifest feature, {len(want)} rows, found {len(keys)}"
            + (f"; missing {', '.join(' '.join(k) for k in absent[:3])}" if absent else "")
            + (f"; unexpected {', '.join(' '.join(k) for k in extra[:3])}" if extra else "")
            + (f"; repeated {', '.join(' '.join(k) for k in twice[:3])}" if twice else "")
        )
        return
    numbers = {c: pd.to_numeric(frame[c], errors="coerce") for c in SLICE_COLUMNS[3:]}
    problems = []
    for position, key in enumerate(keys):
        row, where = want[key], f"{SLICES}: row {position + 2} ({' '.join(key)})"
        for column in SLICE_COLUMNS[3:]:
            value, found = row[column], numbers[column].iloc[position]
            shown = frame[column].iloc[position]
            if value is None:
                if not pd.isna(shown):
                    problems.append(
                        f"{where}: {column}: expected empty (undefined: one class only, or no train rows of the module), found {shown!r}"
                    )
                continue
            if column in ("rows", "reference_rows"):
                ok = not math.isnan(found) and found == value
                text = f"{value}"
            else:
                tolerance = (
                    TOLERANCE if column in ("roc_auc", "recall_at_budget") else DRIFT_TOLERANCE
                )
                ok = not math.isnan(found) and abs(found - value) <= tolerance
                text = f"{value:.6f} (tolerance {tolerance:g})"
            if not ok:
                problems.append(
                    f"{where}: {column}: expected {text}, recomputed from the split files and {SCORES}, found {'empty' if pd.isna(shown) else repr(shown)}"
                )
    yield from problems[:MAX_ROW_MESSAGES]
    if len(problems) > MAX_ROW_MESSAGES:
        yield f"{SLICES}: and {len(problems) - MAX_ROW_MESSAGES} more figures differ from the recomputed slice table"


def _slice_problems(
    ws: Workspace,
    report: dict,
    manifest: dict,
    reference: Table,
    current: Table,
    production: _Scores,
) -> Generator[str, None, dict[str, float]]:
    """Yield problems with the slice table and the concept drift the report names; return the
    recomputed value of the `concept_drift` rule."""
    label = manifest["label"]
    for name, table in ((REFERENCE, reference), (CURRENT, current)):
        absent = [c for c in SLICE_KEYS if c not in table.frame.columns]
        if absent:
            yield f"{manifest['splits'][name]['path']}: columns: expected {', '.join(SLICE_KEYS)} (the slices of the monitoring, kept by 02-data-preparation.ipynb), found no {', '.join(absent)}"
            return {}
    features = [
        f
        for f in manifest["features"]
        if f in reference.frame.columns and f in current.frame.columns
    ]
    budget = problem_fields(ws).get("budget")
    rows = current.derive(
        ("slice table", reference.sha256, tuple(features), label, budget, production.digest),
        lambda: slice_table(
            reference.frame, current.frame, production.y_score.floats, features, label, budget
        ),
    )
    yield from _slice_frame_problems(ws, rows)
    best = strongest_shift(rows)
    drift, field = report["concept_drift"], f"{REPORT}: concept_drift"
    for name, value in (("min_rows", MIN_SLICE_ROWS), ("min_reference_rows", MIN_REFERENCE_ROWS)):
        if drift[name] != value:
            yield f"{field}.{name}: expected {value} (the course's minimum, so that noise in a small slice cannot win), found {drift[name]!r}"
    if best is None:
        yield f"{SLICES}: expected at least one slice with {MIN_SLICE_ROWS} production rows and {MIN_REFERENCE_ROWS} train rows of its module, found none: rerun 02-data-preparation.ipynb on more data"
        return {}
    chosen = (drift["feature"], drift["slice"]["code_module"], drift["slice"]["code_presentation"])
    row = next(
        (r for r in rows if (r["feature"], r["code_module"], r["code_presentation"]) == chosen),
        None,
    )
    picked = (
        f"feature {best['feature']!r} in slice {best['code_module']} {best['code_presentation']}"
    )
    criterion = (
        f"the largest concept_shift, {best['concept_shift']:.4f}, among slices with at least "
        f"{MIN_SLICE_ROWS} production rows and {MIN_REFERENCE_ROWS} train rows of their module"
    )
    if row is None:
        yield f"{field}: expected {picked} ({criterion}), found feature {chosen[0]!r} in slice {chosen[1]} {chosen[2]}, which is not a manifest feature in a production slice"
        return {"concept_drift": best["concept_shift"]}
    if row is not best and not (
        eligible(row) and row["concept_shift"] >= best["concept_shift"] - 1e-12
    ):
        found = "not eligible" if not eligible(row) else f"concept_shift {row['concept_shift']:.4f}"
        yield f"{field}: expected {picked} ({criterion}), found feature {chosen[0]!r} in slice {chosen[1]} {chosen[2]} ({found})"
    for name in ("rows", "psi", "relation_auc_reference", "relation_auc", "concept_shift"):
        value = row[name]
        if value is None:  # an undefined figure: the choice itself is already wrong
            continue
        if name == "rows":
            if drift[name] != value:
                yield f"{field}.rows: expected {value} (the slice table's {chosen[1]} {chosen[2]} {chosen[0]}, recomputed), found {drift[name]!r}"
        elif _far(drift[name], value, DRIFT_TOLERANCE):
            yield f"{field}.{name}: expected {value:.6f} (the slice table's {chosen[1]} {chosen[2]} {chosen[0]}, recomputed), found {drift[name]!r}"
    return {"concept_drift": best["concept_shift"]}


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


DRIFT_RULES = ("feature_psi_max", "prediction_psi", "concept_drift")


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
