"""Notebook hygiene: what is committed in solutions/ and notebooks/ (no execution here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from checker.chain import RELEASE, SOLUTIONS

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = sorted(SOLUTIONS.glob("*.ipynb")) + sorted(RELEASE.glob("*.ipynb"))
IDS = [str(p.relative_to(ROOT)) for p in COMMITTED]
PARAMETERS = ("WORKSPACE", "DATA_DIR", "SAMPLE_FRAC", "EPOCHS")


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_every_solution_has_its_learner_version():
    assert {p.name for p in SOLUTIONS.glob("*.ipynb")} == {p.name for p in RELEASE.glob("*.ipynb")}
    assert COMMITTED


@pytest.mark.parametrize("path", COMMITTED, ids=IDS)
def test_no_outputs_are_committed(path: Path):
    for cell in load(path)["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None, cell[
                "source"
            ][:80]


@pytest.mark.parametrize("path", COMMITTED, ids=IDS)
def test_exactly_one_parameters_cell_with_the_course_parameters(path: Path):
    cells = [c for c in load(path)["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(cells) == 1
    source = "".join(cells[0]["source"])
    for name in PARAMETERS:
        assert f"{name} =" in source, name


@pytest.mark.parametrize("path", sorted(SOLUTIONS.glob("*.ipynb")), ids=lambda p: p.name)
def test_a_solution_opens_with_objectives_and_ends_with_a_graded_self_check(path: Path):
    cells = load(path)["cells"]
    assert cells[0]["cell_type"] == "markdown"
    assert "objective" in "".join(cells[0]["source"]).lower()
    graded = [c for c in cells if c["metadata"].get("nbgrader", {}).get("grade")]
    assert graded, "no graded cell"
    last_code = [c for c in cells if c["cell_type"] == "code"][-1]
    assert "raise_for_failure()" in "".join(last_code["source"])
    assert last_code["metadata"]["nbgrader"]["grade"] is True
    solutions = [c for c in cells if c["metadata"].get("nbgrader", {}).get("solution")]
    assert solutions, "no 'your turn' cell"


@pytest.mark.parametrize("path", sorted(SOLUTIONS.glob("*.ipynb")), ids=lambda p: p.name)
def test_grade_ids_are_unique_across_the_course(path: Path):
    seen: dict[str, str] = {}
    for nb in sorted(SOLUTIONS.glob("*.ipynb")):
        for cell in load(nb)["cells"]:
            grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
            if grade_id:
                assert grade_id not in seen, f"{grade_id} in {nb.name} and {seen[grade_id]}"
                seen[grade_id] = nb.name
