"""Builders for a valid stage-05 deployment without the notebook chain: a registry written through
the real MLflow API, and a request log, config, summary, canary analysis and tutor summary like
the ones the notebook writes.

The log is synthetic but follows the contract: learners of the foundation workspace's production
split (one 2014 enrolment each) routed by their sha256 bucket, latencies drawn from a skewed
distribution, one over-budget fire drill (`injected_delay_ms`) answered by the champion and one
malformed request answered by the base-rate rule. Scores depend on the learner's real label with
a skill per arm, so the canary's verdict is what the data give; the champion is a logistic model
whose logged contributions add up to the logit of its score.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from checker.metrics import bootstrap_interval, percentile, recall_at_budget
from checker.serving import route

MODEL = "at-risk-day60"
BUDGET_MS = 200
CONFIG = {
    "model": MODEL,
    "versions": {"champion": "1", "challenger": "2"},
    "canary_share": 0.2,
    "canary_tolerance": 0.05,
    "latency_budget_ms": BUDGET_MS,
    "base_rate": 0.42,
    "features": ["code_module", "studied_credits", "score_mean_60"],
}
PROBLEM = f"""\
prediction: {{target: at_risk, definition: final_result is Fail or Withdrawn, horizon_day: 60}}
success: {{metric: recall_at_budget, target: 0.5, budget: 0.3, outcome: more learners complete}}
constraints:
  latency_p95_ms: {BUDGET_MS}
  max_fairness_gap: 0.1
"""
GATE = {"rule": "deploy behind the canary when the success target is met", "verdict": "canary"}
SEED = 42
ROUNDS = 200
FALLBACK_MARGIN = 0.01
INTERCEPT = -0.3
FAMILIES = {1: "logistic_regression", 2: "mlp"}
# the skill of each arm: how far a learner's score leans towards their real label
SKILL = {"hold": (1.0, 1.0), "promote": (0.0, 3.0), "rollback": (2.0, -1.0)}


def registry_client(ws: Path):
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{ws.resolve()}/mlflow.db")


def register_versions(ws: Path, versions: int = 2) -> None:
    """Register `versions` versions of the model (sources are empty model folders, each from a
    run tagged with its model_family) and point `champion` at version 1 and `challenger` at
    version 2 (when there is one)."""
    client = registry_client(ws)
    client.create_registered_model(MODEL)
    experiment = client.get_experiment_by_name(MODEL)
    for number in range(1, versions + 1):
        source = ws.resolve() / "mlartifacts" / "models" / f"m-{number}" / "artifacts"
        source.mkdir(parents=True, exist_ok=True)
        role = "baseline" if number == 1 else "candidate"
        family = FAMILIES.get(number, "mlp")
        run = client.create_run(experiment.experiment_id, tags={"model_family": family})
        client.set_terminated(run.info.run_id, "FINISHED")
        client.create_model_version(
            MODEL, source=source.as_uri(), run_id=run.info.run_id, tags={"role": role}
        )
    client.set_registered_model_alias(MODEL, "champion", "1")
    if versions > 1:
        client.set_registered_model_alias(MODEL, "challenger", "2")


def explain(alias: str, score: float, rng: random.Random) -> dict:
    """The explanation the server logs: the champion's logit split over the input columns (they
    add up, with the intercept, to the logit of the score); the challenger's swap effects."""
    features = CONFIG["features"]
    if alias == "champion":
        rest = math.log(score / (1 - score)) - INTERCEPT
        u = rng.uniform(-0.5, 0.5)
        parts = [0.5 * rest + u, 0.3 * rest - u / 2]
        parts.append(rest - sum(parts))
        return {
            "method": "logit_contributions",
            "intercept": INTERCEPT,
            "contributions": dict(zip(features, parts, strict=True)),
        }
    values = [round(rng.uniform(-1, 1), 6) for _ in features]
    return {
        "method": "typical_value_swap",
        "intercept": None,
        "contributions": dict(zip(features, values, strict=True)),
    }


def reasons_of(explanation: dict | None) -> list[dict] | None:
    if explanation is None:
        return None
    ranked = sorted(explanation["contributions"].items(), key=lambda item: -abs(item[1]))[:3]
    return [
        {
            "feature": f,
            "contribution": v,
            "direction": "raises" if v > 0 else "lowers" if v < 0 else "neither",
        }
        for f, v in ranked
    ]


def record(
    id_student: int,
    alias: str,
    *,
    latency_ms: float,
    when: datetime,
    reason: str | None = None,
    score: float = 0.3,
    rng: random.Random | None = None,
) -> dict:
    version = CONFIG["versions"].get(alias)
    explanation = (
        None if version is None else explain(alias, score, rng or random.Random(id_student))
    )
    return {
        "time": when.isoformat(timespec="milliseconds"),
        "request_id": f"req-{when.timestamp():.3f}-{id_student}",
        "id_student": id_student,
        "model_version": version,
        "alias": alias,
        "score": CONFIG["base_rate"] if version is None else score,
        "latency_ms": latency_ms,
        "status": 200,
        "fallback": reason is not None,
        "fallback_reason": reason,
        "reasons": reasons_of(explanation),
        "explanation": explanation,
    }


def production_labels(ws: Path) -> dict[int, int]:
    """{id_student: at_risk} of the production learners with one 2014 enrolment."""
    with gzip.open(ws / "data" / "production.csv.gz") as stream:
        frame = pd.read_csv(stream)
    single = frame[~frame["id_student"].duplicated(keep=False)]
    return dict(zip(single["id_student"].astype(int), single["at_risk"].astype(int), strict=True))


def learner_score(learner: int, label: int, skill: float) -> float:
    """A score that leans towards the learner's label by `skill` (0: a coin; negative: wrong)."""
    noise = random.Random(learner).gauss(0, 1)
    logit = skill * (2 * label - 1) + noise - 0.3
    return 1 / (1 + math.exp(-logit))


def synthetic_log(
    labels: dict[int, int], requests: int = 400, seed: int = 0, verdict: str = "hold"
) -> list[dict]:
    """`requests` routed requests of production learners (some come back) plus two forced
    fallbacks; the arms' skills (`SKILL`) make the canary's data give `verdict`."""
    rng = random.Random(seed)
    learners = rng.sample(sorted(labels), k=requests * 3 // 4)
    skill = dict(zip(("champion", "challenger"), SKILL[verdict], strict=True))
    start = datetime(2014, 3, 1, 9, tzinfo=UTC)
    records = []
    for i in range(requests):
        learner = learners[i] if i < len(learners) else rng.choice(learners)
        alias = route(learner, CONFIG["canary_share"])
        latency = round(rng.lognormvariate(2.2, 0.35) + (3 if alias == "challenger" else 0), 3)
        score = learner_score(learner, labels[learner], skill[alias])
        when = start + timedelta(seconds=i)
        records.append(record(learner, alias, latency_ms=latency, when=when, score=score))
    slow = next(r["id_student"] for r in records if r["alias"] == "challenger")
    end = start + timedelta(seconds=requests)
    drill = record(
        slow,
        "champion",
        latency_ms=211.5,
        when=end,
        reason="challenger v2 over the 200 ms budget",
        score=learner_score(slow, labels[slow], skill["champion"]),
    )
    records.append(drill | {"injected_delay_ms": 600})
    broken = next(r["id_student"] for r in records if r["alias"] == "champion")
    records.append(
        record(
            broken,
            "base_rate",
            latency_ms=4.2,
            when=end + timedelta(seconds=1),
            reason="champion v1 raised ValueError: could not convert string to float: 'sixty'",
        )
    )
    return records


def verdict_of(low: float, high: float, p95: float, gap: float) -> str:
    if high < 0 or p95 > BUDGET_MS or gap > FALLBACK_MARGIN:
        return "rollback"
    return "promote" if low > 0 else "hold"


def canary_of(
    records: list[dict], labels: dict[int, int], seed: int = SEED, rounds: int = ROUNDS
) -> dict:
    """serving/canary.json as the notebook computes it: one outcome per learner (their first
    request their own arm answered, drills left out), in order of id_student."""
    traffic = [r for r in records if not r.get("injected_delay_ms")]
    arms, samples = {}, {}
    for arm in ("champion", "challenger"):
        routed = [r for r in traffic if route(r["id_student"], CONFIG["canary_share"]) == arm]
        first: dict[int, float] = {}
        for r in routed:
            if not r["fallback"] and r["alias"] == arm:
                first.setdefault(r["id_student"], r["score"])
        ids = sorted(first)
        y = np.array([labels[i] for i in ids])
        s = np.array([first[i] for i in ids])
        samples[arm] = (y, s)
        arms[arm] = {
            "version": CONFIG["versions"][arm],
            "learners": len(ids),
            "positives": int(y.sum()),
            "value": recall_at_budget(y, s, 0.3),
            "p95_ms": percentile([r["latency_ms"] for r in routed], 95),
            "fallback_rate": sum(r["fallback"] for r in routed) / len(routed),
        }
    (y0, s0), (y1, s1) = samples["champion"], samples["challenger"]
    interval = bootstrap_interval(
        lambda a, b: recall_at_budget(y1[b], s1[b], 0.3) - recall_at_budget(y0[a], s0[a], 0.3),
        [len(y0), len(y1)],
        rounds,
        seed,
    )
    gap = arms["challenger"]["fallback_rate"] - arms["champion"]["fallback_rate"]
    return {
        "rule": "rollback when the upper bound is below 0, the challenger is slow or falls back more; promote when the lower bound is above 0; else hold",
        "metric": "recall_at_budget",
        "budget": 0.3,
        "seed": seed,
        "rounds": rounds,
        "level": interval["level"],
        "latency_budget_ms": BUDGET_MS,
        "fallback_margin": FALLBACK_MARGIN,
        "arms": arms,
        "difference": {k: interval[k] for k in ("estimate", "low", "high", "rounds_used")},
        "verdict": verdict_of(interval["low"], interval["high"], arms["challenger"]["p95_ms"], gap),
    }


def apply_verdict(ws: Path, verdict: str) -> None:
    """Contract 3: promote moves champion to the challenger and deletes challenger; rollback
    deletes challenger; hold leaves both."""
    client = registry_client(ws)
    if verdict == "promote":
        client.set_registered_model_alias(MODEL, "champion", CONFIG["versions"]["challenger"])
    if verdict in ("promote", "rollback"):
        client.delete_registered_model_alias(MODEL, "challenger")


def tutor_summary(records: list[dict]) -> str:
    """A short TUTOR_SUMMARY.md naming the features most often among the top reasons."""
    counts: dict[str, int] = {}
    for r in records:
        for reason in r.get("reasons") or []:
            counts[reason["feature"]] = counts.get(reason["feature"], 0) + 1
    top = sorted(counts, key=lambda f: (-counts[f], f))[:3]
    named = "\n".join(
        f"- `{f}`: among the three main reasons for {counts[f]} requests" for f in top
    )
    return (
        "# Risk scores for tutors\n\nA higher score means a learner looks more like those who "
        "failed or withdrew. Call the highest scores first, about 30% of your learners.\n\n"
        f"## The main reasons\n{named}\n\n## What it cannot tell you\nWhy a learner struggles.\n\n"
        "## Who to contact\nThe learning analytics team.\n"
    )


def summary_of(records: list[dict], budget_ms: float = BUDGET_MS) -> dict:
    """The summary the notebook writes, computed like `np.percentile` does."""
    latencies = [r["latency_ms"] for r in records]
    p95 = percentile(latencies, 95)
    return {
        "requests": len(records),
        "p50_ms": percentile(latencies, 50),
        "p95_ms": p95,
        "fallbacks": sum(r["fallback"] for r in records),
        "challenger_share": sum(r["alias"] == "challenger" for r in records) / len(records),
        "latency_budget_ms": budget_ms,
        "within_budget": p95 <= budget_ms,
    }


def write_log(ws: Path, records: list[dict], *, summary: bool = True) -> None:
    """Write `serving/requests.jsonl` and (by default) the matching `serving/summary.json`."""
    serving = ws / "serving"
    serving.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(r) + "\n" for r in records)
    (serving / "requests.jsonl").write_text(lines, encoding="utf-8")
    if summary:
        write_json(serving / "summary.json", summary_of(records))


def write_json(path: Path, document: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")


def read_log(ws: Path) -> list[dict]:
    text = (ws / "serving" / "requests.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def write_canary(ws: Path, records: list[dict], verdict: str | None = None) -> dict:
    """Write serving/canary.json from the log, apply its verdict to the registry (unless the
    registry is to be left alone: `verdict=None` applies what the data give) and the summary."""
    canary = canary_of(records, production_labels(ws))
    write_json(ws / "serving" / "canary.json", canary)
    apply_verdict(ws, canary["verdict"] if verdict is None else verdict)
    (ws / "serving" / "TUTOR_SUMMARY.md").write_text(tutor_summary(records), encoding="utf-8")
    return canary


def build_serving_workspace(ws: Path, verdict: str = "hold") -> Path:
    """A workspace that passes `deployed`: stage 04's gate, registry, config, log, summary,
    canary analysis (whose data give `verdict`, applied to the registry), tutor summary,
    problem.yaml. Needs the foundation workspace's production split."""
    ws.mkdir(parents=True, exist_ok=True)
    register_versions(ws)
    (ws / "problem.yaml").write_text(PROBLEM, encoding="utf-8")
    write_json(ws / "evaluation" / "report.json", {"gate": GATE})
    write_json(ws / "serving" / "config.json", CONFIG)
    records = synthetic_log(production_labels(ws), verdict=verdict)
    write_log(ws, records)
    canary = write_canary(ws, records)
    assert canary["verdict"] == verdict, canary
    return ws
