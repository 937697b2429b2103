"""nbgrader on one machine: a course-local exchange, and releases that carry no local work.

Real nbgrader commands in a temporary course, with HOME and the Jupyter folders inside it (no
test writes to the real ~/.local/share/jupyter/nbgrader_cache).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from checker.chain import ROOT, SOLUTIONS
from checker.exchange import RELEASE_IGNORE, exchange_root
from tests.helpers.processes import person

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def nbgrader(cwd: Path, home: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(BIN / "nbgrader"), *args, "--log-level=INFO"],
        cwd=cwd, env=person(home), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, f"{args}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The course's config and one stage notebook, run once by the instructor in place: a
    workspace and an MLflow store sit beside the source notebook before it is generated."""
    course = tmp_path_factory.mktemp("exchange") / "course"
    source = course / "solutions" / "lifecycle"
    source.mkdir(parents=True)
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copy(SOLUTIONS / "01-problem-definition.ipynb", source)
    (source / "workspace").mkdir()
    (source / "workspace" / "problem.yaml").write_text("the instructor's answers\n")
    (source / "mlflow.db").write_bytes(b"the instructor's runs")
    home = course.parent / "home"
    nbgrader(course, home, "generate_assignment", "lifecycle", "--force")
    nbgrader(course, home, "release_assignment", "lifecycle", "--force")
    return course


def test_the_exchange_is_course_local_by_default(course: Path):
    root = course / "build" / "exchange"
    assert root.is_dir() and (root.stat().st_mode & 0o777) == 0o777
    assert (root / "model-lifecycle" / "outbound" / "lifecycle").is_dir()


def test_a_release_carries_no_local_work(course: Path):
    released = course / "build" / "exchange" / "model-lifecycle" / "outbound" / "lifecycle"
    assert sorted(p.name for p in released.iterdir()) == ["01-problem-definition.ipynb"]
    assert {"workspace", "mlflow.db"} <= set(RELEASE_IGNORE)


def test_a_learner_fetches_lists_and_submits_with_the_workspace(course: Path):
    learner = course.parent / "learner"
    learner.mkdir()
    home = learner / "home"
    # The learner runs nbgrader from the course folder, as `make lab` users do on one machine.
    listed = nbgrader(course, home, "list")
    assert "lifecycle" in listed.stdout + listed.stderr
    nbgrader(learner, home, "fetch_assignment", "lifecycle", "--course=model-lifecycle",
             f"--Exchange.root={course / 'build' / 'exchange'}")  # fmt: skip
    assert not (learner / "lifecycle" / "workspace").exists()
    (learner / "lifecycle" / "workspace").mkdir()
    (learner / "lifecycle" / "workspace" / "problem.yaml").write_text("my answers\n")
    nbgrader(learner, home, "submit", "lifecycle", "--course=model-lifecycle",
             f"--Exchange.root={course / 'build' / 'exchange'}")  # fmt: skip
    inbound = list((course / "build" / "exchange" / "model-lifecycle" / "inbound").iterdir())
    assert len(inbound) == 1
    assert (inbound[0] / "workspace" / "problem.yaml").read_text() == "my answers\n"
    cache = home / ".local" / "share" / "jupyter" / "nbgrader_cache"
    assert cache.is_dir()  # nbgrader's cache of the submission stayed in the learner's HOME


def test_the_exchange_root_can_be_set_from_the_environment(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("NBGRADER_EXCHANGE", str(tmp_path / "shared"))
    assert exchange_root(tmp_path / "course") == (tmp_path / "shared").resolve()
    monkeypatch.delenv("NBGRADER_EXCHANGE")
    assert exchange_root(tmp_path / "course") == (tmp_path / "course" / "build" / "exchange")
