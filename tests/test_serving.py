"""The `deployed` check: registry versions and aliases, the request log, the summary."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

import checker
from checker.metrics import percentile
from checker.serving import bucket, route, share_tolerance
from tests.helpers.serving import (
    CONFIG,
    build_serving_workspace,
    read_log,
    registry_client,
    summary_of,
    write_json,
    write_log,
)
from tests.helpers.untrusted import failed


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
    found = messages(ws)
    assert any(all(f in m for f in fragments) for m in found), found


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
    has(ws, "mlflow.db: alias champion: expected it on a version of at-risk-day60")


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
    rewrite_log(ws, [r for i, r in enumerate(records) if i not in dropped])
    has(ws, "challenger share: expected 0.2 ± 0.065", "3 standard errors for 342 requests")


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
