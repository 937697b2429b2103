"""The deployment: registry versions and aliases in `mlflow.db`, `serving/config.json`, the
server's request log `serving/requests.jsonl` and its `serving/summary.json`; the `deployed` check.

Nothing the notebook claims is taken on trust. The registry is read from the store's tables; the
traffic split, the fallbacks, the routing of every learner (recomputed from its sha256 bucket) and
the latency percentiles are recomputed from the log the server wrote.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Generator

from checker.contract import all_valid, schema_problems, valid_json
from checker.errors import Invalid
from checker.metrics import percentile
from checker.problem import problem_fields
from checker.registry import Problems, check
from checker.store import DELETED, open_store, read_registry
from checker.workspace import Workspace, parse_json

CONFIG = "serving/config.json"
LOG = "serving/requests.jsonl"
SUMMARY = "serving/summary.json"
PROBLEM = "problem.yaml"
STAGE = "05-deployment.ipynb (cells 'Your turn: the router', 'Your turn: the fallback chain' and 'Your turn: summarise the log')"
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


def _registry_problems(ws: Workspace, config: dict) -> Generator[str, None, set[str]]:
    name = config["model"]
    versions, aliases, retired = _registry(ws, name)
    live = {v for v, stage in versions.items() if stage.lower() != DELETED}
    deployed_versions = config.get("versions") or {}
    if len(live) < 2:
        yield (
            f"mlflow.db: registered model {name}: expected at least 2 versions (the baseline "
            f"and the tuned candidate), found {len(live)}"
        )
    for alias in ALIASES:
        if alias not in aliases and deployed_versions.get(alias) in retired:
            continue  # stage 07 retired the version this alias served, and took the alias off
        if alias not in aliases:
            yield f"mlflow.db: alias {alias}: expected it on a version of {name}, found no such alias"
        elif aliases[alias] not in live:
            yield (
                f"mlflow.db: alias {alias}: expected it to point at an existing version of "
                f"{name}, found version {aliases[alias]}, which does not exist or was deleted"
            )
    for alias, version in deployed_versions.items():
        if version not in live:
            yield (
                f"{CONFIG}: versions.{alias}: expected a registered version of {name}, "
                f"found version {version}, which does not exist or was deleted"
            )
    return live


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


def _traffic_problems(records: list[tuple[int, dict]], config: dict, live: set[str]) -> Problems:
    """Both versions served, each alias by one version, the canary share, a fallback."""
    by_alias: dict[str, set[str]] = defaultdict(set)
    for _, r in records:
        if r["model_version"] is not None:
            by_alias[r["alias"]].add(r["model_version"])
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


@check("deployed", stage=STAGE)
def deployed(ws: Workspace) -> Problems:
    """Two registered versions with champion and challenger aliases; a request log showing both
    versions served, the canary share within tolerance, a fallback, sticky sha256 routing; and a
    summary whose p50/p95 recompute from the log."""
    config = ws.read_json(CONFIG)
    problems = schema_problems("serving_config", config, CONFIG)
    if problems:
        yield from problems
        return
    budget = _budget_problem(ws, config["latency_budget_ms"])
    if budget:
        yield budget
    live = yield from _registry_problems(ws, config)
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
    yield from _summary_problems(ws, records, config)
