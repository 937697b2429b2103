"""The stage notebooks, executed with papermill at the CI sample size: no skips.

The chain of solutions must score full marks on every stage check; each learner version, left
unanswered, must lose its own stage's points; and a rerun must reproduce the data version.
"""

from __future__ import annotations

import json
import shutil

import pytest

import checker
from checker.chain import CI_PARAMETERS, RELEASE, SOLUTIONS, run_chain, stage_notebooks

pytestmark = pytest.mark.slow


def stage_checks(notebook: str) -> list[str]:
    """The checks that grade a notebook: those whose hint sends the learner back to it."""
    return [name for name, c in checker.CHECKS.items() if c.stage.startswith(notebook)]


def test_every_notebook_is_graded_by_a_check():
    names = [p.name for p in stage_notebooks(SOLUTIONS)]
    assert len(names) == 10  # seven stages, three exercises
    for name in names:
        assert stage_checks(name), f"no check sends learners back to {name}"


def test_the_solution_chain_runs_without_error(chain):
    assert [r.notebook for r in chain.runs] == [p.name for p in stage_notebooks(SOLUTIONS)]
    assert [(r.notebook, r.error) for r in chain.runs if r.error] == []


def test_the_solution_chain_scores_full_marks_on_every_check(chain):
    report = checker.check_all(chain.workspace)
    assert report.failures() == []
    assert report.score == report.max_score == 10 * len(checker.CHECKS)


@pytest.mark.parametrize("notebook", [p.name for p in stage_notebooks(SOLUTIONS)])
def test_every_executed_stage_notebook_shows_a_picture(chain, notebook):
    executed = json.loads((chain.executed / notebook).read_text(encoding="utf-8"))
    images = [
        o
        for c in executed["cells"]
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]
    assert images, f"{notebook} shows no plot"


@pytest.mark.parametrize("notebook", [p.name for p in stage_notebooks(RELEASE)])
def test_an_unanswered_learner_version_loses_its_stage_points(chain, tmp_path, notebook):
    before = chain.before(notebook)
    workspace = tmp_path / "workspace"
    if before is None:
        workspace.mkdir()
    else:
        shutil.copytree(before, workspace, symlinks=True)
    [run] = run_chain(
        [RELEASE / notebook], workspace, tmp_path / "out", CI_PARAMETERS, log=lambda _: None
    )
    assert run.error is not None and "NotImplementedError" in run.error
    report = checker.check_all(workspace, only=stage_checks(notebook))
    assert report.score == 0, str(report)


def test_a_rerun_reproduces_the_data_version(chain, tmp_path):
    first_two = stage_notebooks(SOLUTIONS)[:2]
    runs = run_chain(
        first_two, tmp_path / "ws", tmp_path / "out", CI_PARAMETERS, log=lambda _: None
    )
    assert [r.error for r in runs] == [None, None]
    again = json.loads((tmp_path / "ws" / "data" / "manifest.json").read_text())
    original = json.loads((chain.workspace / "data" / "manifest.json").read_text())
    assert again["version"] == original["version"]


def test_no_server_outlives_the_chain(chain):
    """Stage 05 starts a model server; the notebook must stop it (no uvicorn child remains)."""
    import subprocess

    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert not [
        line for line in ps.splitlines() if "uvicorn" in line and str(chain.workspace) in line
    ]


def test_a_full_run_passes_the_full_parameters_whatever_a_notebook_says():
    """An edited default autosaved into a parameters cell must not turn `--full` into a sample."""
    from checker.chain import FULL_PARAMETERS, demo_parameters

    assert demo_parameters(full=True) == FULL_PARAMETERS
    assert demo_parameters(full=False) == CI_PARAMETERS
    for path in stage_notebooks(SOLUTIONS):
        nb = json.loads(path.read_text(encoding="utf-8"))
        [cell] = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
        declared: dict = {}
        exec("".join(cell["source"]), {}, declared)  # the course's own committed source
        assert {k: declared[k] for k in FULL_PARAMETERS} == FULL_PARAMETERS, path.name


def test_a_stage_run_out_of_order_says_which_notebook_to_run_first(tmp_path):
    """Stage 04 on a workspace where only stages 01 and 02 ran: it names 03, not a raw error."""
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "problem.yaml").write_text("written by 01\n")
    (workspace / "data").mkdir()
    (workspace / "data" / "manifest.json").write_text("{}\n")
    [run] = run_chain(
        [RELEASE / "04-evaluation.ipynb"], workspace, tmp_path / "out", CI_PARAMETERS,
        log=lambda _: None,
    )  # fmt: skip
    assert run.error is not None and run.error.startswith("CheckerError")
    assert "run 03-training.ipynb first" in run.error
