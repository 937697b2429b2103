"""The instructor's path, end to end, with real nbgrader commands in a temporary course folder.

generate_assignment -> release_assignment -> (learners) submit -> collect -> autograde ->
generate_feedback -> export, then the course's own per-check CSV (`python -m checker grade`)
and JupyterLab's formgrader listing the assignment. To keep CI time sane the temporary course's
assignment holds only the three exercise notebooks; each learner submits them with the workspace
the seven stage solutions left (the session `chain` fixture), as a learner who did the stages
would.

Learners (one per way a submission goes wrong in practice, nbgrader#917, #1083, #1941):
  solution      every answer right                       -> full automatic marks
  blank         the learner version, untouched           -> 0
  one-wrong     right but for exercise 09, left blank    -> loses exactly 09's points
  edited        a graded test cell edited to pass, over a psi that fails a hidden test
                                                          -> nbgrader restores the cell: loses it
  deleted       two grade cells deleted, one over a right and one over a wrong answer
                                                          -> both put back and run: loses one
  duplicated    a solution cell and a grade cell copied (duplicated grade_ids) -> full marks
  corrupt       one notebook is not JSON                 -> nbgrader drops the learner (0);
                                                            every other learner is graded
"""

from __future__ import annotations

import csv
import html
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from checker.chain import SOLUTIONS
from tests.helpers.answers import WRONG_PSI, answered, by_id, load
from tests.helpers.processes import BIN, free_port, person

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENT = "lifecycle"
COURSE_ID = "model-lifecycle"
EXERCISES = sorted(SOLUTIONS.glob("[0-9][0-9]-exercise-*.ipynb"))
# Strings that appear only inside `### BEGIN HIDDEN TESTS` regions.
HIDDEN_MARKERS = ("HIDDEN_E09_PSI", "HIDDEN_E09_ALERT", "HIDDEN_E10_KEY", "2.8504694746")
LEARNERS = ("solution", "blank", "one-wrong", "edited", "deleted", "duplicated", "corrupt")


def nbgrader(
    course: Path, *args: str, cwd: Path | None = None, home: Path | None = None
) -> subprocess.CompletedProcess:
    """Run one nbgrader command (the venv first on PATH: nbgrader calls `alembic`) as the
    instructor (HOME beside the course) or as the learner whose HOME is `home`."""
    env = person(home or course.parent / "instructor")
    return subprocess.run(
        [str(BIN / "nbgrader"), *args],
        cwd=cwd or course,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, (
        f"{result.args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


# --- the course and the submissions ------------------------------------------------------------------


def make_course(root: Path) -> Path:
    """A course folder with the repo's nbgrader config, the exercises as the assignment's source,
    and the data and the typical lab linked in at the root (where the notebooks look for them)."""
    course = root / "course"
    (course / "solutions" / ASSIGNMENT).mkdir(parents=True)
    exchange = root / "exchange"
    exchange.mkdir()
    config = (ROOT / "nbgrader_config.py").read_text(encoding="utf-8")
    config += f"\nc.Exchange.root = {str(exchange)!r}\n"
    (course / "nbgrader_config.py").write_text(config, encoding="utf-8")
    for notebook in EXERCISES:
        shutil.copy(notebook, course / "solutions" / ASSIGNMENT)
    for folder in ("datasets",):
        os.symlink(ROOT / folder, course / folder)
    return course


def small_sample(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A learner may edit the parameters cell; CI-size runs keep the autograde quick."""
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = cell.source.replace("SAMPLE_FRAC = 1.0", "SAMPLE_FRAC = 0.3")
    return nb


WRONG_REVIEW = """
lab_review = {
    "lab": "datasets/labs/typical-lab.ipynb",
    "covers": ["data_preparation", "training", "evaluation"],
    "ignores": ["problem_definition", "deployment", "monitoring", "retirement"],
    "improvement": "Split by learner and keep an untouched test set for one final score",
}
"""


def pasted(cell: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of a cell as JupyterLab pastes it: a new cell id, the same nbgrader metadata."""
    copy = nbformat.from_dict(cell)
    copy["id"] = f"pasted-{cell['id']}"
    return copy


def submissions(release: Path) -> dict[str, dict[str, nbformat.NotebookNode | bytes]]:
    """Each learner's three notebooks (a NotebookNode, or raw bytes for a broken file)."""
    names = [p.name for p in EXERCISES]
    nb08, nb09, nb10 = names
    right = {n: answered(release / n) for n in names}
    learners: dict[str, dict] = {
        "solution": right,
        "blank": {n: load(release / n) for n in names},
        "one-wrong": right | {nb09: load(release / nb09)},
    }

    edited = answered(release / nb09)
    edited.cells[by_id(edited, "e09-psi")].source = WRONG_PSI
    edited.cells[by_id(edited, "e09-psi-tests")].source = "assert True  # nothing to see here"
    learners["edited"] = right | {nb09: edited}

    deleted08, deleted10 = answered(release / nb08), answered(release / nb10)
    deleted10.cells[by_id(deleted10, "e10-review")].source = WRONG_REVIEW
    del deleted08.cells[by_id(deleted08, "e08-check")]
    del deleted10.cells[by_id(deleted10, "e10-review-tests")]
    learners["deleted"] = right | {nb08: deleted08, nb10: deleted10}

    duplicated = answered(release / nb09)
    alert = duplicated.cells[by_id(duplicated, "e09-alert")]
    duplicated.cells.insert(by_id(duplicated, "e09-alert") + 1, pasted(alert))
    check = duplicated.cells[by_id(duplicated, "e09-check")]
    duplicated.cells.insert(by_id(duplicated, "e09-check"), pasted(check))
    learners["duplicated"] = right | {nb09: duplicated}

    learners["corrupt"] = right | {nb08: b'{"cells": [ this is not json'}
    return learners


def expected_scores(solution_dir: Path) -> dict[str, dict[str, float]]:
    """Automatic points per grade cell for each learner, derived from the solution notebooks."""
    full = {}
    for path in EXERCISES:
        for cell in load(path).cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade") and not meta.get("solution"):
                full[meta["grade_id"]] = float(meta["points"])
    zero = dict.fromkeys(full, 0.0)
    e09 = {k: 0.0 for k in full if k.startswith("e09-")}
    return {
        "solution": full,
        "blank": zero,
        "one-wrong": full | e09,
        "edited": full | {"e09-psi-tests": 0.0},
        "deleted": full | {"e10-review-tests": 0.0},
        "duplicated": full,
        "corrupt": zero,
    }


def submit(course: Path, root: Path, release: Path, workspace: Path) -> None:
    """Each learner hands in their notebooks and workspace with `nbgrader submit` (in parallel:
    each nbgrader command spends seconds importing before it does anything)."""
    from concurrent.futures import ThreadPoolExecutor

    def hand_in(learner: str, notebooks: dict) -> subprocess.CompletedProcess:
        home = root / "home" / learner
        folder = home / ASSIGNMENT
        shutil.copytree(release, folder)
        for name, nb in notebooks.items():
            if isinstance(nb, bytes):
                (folder / name).write_bytes(nb)
            else:
                nbformat.write(small_sample(nb), str(folder / name))
        shutil.copytree(workspace, folder / "workspace", symlinks=True)
        exchange = f"--Exchange.root={root / 'exchange'}"  # a learner's own nbgrader config
        submit = ["submit", ASSIGNMENT, "--course", COURSE_ID, f"--student={learner}", exchange]
        return nbgrader(course, *submit, cwd=home, home=home)

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda item: hand_in(*item), submissions(release).items()))
    for result in results:
        ok(result)


# --- reading the results -----------------------------------------------------------------------------


def gradebook_scores(course: Path) -> dict[str, dict[str, float | None]]:
    """Auto score of every grade cell of every learner, read with nbgrader's gradebook API."""
    from nbgrader.api import Gradebook

    scores: dict[str, dict[str, float | None]] = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for learner in LEARNERS:
            submission = gb.find_submission(ASSIGNMENT, learner)
            scores[learner] = {
                grade.name: grade.auto_score or 0.0  # None: never run (a dropped learner)
                for notebook in submission.notebooks
                for grade in notebook.grades
            }
    return scores


def visible_text(page: str) -> str:
    """What a learner reads in a feedback page: tags removed, entities decoded."""
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S | re.I)
    return html.unescape(re.sub(r"<[^>]+>", "", page))


@pytest.fixture(scope="module")
def roundtrip(chain, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run the whole instructor path once; the tests below read what it left."""
    failed = [f"{r.notebook}: {r.error}" for r in chain.runs if r.error]
    if failed:
        pytest.fail("the solution chain failed: " + "; ".join(failed))
    workspace = chain.before(EXERCISES[0].name)  # what the seven stages left
    root = tmp_path_factory.mktemp("roundtrip")
    course = make_course(root)
    timings: dict[str, float] = {}

    def timed(step: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        start = time.perf_counter()
        result = nbgrader(course, *args)
        timings[step] = time.perf_counter() - start
        return ok(result) if check else result

    timed("generate_assignment", "generate_assignment", ASSIGNMENT, "--force")
    timed("release_assignment", "release_assignment", ASSIGNMENT, "--force")
    release = course / "notebooks" / ASSIGNMENT
    start = time.perf_counter()
    submit(course, root, release, workspace)
    timings["submit (all learners)"] = time.perf_counter() - start
    timed("collect", "collect", ASSIGNMENT)
    autograde = timed("autograde", "autograde", ASSIGNMENT, "--force", check=False)
    feedback = timed("generate_feedback", "generate_feedback", ASSIGNMENT, "--force", check=False)
    timed("export", "export", "--to", str(root / "grades.csv"))
    start = time.perf_counter()
    checks = subprocess.run(
        [sys.executable, "-m", "checker", "grade", str(course / "autograded"), "--out",
         str(root / "checks"), "--jobs", "2"],
        cwd=root, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    timings["checker grade"] = time.perf_counter() - start
    return {
        "course": course,
        "root": root,
        "autograde": autograde,
        "feedback": feedback,
        "checks": checks,
        "timings": timings,
    }


def test_learners_are_collected_from_the_exchange(roundtrip):
    submitted = roundtrip["course"] / "submitted"
    assert sorted(p.name for p in submitted.iterdir()) == sorted(LEARNERS)
    for learner in LEARNERS:
        assert (submitted / learner / ASSIGNMENT / "timestamp.txt").is_file()
        assert (submitted / learner / ASSIGNMENT / "workspace" / "data" / "manifest.json").is_file()


def test_the_release_hides_answers_and_hidden_tests(roundtrip):
    for notebook in (roundtrip["course"] / "notebooks" / ASSIGNMENT).glob("*.ipynb"):
        text = notebook.read_text(encoding="utf-8")
        assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text
        assert not any(marker in text for marker in HIDDEN_MARKERS), notebook.name


def test_every_learner_gets_exactly_the_points_they_should(roundtrip):
    found = gradebook_scores(roundtrip["course"])
    expected = expected_scores(SOLUTIONS)
    for learner in LEARNERS:
        automatic = {k: v for k, v in found[learner].items() if k in expected[learner]}
        assert automatic == expected[learner], learner
    assert sum(expected["solution"].values()) == 65


def test_the_manual_action_item_waits_for_a_person(roundtrip):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{roundtrip['course'] / 'gradebook.db'}") as gb:
        grade = gb.find_grade("e10-action-item", "10-exercise-lab-review", ASSIGNMENT, "solution")
        assert grade.max_score == 2 and grade.needs_manual_grade


def test_one_corrupt_notebook_never_stops_the_batch(roundtrip):
    result = roundtrip["autograde"]
    log = result.stdout + result.stderr
    assert "student 'corrupt'" in log  # nbgrader names the learner it could not grade...
    autograded = roundtrip["course"] / "autograded"
    graded = sorted(p.parent.name for p in autograded.glob(f"*/{ASSIGNMENT}"))
    assert graded == sorted(set(LEARNERS) - {"corrupt"})  # ...and graded every other one
    assert not any(gradebook_scores(roundtrip["course"])["corrupt"].values())


def test_feedback_never_shows_hidden_tests(roundtrip):
    feedback = roundtrip["course"] / "feedback"
    pages = sorted(feedback.glob(f"*/{ASSIGNMENT}/*.html"))
    learners = {p.parts[-3] for p in pages}
    assert learners == set(LEARNERS) - {"corrupt"}
    assert len(pages) == len(learners) * len(EXERCISES)
    for page in pages:
        raw = page.read_text(encoding="utf-8")
        text = visible_text(raw)
        for marker in (*HIDDEN_MARKERS, "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
            assert marker not in raw and marker not in text, f"{marker} in {page}"
    edited = visible_text(
        (feedback / "edited" / ASSIGNMENT / "09-exercise-failure-mode.html").read_text()
    )
    assert "hidden test failed: a sample with missing values in the current sample" in edited
    assert "missing values in the current" in edited and "np.arange(0, 140" not in edited


def test_grades_csv_has_a_row_per_learner(roundtrip):
    with (roundtrip["root"] / "grades.csv").open(encoding="utf-8") as handle:
        rows = {row["student_id"]: row for row in csv.DictReader(handle)}
    assert set(rows) >= set(LEARNERS)
    assert float(rows["solution"]["raw_score"]) == 65.0
    assert float(rows["solution"]["max_score"]) == 67.0
    assert float(rows["blank"]["raw_score"]) == 0.0


def test_the_per_check_csv_has_a_column_per_check(roundtrip):
    result = roundtrip["checks"]
    assert result.returncode == 0, result.stderr[-2000:]
    names = subprocess.run(  # the checks a fresh `python -m checker` knows
        [sys.executable, "-c", "import checker; print(' '.join(checker.CHECKS))"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    with (roundtrip["root"] / "checks" / "grades.csv").open(encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = {row["learner"]: row for row in reader}
        assert reader.fieldnames == ["learner", *names, "score", "max_score", "error", "isolation"]
        assert {row["isolation"] for row in rows.values()} == {"not executed"}
    assert set(rows) == set(LEARNERS)
    assert rows["corrupt"]["score"] == "0"  # nbgrader left nothing to check
    exercise_checks = ("stages_mapped", "failure_mode_sketched", "lifecycle_map", "lab_improved")
    for name in [n for n in exercise_checks + ("self_assessed",) if n in names]:
        assert rows["solution"][name] == "10", name
        assert rows["blank"][name] == "0", name
    assert rows["one-wrong"]["failure_mode_sketched"] == "0"
    assert rows["one-wrong"]["stages_mapped"] == "10"


def test_formgrader_lists_the_assignment(roundtrip):
    """JupyterLab's formgrader, started on 127.0.0.1 in the course folder, lists `lifecycle`."""
    import httpx

    course, port, token = roundtrip["course"], free_port(), "roundtrip-test-token"
    env = person(course.parent / "instructor")
    server = subprocess.Popen(
        [str(BIN / "jupyter"), "server", "--ip=127.0.0.1", f"--port={port}", "--no-browser",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={course}",
         "--ServerApp.port_retries=0", "--allow-root"],
        cwd=course, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/formgrader/api/assignments"
        deadline, response = time.monotonic() + 90, None
        while time.monotonic() < deadline:
            assert server.poll() is None, server.stderr.read()[-2000:]
            try:
                response = httpx.get(url, headers={"Authorization": f"token {token}"}, timeout=10)
                break
            except httpx.TransportError:
                time.sleep(0.5)
        assert response is not None and response.status_code == 200, response
        assignments = {a["name"]: a for a in response.json()}
        assert ASSIGNMENT in assignments
        assert assignments[ASSIGNMENT]["num_submissions"] == len(LEARNERS)
        denied = httpx.get(url, timeout=10)
        assert denied.status_code in (302, 401, 403)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_no_submission_reaches_the_real_home(roundtrip):
    """nbgrader caches each submission under the submitter's Jupyter data folder: the tests give
    every learner a HOME of their own, so the runner's ~/.local/share/jupyter stays untouched."""
    for learner in LEARNERS:
        cache = roundtrip["root"] / "home" / learner / ".local/share/jupyter/nbgrader_cache"
        assert (cache / COURSE_ID).is_dir(), learner


def test_the_round_trip_reports_its_time(roundtrip, record_property):
    for step, seconds in roundtrip["timings"].items():
        record_property(step, round(seconds, 1))
    print("\n".join(f"{s:<22} {t:6.1f} s" for s, t in roundtrip["timings"].items()))
