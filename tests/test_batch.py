"""`python -m checker grade`: discovery, resumability, locking, outputs, and --execute limits."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from checker.batch import Progress, discover, grade, locked, sanitize
from checker.errors import CheckerError
from tests.helpers.processes import Quiet
from tests.helpers.workspace import learner_notebook, unpack_cell


def cohort(template: Path, root: Path, n: int) -> Path:
    subs = root / "submissions"
    for i in range(n):
        shutil.copytree(template, subs / f"learner-{i:03d}", symlinks=True)
    return subs


def results_of(results: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(results.glob("*/result.json"))}


def test_discover_reads_both_layouts(valid_template: Path, tmp_path: Path):
    flat = tmp_path / "flat"
    shutil.copytree(valid_template, flat / "alice")
    nbgrader = tmp_path / "submitted"
    shutil.copytree(valid_template, nbgrader / "bob" / "lifecycle" / "workspace")
    assert [(lr.id, lr.folder) for lr in discover(flat)] == [("alice", flat / "alice")]
    assert [(lr.id, lr.folder) for lr in discover(nbgrader)] == [
        ("bob", nbgrader / "bob" / "lifecycle")
    ]
    results = grade(nbgrader, tmp_path / "results", jobs=1, progress=Quiet)
    assert results[0]["checks"][1]["name"] == "data_versioned"
    assert {c["name"]: c["passed"] for c in results[0]["checks"]}["data_versioned"]


def test_submissions_that_is_not_a_folder_is_a_usage_error(tmp_path: Path):
    with pytest.raises(CheckerError, match="not a folder"):
        grade(tmp_path / "nope", tmp_path / "results", progress=Quiet)


def test_outputs_grades_csv_feedback_and_summary(valid_template: Path, tmp_path: Path):
    subs = cohort(valid_template, tmp_path, 2)
    (subs / "learner-001" / "lifecycle_map.yaml").write_text("use_case: <b>x</b>\n")
    grade(subs, tmp_path / "results", jobs=2, progress=Quiet)
    rows = (tmp_path / "results" / "grades.csv").read_text().splitlines()
    assert rows[0].startswith("learner,") and rows[0].endswith(",score,max_score,error,isolation")
    assert [r.split(",")[0] for r in rows[1:]] == ["learner-000", "learner-001"]
    assert [r.split(",")[-1] for r in rows[1:]] == ["not executed"] * 2
    feedback = (tmp_path / "results" / "learner-001" / "feedback.html").read_text()
    assert "✗" in feedback and "lifecycle_map.yaml" in feedback
    assert "<b>x</b>" not in feedback  # learner text is escaped
    assert "learner-000" not in feedback  # no other learner's data
    assert (tmp_path / "results" / "summary.png").read_bytes()[:4] == b"\x89PNG"


def test_a_rerun_skips_graded_learners_unless_forced(valid_template: Path, tmp_path: Path):
    subs = cohort(valid_template, tmp_path, 2)
    grade(subs, tmp_path / "results", jobs=1, progress=Quiet)
    result = tmp_path / "results" / "learner-000" / "result.json"
    first = result.stat().st_mtime_ns
    time.sleep(0.01)
    graded = []

    class Count(Quiet):
        def __init__(self, total: int):
            graded.append(total)

    grade(subs, tmp_path / "results", jobs=1, progress=Count)
    assert graded == [0] and result.stat().st_mtime_ns == first
    grade(subs, tmp_path / "results", jobs=1, force=True, progress=Count)
    assert graded == [0, 2] and result.stat().st_mtime_ns != first


def test_a_second_run_on_the_same_results_refuses(valid_template: Path, tmp_path: Path):
    subs = cohort(valid_template, tmp_path, 1)
    with locked(tmp_path / "results"), pytest.raises(CheckerError, match="another run"):
        grade(subs, tmp_path / "results", progress=Quiet)
    cli = subprocess.run(
        [sys.executable, "-m", "checker", "grade", str(subs), "--out", str(tmp_path / "r2")],
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 0, cli.stderr


def test_concurrent_cli_runs_never_corrupt_results(valid_template: Path, tmp_path: Path):
    subs = cohort(valid_template, tmp_path, 12)
    command = [
        sys.executable,
        "-m",
        "checker",
        "grade",
        str(subs),
        "--out",
        str(tmp_path / "res"),
        "--jobs",
        "1",
    ]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    second = subprocess.run(command, capture_output=True, text=True)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    if second.returncode != 0:  # it came while the first held the lock
        assert second.returncode == 2 and "another run" in second.stderr
    assert len(results_of(tmp_path / "res")) == 12
    assert "Traceback" not in second.stderr


def test_kill_9_mid_batch_then_rerun_equals_one_uninterrupted_run(
    valid_template: Path, tmp_path: Path
):
    subs = cohort(valid_template, tmp_path, 30)
    grade(subs, tmp_path / "whole", jobs=2, progress=Quiet)
    command = [
        sys.executable,
        "-m",
        "checker",
        "grade",
        str(subs),
        "--out",
        str(tmp_path / "cut"),
        "--jobs",
        "1",
    ]
    victim = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while len(list((tmp_path / "cut").glob("*/result.json"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    partial = len(results_of(tmp_path / "cut"))
    assert 3 <= partial < 30, "the kill should land mid-batch"
    grade(subs, tmp_path / "cut", jobs=2, progress=Quiet)
    assert results_of(tmp_path / "cut") == results_of(tmp_path / "whole")
    csv = lambda root: (root / "grades.csv").read_text()  # noqa: E731
    assert csv(tmp_path / "cut") == csv(tmp_path / "whole")


def test_tables_shared_by_content_change_no_learners_result(valid_template: Path, tmp_path: Path):
    """A worker parses byte-identical split files once (checker/table.py); graded with that
    sharing turned off, every learner of a cohort, broken ones included, gets the same result."""
    subs = cohort(valid_template, tmp_path, 6)
    manifest = json.loads((subs / "learner-001" / "data" / "manifest.json").read_text())
    train = subs / "learner-001" / manifest["splits"]["train"]["path"]
    train.write_bytes(train.read_bytes()[:500])  # truncated: same name, other bytes
    claimed = subs / "learner-002" / "data" / "manifest.json"
    manifest["splits"]["valid"]["rows"] += 1  # same bytes as everyone, a wrong claim
    claimed.write_text(json.dumps(manifest))
    outcomes = {}
    for megabytes in ("64", "0"):
        out = tmp_path / f"results-{megabytes}"
        done = subprocess.run(
            [sys.executable, "-m", "checker", "grade", str(subs), "--out", str(out), "--jobs", "2"],
            capture_output=True,
            text=True,
            env=os.environ | {"CHECKER_TABLE_CACHE_MB": megabytes},
        )
        assert done.returncode in (0, 1), done.stderr
        outcomes[megabytes] = results_of(out)
    assert outcomes["64"] == outcomes["0"]
    scores = {k: r["score"] for k, r in outcomes["64"].items()}
    assert (
        scores["learner-001"] < scores["learner-000"]
        and scores["learner-002"] < scores["learner-000"]
    )
    assert scores["learner-000"] == scores["learner-005"]


def test_progress_shows_done_total_failures_and_eta():
    import io

    stream = io.StringIO()
    bar = Progress(4, stream=stream)
    for failed in (False, True, False, False):
        bar.update(failed)
    last = stream.getvalue().strip().splitlines()[-1]
    assert "4/4 graded" in last and "1 not full marks" in last and "ETA" in last


def test_sanitize_keeps_plain_ids_and_disambiguates_the_rest():
    assert sanitize("s1234567") == "s1234567"
    assert sanitize("a b") != sanitize("a_b")


# --execute: learner notebooks run in a limited child process ----------------------------------


PARAMETERS = 'WORKSPACE = "workspace"\nDATA_DIR = None\nSAMPLE_FRAC = 1.0\nEPOCHS = 20\nSEED = 42'


def notebook(*sources: str) -> str:
    return learner_notebook(*sources, parameters=PARAMETERS)


EXECUTE_CASES = {
    "not-json": (
        "01-stage.ipynb",
        "this is not JSON",
        ("01-stage.ipynb", "valid Jupyter notebook"),
    ),
    "bad-schema": (
        "01-stage.ipynb",
        '{"cells": 5, "nbformat": 4}',
        ("01-stage.ipynb", "valid Jupyter notebook"),
    ),
    "infinite-loop": (
        "01-stage.ipynb",
        notebook("while True:\n    pass"),
        ("01-stage.ipynb", "Timeout"),
    ),
    "memory-hog": (
        "01-stage.ipynb",
        notebook("hog = bytearray(64 * 1024**3)"),
        ("01-stage.ipynb", "MemoryError"),
    ),
    "huge-output": (
        "01-stage.ipynb",
        notebook("print('x' * 60_000_000)"),
        ("01-stage.ipynb", "outputs over"),
    ),
    "crash": ("01-stage.ipynb", notebook("import os\nos._exit(3)"), ("01-stage.ipynb", "Dead")),
}


@pytest.mark.slow
@pytest.mark.sandbox
def test_execute_mode_records_runaway_notebooks_and_grades_the_rest(
    valid_template: Path, tmp_path: Path
):
    subs = tmp_path / "submissions"
    good = notebook(unpack_cell(valid_template))  # nothing outside the sandbox needed
    for name in ("good-a", "good-b"):
        (subs / name).mkdir(parents=True)
        (subs / name / "01-stage.ipynb").write_text(good)
    for name, (file, text, _) in EXECUTE_CASES.items():
        (subs / name).mkdir(parents=True)
        (subs / name / file).write_text(text)
    # The runner is a fork of this test process, whose address space (everything the suite has
    # imported) counts against the limit: a grader started from the command line is far leaner.
    execute = {"timeout": 5, "memory_mb": 4096}
    results = {
        r["learner"]: r
        for r in grade(subs, tmp_path / "res", jobs=2, execute=execute, progress=Quiet)
    }
    alone = grade(
        _only(subs, "good-a", tmp_path),
        tmp_path / "alone",
        jobs=1,
        execute=execute,
        progress=Quiet,
    )[0]
    for name in ("good-a", "good-b"):
        assert results[name]["error"] is None
        assert results[name]["checks"] == alone["checks"]
    for name, (_, _, words) in EXECUTE_CASES.items():
        result = results[name]
        assert result["score"] == 0, name
        for word in words:
            assert word in (result["error"] or ""), f"{name}: {word!r} not in {result['error']!r}"
    assert (subs / "good-a" / "01-stage.ipynb").read_text() == good  # executed in a copy
    assert not (subs / "good-a" / "workspace").exists()


def _only(subs: Path, name: str, tmp_path: Path) -> Path:
    alone = tmp_path / "alone-subs"
    shutil.copytree(subs / name, alone / name)
    return alone


def test_scheduler_without_distributed_refuses_with_one_message(tmp_path: Path):
    """Grading on a Dask cluster is an optional extra: without it, one line says how to get it."""
    (tmp_path / "subs" / "alice").mkdir(parents=True)
    hide = "import sys; sys.modules['distributed'] = None; from checker.__main__ import main; "
    argv = [str(tmp_path / "subs"), "--out", str(tmp_path / "res"), "--scheduler", "local:2"]
    done = subprocess.run(
        [sys.executable, "-c", hide + f"sys.exit(main(['grade', *{argv!r}]))"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "python -m checker: error: --scheduler grades on a Dask cluster, which needs "
        "dask.distributed; it is not installed here: pip install -e '.[dask]'"
    ]
    assert not (tmp_path / "res").exists()
