"""The deployment: registry versions and aliases in `mlflow.db`, `serving/config.json`, the
server's request log `serving/requests.jsonl` and its `serving/summary.json`; the `deployed` check.

Nothing the notebook claims is taken on trust. The registry is read from the store's tables; the
traffic split, the fallbacks, the routing of every learner (recomputed from its sha256 bucket) and
the latency percentiles are recomputed from the log the server wrote.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import defaultdict
from collections.abc import Generator

import numpy as np
import pandas as pd

from checker.contract import all_valid, schema_problems, valid_json
from checker.errors import Invalid
from checker.manifest import manifest_field, read_manifest, split_table
from checker.metrics import (
    LABEL_METRICS,
    SCORE_METRICS,
    bootstrap_interval,
    percentile,
    score_metric,
)
from checker.problem import problem_fields
from checker.registry import Problems, check
from checker.store import DELETED, open_store, read_registry
from checker.workspace import Workspace, parse_json

CONFIG = "serving/config.json"
LOG = "serving/requests.jsonl"
SUMMARY = "serving/summary.json"
CANARY = "serving/canary.json"
TUTOR = "serving/TUTOR_SUMMARY.md"
PROBLEM = "problem.yaml"
STAGE = "05-deployment.ipynb (cells 'Your turn: the router', 'Your turn: the fallback chain', 'Your turn: summarise the log' and 'Your turn: the canary verdict')"
ALIASES = ("champion", "challenger")
MAX_LOG_BYTES = 20_000_000
MIN_REQUESTS = 100
MAX_LINE_MESSAGES = 3
# Percentiles are recomputed with numpy's default (linear interpolation between order statistics).
LATENCY_TOLERANCE_MS = 0.01
SHARE_TOLERANCE = 1e-6


def bucket(id_student: int) -> int:
    """The learner's canary bucket, 0-99: the same on every request, in every process."""
    return int(hashlib.sha256(str(id_student).encode()).hexdigest(), 16) % 100


def route(id_student: int, share: float) -> str:
    """The contract's sticky canary: the challenger serves buckets below `share * 100`."""
    return "challenger" if bucket(id_student) < share * 100 else "champion"


def share_tolerance(share: float, tolerance: float, requests: int) -> float:
    """How far the observed challenger share may be from `share`: the configured tolerance, or
    3 standard errors of a share over `requests` requests when that is wider (a small replay is
    noisy even when every learner is routed right)."""
    return max(tolerance, 3 * math.sqrt(share * (1 - share) / requests))


def read_log(ws: Workspace, rel: str = LOG) -> list[tuple[int, dict]]:
    """The records of a server's request log (`rel`, stage 05's by default; stage 07's reloaded
    server writes its own) with their line numbers; raise `Invalid` naming the first bad lines.

    Parsed once per grading (`deployed`, `monitored` and `retired` read it); do not mutate the
    records.
    """
    return ws.memo(("requests", rel), lambda: _parse_log(ws, rel))


def _parse_log(ws: Workspace, rel: str) -> list[tuple[int, dict]]:
    path = ws.resolve(rel, what=rel, max_bytes=MAX_LOG_BYTES)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid(
            f"{rel}: expected UTF-8 text, found an invalid byte at offset {exc.start}"
        ) from None
    # split on newlines only: str.splitlines() would also split inside a JSON string at U+2028
    lines = [(n, line) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
    try:  # the common case, a valid log: every line parsed, then all validated in one call
        records = [(n, parse_json(line, f"{rel}: line {n}")) for n, line in lines]
    except Invalid:
        records = None
    if records is not None and all_valid("serving_request", [r for _, r in records]):
        return records
    problems = _line_problems(lines, rel)
    if problems or records is None:
        raise Invalid("\n".join(problems))
    return records  # the compiled validator refused what jsonschema accepts: jsonschema rules


def _line_problems(lines: list[tuple[int, str]], rel: str) -> list[str]:
    """The first `MAX_LINE_MESSAGES` problems of an invalid log, line by line."""
    problems: list[str] = []
    for number, line in lines:
        where = f"{rel}: line {number}"
        try:
            record = parse_json(line, where)
        except Invalid as exc:
            problems.append(str(exc))
        else:
            problems.extend(schema_problems("serving_request", record, where))
        if len(problems) >= MAX_LINE_MESSAGES:
            break
    return problems[:MAX_LINE_MESSAGES]


def _registry(ws: Workspace, name: str) -> tuple[dict[str, str], dict[str, str], set[str]]:
    """{version: current_stage}, {alias: version} and the retired versions of model `name`."""
    registry = read_registry(ws, name)
    if registry is None:
        with open_store(ws) as store:
            models = [row[0] for row in store.query("SELECT name FROM registered_models")]
        found = ", ".join(sorted(map(str, models))[:5]) or "none"
        raise Invalid(
            f"mlflow.db: registered model {name}: expected it in the registry "
            f"(serving/config.json model), found registered models: {found}"
        )
    versions, aliases = registry
    return (
        {str(n): v.stage for n, v in versions.items()},
        {alias: str(n) for alias, n in aliases.items()},
        {str(n) for n, v in versions.items() if v.retired},
    )


def _budget_problem(ws: Workspace, budget: float) -> str | None:
    """A message when config's budget differs from problem.yaml's (if problem.yaml says one)."""
    agreed = problem_fields(ws).get("latency_p95_ms")  # None: problem_defined reports it
    if agreed is not None and agreed != budget:
        return (
            f"{CONFIG}: latency_budget_ms: expected {agreed:g} "
            f"({PROBLEM} constraints.latency_p95_ms), found {budget:g}"
        )
    return None


def _registry_problems(
    ws: Workspace, config: dict
) -> Generator[str, None, tuple[set[str], dict[str, str], set[str]]]:
    """At least two live versions, and the config's versions registered; return the live
    versions, the alias map and the retired versions (the aliases are checked against the
    canary's verdict once the log is read)."""
    name = config["model"]
    versions, aliases, retired = _registry(ws, name)
    live = {v for v, stage in versions.items() if stage.lower() != DELETED}
    if len(live) < 2:
        yield (
            f"mlflow.db: registered model {name}: expected at least 2 versions (the baseline "
            f"and the tuned candidate), found {len(live)}"
        )
    for alias, version in (config.get("versions") or {}).items():
        if version not in live:
            yield (
                f"{CONFIG}: versions.{alias}: expected a registered version of {name}, "
                f"found version {version}, which does not exist or was deleted"
            )
    return live, aliases, retired


def _record_problems(records: list[tuple[int, dict]]) -> Problems:
    """Each record agrees with itself: who served it, whether it fell back and why."""
    bad: list[str] = []
    seen: dict = {}
    for number, r in records:
        where = f"{LOG}: line {number}"
        if (r["alias"] == "base_rate") != (r["model_version"] is None):
            bad.append(
                f"{where}: model_version: expected null exactly when the base-rate rule served "
                f"(alias base_rate), found {r['model_version']!r} with alias {r['alias']}"
            )
        if r["fallback"] != bool(r["fallback_reason"]):
            bad.append(
                f"{where}: fallback_reason: expected a reason exactly when fallback is true, "
                f"found fallback {str(r['fallback']).lower()} with reason {r['fallback_reason']!r}"
            )
        if r["fallback"] and r["alias"] == "challenger":
            bad.append(
                f"{where}: alias: expected a fallback to be served by the champion or the "
                "base-rate rule, found challenger"
            )
        if r["request_id"] in seen:
            bad.append(
                f"{where}: request_id: expected unique ids, found {r['request_id']!r} "
                f"again (first on line {seen[r['request_id']]})"
            )
        seen.setdefault(r["request_id"], number)
    yield from bad[:MAX_LINE_MESSAGES]
    if len(bad) > MAX_LINE_MESSAGES:
        yield f"{LOG}: ... and {len(bad) - MAX_LINE_MESSAGES} more inconsistent records"


def served_versions(records: list[tuple[int, dict]]) -> dict[str, set[str]]:
    """{alias: the versions the log shows answering behind it}."""
    by_alias: dict[str, set[str]] = defaultdict(set)
    for _, r in records:
        if r["model_version"] is not None:
            by_alias[r["alias"]].add(r["model_version"])
    return by_alias


def _traffic_problems(records: list[tuple[int, dict]], config: dict, live: set[str]) -> Problems:
    """Both versions served, each alias by one version, the canary share, a fallback."""
    by_alias = served_versions(records)
    served = sorted(set().union(*by_alias.values()), key=lambda v: (len(v), v))
    if len(served) < 2:
        yield (
            f"{LOG}: model_version: expected requests served by both the champion and the "
            f"challenger (2 versions), found {'only version ' + served[0] if served else 'none'}"
        )
    for version in served:
        if version not in live:
            yield (
                f"{LOG}: model_version: expected versions registered as {config['model']}, "
                f"found version {version}, which does not exist or was deleted"
            )
    planned = config.get("versions") or {}
    for alias in ALIASES:
        found = by_alias.get(alias, set())
        if len(found) > 1:
            yield (
                f"{LOG}: alias {alias}: expected one version behind an alias during a "
                f"deployment, found versions {', '.join(sorted(found))}"
            )
        elif found and alias in planned and found != {planned[alias]}:
            yield (
                f"{LOG}: alias {alias}: expected version {planned[alias]} ({CONFIG} versions), "
                f"found version {next(iter(found))}"
            )
    total = len(records)
    challenger = sum(r["alias"] == "challenger" for _, r in records)
    share, planned = challenger / total, config["canary_share"]
    tolerance = share_tolerance(planned, config["canary_tolerance"], total)
    if abs(share - planned) > tolerance:
        yield (
            f"{LOG}: challenger share: expected {planned:g} ± {tolerance:.3f} ({CONFIG} "
            f"canary_share; the tolerance is the wider of canary_tolerance and 3 standard errors "
            f"for {total} requests), found {share:.3f} ({challenger} of {total} requests)"
        )
    if not any(r["fallback"] for _, r in records):
        yield (
            f"{LOG}: fallback: expected at least one request that fell back (force one: a "
            "malformed feature, or a model slowed past the budget), found none"
        )


def _routing_problems(records: list[tuple[int, dict]], share: float) -> Problems:
    """Sticky routing: one model per learner, the one its sha256 bucket names."""
    seen: dict[int, dict[str, int]] = defaultdict(dict)
    for number, r in records:
        if not r["fallback"]:
            seen[r["id_student"]].setdefault(r["alias"], number)
    mixed = {learner: lines for learner, lines in seen.items() if len(lines) > 1}
    if mixed:
        learner, lines = next(iter(mixed.items()))
        shown = ", ".join(f"{alias} on line {n}" for alias, n in lines.items())
        yield (
            f"{LOG}: routing: expected each learner served by one model (sticky routing), found "
            f"{len(mixed)} learner(s) served by both without a fallback, e.g. id_student "
            f"{learner} ({shown})"
        )
        return
    wrong = [
        (number, r)
        for number, r in records
        if not r["fallback"] and r["alias"] != route(r["id_student"], share)
    ]
    if wrong:
        number, r = wrong[0]
        yield (
            f"{LOG}: line {number}: alias: expected {route(r['id_student'], share)} for "
            f"id_student {r['id_student']} (sha256 bucket {bucket(r['id_student'])}, challenger "
            f"below canary_share x 100 = {share * 100:g}), found {r['alias']}; "
            f"{len(wrong)} request(s) routed against their bucket"
        )


def _summary_problems(ws: Workspace, records: list[tuple[int, dict]], config: dict) -> Problems:
    """The notebook's summary agrees with the log it summarises."""
    summary = yield from valid_json(ws, SUMMARY, "serving_summary")
    if summary is None:
        return
    latencies = [float(r["latency_ms"]) for _, r in records]
    recomputed = {
        "requests": len(records),
        "fallbacks": sum(r["fallback"] for _, r in records),
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "challenger_share": sum(r["alias"] == "challenger" for _, r in records) / len(records),
    }
    for field, value in recomputed.items():
        claimed = summary[field]
        if field.endswith("_ms"):
            close = abs(claimed - value) <= LATENCY_TOLERANCE_MS + 1e-9 * abs(value)
            shown = f"{value:.3f} (np.percentile of latency_ms over every line of {LOG})"
        elif field == "challenger_share":
            close = abs(claimed - value) <= SHARE_TOLERANCE
            shown = f"{value:.4f} (recomputed from {LOG})"
        else:
            close = claimed == value
            shown = f"{value} (counted in {LOG})"
        if not close:
            yield f"{SUMMARY}: {field}: expected {shown}, found {claimed}"
    if "within_budget" in summary:
        within = recomputed["p95_ms"] <= config["latency_budget_ms"]
        if summary["within_budget"] != within:
            yield (
                f"{SUMMARY}: within_budget: expected {str(within).lower()} (p95 "
                f"{recomputed['p95_ms']:.1f} ms against a budget of "
                f"{config['latency_budget_ms']:g} ms), found {str(summary['within_budget']).lower()}"
            )


# --- the canary analysis: the two arms on the labelled outcomes of the replay --------------------

MIN_ROUNDS = 200
MIN_ARM_LEARNERS = 20
VALUE_TOLERANCE = 1e-9
ARMS = ("champion", "challenger")  # the order of the bootstrap's samples: champion, challenger
CANARY_RULE = (
    "rollback when the interval's upper bound is below 0, or the challenger's learners got a p95 "
    "latency above the budget, or their fallback rate is more than fallback_margin above the "
    "champion's; else promote when the interval's lower bound is above 0; else hold"
)


def canary_verdict(
    low: float | None,
    high: float | None,
    challenger_p95_ms: float,
    budget_ms: float,
    fallback_gap: float,
    margin: float,
) -> str:
    """The canary's rule (`CANARY_RULE`): rollback first (the challenger hurt learners or the
    service), promote only when the whole interval of challenger - champion is above 0."""
    if (high is not None and high < 0) or challenger_p95_ms > budget_ms or fallback_gap > margin:
        return "rollback"
    if low is not None and low > 0:
        return "promote"
    return "hold"


def is_drill(record: dict) -> bool:
    """A request slowed on purpose (X-Debug-Delay-Ms): a fire drill, not traffic."""
    return bool(record.get("injected_delay_ms"))


def arm_traffic(records: list[tuple[int, dict]], share: float) -> dict[str, list[dict]]:
    """The traffic (drills left out) of each arm: the requests routed to it by their bucket."""
    arms: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for _, r in records:
        if not is_drill(r):
            arms[route(r["id_student"], share)].append(r)
    return arms


def arm_outcomes(traffic: list[dict], alias: str) -> dict[int, float]:
    """One score per learner of an arm: the first request the arm's model answered itself (a
    fallback was scored by another model, so it says nothing about this one)."""
    first: dict[int, float] = {}
    for r in traffic:
        if not r["fallback"] and r["alias"] == alias and r.get("score") is not None:
            first.setdefault(r["id_student"], float(r["score"]))
    return first


def _labels_of(ws: Workspace) -> tuple[dict[int, int], set[int], str]:
    """{id_student: label} of the production split's learners with one row, the learners with
    several rows (two 2014 enrolments: two outcomes), and the split's path."""

    def compute() -> tuple[dict[int, int], set[int], str]:
        manifest = read_manifest(ws)
        key = manifest_field(manifest, "key", "id_student")
        label = manifest_field(manifest, "label", "at_risk")
        table, rel = split_table(ws, manifest, "production")
        frame = table.frame
        for column in (key, label):
            if column not in frame.columns:
                raise Invalid(f"{rel}: columns: expected a column {column!r}, found none")
        keys = pd.to_numeric(frame[key], errors="coerce")
        labels = pd.to_numeric(frame[label], errors="coerce")
        good = keys.notna() & labels.isin([0, 1])
        counts = keys[good].value_counts()
        several = {int(k) for k in counts.index[counts > 1]}
        single = {
            int(k): int(v)
            for k, v in zip(keys[good], labels[good], strict=True)
            if int(k) not in several
        }
        return single, several, rel

    return ws.memo(("canary labels",), compute)


def recompute_canary(
    ws: Workspace, records: list[tuple[int, dict]], config: dict, canary: dict
) -> Generator[str, None, dict | None]:
    """The canary's figures recomputed from the log, the production labels and the recorded seed,
    rounds and level; None (with the problems yielded) when they cannot be."""
    fields = problem_fields(ws)
    metric_name = fields.get("metric", canary["metric"])
    if canary["metric"] != metric_name:
        yield (
            f"{CANARY}: metric: expected {metric_name} ({PROBLEM} success.metric, the declared "
            f"success metric), found {canary['metric']}"
        )
        return None
    budget = fields.get("budget", canary.get("budget"))
    if metric_name == "recall_at_budget" and canary.get("budget") != budget:
        yield f"{CANARY}: budget: expected {budget} ({PROBLEM} success.budget), found {canary.get('budget')}"
        return None
    if metric_name not in SCORE_METRICS + LABEL_METRICS or (
        metric_name not in ("roc_auc", "pr_auc") and budget is None
    ):
        yield (
            f"{CANARY}: metric: expected a success metric ({', '.join(SCORE_METRICS + LABEL_METRICS)}) "
            f"with its budget to judge the arms on, found {metric_name} ({PROBLEM} success.metric)"
        )
        return None
    metric = score_metric(metric_name, budget)
    if canary["rounds"] < MIN_ROUNDS:
        yield (
            f"{CANARY}: rounds: expected at least {MIN_ROUNDS} bootstrap rounds (fewer make the "
            f"interval's ends noise), found {canary['rounds']}"
        )
        return None
    labels, several, rel = _labels_of(ws)
    traffic = arm_traffic(records, config["canary_share"])
    samples = {}
    for arm in ARMS:
        scored = arm_outcomes(traffic[arm], arm)
        twice = sorted(set(scored) & several)
        unknown = sorted(set(scored) - set(labels) - several)
        if twice or unknown:
            ids = (twice or unknown)[:3]
            why = (
                "has several rows (two 2014 enrolments, two outcomes)"
                if twice
                else "is not a learner"
            )
            yield (
                f"{LOG}: id_student: expected learners with one outcome in the production split "
                f"({rel}) to join the log with, found {len(twice) + len(unknown)} that do not, "
                f"e.g. id_student {ids[0]} {why}: replay learners with one 2014 enrolment"
            )
            return None
        ids = sorted(scored)
        samples[arm] = (
            np.array([labels[i] for i in ids], dtype=int),
            np.array([scored[i] for i in ids], dtype=float),
        )
    for arm, (y, _) in samples.items():
        if len(y) < MIN_ARM_LEARNERS or not 0 < y.sum() < len(y):
            yield (
                f"{LOG}: {arm}: expected at least {MIN_ARM_LEARNERS} learners scored by the "
                f"{arm}, some of them at risk and some not, to judge the canary on, found "
                f"{len(y)} learners, {int(y.sum())} at risk"
            )
            return None
    (y0, s0), (y1, s1) = samples["champion"], samples["challenger"]

    def difference(champion_rows: np.ndarray, challenger_rows: np.ndarray) -> float:
        return float(metric(y1[challenger_rows], s1[challenger_rows])) - float(
            metric(y0[champion_rows], s0[champion_rows])
        )

    interval = bootstrap_interval(
        difference, [len(y0), len(y1)], canary["rounds"], canary["seed"], canary["level"]
    )
    arms = {}
    for arm in ARMS:
        y, s = samples[arm]
        routed = traffic[arm]
        arms[arm] = {
            "learners": len(y),
            "positives": int(y.sum()),
            "value": float(metric(y, s)),
            "p95_ms": percentile((float(r["latency_ms"]) for r in routed), 95),
            "fallback_rate": sum(r["fallback"] for r in routed) / len(routed),
        }
    gap = arms["challenger"]["fallback_rate"] - arms["champion"]["fallback_rate"]
    verdict = canary_verdict(
        interval["low"],
        interval["high"],
        arms["challenger"]["p95_ms"],
        config["latency_budget_ms"],
        gap,
        canary["fallback_margin"],
    )
    return {"arms": arms, "difference": interval, "verdict": verdict, "fallback_gap": gap}


def _close(found: object, expected: float | None, tolerance: float) -> bool:
    if expected is None or found is None:
        return found is expected
    return isinstance(found, int | float) and abs(found - expected) <= tolerance + 1e-9 * abs(
        expected
    )


def _canary_problems(
    ws: Workspace, records: list[tuple[int, dict]], config: dict, served: dict[str, set[str]]
) -> Generator[str, None, str | None]:
    """serving/canary.json recomputes from the log and the labels; return its verdict, which the
    registry must follow (None when there is no readable canary)."""
    canary = yield from valid_json(ws, CANARY, "serving_canary")
    if canary is None:
        return None
    if canary["latency_budget_ms"] != config["latency_budget_ms"]:
        yield (
            f"{CANARY}: latency_budget_ms: expected {config['latency_budget_ms']:g} ({CONFIG} "
            f"latency_budget_ms), found {canary['latency_budget_ms']:g}"
        )
    for arm in ARMS:
        versions = served.get(arm, set())
        if len(versions) == 1 and canary["arms"][arm]["version"] not in versions:
            yield (
                f"{CANARY}: arms.{arm}.version: expected {next(iter(versions))} (the version "
                f"behind {arm} in {LOG}), found {canary['arms'][arm]['version']}"
            )
    recomputed = yield from recompute_canary(ws, records, config, canary)
    if recomputed is None:
        return canary["verdict"]
    for arm in ARMS:
        mine, theirs = recomputed["arms"][arm], canary["arms"][arm]
        for field, value in mine.items():
            tolerance = LATENCY_TOLERANCE_MS if field == "p95_ms" else VALUE_TOLERANCE
            if field in ("learners", "positives"):
                close = theirs[field] == value
            else:
                close = _close(theirs[field], value, tolerance)
            if not close:
                yield (
                    f"{CANARY}: arms.{arm}.{field}: expected {value:.6g} (recomputed from {LOG} "
                    f"joined with the production split's labels), found {theirs[field]}"
                )
    mine, theirs = recomputed["difference"], canary["difference"]
    for field in ("estimate", "low", "high"):
        if not _close(theirs[field], mine[field], VALUE_TOLERANCE):
            shown = "none" if mine[field] is None else f"{mine[field]:.9f}"
            yield (
                f"{CANARY}: difference.{field}: expected {shown} (challenger - champion, "
                f"bootstrap_interval over the arms resampled independently, seed "
                f"{canary['seed']}, {canary['rounds']} rounds, level {canary['level']:g}), "
                f"found {theirs[field]}"
            )
    if theirs["rounds_used"] != mine["rounds_used"]:
        yield (
            f"{CANARY}: difference.rounds_used: expected {mine['rounds_used']}, found "
            f"{theirs['rounds_used']}"
        )
    if canary["verdict"] != recomputed["verdict"]:
        d = recomputed["difference"]
        low, high = (f"{v:.4f}" if v is not None else "none" for v in (d["low"], d["high"]))
        yield (
            f"{CANARY}: verdict: expected {recomputed['verdict']} (the rule: {CANARY_RULE}; "
            f"here the interval is [{low}, {high}], the challenger's p95 "
            f"{recomputed['arms']['challenger']['p95_ms']:.1f} ms against "
            f"{config['latency_budget_ms']:g} ms, its fallback rate "
            f"{recomputed['fallback_gap']:+.3f} against the champion's), found {canary['verdict']}"
        )
    return canary["verdict"]  # the registry follows what the notebook decided, right or wrong


def _alias_problems(
    name: str,
    aliases: dict[str, str],
    live: set[str],
    retired: set[str],
    deployed: dict[str, str],
    verdict: str | None,
) -> Problems:
    """The aliases follow the canary's verdict: promote moves `champion` to the
    challenger's version and deletes `challenger`; rollback deletes `challenger`; hold leaves
    both. A later iteration (stage 07) may have moved `champion` on to a version registered
    after the deployment, retired a version and taken its aliases off."""
    for alias in ALIASES:
        if alias in aliases and aliases[alias] not in live:
            yield (
                f"mlflow.db: alias {alias}: expected it to point at an existing version of "
                f"{name}, found version {aliases[alias]}, which does not exist or was deleted"
            )
    if set(ALIASES) - set(deployed):
        return  # the log and config do not say which versions served: reported elsewhere
    champion, challenger = deployed["champion"], deployed["challenger"]
    newest = max(int(champion), int(challenger))

    def later(version: str | None) -> bool:
        return version is not None and version.isdigit() and int(version) > newest

    expected: dict[str, str | None]
    if verdict is None:  # no canary to follow: both aliases as deployed
        expected = {"champion": champion, "challenger": challenger}
        why = f"as deployed ({CONFIG} versions)"
    else:
        keep = challenger if verdict == "hold" else None
        expected = {
            "champion": challenger if verdict == "promote" else champion,
            "challenger": keep,
        }
        why = f"{CANARY} verdict {verdict}"
    for alias in ALIASES:
        want, found = expected[alias], aliases.get(alias)
        if found == want or later(found) or (found is None and want in retired):
            continue  # as the verdict left it, or moved on by a later iteration
        if want is None:
            yield (
                f"mlflow.db: alias {alias}: expected no such alias ({why} deletes it), found it "
                f"on version {found}"
            )
        elif found is None:
            yield f"mlflow.db: alias {alias}: expected it on version {want} ({why}), found no such alias"
        else:
            yield f"mlflow.db: alias {alias}: expected version {want} ({why}), found version {found}"


# --- the reasons behind a score ----------------------------------------------------------------

TOP_REASONS = 3
LOGIT_TOLERANCE = 1e-6
LOGISTIC_FAMILIES = ("logistic_regression",)  # stage 03's run tag model_family


def direction(contribution: float) -> str:
    return "raises" if contribution > 0 else "lowers" if contribution < 0 else "neither"


def logit(p: float) -> float:
    p = min(max(p, 1e-300), 1 - 1e-16)
    return math.log(p) - math.log1p(-p)


def _families(ws: Workspace, name: str) -> dict[str, str]:
    """{version: model_family tag of the run it was registered from}, where the store says."""

    def compute() -> dict[str, str]:
        registry = read_registry(ws, name)
        if registry is None:
            return {}
        runs = {str(n): v.run_id for n, v in registry[0].items() if v.run_id}
        with open_store(ws) as store:
            if "tags" not in store.tables():
                return {}
            families = {}
            for version, run_id in runs.items():
                rows = store.query(
                    "SELECT value FROM tags WHERE run_uuid = ? AND key = 'model_family'", (run_id,)
                )
                if rows and isinstance(rows[0][0], str):
                    families[version] = rows[0][0]
        return families

    return ws.memo(("model families", name), compute)


def _reason_problems(record: dict, features: list[str] | None, family: str | None) -> list[str]:
    """The problems of one logged record's reasons (an empty list when they are right)."""
    reasons, explanation = record.get("reasons"), record.get("explanation")
    if record["model_version"] is None:
        if reasons or explanation:
            return ["reasons: expected none when the base-rate rule answered (no model scored)"]
        return []
    if explanation is None or reasons is None:
        return [
            f"reasons: expected the top {TOP_REASONS} reasons behind the score and the "
            "explanation they come from, found none"
        ]
    contributions = explanation["contributions"]
    if features is not None and set(contributions) != set(features):
        missing = sorted(set(features) - set(contributions))[:3]
        extra = sorted(set(contributions) - set(features))[:3]
        return [
            f"explanation.contributions: expected one contribution per input column ({CONFIG} "
            f"features), found {len(contributions)}"
            + (f", missing {', '.join(missing)}" if missing else "")
            + (f", unknown {', '.join(extra)}" if extra else "")
        ]
    ranked = sorted(contributions.values(), key=abs, reverse=True)
    want = min(TOP_REASONS, len(contributions))
    if len(reasons) != want:
        return [f"reasons: expected the top {want} reasons, found {len(reasons)}"]
    for i, reason in enumerate(reasons):
        feature = reason["feature"]
        if feature not in contributions:
            return [
                f"reasons[{i}].feature: expected a feature of explanation.contributions, found {feature!r}"
            ]
        if reason["contribution"] != contributions[feature]:
            return [
                f"reasons[{i}].contribution: expected {contributions[feature]} (explanation."
                f"contributions.{feature}), found {reason['contribution']}"
            ]
        if abs(reason["contribution"]) < abs(ranked[i]):
            return [
                f"reasons[{i}]: expected the contribution ranked {i + 1} by size ({ranked[i]:.4g}), "
                f"found {feature} with {reason['contribution']:.4g}"
            ]
        if reason["direction"] != direction(reason["contribution"]):
            return [
                f"reasons[{i}].direction: expected {direction(reason['contribution'])} (the sign "
                f"of its contribution, {reason['contribution']:.4g}), found {reason['direction']}"
            ]
    if len({r["feature"] for r in reasons}) != len(reasons):
        return ["reasons: expected each feature once, found one twice"]
    if family in LOGISTIC_FAMILIES and explanation["method"] != "logit_contributions":
        return [
            f"explanation.method: expected logit_contributions for version "
            f"{record['model_version']} (a {family} model: coefficient x transformed value, "
            f"exact), found {explanation['method']}"
        ]
    if explanation["method"] == "logit_contributions":
        intercept, score = explanation.get("intercept"), record.get("score")
        if intercept is None or score is None:
            return ["explanation.intercept: expected the model's intercept, found none"]
        total = intercept + sum(contributions.values())
        if abs(total - logit(score)) > LOGIT_TOLERANCE * max(1.0, abs(total)):
            return [
                f"explanation: expected intercept + contributions = logit(score) = "
                f"{logit(score):.6f} (a logistic model's contributions add up), found {total:.6f}"
            ]
    return []


def _reasons_problems(ws: Workspace, records: list[tuple[int, dict]], config: dict) -> Problems:
    features = config.get("features") or None
    families = _families(ws, config["model"])
    bad = []
    for number, r in records:
        for problem in _reason_problems(r, features, families.get(str(r["model_version"]))):
            bad.append(f"{LOG}: line {number}: {problem}")
    yield from bad[:MAX_LINE_MESSAGES]
    if len(bad) > MAX_LINE_MESSAGES:
        yield f"{LOG}: ... and {len(bad) - MAX_LINE_MESSAGES} more records with wrong reasons"


# --- the one-page summary for tutors -------------------------------------------------------------

MAX_TUTOR_WORDS = 600  # one printed page
NAMED_REASONS = 3  # the summary names the features that are most often a top reason
MAX_TUTOR_BYTES = 64_000
JARGON = ("logit", "coefficient", "bootstrap", "auc", "p95", "sigmoid", "one-hot", "percentile")


def frequent_reasons(records: list[tuple[int, dict]], top: int = NAMED_REASONS) -> list[str]:
    """The features most often among the logged top reasons (ties by name)."""
    counts: dict[str, int] = defaultdict(int)
    for _, r in records:
        for reason in r.get("reasons") or []:
            counts[reason["feature"]] += 1
    return sorted(counts, key=lambda f: (-counts[f], f))[:top]


def _tutor_problems(ws: Workspace, records: list[tuple[int, dict]]) -> Problems:
    text = ws.read_text(TUTOR, max_bytes=MAX_TUTOR_BYTES)
    words = re.findall(r"[\w'’-]+", text)
    if len(words) > MAX_TUTOR_WORDS:
        yield (
            f"{TUTOR}: length: expected one page (at most {MAX_TUTOR_WORDS} words), found "
            f"{len(words)} words"
        )
    lowered = text.lower()
    missing = [f for f in frequent_reasons(records) if f.lower() not in lowered]
    if missing:
        yield (
            f"{TUTOR}: reasons: expected it to name the features that are most often a top reason "
            f"in {LOG} ({', '.join(frequent_reasons(records))}), found no mention of "
            f"{', '.join(missing)}"
        )
    jargon = sorted({w for w in JARGON if re.search(rf"\b{re.escape(w)}\b", lowered)})
    if jargon:
        yield f"{TUTOR}: words: expected plain words for tutors, found jargon: {', '.join(jargon)}"


# --- stage 04's gate ---------------------------------------------------------------------------

REPORT = "evaluation/report.json"
EVALUATION_STAGE = "04-evaluation.ipynb"


def _gate_problems(ws: Workspace) -> Problems:
    """Stage 05 deploys only what stage 04's gate let through."""
    try:
        report = ws.read_json(REPORT)
    except Invalid as exc:
        yield f"{exc} (stage 05 reads its gate; revisit {EVALUATION_STAGE})"
        return
    gate = report.get("gate") if isinstance(report, dict) else None
    verdict = gate.get("verdict") if isinstance(gate, dict) else None
    if verdict not in ("canary", "hold"):
        yield (
            f"{REPORT}: gate.verdict: expected canary or hold (stage 04's deployment gate, which "
            f"stage 05 obeys), found {'no gate' if gate is None else repr(verdict)}; revisit "
            f"{EVALUATION_STAGE}"
        )
    elif verdict == "hold":
        reasons = gate.get("reasons") if isinstance(gate, dict) else None
        why = "; ".join(str(r) for r in reasons) if isinstance(reasons, list) and reasons else ""
        yield (
            f"{REPORT}: gate.verdict: expected canary for a deployment, found hold"
            f"{f' ({why})' if why else ''}: stage 04's gate held the candidate back, so stage 05 "
            f"must not deploy it; revisit {EVALUATION_STAGE}, or the success target of "
            f"01-problem-definition.ipynb when the model cannot reach it"
        )


@check("deployed", stage=STAGE)
def deployed(ws: Workspace) -> Problems:
    """Stage 04's gate let the candidate through; two registered versions; a request log showing
    both versions served, the canary share within tolerance, a fallback, sticky sha256 routing,
    the reasons behind each score; a summary whose p50/p95 recompute from the log; a canary
    analysis that recomputes from the log and the production labels, and aliases that follow its
    verdict; a one-page summary for tutors."""
    yield from _gate_problems(ws)
    config = ws.read_json(CONFIG)
    problems = schema_problems("serving_config", config, CONFIG)
    if problems:
        yield from problems
        return
    budget = _budget_problem(ws, config["latency_budget_ms"])
    if budget:
        yield budget
    live, aliases, retired = yield from _registry_problems(ws, config)
    records = read_log(ws)
    if len(records) < MIN_REQUESTS:
        yield (
            f"{LOG}: requests: expected at least {MIN_REQUESTS} logged requests (replay a sample "
            f"of production), found {len(records)}"
        )
        return
    inconsistent = list(_record_problems(records))
    if inconsistent:
        yield from inconsistent
        return
    yield from _traffic_problems(records, config, live)
    yield from _routing_problems(records, config["canary_share"])
    yield from _reasons_problems(ws, records, config)
    yield from _summary_problems(ws, records, config)
    served = served_versions(records)
    deployed_versions = dict(config.get("versions") or {})
    for alias in ALIASES:
        if alias not in deployed_versions and len(served.get(alias, ())) == 1:
            deployed_versions[alias] = next(iter(served[alias]))
    verdict = yield from _canary_problems(ws, records, config, served)
    yield from _alias_problems(config["model"], aliases, live, retired, deployed_versions, verdict)
    yield from _tutor_problems(ws, records)
