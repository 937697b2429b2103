"""The notebooks' shared helpers: a stage run out of order says which notebook to run first."""

from __future__ import annotations

from pathlib import Path

import pytest

from checker.chain import SOLUTIONS
from checker.course import WRITTEN_BY, open_workspace
from checker.errors import CheckerError


def test_a_missing_artifact_names_the_notebook_to_run_first(tmp_path: Path):
    with pytest.raises(CheckerError) as caught:
        open_workspace(tmp_path / "ws", needs=["problem.yaml", "data/manifest.json"])
    message = str(caught.value)
    assert "reads problem.yaml" in message and "run 01-problem-definition.ipynb first" in message


def test_the_next_missing_artifact_is_named_once_the_first_is_there(tmp_path: Path):
    (tmp_path / "problem.yaml").write_text("x")
    with pytest.raises(CheckerError, match="run 02-data-preparation.ipynb first"):
        open_workspace(tmp_path, needs=["problem.yaml", "data/manifest.json"])
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "manifest.json").write_text("{}")
    assert open_workspace(tmp_path, needs=["problem.yaml", "data/manifest.json"]) == tmp_path


def test_in_a_notebook_the_message_shows_without_a_traceback(tmp_path: Path):
    with pytest.raises(CheckerError) as caught:
        open_workspace(tmp_path, needs=["mlflow.db"])
    [line] = caught.value._render_traceback_()
    assert line.startswith("CheckerError: this notebook reads mlflow.db")


def test_every_writer_is_a_course_notebook():
    names = {p.name for p in SOLUTIONS.glob("*.ipynb")}
    assert set(WRITTEN_BY.values()) <= names
