"""The `problem_defined` check on problem.yaml (stage 01): valid, broken and hostile files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

import checker
from checker.contract import schema
from checker.problem import METRICS, problem_fields
from checker.workspace import Workspace
from tests.helpers.problem import VALID_PROBLEM, write_problem
from tests.helpers.untrusted import failed


def run(ws: Path) -> checker.CheckResult:
    return checker.check("problem_defined", ws).results[0]


def messages(ws: Path) -> str:
    result = failed("problem_defined", ws)
    assert (
        result.hint
        == "revisit 01-problem-definition.ipynb (cells 'Your turn 1', 'Your turn 2' and 'Your turn 3')"
    )
    return "\n".join(result.messages)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    workspace = tmp_path / "workspace"
    write_problem(workspace)
    return workspace


def edit(ws: Path, change: Callable[[dict], None]) -> None:
    document = yaml.safe_load(VALID_PROBLEM)
    change(document)
    write_problem(ws, yaml.safe_dump(document, sort_keys=False))


def test_the_valid_problem_passes(ws: Path):
    result = run(ws)
    assert result.passed, result.messages
    assert result.points == result.max_points == 10


def test_the_metrics_are_the_schema_enum():
    assert (
        list(METRICS) == schema("problem")["properties"]["success"]["properties"]["metric"]["enum"]
    )


def test_another_metric_with_a_budget_passes(ws: Path):
    def change(d: dict) -> None:
        d["success"] |= {"metric": "roc_auc", "target": 0.8}
        d["baseline"]["metric_value"] = 0.7

    edit(ws, change)
    assert run(ws).passed, run(ws).messages


def test_roc_auc_without_a_budget_is_refused_at_stage_01(ws: Path):
    """Stages 04, 06 and 07 need the budget whatever the metric (the threshold, recall at it)."""

    def change(d: dict) -> None:
        d["success"] |= {"metric": "roc_auc", "target": 0.8}
        del d["success"]["budget"]
        d["baseline"]["metric_value"] = 0.7

    edit(ws, change)
    result = run(ws)
    assert "01-problem-definition.ipynb" in result.hint
    assert result.messages == [
        "problem.yaml: success.budget: expected the share of learners you can act on (required "
        "whatever the metric: stage 04 sets its threshold from it, stages 06 and 07 measure "
        "recall at it), found it missing"
    ]


def test_a_comparison_in_a_definition_is_not_a_placeholder(ws: Path):
    edit(ws, lambda d: d["prediction"].update(definition="final_result is Fail, or score < 40"))
    assert run(ws).passed, run(ws).messages


def _set(section: str, key: str, value: object) -> Callable[[dict], None]:
    return lambda d: d[section].__setitem__(key, value)


def _drop(section: str, key: str | None = None) -> Callable[[dict], None]:
    return lambda d: d.pop(section) if key is None else d[section].pop(key)


VIOLATIONS = {
    "no baseline": (
        _drop("baseline"),
        "problem.yaml: baseline: expected this field, found it missing",
    ),
    "unknown metric": (
        _set("success", "metric", "auc"),
        "problem.yaml: success.metric: expected one of recall_at_budget, roc_auc",
    ),
    "misspelt field": (
        _set("success", "budjet", 0.3),
        "problem.yaml: success: expected only the documented fields",
    ),
    "target above 1": (
        _set("success", "target", 1.5),
        "problem.yaml: success.target: expected a value of recall_at_budget in (0, 1], found 1.5",
    ),
    "target zero": (
        _set("success", "target", 0),
        "problem.yaml: success.target: expected a value of recall_at_budget in (0, 1], found 0",
    ),
    "target as text": (
        _set("success", "target", "0.6"),
        "problem.yaml: success.target: expected a value of type number, found '0.6'",
    ),
    "target not a number": (
        _set("success", "target", float("nan")),
        "problem.yaml: success.target: expected a value of recall_at_budget in (0, 1], found nan",
    ),
    "budget missing": (
        _drop("success", "budget"),
        "problem.yaml: success.budget: expected the share of learners you can act on "
        "(required whatever the metric: stage 04 sets its threshold from it, stages 06 and 07 "
        "measure recall at it), found it missing",
    ),
    "budget everyone": (
        _set("success", "budget", 1.0),
        "problem.yaml: success.budget: expected the share of learners you can act on, "
        "a number in (0, 1), found 1.0",
    ),
    "baseline meets target": (
        _set("baseline", "metric_value", 0.5),
        "problem.yaml: baseline.metric_value: expected a value below success.target (0.5), "
        "found 0.5",
    ),
    "baseline out of range": (
        _set("baseline", "metric_value", -0.2),
        "problem.yaml: baseline.metric_value: expected today's value of recall_at_budget, "
        "a number in [0, 1], found -0.2",
    ),
    "horizon after the end": (
        _set("prediction", "horizon_day", 300),
        "problem.yaml: prediction.horizon_day: expected a whole day of the presentation "
        "from 1 to 270, found 300",
    ),
    "horizon zero": (
        _set("prediction", "horizon_day", 0),
        "problem.yaml: prediction.horizon_day: expected a whole day of the presentation "
        "from 1 to 270, found 0",
    ),
    "horizon fractional": (
        _set("prediction", "horizon_day", 60.0),
        "problem.yaml: prediction.horizon_day: expected a whole day of the presentation "
        "from 1 to 270, found 60.0",
    ),
    "latency negative": (
        _set("constraints", "latency_p95_ms", -5),
        "problem.yaml: constraints.latency_p95_ms: expected a positive number of milliseconds, "
        "found -5",
    ),
    "latency infinite": (
        _set("constraints", "latency_p95_ms", float("inf")),
        "problem.yaml: constraints.latency_p95_ms: expected a positive number of milliseconds, "
        "found inf",
    ),
    "fairness gap of 1": (
        _set("constraints", "max_fairness_gap", 1),
        "problem.yaml: constraints.max_fairness_gap: expected the largest acceptable gap in "
        "recall between groups, a number in (0, 1), found 1",
    ),
    "latency as boolean": (
        _set("constraints", "latency_p95_ms", True),
        "problem.yaml: constraints.latency_p95_ms: expected a value of type number, found True",
    ),
    "placeholder outcome": (
        _set("success", "outcome", "TODO: decide with the tutors"),
        "problem.yaml: success.outcome: expected a sentence of your own, found "
        "'TODO: decide with the tutors', a placeholder",
    ),
    "too short a decision": (
        lambda d: d["users"][0].__setitem__("decision", "call"),
        "problem.yaml: users[0].decision: expected a sentence of your own, found 'call', "
        "only 1 word",
    ),
    "placeholder user": (
        lambda d: d["users"][0].__setitem__("who", "<who acts?>"),
        "problem.yaml: users[0].who: expected a name, found the placeholder '<who acts?>'",
    ),
    "nobody acts": (
        lambda d: d.__setitem__("users", []),
        "problem.yaml: users: expected minItems 1, found []",
    ),
    "target not a column name": (
        _set("prediction", "target", "at risk"),
        "problem.yaml: prediction.target: expected text matching",
    ),
    "placeholder baseline": (
        _set("baseline", "description", "..."),
        "problem.yaml: baseline.description: expected a sentence of your own, found '...'",
    ),
}


@pytest.mark.parametrize("name", list(VIOLATIONS))
def test_each_violation_fails_with_its_message(ws: Path, name: str):
    change, expected = VIOLATIONS[name]
    edit(ws, change)
    assert expected in messages(ws)


def test_several_problems_are_all_reported(ws: Path):
    def change(d: dict) -> None:
        d["success"]["target"] = 2
        d["constraints"]["latency_p95_ms"] = 0
        d["prediction"]["horizon_day"] = 999

    edit(ws, change)
    assert len(run(ws).messages) == 3


HOSTILE = {
    "python tag": (
        "prediction: !!python/object/apply:os.system ['touch pwned']\n",
        "problem.yaml: expected plain YAML, found a problem",
    ),
    "python name tag": (
        "prediction: !!python/name:os.system\n",
        "problem.yaml: expected plain YAML, found a problem",
    ),
    "alias bomb": (
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n"
            for i in range(8)
        ),
        "an alias bomb?",
    ),
    "duplicate key": (
        VALID_PROBLEM + "success: {metric: accuracy}\n",
        "duplicate key 'success'",
    ),
    "not a mapping": (
        "- just\n- a list\n",
        "problem.yaml: (top level): expected a value of type object",
    ),
    "empty file": ("", "problem.yaml: (top level): expected a value of type object, found None"),
    "syntax error": ("prediction: [unclosed\n", "problem.yaml: expected plain YAML"),
    "deep nesting": ("a: " + "[" * 100 + "]" * 100 + "\n", "levels of nesting"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_yaml_fails_cleanly(ws: Path, name: str):
    text, expected = HOSTILE[name]
    write_problem(ws, text)
    assert expected in messages(ws)
    assert not (ws / "pwned").exists() and not Path("pwned").exists()


def test_non_utf8_fails_cleanly(ws: Path):
    (ws / "problem.yaml").write_bytes(VALID_PROBLEM.encode("utf-8") + b"# caf\xe9\n")
    assert "problem.yaml: expected UTF-8 text, found an invalid byte at offset" in messages(ws)


def test_a_missing_file_fails_cleanly(ws: Path):
    (ws / "problem.yaml").unlink()
    assert messages(ws) == "problem.yaml: file problem.yaml not found in the workspace"


def test_a_symlink_out_of_the_workspace_fails(ws: Path, tmp_path: Path):
    outside = tmp_path / "elsewhere.yaml"
    outside.write_text(VALID_PROBLEM, encoding="utf-8")
    (ws / "problem.yaml").unlink()
    (ws / "problem.yaml").symlink_to(outside)
    assert "leads outside the workspace" in messages(ws)


def test_a_fifo_is_not_opened(ws: Path):
    (ws / "problem.yaml").unlink()
    os.mkfifo(ws / "problem.yaml")
    assert "expected problem.yaml to be a regular file" in messages(ws)


def test_a_huge_file_is_not_read(ws: Path):
    write_problem(ws, VALID_PROBLEM + "#" * 2_000_000 + "\n")
    assert "over the limit" in messages(ws)


def test_the_check_never_writes(ws: Path):
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in ws.rglob("*")}
    run(ws)
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in ws.rglob("*")} == before


def test_problem_fields_are_what_later_stages_compare_with(ws: Path):
    fields = problem_fields(Workspace(ws))
    assert set(fields) == {"metric", "target", "budget", "latency_p95_ms", "max_fairness_gap"}
    assert fields["metric"] == "recall_at_budget" and fields["latency_p95_ms"] == 200


def test_problem_fields_leave_out_what_is_not_usable(ws: Path):
    def unusable(d: dict) -> None:
        d["constraints"]["latency_p95_ms"] = float("inf")
        d["success"]["budget"] = True

    edit(ws, unusable)
    fields = problem_fields(Workspace(ws))
    assert "latency_p95_ms" not in fields and "budget" not in fields and "target" in fields
    (ws / "problem.yaml").write_text("[1, 2", encoding="utf-8")
    assert problem_fields(Workspace(ws)) == {}
    (ws / "problem.yaml").unlink()
    assert problem_fields(Workspace(ws)) == {}
