"""Stage 07's iteration, graded by the `retired` check: the paired comparison of the new model with
the champion, the rule that decided, the version that served and was retired, and the reloaded
server.

Nothing is taken on trust:

- `iteration/comparison.json` names the declared success metric (problem.yaml), the feature and
  slice stage 06 found (monitoring/report.json `concept_drift`), the two versions, the bootstrap's
  seed, rounds and level, the interval and the verdict;
- `iteration/scores.csv` holds both models' scores on the same learners: exactly the production
  split's rows of the compared presentation, in order, with their labels. The checker reruns
  `checker.metrics.paired_difference` on it with the recorded seed and rounds and must find the
  recorded numbers (1e-9), then applies the rule (promote when the lower bound is above 0);
- the registry agrees with the verdict (champion on the winner; the replaced champion retired,
  or the rejected new version without an alias);
- a retired version served: it appears as `model_version` in stage 05's `serving/requests.jsonl`;
- the reloaded server's own log, `iteration/serving/requests.jsonl`, starts after stage 05's log
  ended, has the new champion answering, and no request answered by a retired version.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Generator

import numpy as np

from checker.contract import valid_json
from checker.errors import Invalid
from checker.manifest import file_bytes, manifest_field, read_manifest, split_table
from checker.metrics import paired_difference, score_metric
from checker.problem import problem_fields
from checker.serving import LOG, read_log
from checker.store import STORE, Version
from checker.table import parse
from checker.workspace import Workspace

MODEL = "at-risk-day60"
COMPARISON = "iteration/comparison.json"
SCORES = "iteration/scores.csv"
RELOAD_LOG = "iteration/serving/requests.jsonl"
MONITORING = "monitoring/report.json"
SCORE_COLUMNS = ("id_student", "code_presentation", "y_true", "score_champion", "score_new")
RECOMPUTED = ("estimate", "low", "high", "share_better", "rounds_used")
TOLERANCE = 1e-9
MIN_RELOAD_REQUESTS = 50
MAX_EXAMPLES = 3
DATE_SLACK = dt.timedelta(days=1)  # registry dates are UTC-ish, a learner's date is local
RULE = "promote when the lower bound of the paired interval is above 0, else hold"

Steps = Generator[str, None, dict | None]


def verdict(low: float | None) -> str:
    """The course's promotion rule: promote when the interval's lower bound is above 0."""
    return "promote" if low is not None and low > 0 else "hold"


def iteration_problems(
    ws: Workspace, versions: dict[int, Version], aliases: dict[str, int]
) -> Steps:
    """Every problem of the comparison, its recomputation, its verdict and the registry's
    agreement with it; return the comparison when it could be read (else None)."""
    if not ws.exists(COMPARISON):
        yield (
            f"{COMPARISON}: expected the paired comparison of the new model with the champion "
            "(seed, rounds, interval, rule, verdict), found no such file"
        )
        return None
    document = yield from valid_json(ws, COMPARISON, "iteration_comparison")
    if document is None:
        return None
    yield from _declared_problems(ws, document)
    recomputed = yield from _recomputed(ws, document)
    low = recomputed["low"] if recomputed is not None else document["low"]
    expected = verdict(low)
    if document["verdict"] != expected:
        shown = "none (no round could be scored)" if low is None else f"{low:.6f}"
        yield (
            f"{COMPARISON}: verdict: expected {expected} (the rule: {RULE}; the lower bound "
            f"is {shown}), found {document['verdict']}"
        )
    yield from _registry_problems(document, versions, aliases)
    return document


def _declared_problems(ws: Workspace, document: dict) -> Generator[str, None, None]:
    """The metric is problem.yaml's; the feature and slice are what stage 06 found."""
    problem = problem_fields(ws)
    if "metric" in problem and document["metric"] != problem["metric"]:
        yield (
            f"{COMPARISON}: metric: expected {problem['metric']} (problem.yaml success.metric, "
            f"the declared success metric), found {document['metric']}"
        )
    if document["metric"] == "recall_at_budget":
        budget = document.get("budget")
        if budget is None:
            yield f"{COMPARISON}: budget: expected the call budget of recall_at_budget, found none"
        elif "budget" in problem and abs(budget - problem["budget"]) > TOLERANCE:
            yield (
                f"{COMPARISON}: budget: expected {problem['budget']} (problem.yaml "
                f"success.budget), found {budget}"
            )
    if not ws.exists(MONITORING):
        return
    try:
        report = ws.read_json(MONITORING)
    except Invalid:
        return  # `monitored` says what is wrong with it
    found = report.get("concept_drift") if isinstance(report, dict) else None
    if not isinstance(found, dict):
        return
    for field in ("feature", "slice"):
        if field in found and document[field] != found[field]:
            yield (
                f"{COMPARISON}: {field}: expected {found[field]!r} ({MONITORING} "
                f"concept_drift.{field}, what stage 06 found), found {document[field]!r}"
            )


def _recomputed(ws: Workspace, document: dict) -> Steps:
    """The paired comparison rerun from iteration/scores.csv; problems for every recorded number
    that differs. Returns the recomputed comparison, or None when the scores are unusable."""
    if not ws.exists(SCORES):
        yield f"{SCORES}: expected both models' scores on the same learners, found no such file"
        return None
    try:
        raw, digest = file_bytes(ws, SCORES, SCORES)
        frame = parse(raw, SCORES, digest=digest).frame
        manifest = read_manifest(ws)
        split, rel = split_table(ws, manifest, "production")
    except Invalid as exc:
        yield str(exc)
        return None
    missing = [c for c in SCORE_COLUMNS if c not in frame.columns]
    if missing:
        yield f"{SCORES}: expected the columns {', '.join(SCORE_COLUMNS)}, found {', '.join(map(str, frame.columns))[:200]} (missing {', '.join(missing)})"
        return None
    key, label = (
        manifest_field(manifest, "key", "id_student"),
        manifest_field(manifest, "label", "at_risk"),
    )
    production = split.frame
    if (
        key not in production.columns
        or label not in production.columns
        or "code_presentation" not in production.columns
    ):
        yield f"{rel}: expected the columns {key}, code_presentation and {label}, found them missing"
        return None
    presentation = document["presentation"]
    rows = production[production["code_presentation"].astype(str) == presentation]
    where = f"{SCORES}: expected one row per {presentation} learner of the production split ({rel}, in its order)"
    if len(frame) != len(rows):
        yield f"{where}: {len(rows):,} rows, found {len(frame):,}"
        return None
    if not len(rows):
        yield f"{COMPARISON}: presentation: expected a presentation of the production split, found {presentation!r}, which has no rows"
        return None
    for column, expected in (
        ("id_student", rows[key]),
        ("code_presentation", rows["code_presentation"]),
        ("y_true", rows[label]),
    ):
        found = frame[column].astype(str).to_numpy()
        wanted = expected.astype(str).to_numpy()
        bad = np.flatnonzero(found != wanted)
        if bad.size:
            i = int(bad[0])
            yield f"{SCORES}: line {i + 2}: {column}: expected {wanted[i]} (the same learners as {rel}), found {found[i]}"
            return None
    import pandas as pd

    arrays = {}
    for column in ("score_champion", "score_new"):
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        outside = ~np.isfinite(values) | (values < 0) | (values > 1)
        if outside.any():
            i = int(np.flatnonzero(outside)[0])
            yield f"{SCORES}: line {i + 2}: {column}: expected a risk score in [0, 1], found {frame[column].iloc[i]}"
            return None
        arrays[column] = values
    y = pd.to_numeric(frame["y_true"], errors="coerce").to_numpy()
    if not np.isin(y, (0, 1)).all():
        yield f"{SCORES}: y_true: expected 0 or 1 (the label {label}), found other values"
        return None
    budget = document.get("budget")
    if document["metric"] == "recall_at_budget" and budget is None:
        return None  # said above
    metric = score_metric(document["metric"], budget)
    try:
        result = paired_difference(
            y,
            arrays["score_champion"],
            arrays["score_new"],
            metric,
            document["rounds"],
            document["seed"],
            document["level"],
        )
    except ValueError as exc:
        yield f"{SCORES}: expected scores a paired comparison can use, found: {exc}"
        return None
    for field in RECOMPUTED:
        claimed, value = document[field], result[field]
        if (claimed is None) != (value is None) or (
            value is not None and not math.isclose(claimed, value, rel_tol=0, abs_tol=TOLERANCE)
        ):
            yield (
                f"{COMPARISON}: {field}: expected {value!r} (recomputed from {SCORES} with seed "
                f"{document['seed']}, {document['rounds']} rounds, level {document['level']}), found {claimed!r}"
            )
    return result


def _state(version: Version) -> str:
    return version.tags.get("lifecycle_state", "untagged")


def _registry_problems(
    document: dict, versions: dict[int, Version], aliases: dict[str, int]
) -> Generator[str, None, None]:
    """The registry says what the verdict says."""
    old, new = (int(document["versions"][k]) for k in ("champion", "new"))
    for name, number in (("champion", old), ("new", new)):
        if number not in versions or versions[number].deleted:
            yield f"{COMPARISON}: versions.{name}: expected a registered version of {MODEL}, found version {number}, which is not registered or was deleted"
            return
    if old == new:
        yield f"{COMPARISON}: versions: expected two different versions, found version {old} twice"
        return
    now = aliases.get("champion")
    where = f"{STORE}: registered_model_aliases: champion"
    if document["verdict"] == "promote":
        if now != new:
            yield f"{where}: expected version {new} (the new model, {COMPARISON} verdict promote), found version {now}"
        if document["retired"] != str(old):
            yield f"{COMPARISON}: retired: expected {old} (the champion the new model replaced), found {document['retired']!r}"
        if not versions[old].retired:
            yield f"{STORE}: model_version_tags: version {old}: expected lifecycle_state=retired (replaced as champion by version {new}), found {_state(versions[old])}"
    else:
        if now != old:
            yield f"{where}: expected version {old} (the champion holds, {COMPARISON} verdict hold), found version {now}"
        if document["retired"] is not None:
            yield f"{COMPARISON}: retired: expected null (the champion holds: no version that served is replaced), found {document['retired']!r}"
        if versions[new].aliases:
            yield f"{STORE}: registered_model_aliases: expected no alias on the rejected version {new}, found {', '.join(sorted(versions[new].aliases))}"
        if _state(versions[new]) != "rejected":
            yield f"{STORE}: model_version_tags: version {new}: expected lifecycle_state=rejected (it lost the comparison and never served), found {_state(versions[new])}"


def served_versions(ws: Workspace) -> Generator[str, None, set[str] | None]:
    """The versions that answered a request in stage 05's log, or None (with a message)."""
    if not ws.exists(LOG):
        yield f"{LOG}: expected stage 05's request log (which versions served), found no such file"
        return None
    try:
        records = read_log(ws)
    except Invalid as exc:
        yield str(exc)
        return None
    return {r["model_version"] for _, r in records if r["model_version"] is not None}


def _time(text: str) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def reload_problems(
    ws: Workspace, retired: list[Version], champion: int | None
) -> Generator[str, None, None]:
    """The reloaded server's log: after stage 05's, the new champion answering, no retired version."""
    if not ws.exists(RELOAD_LOG):
        yield f"{RELOAD_LOG}: expected the log of the server reloaded after the retirement, found no such file"
        return
    try:
        records = read_log(ws, RELOAD_LOG)
        before = read_log(ws) if ws.exists(LOG) else []
    except Invalid as exc:
        yield str(exc)
        return
    if len(records) < MIN_RELOAD_REQUESTS:
        yield f"{RELOAD_LOG}: expected at least {MIN_RELOAD_REQUESTS} requests to the reloaded server, found {len(records)}"
    times = [t for _, r in before if (t := _time(r["time"])) is not None]
    ended = max(times) if times else None
    gone = {str(v.number): v for v in retired}
    earliest = max((d for v in retired if (d := _retired_on(v)) is not None), default=None)
    bad: list[str] = []
    for number, r in records:
        where = f"{RELOAD_LOG}: line {number}"
        if r["model_version"] in gone:
            bad.append(
                f"{where}: model_version: expected any version but the retired {r['model_version']}, found {r['model_version']}: the server still answers with a retired version (reload it after retiring)"
            )
        if r["fallback"] and " raised " in (r["fallback_reason"] or ""):
            bad.append(
                f"{where}: fallback_reason: expected every model of the reloaded server to answer, found {r['fallback_reason']!r}: give the reloaded service what its models need (config.json features and typical)"
            )
        moment = _time(r["time"])
        if moment is None:
            bad.append(f"{where}: time: expected an ISO 8601 time, found {r['time']!r}")
        elif ended is not None and moment <= ended:
            bad.append(
                f"{where}: time: expected a request after the last one of {LOG} ({ended.isoformat()}), found {r['time']}: a log of the server before the reload"
            )
        elif earliest is not None and moment.date() < earliest - DATE_SLACK:
            bad.append(
                f"{where}: time: expected a request on or after the retirement ({earliest}), found {r['time']}"
            )
    yield from bad[:MAX_EXAMPLES]
    if len(bad) > MAX_EXAMPLES:
        yield f"{RELOAD_LOG}: ... and {len(bad) - MAX_EXAMPLES} more requests like these"
    answered = {r["model_version"] for _, r in records if r["alias"] == "champion"}
    if champion is not None and str(champion) not in answered:
        shown = ", ".join(sorted(v for v in answered if v)) or "none"
        yield f"{RELOAD_LOG}: expected requests answered by the champion, version {champion}, found champion answers from versions {shown}"


def _retired_on(version: Version) -> dt.date | None:
    try:
        return dt.date.fromisoformat(version.tags.get("retired_on", ""))
    except ValueError:
        return None
