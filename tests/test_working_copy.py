"""`make lab` opens a git-ignored working copy of the released notebooks, never a tracked file."""

from __future__ import annotations

import subprocess
from pathlib import Path

from checker.chain import RELEASE, ROOT
from checker.working_copy import WORKING_COPY, main, working_copy


def test_the_working_copy_holds_every_released_notebook(tmp_path: Path):
    dest = tmp_path / "lab" / "lifecycle"
    made = working_copy(RELEASE, dest)
    assert sorted(p.name for p in made) == sorted(p.name for p in RELEASE.glob("*.ipynb"))
    for copy in made:
        assert copy.read_bytes() == (RELEASE / copy.name).read_bytes()


def test_a_learners_work_is_never_overwritten_and_new_notebooks_arrive(tmp_path: Path):
    dest = tmp_path / "lifecycle"
    working_copy(RELEASE, dest)
    mine = dest / "01-problem-definition.ipynb"
    mine.write_text('{"my": "answers"}', encoding="utf-8")
    (dest / "10-exercise-lab-review.ipynb").unlink()  # released after the learner started
    made = working_copy(RELEASE, dest)
    assert [p.name for p in made] == ["10-exercise-lab-review.ipynb"]
    assert mine.read_text(encoding="utf-8") == '{"my": "answers"}'


def test_the_working_copy_is_ignored_by_git_and_outside_the_course_folders():
    assert WORKING_COPY.is_relative_to(ROOT / "build")
    for tracked in ("notebooks", "solutions"):
        assert not WORKING_COPY.is_relative_to(ROOT / tracked)
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(WORKING_COPY / "01-problem-definition.ipynb")], cwd=ROOT
    )
    assert ignored.returncode == 0, "the working copy must be git-ignored"


def test_make_lab_copies_first_and_opens_the_copy():
    plan = subprocess.run(
        ["make", "-n", "lab"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    copy_at, lab_at = plan.index("-m checker.working_copy"), plan.index("jupyter lab")
    assert copy_at < lab_at
    relative = WORKING_COPY.relative_to(ROOT)
    assert f"--LabApp.default_url=/lab/tree/{relative}" in plan
    assert f"checker.working_copy {relative}" in plan


def test_the_command_says_what_it_copied_and_kept(tmp_path: Path, capsys):
    dest = tmp_path / "lifecycle"
    assert main([str(dest)]) == 0
    assert f"{len(list(RELEASE.glob('*.ipynb')))} notebook(s) copied" in capsys.readouterr().out
    main([str(dest)])
    assert "0 notebook(s) copied" in capsys.readouterr().out
