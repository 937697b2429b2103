"""notebooks/ is exactly what `nbgrader generate_assignment` makes of solutions/ (real nbgrader)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.processes import person

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def generate(course: Path) -> subprocess.CompletedProcess:
    """Run nbgrader in a copy of the course (it writes gradebook.db at the course root)."""
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "solutions", course / "solutions")
    env = person(course / "home")  # nbgrader writes ~/.jupyter: keep it in the test's folder
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "nbgrader"),
            "generate_assignment",
            "lifecycle",
            "--force",
        ],
        cwd=course,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_learner_notebooks_are_byte_for_byte_what_nbgrader_generates(tmp_path: Path):
    result = generate(tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    released = tmp_path / "notebooks" / "lifecycle"
    committed = ROOT / "notebooks" / "lifecycle"
    made = sorted(p.name for p in released.glob("*.ipynb"))
    assert made == sorted(p.name for p in committed.glob("*.ipynb"))
    stale = [n for n in made if (released / n).read_bytes() != (committed / n).read_bytes()]
    assert not stale, f"regenerate with `make notebooks`: {stale}"


def test_the_learner_versions_hide_the_answers(tmp_path: Path):
    for path in (ROOT / "notebooks" / "lifecycle").glob("*.ipynb"):
        text = path.read_text(encoding="utf-8")
        assert "BEGIN SOLUTION" not in text, path.name
        assert "NotImplementedError" in text, path.name


def test_the_readme_explains_the_two_point_totals():
    """nbgrader's total and the checker's differ for stated reasons; recompute both."""
    import json
    import re

    import checker

    cells = [
        c
        for p in sorted((ROOT / "solutions" / "lifecycle").glob("*.ipynb"))
        for c in json.loads(p.read_text(encoding="utf-8"))["cells"]
    ]
    graded = [c for c in cells if c["metadata"].get("nbgrader", {}).get("grade")]
    nbgrader_total = sum(c["metadata"]["nbgrader"]["points"] for c in graded)
    checker_total = sum(c.max_points for c in checker.CHECKS.values())
    in_cells = {
        name
        for c in graded
        for name in re.findall(r"only=\[([^\]]*)\]", "".join(c["source"]))[0:1]
        for name in re.findall(r'"(\w+)"', name)
    }
    by_checks = sum(checker.CHECKS[n].max_points for n in in_cells)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"nbgrader scores **{nbgrader_total}** points, the checker **{checker_total}**" in readme
    assert f"12 of those checks ({by_checks} points)" in readme and len(in_cells) == 12
    assert f"adds {nbgrader_total - by_checks} points" in readme
    assert set(checker.CHECKS) - in_cells == {"lifecycle_map"}
