"""The `deployed` check: stage 04's gate, registry versions and aliases (following the canary's
verdict), the request log and the reasons it carries, the summary, the canary analysis and the
tutor summary."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

import checker
from checker.metrics import percentile
from checker.serving import bucket, route, share_tolerance
from tests.helpers.serving import (
    CONFIG,
    build_serving_workspace,
    canary_of,
    production_labels,
    read_log,
    registry_client,
    summary_of,
    tutor_summary,
    write_json,
    write_log,
)
from tests.helpers.untrusted import failed
from tests.helpers.untrusted import fails_with as check_fails_with


@pytest.fixture(scope="module")
def serving_template(valid_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The foundation workspace (its store already made) plus a valid deployment."""
    copy = shutil.copytree(valid_template, tmp_path_factory.mktemp("serving") / "workspace")
    return build_serving_workspace(Path(copy))


@pytest.fixture
def ws(serving_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of a valid deployment, for a test to break."""
    return Path(shutil.copytree(serving_template, tmp_path / "workspace", symlinks=True))


def messages(ws: Path) -> list[str]:
    return failed("deployed", ws).messages


def has(ws: Path, *fragments: str) -> None:
    """The check fails, and one message holds every fragment."""
    check_fails_with("deployed", ws, *fragments)


def rewrite_log(ws: Path, records: list[dict]) -> None:
    """Replace the log and rewrite a matching summary, so only the change under test fails."""
    write_log(ws, records)


def sql(ws: Path, statement: str, params: tuple = ()) -> None:
    with sqlite3.connect(ws / "mlflow.db") as db:
        db.execute(statement, params)


# ---- the valid deployment --------------------------------------------------------------------


def test_valid_deployment_passes(ws: Path) -> None:
    result = checker.check("deployed", ws).results[0]
    assert result.passed, result.messages
    assert result.points == result.max_points == 10


def test_check_never_writes(ws: Path) -> None:
    def snapshot() -> dict[str, str]:
        return {
            str(p.relative_to(ws)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(ws.rglob("*"))
            if p.is_file()
        }

    before = snapshot()
    checker.check("deployed", ws)
    assert snapshot() == before


def test_route_and_percentile_match_the_contract() -> None:
    assert bucket(12345) == int(hashlib.sha256(b"12345").hexdigest(), 16) % 100
    assert route(12345, 0.0) == "champion" and route(12345, 1.0) == "challenger"
    assert percentile([1.0, 2.0, 3.0, 4.0], 95) == pytest.approx(3.85)  # np.percentile's value
    assert percentile([5.0], 50) == 5.0
    assert share_tolerance(0.2, 0.05, 10_000) == 0.05  # a big replay: the configured tolerance
    assert share_tolerance(0.2, 0.05, 100) == pytest.approx(0.12)  # a small one: 3 standard errors


# ---- the registry ----------------------------------------------------------------------------


def test_one_version_only(ws: Path) -> None:
    registry_client(ws).delete_model_version("at-risk-day60", "2")
    found = messages(ws)
    assert any("expected at least 2 versions" in m and "found 1" in m for m in found), found
    # MLflow drops the alias with the version: that is reported too
    assert any("alias challenger" in m and "no such alias" in m for m in found), found


def test_alias_missing(ws: Path) -> None:
    registry_client(ws).delete_registered_model_alias("at-risk-day60", "champion")
    has(ws, "mlflow.db: alias champion: expected it on version 1", "found no such alias")


def test_alias_taken_off_a_retired_version_still_passes(ws: Path) -> None:
    """Stage 07 may retire the version the canary served; the deployment record stays valid."""
    client = registry_client(ws)
    client.set_model_version_tag("at-risk-day60", "2", "lifecycle_state", "retired")
    client.delete_registered_model_alias("at-risk-day60", "challenger")
    result = checker.check("deployed", ws).results[0]
    assert result.passed, result.messages


def test_alias_pointing_at_a_deleted_version(ws: Path) -> None:
    sql(ws, "UPDATE model_versions SET current_stage = 'Deleted_Internal' WHERE version = 2")
    has(ws, "alias challenger", "found version 2, which does not exist or was deleted")


def test_alias_pointing_at_a_missing_version(ws: Path) -> None:
    sql(ws, "UPDATE registered_model_aliases SET version = 7 WHERE alias = 'challenger'")
    has(ws, "alias challenger", "found version 7, which does not exist")


def test_registered_model_missing(ws: Path) -> None:
    config = CONFIG | {"model": "someone-else"}
    write_json(ws / "serving" / "config.json", config)
    has(ws, "registered model someone-else: expected it in the registry", "at-risk-day60")


def test_store_missing(ws: Path) -> None:
    (ws / "mlflow.db").unlink()
    has(ws, "mlflow.db: file mlflow.db not found")


def test_store_that_is_not_mlflow(ws: Path) -> None:
    (ws / "mlflow.db").unlink()
    with sqlite3.connect(ws / "mlflow.db") as db:
        db.execute("CREATE TABLE registered_models (name TEXT)")
    has(ws, "mlflow.db: expected MLflow tables", "model_versions")


# ---- the request log: traffic ----------------------------------------------------------------


def test_only_one_version_served(ws: Path) -> None:
    records = [r for r in read_log(ws) if r["alias"] != "challenger"]
    rewrite_log(ws, records)
    has(ws, "expected requests served by both the champion and the challenger", "only version 1")


def test_canary_share_outside_tolerance(ws: Path) -> None:
    records = read_log(ws)
    challengers = [i for i, r in enumerate(records) if r["alias"] == "challenger"]
    dropped = set(challengers[: len(challengers) * 2 // 3])  # still routed right, just fewer
    kept = [r for i, r in enumerate(records) if i not in dropped]
    rewrite_log(ws, kept)
    tolerance = share_tolerance(0.2, 0.05, len(kept))
    assert tolerance > 0.05  # a small replay: 3 standard errors are wider than canary_tolerance
    has(
        ws,
        f"challenger share: expected 0.2 ± {tolerance:.3f}",
        f"3 standard errors for {len(kept)} requests",
    )


def test_no_fallback(ws: Path) -> None:
    rewrite_log(ws, [r for r in read_log(ws) if not r["fallback"]])
    has(ws, "fallback: expected at least one request that fell back", "found none")


def test_non_sticky_routing(ws: Path) -> None:
    records = read_log(ws)
    counts: dict[int, int] = {}
    for r in records:
        if not r["fallback"]:
            counts[r["id_student"]] = counts.get(r["id_student"], 0) + 1
    learner = next(i for i, n in counts.items() if n >= 2)
    flip = next(r for r in records if r["id_student"] == learner and not r["fallback"])
    other = "challenger" if flip["alias"] == "champion" else "champion"
    flip |= {"alias": other, "model_version": CONFIG["versions"][other]}
    rewrite_log(ws, records)
    has(ws, "expected each learner served by one model (sticky routing)", f"id_student {learner}")


def test_routing_against_the_sha256_bucket(ws: Path) -> None:
    records = read_log(ws)
    counts: dict[int, int] = {}
    for r in records:
        counts[r["id_student"]] = counts.get(r["id_student"], 0) + 1
    line, r = next((n, r) for n, r in enumerate(records, 1) if counts[r["id_student"]] == 1)
    wrong = "challenger" if r["alias"] == "champion" else "champion"
    r |= {"alias": wrong, "model_version": CONFIG["versions"][wrong]}
    rewrite_log(ws, records)
    has(ws, f"line {line}: alias: expected {route(r['id_student'], 0.2)}", "sha256 bucket")


def test_alias_served_by_two_versions(ws: Path) -> None:
    records = read_log(ws)
    for r in records:
        if r["alias"] == "champion" and r["model_version"] == "1":
            r["model_version"] = "2"
            break
    rewrite_log(ws, records)
    has(ws, "alias champion: expected one version behind an alias", "versions 1, 2")


def test_log_disagrees_with_config_versions(ws: Path) -> None:
    config = CONFIG | {"versions": {"champion": "2", "challenger": "1"}}
    write_json(ws / "serving" / "config.json", config)
    has(ws, "alias champion: expected version 2 (serving/config.json versions), found version 1")


def test_too_few_requests(ws: Path) -> None:
    rewrite_log(ws, read_log(ws)[:50])
    has(ws, "expected at least 100 logged requests", "found 50")


# ---- the request log: records ----------------------------------------------------------------


def test_malformed_log_line(ws: Path) -> None:
    path = ws / "serving" / "requests.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[4] = '{"id_student": 12, "alias": '
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    has(ws, "serving/requests.jsonl: line 5: expected valid JSON, found a syntax error")


def test_log_line_breaking_the_schema(ws: Path) -> None:
    records = read_log(ws)
    records[9]["alias"] = "blue"
    del records[11]["latency_ms"]
    write_log(ws, records, summary=False)
    found = messages(ws)
    assert any(
        m.startswith("serving/requests.jsonl: line 10: alias: expected one of") for m in found
    )
    assert any("line 12: latency_ms: expected this field, found it missing" in m for m in found)


def test_log_with_nan_and_duplicate_keys(ws: Path) -> None:
    path = ws / "serving" / "requests.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[0] = lines[0].replace('"status": 200', '"status": 200, "status": 500')
    lines[1] = lines[1].replace('"latency_ms": ', '"latency_ms": NaN, "x": ')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    found = messages(ws)
    assert any("line 1: expected valid JSON, found duplicate key 'status'" in m for m in found)
    assert any("line 2: expected valid JSON, found NaN is not allowed" in m for m in found)


def test_log_line_separator_inside_a_string_is_not_a_line_break(ws: Path) -> None:
    records = read_log(ws)
    records[0]["request_id"] = "a\u2028b"
    path = ws / "serving" / "requests.jsonl"
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in records), encoding="utf-8"
    )
    result = checker.check("deployed", ws).results[0]
    assert result.passed, result.messages


def test_fallback_without_a_reason(ws: Path) -> None:
    records = read_log(ws)
    line = next(n for n, r in enumerate(records, 1) if r["fallback"])
    records[line - 1]["fallback_reason"] = None
    rewrite_log(ws, records)
    has(ws, f"line {line}: fallback_reason: expected a reason exactly when fallback is true")


def test_base_rate_with_a_version(ws: Path) -> None:
    records = read_log(ws)
    line = next(n for n, r in enumerate(records, 1) if r["alias"] == "base_rate")
    records[line - 1]["model_version"] = "1"
    rewrite_log(ws, records)
    has(ws, f"line {line}: model_version: expected null exactly when the base-rate rule served")


def test_duplicate_request_ids(ws: Path) -> None:
    records = read_log(ws)
    records[7]["request_id"] = records[3]["request_id"]
    rewrite_log(ws, records)
    has(ws, "line 8: request_id: expected unique ids", "first on line 4")


def test_log_missing(ws: Path) -> None:
    (ws / "serving" / "requests.jsonl").unlink()
    has(ws, "serving/requests.jsonl: file serving/requests.jsonl not found")


def test_log_symlink_out_of_the_workspace(ws: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.jsonl"
    shutil.copy(ws / "serving" / "requests.jsonl", outside)
    (ws / "serving" / "requests.jsonl").unlink()
    (ws / "serving" / "requests.jsonl").symlink_to(outside)
    has(ws, "serving/requests.jsonl", "leads outside the workspace")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_log_that_is_a_fifo(ws: Path) -> None:
    (ws / "serving" / "requests.jsonl").unlink()
    os.mkfifo(ws / "serving" / "requests.jsonl")
    has(ws, "expected serving/requests.jsonl to be a regular file")


def test_log_not_utf8(ws: Path) -> None:
    path = ws / "serving" / "requests.jsonl"
    path.write_bytes(path.read_bytes() + b"\xff\xfe\n")
    has(ws, "serving/requests.jsonl: expected UTF-8 text")


# ---- the summary and the config --------------------------------------------------------------


def test_p95_claim_mismatching_the_log(ws: Path) -> None:
    summary = summary_of(read_log(ws))
    summary["p95_ms"] = round(summary["p95_ms"] * 0.5, 3)
    write_json(ws / "serving" / "summary.json", summary)
    has(ws, "serving/summary.json: p95_ms: expected", "np.percentile", f"found {summary['p95_ms']}")


def test_summary_counts_mismatching_the_log(ws: Path) -> None:
    summary = summary_of(read_log(ws)) | {"fallbacks": 0, "requests": 10}
    write_json(ws / "serving" / "summary.json", summary)
    found = messages(ws)
    assert any("summary.json: fallbacks: expected 2" in m for m in found), found
    assert any("summary.json: requests: expected 402" in m for m in found), found


def test_within_budget_wrong(ws: Path) -> None:
    summary = summary_of(read_log(ws)) | {"within_budget": False}
    write_json(ws / "serving" / "summary.json", summary)
    has(ws, "summary.json: within_budget: expected true")


def test_summary_missing(ws: Path) -> None:
    (ws / "serving" / "summary.json").unlink()
    has(ws, "serving/summary.json: file serving/summary.json not found")


def test_config_missing(ws: Path) -> None:
    (ws / "serving" / "config.json").unlink()
    has(ws, "serving/config.json: file serving/config.json not found")


def test_config_breaking_the_schema(ws: Path) -> None:
    config = {k: v for k, v in CONFIG.items() if k != "canary_tolerance"} | {"canary_share": 0.9}
    write_json(ws / "serving" / "config.json", config)
    found = messages(ws)
    assert any("canary_tolerance: expected this field, found it missing" in m for m in found)
    assert any("config.json: canary_share: expected at most 0.5, found 0.9" in m for m in found)


def test_config_not_json(ws: Path) -> None:
    (ws / "serving" / "config.json").write_text("{'model': 1}", encoding="utf-8")
    has(ws, "serving/config.json: expected valid JSON")


def test_budget_disagreeing_with_problem_yaml(ws: Path) -> None:
    write_json(ws / "serving" / "config.json", CONFIG | {"latency_budget_ms": 500})
    write_json(ws / "serving" / "summary.json", summary_of(read_log(ws), 500))
    has(ws, "config.json: latency_budget_ms: expected 200 (problem.yaml", "found 500")


def test_config_version_not_registered(ws: Path) -> None:
    write_json(
        ws / "serving" / "config.json", CONFIG | {"versions": {"champion": "1", "challenger": "9"}}
    )
    has(ws, "config.json: versions.challenger: expected a registered version", "found version 9")


# ---- the real chain --------------------------------------------------------------------------


@pytest.mark.slow
def test_solution_chain_deploys(chain_workspace: Path) -> None:
    result = checker.check("deployed", chain_workspace).results[0]
    assert result.passed, result.messages
    log = read_log(chain_workspace)
    assert {r["alias"] for r in log} == {"champion", "challenger", "base_rate"}
    config = json.loads((chain_workspace / "serving" / "config.json").read_text(encoding="utf-8"))
    assert config["versions"] == {"champion": "1", "challenger": "2"}
    # the request log is the server's: breaking stickiness in it fails the check
    for r in log:
        if not r["fallback"]:
            r["alias"] = "challenger" if r["alias"] == "champion" else "champion"
            break
    write_log(chain_workspace, log)
    assert not checker.check("deployed", chain_workspace).passed


# ---- stage 04's gate ------------------------------------------------------------------------


def test_a_gate_that_held_the_candidate_back_fails(ws: Path) -> None:
    write_json(ws / "evaluation" / "report.json", {"gate": {"rule": "r", "verdict": "hold"}})
    has(
        ws,
        "evaluation/report.json: gate.verdict: expected canary",
        "found hold",
        "revisit 04-evaluation",
    )


def test_a_report_without_a_gate_fails(ws: Path) -> None:
    write_json(ws / "evaluation" / "report.json", {"metrics": {}})
    has(ws, "evaluation/report.json: gate.verdict: expected canary or hold", "found no gate")


def test_a_missing_report_names_stage_04(ws: Path) -> None:
    (ws / "evaluation" / "report.json").unlink()
    has(ws, "evaluation/report.json", "not found", "revisit 04-evaluation")


# ---- the canary analysis ----------------------------------------------------------------------


def canary(ws: Path) -> dict:
    return json.loads((ws / "serving" / "canary.json").read_text(encoding="utf-8"))


def test_canary_missing(ws: Path) -> None:
    (ws / "serving" / "canary.json").unlink()
    has(ws, "serving/canary.json: file serving/canary.json not found")


def test_canary_arm_value_that_does_not_recompute(ws: Path) -> None:
    document = canary(ws)
    document["arms"]["challenger"]["value"] += 0.01
    write_json(ws / "serving" / "canary.json", document)
    has(ws, "canary.json: arms.challenger.value: expected", "production split's labels", "found")


def test_canary_learner_count_that_does_not_recompute(ws: Path) -> None:
    document = canary(ws)
    document["arms"]["champion"]["learners"] += 1
    write_json(ws / "serving" / "canary.json", document)
    has(ws, "canary.json: arms.champion.learners: expected")


def test_canary_interval_of_another_seed_fails(ws: Path) -> None:
    other = canary_of(read_log(ws), production_labels(ws), seed=7)
    document = canary(ws) | {"difference": other["difference"]}
    write_json(ws / "serving" / "canary.json", document)
    has(ws, "canary.json: difference.low: expected", "seed 42, 200 rounds", "found")


def test_canary_arms_resampled_together_fail(ws: Path) -> None:
    """One generator draw for both arms (a paired bootstrap) is not the independent resampling."""
    from checker.metrics import bootstrap_interval, recall_at_budget

    document = canary(ws)
    labels, records = production_labels(ws), read_log(ws)
    first: dict[str, dict[int, float]] = {"champion": {}, "challenger": {}}
    for r in records:
        if not r["fallback"] and r["alias"] in first and not r.get("injected_delay_ms"):
            first[r["alias"]].setdefault(r["id_student"], r["score"])
    y = {a: [labels[i] for i in sorted(f)] for a, f in first.items()}
    s = {a: [f[i] for i in sorted(f)] for a, f in first.items()}
    import numpy as np

    y0, s0, y1, s1 = (
        np.array(v) for v in (y["champion"], s["champion"], y["challenger"], s["challenger"])
    )
    n = min(len(y0), len(y1))
    paired = bootstrap_interval(
        lambda rows: (
            recall_at_budget(y1[rows], s1[rows], 0.3) - recall_at_budget(y0[rows], s0[rows], 0.3)
        ),
        n,
        200,
        42,
    )
    document["difference"] = {k: paired[k] for k in ("estimate", "low", "high", "rounds_used")}
    write_json(ws / "serving" / "canary.json", document)
    has(ws, "canary.json: difference.estimate: expected", "resampled independently")


def test_canary_with_too_few_rounds(ws: Path) -> None:
    write_json(
        ws / "serving" / "canary.json", canary_of(read_log(ws), production_labels(ws), rounds=50)
    )
    has(ws, "canary.json: rounds: expected at least 200 bootstrap rounds", "found 50")


def test_canary_with_too_many_rounds(ws: Path) -> None:
    write_json(ws / "serving" / "canary.json", canary(ws) | {"rounds": 10**6})
    has(ws, "canary.json: rounds: expected at most 5000", "found 1000000")


def test_an_arm_without_an_at_risk_learner_cannot_be_judged(ws: Path) -> None:
    labels = production_labels(ws)
    records = [
        r
        for r in read_log(ws)
        if r["alias"] != "challenger" or not labels[r["id_student"]] or r["fallback"]
    ]
    write_log(ws, records)
    has(ws, "requests.jsonl: challenger: expected at least 20 learners", "0 at risk")


def test_canary_verdict_against_the_rule(ws: Path) -> None:
    write_json(ws / "serving" / "canary.json", canary(ws) | {"verdict": "promote"})
    has(ws, "canary.json: verdict: expected hold (the rule:", "found promote")


def test_canary_on_another_metric_than_problem_yaml(ws: Path) -> None:
    write_json(ws / "serving" / "canary.json", canary(ws) | {"metric": "roc_auc"})
    has(
        ws,
        "canary.json: metric: expected recall_at_budget (problem.yaml success.metric",
        "found roc_auc",
    )


def test_canary_budget_against_problem_yaml(ws: Path) -> None:
    write_json(ws / "serving" / "canary.json", canary(ws) | {"budget": 0.5})
    has(ws, "canary.json: budget: expected 0.3 (problem.yaml success.budget), found 0.5")


def test_canary_arm_version_against_the_log(ws: Path) -> None:
    document = canary(ws)
    document["arms"]["challenger"]["version"] = "1"
    write_json(ws / "serving" / "canary.json", document)
    has(ws, "canary.json: arms.challenger.version: expected 2", "found 1")


def test_canary_breaking_its_schema(ws: Path) -> None:
    document = canary(ws)
    del document["seed"]
    document["verdict"] = "maybe"
    write_json(ws / "serving" / "canary.json", document)
    found = messages(ws)
    assert any("canary.json: seed: expected this field, found it missing" in m for m in found), (
        found
    )
    assert any("canary.json: verdict: expected one of" in m for m in found), found


def test_a_learner_with_two_enrolments_cannot_be_joined(ws: Path) -> None:
    frame = pd.read_csv(ws / "data" / "production.csv.gz")
    twice = frame.loc[frame["id_student"].duplicated(keep=False), "id_student"].iloc[0]
    records = read_log(ws)
    arm = route(int(twice), 0.2)
    records[5] |= {
        "id_student": int(twice),
        "alias": arm,
        "model_version": CONFIG["versions"][arm],
    }
    write_log(ws, records)
    has(
        ws,
        "requests.jsonl: id_student: expected learners with one outcome",
        f"id_student {twice} has several rows",
    )


@pytest.mark.parametrize("verdict", ["promote", "rollback"])
def test_a_verdict_applied_to_the_registry_passes(
    valid_template: Path, tmp_path: Path, verdict: str
) -> None:
    ws = build_serving_workspace(Path(shutil.copytree(valid_template, tmp_path / "ws")), verdict)
    assert canary(ws)["verdict"] == verdict
    result = checker.check("deployed", ws).results[0]
    assert result.passed, result.messages
    aliases = registry_client(ws).get_registered_model("at-risk-day60").aliases
    assert "challenger" not in aliases
    assert str(aliases["champion"]) == ("2" if verdict == "promote" else "1")


def test_a_promotion_not_applied_fails(valid_template: Path, tmp_path: Path) -> None:
    ws = build_serving_workspace(Path(shutil.copytree(valid_template, tmp_path / "ws")), "promote")
    client = registry_client(ws)
    client.set_registered_model_alias("at-risk-day60", "champion", "1")
    client.set_registered_model_alias("at-risk-day60", "challenger", "2")
    found = messages(ws)
    assert any(
        "alias champion: expected version 2 (serving/canary.json verdict promote), found version 1"
        in m
        for m in found
    ), found
    assert any(
        "alias challenger: expected no such alias (serving/canary.json verdict promote deletes it), found it on version 2"
        in m
        for m in found
    ), found


def test_a_rollback_that_keeps_the_challenger_fails(valid_template: Path, tmp_path: Path) -> None:
    ws = build_serving_workspace(Path(shutil.copytree(valid_template, tmp_path / "ws")), "rollback")
    registry_client(ws).set_registered_model_alias("at-risk-day60", "challenger", "2")
    has(
        ws,
        "alias challenger: expected no such alias (serving/canary.json verdict rollback",
        "version 2",
    )


def test_a_hold_whose_challenger_was_deleted_fails(ws: Path) -> None:
    registry_client(ws).delete_registered_model_alias("at-risk-day60", "challenger")
    has(
        ws,
        "alias challenger: expected it on version 2 (serving/canary.json verdict hold), found no such alias",
    )


def test_a_later_iteration_may_move_the_champion_on(valid_template: Path, tmp_path: Path) -> None:
    """Stage 07 registers a retrain (version 3), promotes it and retires the version it replaced."""
    ws = build_serving_workspace(Path(shutil.copytree(valid_template, tmp_path / "ws")), "promote")
    client = registry_client(ws)
    source = ws.resolve() / "mlartifacts" / "models" / "m-3" / "artifacts"
    source.mkdir(parents=True)
    client.create_model_version("at-risk-day60", source=source.as_uri(), tags={"role": "retrain"})
    client.set_registered_model_alias("at-risk-day60", "champion", "3")
    client.set_model_version_tag("at-risk-day60", "2", "lifecycle_state", "retired")
    result = checker.check("deployed", ws).results[0]
    assert result.passed, result.messages


def test_the_champion_moved_to_an_earlier_version_fails(
    valid_template: Path, tmp_path: Path
) -> None:
    ws = build_serving_workspace(Path(shutil.copytree(valid_template, tmp_path / "ws")), "rollback")
    registry_client(ws).set_registered_model_alias("at-risk-day60", "champion", "2")
    has(
        ws,
        "alias champion: expected version 1 (serving/canary.json verdict rollback), found version 2",
    )


def test_a_drill_in_the_challengers_arm_is_not_traffic(ws: Path) -> None:
    """The slowed request (injected_delay_ms) fell back, yet the challenger is not rolled back."""
    records = read_log(ws)
    drills = [r for r in records if r.get("injected_delay_ms")]
    assert drills and all(route(r["id_student"], 0.2) == "challenger" for r in drills)
    assert canary(ws)["arms"]["challenger"]["fallback_rate"] == 0
    for r in drills:
        del r["injected_delay_ms"]
    write_log(ws, records)
    has(ws, "canary.json: arms.challenger.fallback_rate: expected")


# ---- the reasons behind a score -----------------------------------------------------------------


def first_line(records: list[dict], alias: str) -> int:
    return next(i for i, r in enumerate(records) if r["alias"] == alias and not r["fallback"])


def test_reasons_missing_on_a_model_answer(ws: Path) -> None:
    records = read_log(ws)
    i = first_line(records, "champion")
    records[i]["reasons"] = None
    write_log(ws, records)
    has(ws, f"requests.jsonl: line {i + 1}: reasons: expected the top 3 reasons", "found none")


def test_logistic_contributions_that_do_not_add_up(ws: Path) -> None:
    records = read_log(ws)
    i = first_line(records, "champion")
    records[i]["explanation"]["intercept"] += 0.5
    write_log(ws, records)
    has(
        ws, f"line {i + 1}: explanation: expected intercept + contributions = logit(score)", "found"
    )


def test_reasons_that_are_not_the_top_ones(ws: Path) -> None:
    records = read_log(ws)
    i = first_line(records, "challenger")
    reasons = records[i]["reasons"]
    reasons[0], reasons[2] = reasons[2], reasons[0]
    write_log(ws, records)
    has(ws, f"line {i + 1}: reasons[0]: expected the contribution ranked 1 by size")


def test_a_reason_with_the_wrong_direction(ws: Path) -> None:
    records = read_log(ws)
    i = first_line(records, "challenger")
    reason = records[i]["reasons"][1]
    reason["direction"] = "raises" if reason["direction"] == "lowers" else "lowers"
    write_log(ws, records)
    has(ws, f"line {i + 1}: reasons[1].direction: expected", "the sign of its contribution")


def test_a_logistic_model_explained_by_swaps_fails(ws: Path) -> None:
    records = read_log(ws)
    i = first_line(records, "champion")
    records[i]["explanation"]["method"] = "typical_value_swap"
    write_log(ws, records)
    has(
        ws,
        f"line {i + 1}: explanation.method: expected logit_contributions for version 1",
        "logistic_regression",
    )


def test_contributions_missing_a_feature(ws: Path) -> None:
    records = read_log(ws)
    i = first_line(records, "challenger")
    del records[i]["explanation"]["contributions"]["studied_credits"]
    write_log(ws, records)
    has(
        ws,
        f"line {i + 1}: explanation.contributions: expected one contribution per input column",
        "missing studied_credits",
    )


def test_base_rate_answer_with_reasons(ws: Path) -> None:
    records = read_log(ws)
    i = next(i for i, r in enumerate(records) if r["alias"] == "base_rate")
    records[i]["reasons"] = [
        {"feature": "score_mean_60", "contribution": 1.0, "direction": "raises"}
    ]
    write_log(ws, records)
    has(ws, f"line {i + 1}: reasons: expected none when the base-rate rule answered")


def test_reasons_breaking_the_schema(ws: Path) -> None:
    records = read_log(ws)
    records[3]["reasons"] = [{"feature": "x", "contribution": "big", "direction": "up"}]
    write_log(ws, records, summary=False)
    has(ws, "requests.jsonl: line 4: reasons[0]")


# ---- the tutor summary --------------------------------------------------------------------------


TUTOR = "serving/TUTOR_SUMMARY.md"


def test_tutor_summary_missing(ws: Path) -> None:
    (ws / TUTOR).unlink()
    has(ws, f"{TUTOR}: file {TUTOR} not found")


def test_tutor_summary_longer_than_a_page(ws: Path) -> None:
    text = (ws / TUTOR).read_text(encoding="utf-8")
    (ws / TUTOR).write_text(text + "\nmore words here " * 250, encoding="utf-8")
    has(ws, f"{TUTOR}: length: expected one page (at most 600 words)", "found")


def test_tutor_summary_not_naming_the_main_reasons(ws: Path) -> None:
    text = tutor_summary(read_log(ws))
    (ws / TUTOR).write_text(text.replace("`score_mean_60`", "the average score"), encoding="utf-8")
    has(
        ws,
        f"{TUTOR}: reasons: expected it to name the features",
        "found no mention of score_mean_60",
    )


def test_tutor_summary_with_jargon(ws: Path) -> None:
    text = (ws / TUTOR).read_text(encoding="utf-8")
    (ws / TUTOR).write_text(
        text + "\nThe logit is the sum of coefficient terms.\n", encoding="utf-8"
    )
    has(ws, f"{TUTOR}: words: expected plain words for tutors, found jargon: coefficient, logit")


def test_a_log_with_every_line_valid_is_read_in_one_pass_and_one_bad_line_is_named(
    ws: Path,
):
    from checker.errors import Invalid
    from checker.serving import read_log
    from checker.workspace import Workspace

    workspace = ws
    lines = (workspace / "serving" / "requests.jsonl").read_text(encoding="utf-8").splitlines()
    records = read_log(Workspace(workspace))
    assert [n for n, _ in records] == list(range(1, len(lines) + 1))
    broken = json.loads(lines[1]) | {"status": "ok"}
    lines[1] = json.dumps(broken)
    (workspace / "serving" / "requests.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(
        Invalid, match=r"requests.jsonl: line 2: status: expected a value of type integer"
    ):
        read_log(Workspace(workspace))
