"""The `self_assessed` check on self_assessment.json: shape and range, never the values."""

from __future__ import annotations

from pathlib import Path

import pytest

import checker
import checker.self_assessment
from checker.contract import schema
from checker.self_assessment import QUESTIONS
from tests.helpers.lab import VALID_RATINGS, write_self_assessment
from tests.helpers.untrusted import failed

HINT = "revisit 10-exercise-lab-review.ipynb (cell 'Your turn 3: rate your confidence')"
FILE = "self_assessment.json"


def run(ws: Path) -> checker.CheckResult:
    return checker.check("self_assessed", ws)["self_assessed"]


def messages(ws: Path, ratings: object) -> list[str]:
    write_self_assessment(ws, ratings)
    result = failed("self_assessed", ws)
    assert result.hint == HINT
    return result.messages


def test_the_questions_are_the_schema():
    assert list(QUESTIONS) == schema("self_assessment")["required"]


@pytest.mark.parametrize("value", [1, 3, 5])
def test_any_honest_rating_passes(tmp_path: Path, value: int):
    write_self_assessment(tmp_path, dict.fromkeys(QUESTIONS, value))
    assert run(tmp_path).passed


def test_the_valid_ratings_pass(tmp_path: Path):
    write_self_assessment(tmp_path)
    result = run(tmp_path)
    assert result.passed and result.points == 10


def test_a_missing_file_is_named(tmp_path: Path):
    assert run(tmp_path).messages == [f"{FILE}: file {FILE} not found in the workspace"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"data_and_runs": 6}, f"{FILE}: data_and_runs: expected at most 5, found 6"),
        ({"data_and_runs": 0}, f"{FILE}: data_and_runs: expected at least 1, found 0"),
        (
            {"data_and_runs": 3.5},
            f"{FILE}: data_and_runs: expected a value of type integer, found 3.5",
        ),
        (
            {"data_and_runs": "4"},
            f"{FILE}: data_and_runs: expected a value of type integer, found '4'",
        ),
        (
            {"data_and_runs": True},
            f"{FILE}: data_and_runs: expected a value of type integer, found True",
        ),
        (
            {"mood": 5},
            f"{FILE}: (top level): expected only the documented fields, found Additional properties are not allowed ('mood' was unexpected)",
        ),
    ],
)
def test_a_rating_out_of_shape_is_named(tmp_path: Path, change: dict, expected: str):
    assert messages(tmp_path, VALID_RATINGS | change) == [expected]


def test_a_missing_rating_is_named(tmp_path: Path):
    ratings = dict(VALID_RATINGS)
    del ratings["monitoring_and_retirement"]
    assert messages(tmp_path, ratings) == [
        f"{FILE}: monitoring_and_retirement: expected this field, found it missing"
    ]


def test_a_list_is_named(tmp_path: Path):
    assert messages(tmp_path, [4, 4, 3, 3]) == [
        f"{FILE}: (top level): expected a value of type object, found [4, 4, 3, 3]"
    ]


def test_nan_is_refused_as_json(tmp_path: Path):
    (tmp_path / FILE).write_text('{"problem_and_metric": NaN}')
    (message,) = run(tmp_path).messages
    assert message.startswith(f"{FILE}: expected valid JSON")
