"""Builders for a valid stage-05 deployment without the notebook chain: a registry written through
the real MLflow API, and a request log, config and summary like the ones the notebook writes.

The log is synthetic but follows the contract: learners routed by their sha256 bucket, latencies
drawn from a skewed distribution, one over-budget fallback to the champion and one malformed
request answered by the base-rate rule.
"""

from __future__ import annotations

import json
import os
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from checker.metrics import percentile
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
constraints:
  latency_p95_ms: {BUDGET_MS}
  max_fairness_gap: 0.1
"""


def registry_client(ws: Path):
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{ws.resolve()}/mlflow.db")


def register_versions(ws: Path, versions: int = 2) -> None:
    """Register `versions` versions of the model (sources are empty model folders) and point
    `champion` at version 1 and `challenger` at version 2 (when there is one)."""
    client = registry_client(ws)
    client.create_registered_model(MODEL)
    for number in range(1, versions + 1):
        source = ws.resolve() / "mlartifacts" / "models" / f"m-{number}" / "artifacts"
        source.mkdir(parents=True, exist_ok=True)
        role = "baseline" if number == 1 else "candidate"
        client.create_model_version(MODEL, source=source.as_uri(), tags={"role": role})
    client.set_registered_model_alias(MODEL, "champion", "1")
    if versions > 1:
        client.set_registered_model_alias(MODEL, "challenger", "2")


def record(
    id_student: int, alias: str, *, latency_ms: float, when: datetime, reason: str | None = None
) -> dict:
    version = CONFIG["versions"].get(alias)
    return {
        "time": when.isoformat(timespec="milliseconds"),
        "request_id": f"req-{when.timestamp():.3f}-{id_student}",
        "id_student": id_student,
        "model_version": version,
        "alias": alias,
        "score": CONFIG["base_rate"] if version is None else 0.3,
        "latency_ms": latency_ms,
        "status": 200,
        "fallback": reason is not None,
        "fallback_reason": reason,
    }


def synthetic_log(requests: int = 400, seed: int = 0) -> list[dict]:
    """`requests` routed requests (some learners come back) plus two forced fallbacks."""
    rng = random.Random(seed)
    learners = rng.sample(range(10_000, 2_000_000), k=requests * 3 // 4)
    start = datetime(2014, 3, 1, 9, tzinfo=UTC)
    records = []
    for i in range(requests):
        learner = learners[i] if i < len(learners) else rng.choice(learners)
        alias = route(learner, CONFIG["canary_share"])
        latency = round(rng.lognormvariate(2.2, 0.35) + (3 if alias == "challenger" else 0), 3)
        records.append(
            record(learner, alias, latency_ms=latency, when=start + timedelta(seconds=i))
        )
    slow = next(r["id_student"] for r in records if r["alias"] == "challenger")
    end = start + timedelta(seconds=requests)
    records.append(
        record(
            slow,
            "champion",
            latency_ms=211.5,
            when=end,
            reason="challenger v2 over the 200 ms budget",
        )
    )
    records.append(
        record(
            records[0]["id_student"],
            "base_rate",
            latency_ms=4.2,
            when=end + timedelta(seconds=1),
            reason="champion v1 raised ValueError: could not convert string to float: 'sixty'",
        )
    )
    return records


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


def build_serving_workspace(ws: Path) -> Path:
    """A workspace that passes `deployed`: registry, config, log, summary, problem.yaml."""
    ws.mkdir(parents=True, exist_ok=True)
    register_versions(ws)
    (ws / "problem.yaml").write_text(PROBLEM, encoding="utf-8")
    write_json(ws / "serving" / "config.json", CONFIG)
    write_log(ws, synthetic_log())
    return ws
