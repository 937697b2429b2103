"""The three exercise notebooks (08-10) and the typical lab of exercise 10.

The chain fixture runs the exercises after the seven stages (they sort after them); here the
workspace they leave must score full marks on the map and the exercise checks, the answer key
held in hidden tests must agree with the course's definitions, and a plausible wrong answer must
pass the visible tests yet fail the hidden ones.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

import checker
import checker.lab
import checker.self_assessment
from checker.chain import CI_PARAMETERS, SOLUTIONS, run_chain
from checker.metrics import psi as course_psi

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = {p.name[:2]: p for p in sorted(SOLUTIONS.glob("[0-9][0-9]-exercise-*.ipynb"))}
EXERCISE_CHECKS = [
    "stages_mapped",
    "failure_mode_sketched",
    "lifecycle_map",
    "lab_improved",
    "self_assessed",
]


def cell(number: str, grade_id: str) -> str:
    nb = nbformat.read(str(EXERCISES[number]), as_version=4)
    return next(
        c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id
    )


def run_cell(source: str, **namespace: object) -> None:
    exec(compile(source, "<test cell>", "exec"), {"np": np, "pd": pd, **namespace})


def test_the_exercises_are_named_in_run_order():
    assert list(EXERCISES) == ["08", "09", "10"]
    assert [p.name for p in EXERCISES.values()] == [
        "08-exercise-lifecycle-map.ipynb",
        "09-exercise-failure-mode.ipynb",
        "10-exercise-lab-review.ipynb",
    ]


def test_grade_ids_carry_their_exercise_and_points_add_up():
    automatic = manual = 0.0
    for number, path in EXERCISES.items():
        for c in nbformat.read(str(path), as_version=4).cells:
            meta = c.metadata.get("nbgrader")
            if not meta:
                continue
            assert meta["grade_id"].startswith(f"e{number}-"), meta["grade_id"]
            if "BEGIN HIDDEN TESTS" in c.source:
                assert meta["grade"] and meta["locked"] and not meta["solution"]
            if meta.get("grade"):
                if meta.get("solution"):
                    manual += meta["points"]
                else:
                    automatic += meta["points"]
    assert (automatic, manual) == (65, 2)


@pytest.mark.parametrize("number", ["08", "09", "10"])
def test_each_exercise_is_graded_by_its_own_checks(number: str):
    name = EXERCISES[number].name
    own = [n for n, c in checker.CHECKS.items() if c.stage.startswith(name)]
    assert own, f"no check sends learners back to {name}"
    graded = "\n".join(
        c.source
        for c in nbformat.read(str(EXERCISES[number]), as_version=4).cells
        if c.metadata.get("nbgrader", {}).get("grade")
    )
    for check in own:
        assert f'"{check}"' in graded, f"{check} is in no grade cell of {name}"


def test_the_hidden_psi_answer_key_is_the_course_definition():
    run_cell(cell("09", "e09-psi-tests"), psi=course_psi)


def test_the_solution_psi_and_alert_pass_their_tests():
    namespace: dict = {"np": np, "pd": pd}
    exec(cell("09", "e09-psi"), namespace)
    exec(cell("09", "e09-alert"), namespace)
    run_cell(cell("09", "e09-psi-tests"), psi=namespace["psi"])
    run_cell(cell("09", "e09-alert-tests"), alert=namespace["alert"])


def test_a_psi_without_the_missing_bin_passes_visible_tests_but_not_hidden_ones():
    from tests.helpers.answers import WRONG_PSI

    namespace: dict = {"np": np, "pd": pd}
    exec(WRONG_PSI, namespace)
    visible, hidden = cell("09", "e09-psi-tests").split("### BEGIN HIDDEN TESTS")
    run_cell(visible, psi=namespace["psi"])
    with pytest.raises(AssertionError, match="missing values in the current sample"):
        run_cell(visible + hidden.replace("### END HIDDEN TESTS", ""), psi=namespace["psi"])


def test_an_alert_that_ignores_nan_fails_a_hidden_test():
    def naive(value, threshold, direction):
        return bool(value > threshold) if direction == "above" else bool(value < threshold)

    visible, hidden = cell("09", "e09-alert-tests").split("### BEGIN HIDDEN TESTS")
    run_cell(visible, alert=naive)
    with pytest.raises(AssertionError, match="a NaN signal, above"):
        run_cell(hidden.replace("### END HIDDEN TESTS", ""), alert=naive)


def test_the_hidden_lab_key_matches_the_reference_map():
    import yaml

    from tests.helpers.workspace import VALID_MAP

    review = yaml.safe_load(VALID_MAP)["lab_review"]
    run_cell(cell("10", "e10-review-tests"), yaml=yaml, MAP=_FakeMap(review))


class _FakeMap:
    """Stands in for the map file in a test cell: `read_text` gives a map with this review."""

    def __init__(self, review: dict):
        self.review = review

    def read_text(self, encoding: str = "utf-8") -> str:
        import yaml

        from tests.helpers.workspace import VALID_MAP

        document = yaml.safe_load(VALID_MAP) | {"lab_review": self.review}
        return yaml.safe_dump(document, sort_keys=False)


def test_a_review_that_counts_evaluation_as_covered_fails_the_hidden_key():
    import yaml

    review = {
        "lab": "datasets/labs/typical-lab.ipynb",
        "covers": ["data_preparation", "training", "evaluation"],
        "ignores": ["problem_definition", "deployment", "monitoring", "retirement"],
        "improvement": "Keep an untouched test set for one final score",
    }
    with pytest.raises(AssertionError, match=r"1 stage\(s\) on the wrong side"):
        run_cell(cell("10", "e10-review-tests"), yaml=yaml, MAP=_FakeMap(review))


@pytest.mark.slow
def test_the_chain_workspace_scores_full_marks_on_the_map_and_exercise_checks(chain):
    assert [(r.notebook, r.error) for r in chain.runs if r.error] == []
    report = checker.check_all(chain.workspace, only=EXERCISE_CHECKS)
    assert report.failures() == []
    assert report.score == report.max_score == 10 * len(EXERCISE_CHECKS)
    assert json.loads((chain.workspace / "lab" / "improvement.json").read_text())["kind"]


@pytest.mark.slow
def test_each_exercise_runs_alone_on_the_workspace_the_stages_left(chain, tmp_path: Path):
    """An exercise does not need the one before it: each runs on the stages' workspace."""
    for number, path in EXERCISES.items():
        workspace = tmp_path / number
        shutil.copytree(chain.before(EXERCISES["08"].name), workspace, symlinks=True)
        [run] = run_chain([path], workspace, tmp_path / "out", CI_PARAMETERS, log=lambda _: None)
        assert run.error is None, f"{path.name}: {run.error}"
        own = [n for n, c in checker.CHECKS.items() if c.stage.startswith(path.name)]
        report = checker.check_all(workspace, only=own)
        assert report.score == report.max_score, str(report)


@pytest.mark.slow
def test_the_typical_lab_runs_as_shipped_and_writes_nothing(tmp_path: Path):
    import papermill as pm

    from checker.lab import LAB

    lab = ROOT / LAB
    before = sorted(p.name for p in lab.parent.iterdir())
    out = tmp_path / "typical-lab.ipynb"
    pm.execute_notebook(str(lab), str(out), cwd=str(lab.parent), progress_bar=False)
    text = out.read_text(encoding="utf-8")
    assert "Our model is" in text and "image/png" in text
    assert sorted(p.name for p in lab.parent.iterdir()) == before
