"""The check registry and the package's entry points `checker.check` and `checker.check_all`:
a check never crashes a grading, misuse raises `CheckerError` with the fix, and grading is quiet."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import checker
from checker import CHECKS, COURSE_ORDER, CheckerError
from checker.errors import Invalid
from checker.registry import Check
from checker.registry import check as register
from checker.workspace import Workspace
from tests.helpers.untrusted import (
    FOUNDATION,
    HOSTILE_MANIFEST,
    HOSTILE_MAP,
    HOSTILE_STORE,
    snapshot,
)


def make(func) -> Check:
    """A check outside the registry, so tests leave `CHECKS` alone."""
    return Check(name="probe", stage="00-probe.ipynb (section 'Probe')", func=func)


def test_a_check_without_problems_passes(tmp_path: Path):
    def clean(ws: Workspace) -> Iterator[str]:
        yield from ()

    result = make(clean)(tmp_path)
    assert (result.name, result.passed, result.points, result.max_points) == ("probe", True, 10, 10)
    assert (result.messages, result.hint) == ([], "")


def test_each_problem_is_a_message_and_the_hint_names_the_stage(tmp_path: Path):
    def two(ws: Workspace) -> Iterator[str]:
        yield "f: a: expected 1, found 2"
        yield "f: b: expected 3, found 4"

    result = make(two)(tmp_path)
    assert (result.passed, result.points) == (False, 0)
    assert result.messages == ["f: a: expected 1, found 2", "f: b: expected 3, found 4"]
    assert result.hint == "revisit 00-probe.ipynb (section 'Probe')"


class Surprise(Exception):
    """An exception no check expects."""


def test_an_unexpected_exception_becomes_a_failed_result(tmp_path: Path):
    def crashes(ws: Workspace) -> Iterator[str]:
        yield "f: a: expected 1, found 2"
        raise Surprise("the parser fell over")

    result = make(crashes)(tmp_path)
    assert (result.passed, result.points) == (False, 0)
    assert result.messages == [
        "f: a: expected 1, found 2",
        "could not check the workspace: Surprise: the parser fell over",
    ]


def test_invalid_stops_a_check_and_keeps_earlier_messages(tmp_path: Path):
    def stops(ws: Workspace) -> Iterator[str]:
        yield "first"
        raise Invalid("f: cannot read further")
        yield "never"  # pragma: no cover

    assert make(stops)(tmp_path).messages == ["first", "f: cannot read further"]


def test_a_recursion_error_becomes_a_failed_result(tmp_path: Path):
    def recurse(ws: Workspace) -> Iterator[str]:
        def down(n: int) -> int:
            return down(n + 1)

        down(0)
        yield "never"  # pragma: no cover

    assert make(recurse)(tmp_path).messages == ["an artifact is nested too deeply to check"]


def test_a_check_takes_a_path_a_string_or_a_workspace(tmp_path: Path):
    seen = []

    def record(ws: Workspace) -> Iterator[str]:
        seen.append(ws)
        yield from ()

    probe = make(record)
    shared = Workspace(tmp_path)
    for workspace in (tmp_path, str(tmp_path), shared):
        probe(workspace)
    assert all(isinstance(ws, Workspace) for ws in seen) and seen[2] is shared
    assert {ws.root for ws in seen} == {tmp_path}


def test_a_name_cannot_be_registered_twice():
    before = dict(CHECKS)
    with pytest.raises(ValueError, match="'data_versioned' is registered twice"):
        register("data_versioned", stage="x")(lambda ws: iter(()))
    assert before == CHECKS


def test_the_foundation_checks_are_registered_in_course_order():
    assert set(FOUNDATION) <= set(CHECKS)
    known = [name for name in CHECKS if name in COURSE_ORDER]
    assert known == sorted(known, key=COURSE_ORDER.index)


# --- checker.check and checker.check_all ----------------------------------------------------------


def test_an_unknown_check_suggests_the_nearest_name(workspace: Path):
    with pytest.raises(CheckerError) as caught:
        checker.check("data_version", workspace)
    message = str(caught.value)
    assert message.startswith("no check named 'data_version'; did you mean 'data_versioned'?")
    assert "Known checks: " in message and "lifecycle_map" in message


def test_a_name_like_no_check_lists_the_known_ones(workspace: Path):
    with pytest.raises(CheckerError) as caught:
        checker.check("nope", workspace)
    assert str(caught.value).startswith("no check named 'nope'. Known checks: ")
    with pytest.raises(CheckerError, match="did you mean 'metrics_logged'"):
        checker.check_all(workspace, only=["metric_logged"])


def test_a_workspace_that_is_not_a_folder_is_misuse(tmp_path: Path):
    with pytest.raises(CheckerError) as caught:
        checker.check_all(tmp_path / "missing")
    assert str(caught.value) == (
        f"workspace {str(tmp_path / 'missing')!r} does not exist: pass the folder your notebooks "
        "write to (the WORKSPACE parameter at the top of each notebook)"
    )
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(CheckerError, match="is not a folder"):
        checker.check("lifecycle_map", tmp_path / "file")


def test_check_all_runs_only_the_named_checks_in_course_order(workspace: Path):
    report = checker.check_all(
        workspace, only=["lifecycle_map", "data_versioned", "metrics_logged"]
    )
    assert [r.name for r in report.results] == FOUNDATION
    assert report.passed, report.failures()
    assert (report.score, report.max_score) == (30, 30)
    assert report.workspace == str(workspace)


def test_grading_is_quiet_and_changes_nothing(workspace: Path, capfd: pytest.CaptureFixture[str]):
    before = snapshot(workspace)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would reach stderr in a grade cell
        report = checker.check_all(workspace, only=FOUNDATION)
        report.raise_for_failure()
    assert capfd.readouterr() == ("", "")
    assert snapshot(workspace) == before


def test_an_empty_workspace_fails_every_foundation_check_naming_the_file(tmp_path: Path):
    report = checker.check_all(tmp_path, only=FOUNDATION)
    assert report.score == 0
    assert {r.name: r.messages for r in report.results} == {
        "data_versioned": [
            "data/manifest.json: file data/manifest.json not found in the workspace"
        ],
        "metrics_logged": ["mlflow.db: file mlflow.db not found in the workspace"],
        "lifecycle_map": ["lifecycle_map.yaml: file lifecycle_map.yaml not found in the workspace"],
    }
    assert all(r.hint.startswith("revisit ") for r in report.results)


def test_hostile_files_never_escape_as_exceptions(
    workspace: Path, capfd: pytest.CaptureFixture[str]
):
    # One workspace with a hostile manifest, store and map at once; each check fails cleanly.
    HOSTILE_MANIFEST["split_fifo"](workspace)
    HOSTILE_STORE["store_recursive_view"](workspace)
    HOSTILE_MAP["map_alias_bomb"](workspace)
    report = checker.check_all(workspace, only=FOUNDATION)
    assert [r.passed for r in report.results] == [False, False, False]
    assert not any("could not check" in m for r in report.results for m in r.messages)
    assert capfd.readouterr() == ("", "")


def test_every_hint_names_your_turn_cells_that_exist():
    """A failing check's hint sends the learner to the unanswered "Your turn" cell, by its title."""
    import json
    import re

    import checker
    from checker.chain import SOLUTIONS

    for name, registered in checker.CHECKS.items():
        notebook = registered.stage.split(" ", 1)[0]
        if not notebook.endswith(".ipynb"):
            continue  # the whole map: graded across the three exercises
        cells = json.loads((SOLUTIONS / notebook).read_text(encoding="utf-8"))["cells"]
        titles = [
            line.lstrip("#").strip()
            for c in cells
            if c["cell_type"] == "markdown"
            for line in "".join(c["source"]).splitlines()
            if line.startswith("#")
        ]
        named = re.findall(r"'(Your turn[^']*)'", registered.stage)
        assert named, f"{name}: the hint names no 'Your turn' cell: {registered.stage}"
        for turn in named:
            assert any(t.startswith(turn) for t in titles), (
                f"{name}: no cell {turn!r} in {notebook}"
            )
