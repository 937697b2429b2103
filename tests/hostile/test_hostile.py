"""The acceptance suite of hostile and broken submissions for `python -m checker grade`.

One batch grades every case beside valid learners. For every case: the message names the file
and the problem; the broken item scores 0; every other learner's result equals its result when
graded alone; and the submission's bytes are unchanged.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

import pytest

from checker.batch import discover, grade, sanitize
from tests.helpers.hostile import CASES, Case
from tests.helpers.processes import Quiet

VALID = ("valid-a", "valid-b")


def tree_digest(root: Path) -> dict[str, str]:
    """What every entry under root is, without following links or opening FIFOs."""
    seen = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = Path(folder, name)
            rel = str(path.relative_to(root))
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                seen[rel] = "link:" + os.readlink(path)
            elif stat.S_ISREG(mode):
                seen[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                seen[rel] = f"mode:{stat.S_IFMT(mode)}"
    return seen


def learner_level_cases(subs: Path, big_file_bytes: int) -> dict[str, tuple[str, ...]]:
    """Submissions broken as a whole, not inside the workspace: name -> expected words."""
    (subs / "single-huge-file").write_bytes(b"\0")
    os.truncate(subs / "single-huge-file", big_file_bytes)  # sparse: big, yet cheap to make
    os.symlink("/etc", subs / "folder-symlink-out")
    return {
        "single-huge-file": ("single-huge-file", "found a file of"),
        "folder-symlink-out": ("folder-symlink-out", "symlink"),
    }


@pytest.fixture(scope="module")
def cohort(valid_template: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("cohort")
    subs = root / "submissions"
    subs.mkdir()
    for name in VALID:
        shutil.copytree(valid_template, subs / name, symlinks=True)
    for case in CASES:
        shutil.copytree(valid_template, subs / case.name, symlinks=True)
        case.breaks(subs / case.name)
    whole = learner_level_cases(subs, 300 * 1024**2)
    # learner ids that must never become paths: a newline, dots, slashes in spirit
    odd = {"new\nline": "newline", "..hidden": "dots", "spaces and ünïcode": "unicode"}
    for name in odd:
        shutil.copytree(valid_template, subs / name, symlinks=True)
    before = tree_digest(subs)
    results = {r["learner"]: r for r in grade(subs, root / "results", jobs=2, progress=Quiet)}
    return {
        "subs": subs,
        "root": root,
        "results": results,
        "before": before,
        "whole": whole,
        "odd": odd,
    }


@pytest.fixture(scope="module")
def alone(valid_template: Path, tmp_path_factory: pytest.TempPathFactory):
    """A valid learner graded on their own."""
    root = tmp_path_factory.mktemp("alone")
    shutil.copytree(valid_template, root / "subs" / "valid-a", symlinks=True)
    [result] = grade(root / "subs", root / "results", jobs=1, progress=Quiet)
    return result


def test_the_suite_has_at_least_thirty_hostile_submissions(cohort):
    assert len(CASES) + len(cohort["whole"]) + len(cohort["odd"]) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_hostile_workspace_fails_its_check_with_a_clear_message(cohort, case: Case):
    result = cohort["results"][sanitize(case.name)]
    checks = {c["name"]: c for c in result["checks"]}
    broken = list(checks) if case.check == "*" else [case.check]
    for name in broken:
        assert checks[name]["points"] == 0, name
        text = " ".join(checks[name]["messages"])
        for word in case.expect:
            assert word in text, f"{name}: {word!r} not in {text!r}"
        assert "Traceback" not in text


@pytest.mark.parametrize("name", ["single-huge-file", "folder-symlink-out"])
def test_a_broken_submission_scores_zero_with_a_message(cohort, name: str):
    result = cohort["results"][sanitize(name)]
    assert result["score"] == 0
    for word in cohort["whole"][name]:
        assert word in result["error"]


def test_nothing_a_learner_wrote_ran_in_the_grader():
    assert not Path("/tmp/hacked-by-learner").exists()


def test_valid_learners_are_graded_as_if_alone(cohort, alone):
    for name in VALID:
        result = cohort["results"][name]
        assert result["checks"] == alone["checks"]
        assert result["score"] == alone["score"] > 0


def test_odd_learner_ids_stay_inside_results_and_grade_normally(cohort, alone):
    results = cohort["root"] / "results"
    for name in cohort["odd"]:
        learner = sanitize(name)
        assert "\n" not in learner and "/" not in learner and not learner.startswith(".")
        assert (results / learner / "result.json").resolve().is_relative_to(results.resolve())
        assert cohort["results"][learner]["checks"] == alone["checks"]


def test_no_submission_byte_changed(cohort):
    assert tree_digest(cohort["subs"]) == cohort["before"]


def test_grades_csv_has_one_row_per_learner(cohort):
    lines = (cohort["root"] / "results" / "grades.csv").read_text().splitlines()
    assert len(lines) == 1 + len(discover(cohort["subs"]))


def test_sanitize_never_yields_a_path():
    for name in ["..", "../x", "a/b", "nul\0byte", "new\nline", ".", "", "x" * 500]:
        safe = sanitize(name)
        assert safe and "/" not in safe and "\0" not in safe and "\n" not in safe
        assert not safe.startswith(".") and len(safe) <= 64
    assert sanitize("alice") == "alice"
    assert sanitize("a/b") != sanitize("a_b")
