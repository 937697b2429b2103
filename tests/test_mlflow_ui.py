"""`make mlflow-ui`: installs the UI when its own parts are missing, and serves it lean and quiet.

The UI itself, in Chromium, is tested in tests/test_browser.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from checker.chain import ROOT
from checker.errors import CheckerError
from checker.mlflow_ui import EXPERIMENT, QUIET, command, start_page, store, ui_missing

BLOCK_FLASK = """
import importlib.abc, sys
class NoFlask(importlib.abc.MetaPathFinder):  # an environment with mlflow-skinny only
    def find_spec(self, name, path=None, target=None):
        if name == "flask" or name.startswith("flask."):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, NoFlask())
"""


def test_a_missing_flask_means_the_ui_is_missing_though_the_command_runs():
    probe = BLOCK_FLASK + (
        "from checker.mlflow_ui import ui_missing\n"
        "from mlflow.cli import cli\n"  # what `mlflow --version` needs: it works without flask
        "print(ui_missing())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert "flask" in out


def test_the_full_ui_is_found_when_installed():
    pytest.importorskip("flask", reason="the `ui` extra is not installed here")
    assert ui_missing() == []


def test_make_mlflow_ui_probes_the_ui_not_the_command():
    plan = subprocess.run(
        ["make", "-n", "mlflow-ui", "WORKSPACE=build/demo/workspace"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "-m checker.mlflow_ui build/demo/workspace" in plan
    assert "mlflow --version" not in plan


def test_a_workspace_without_a_store_says_which_stage_writes_it(tmp_path: Path):
    with pytest.raises(CheckerError, match="run 03-training.ipynb first"):
        store(tmp_path)


def test_the_ui_opens_on_the_courses_experiment(workspace: Path):
    page = start_page(store(workspace))
    assert page.startswith("#/experiments/") and page.endswith("/runs")
    assert page != "#/experiments/0/runs"  # not MLflow's empty Default experiment


def test_an_empty_store_opens_the_experiment_list(tmp_path: Path):
    (tmp_path / "mlflow.db").write_bytes(b"")
    assert start_page(store(tmp_path)) == "#/"


def test_one_worker_no_job_runner_no_telemetry(tmp_path: Path):
    cmd = command(tmp_path / "mlflow.db", "127.0.0.1", 5000)
    assert cmd[cmd.index("--workers") + 1] == "1"
    assert QUIET["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert QUIET["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert EXPERIMENT == "at-risk-day60"
