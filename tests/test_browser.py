"""The course as trainees and instructors meet it: JupyterLab, nbgrader's panels and MLflow's UI in
a real Chromium (Debian's, driven by Playwright), on a temporary copy of the course.

One JupyterLab server for the module, started as `make lab` starts it, on the learner's working
copy (`checker.working_copy`); stage 01 with its answers filled in is run through the UI; the
MLflow UI is served by `checker.mlflow_ui` on the workspace the solution chain left. Screenshots
go to build/screenshots/. Without Playwright or Chromium the module is skipped with one line
saying what to install (`.ci/run` installs chromium in CI).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from checker.chain import RELEASE, ROOT, SOLUTIONS
from checker.working_copy import working_copy
from tests.helpers.processes import BIN, free_port, person

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).is_file():
    pytest.skip(
        "browser tests skipped: no Chromium (apt-get install chromium)", allow_module_level=True
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="browser tests skipped: pip install -e '.[dev]' for playwright"
)

SHOTS = ROOT / "build" / "screenshots"
TOKEN = "browser-test-token"
# The network is closed: without these Chromium keeps retrying its own services.
FLAGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    *(["--no-sandbox"] if os.geteuid() == 0 else []),
]
NOTEBOOK = "01-problem-definition.ipynb"


def wait_for(url: str, process: subprocess.Popen, seconds: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args[:3]} exited with {process.returncode}")
        try:
            httpx.get(url, timeout=5)
            return
        except httpx.TransportError:
            time.sleep(0.5)
    raise AssertionError(f"nothing answered at {url} within {seconds} s")


def stop(process: subprocess.Popen) -> None:
    """Stop a server started in a session of its own, and everything it started."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def tree_rss(pid: int) -> tuple[int, int]:
    """(processes, resident MB) of `pid` and all its descendants, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    todo, seen, kb = [pid], 0, 0
    while todo:
        current = todo.pop()
        try:
            status = (Path("/proc") / str(current) / "status").read_text()
        except OSError:
            continue
        seen += 1
        kb += next((int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmRSS")), 0)
        todo.extend(children.get(current, []))
    return seen, kb // 1024


def shoot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the course: config, solutions, learner notebooks, the data linked in; the
    assignment generated and released into its course-local exchange; a learner's working copy
    with stage 01's answers typed in (the way a learner who got them right has it)."""
    from tests.helpers.answers import answered

    root = tmp_path_factory.mktemp("browser")
    course = root / "course"
    course.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(SOLUTIONS.parent, course / "solutions")
    shutil.copytree(RELEASE.parent, course / "notebooks")
    os.symlink(ROOT / "datasets", course / "datasets")
    env = person(root / "home")
    for step in (["generate_assignment"], ["release_assignment"]):
        result = subprocess.run(
            [str(BIN / "nbgrader"), *step, "lifecycle", "--force"],
            cwd=course, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
    lab = course / "build" / "lab" / "lifecycle"
    working_copy(course / "notebooks" / "lifecycle", lab)
    import nbformat

    nbformat.write(answered(course / "notebooks" / "lifecycle" / NOTEBOOK), str(lab / NOTEBOOK))
    return course


@pytest.fixture(scope="module")
def lab(course: Path):
    """JupyterLab as `make lab` starts it (course root, opened at the working copy)."""
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "jupyter"), "lab", "--ip=127.0.0.1", f"--port={port}", "--no-browser",
         "--ServerApp.root_dir=.", "--LabApp.default_url=/lab/tree/build/lab/lifecycle",
         f"--IdentityProvider.token={TOKEN}", "--ServerApp.port_retries=0", "--allow-root"],
        cwd=course, env=person(course.parent / "home"), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(f"http://127.0.0.1:{port}/api/status", server)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(server)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    page.set_default_timeout(120_000)
    try:
        yield page
    finally:
        context.close()


# --- JupyterLab ---------------------------------------------------------------------------------


def test_jupyterlab_opens_the_learners_working_copy(lab, page):
    page.goto(f"{lab}/?token={TOKEN}")
    listing = page.locator(".jp-DirListing-content")
    listing.get_by_text(NOTEBOOK).wait_for()
    shoot(page, "01-lab-working-copy")
    crumbs = page.locator(".jp-BreadCrumbs").inner_text()
    assert "lifecycle" in crumbs and "lab" in crumbs  # build/lab/lifecycle, not notebooks/
    names = listing.locator(".jp-DirListing-itemText").all_inner_texts()
    assert sorted(names) == sorted(p.name for p in RELEASE.glob("*.ipynb"))


def open_notebook(lab: str, page, name: str = NOTEBOOK) -> None:
    page.goto(f"{lab}/lab/tree/build/lab/lifecycle/{name}?token={TOKEN}")
    page.locator(".jp-Notebook .jp-Cell").first.wait_for()
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for()
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for()  # the kernel is connected


def run_all(page) -> None:
    """Run > Run All Cells, again if a busy machine swallowed the first request."""
    prompts = page.locator(".jp-InputPrompt").filter(has_text="[")
    for _ in range(3):
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if any(t.strip() not in ("[ ]:", "") for t in prompts.all_inner_texts()):
                return
            time.sleep(0.5)
    raise AssertionError("Run All Cells started no cell")


def test_a_notebook_runs_through_the_ui_and_its_self_check_renders_the_table(course, lab, page):
    release = (course / "notebooks" / "lifecycle" / NOTEBOOK).read_bytes()
    open_notebook(lab, page)
    run_all(page)
    table = page.locator(".jp-OutputArea-output table").filter(has_text="problem_defined")
    try:
        table.wait_for(timeout=180_000)
    except sync_api.TimeoutError:
        shoot(page, "02-self-check-missing")
        errors = page.locator(".jp-OutputArea-output[data-mime-type*='error']").all_inner_texts()
        raise AssertionError(f"no self-check table; errors shown: {errors[:2]}") from None
    table.scroll_into_view_if_needed()
    shoot(page, "02-self-check-table")
    text = table.inner_text()
    assert "✓ pass" in text and "10/10" in text
    assert (
        page.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']").count()
        == 0
    )
    page.keyboard.press("Control+s")
    saved = course / "build" / "lab" / "lifecycle" / NOTEBOOK
    deadline = time.monotonic() + 30
    while "problem_defined" not in saved.read_text(encoding="utf-8"):
        assert time.monotonic() < deadline, "the notebook was not saved"
        time.sleep(0.5)
    # Saving changed the learner's copy only: the released notebook is byte for byte the same.
    assert (course / "notebooks" / "lifecycle" / NOTEBOOK).read_bytes() == release


def test_an_honest_submission_autogrades_without_checksum_warnings(course, lab, page):
    """The notebook the learner ran and saved in the UI, autograded: full marks, no warning that
    a locked cell "has changed"."""
    from nbgrader.api import Gradebook

    saved = course / "build" / "lab" / "lifecycle" / NOTEBOOK
    if "problem_defined" not in saved.read_text(encoding="utf-8"):
        test_a_notebook_runs_through_the_ui_and_its_self_check_renders_the_table(course, lab, page)
    folder = course / "submitted" / "honest" / "lifecycle"
    folder.mkdir(parents=True)
    shutil.copy(saved, folder / NOTEBOOK)
    result = subprocess.run(
        [str(BIN / "nbgrader"), "autograde", "lifecycle", "--student=honest", "--force"],
        cwd=course, env=person(course.parent / "home"), capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert "has changed" not in log, [ln for ln in log.splitlines() if "changed" in ln]
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        grade = gb.find_grade("s01-check", NOTEBOOK.removesuffix(".ipynb"), "lifecycle", "honest")
        assert grade.score == grade.max_score == 10


def test_validate_works(lab, page):
    open_notebook(lab, page)
    page.get_by_role("button", name="Validate").click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=180_000)
    dialog.get_by_text("Success!").or_(dialog.get_by_text("failed")).first.wait_for()
    shoot(page, "03-validate")
    assert "Success! Your notebook passes all the tests." in dialog.inner_text()


def test_formgrader_lists_the_assignment(lab, page):
    page.goto(f"{lab}/formgrader/manage_assignments?token={TOKEN}")
    row = page.locator("tr").filter(has_text="lifecycle")
    row.first.wait_for()
    shoot(page, "04-formgrader")
    assert "released" in row.first.inner_text()  # from the course-local exchange


def test_the_assignments_panel_lists_the_release(lab, page):
    """The course-local exchange: the Assignments panel lists the released assignment (with no
    exchange configured it says "Error fetching courses!")."""
    page.goto(f"{lab}/lab?token={TOKEN}")
    page.get_by_role("menuitem", name="Nbgrader", exact=True).click()
    page.locator(".lm-Menu").last.get_by_text("Assignment List").click()
    released = page.locator("#released_assignments_list")
    released.get_by_text("lifecycle").first.wait_for()
    shoot(page, "05-assignments")
    assert "Error fetching courses" not in page.inner_text("body")
    assert "Fetch" in released.inner_text() and "model-lifecycle" in released.inner_text()


# --- MLflow -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlflow_ui(chain, tmp_path_factory: pytest.TempPathFactory):
    """`make mlflow-ui` on a copy of the workspace the solution chain left."""
    failed = [f"{r.notebook}: {r.error}" for r in chain.runs if r.error]
    if failed:
        pytest.fail("the solution chain failed: " + "; ".join(failed))
    workspace = tmp_path_factory.mktemp("mlflow") / "workspace"
    shutil.copytree(chain.workspace, workspace, symlinks=True)
    port = free_port()
    env = person(workspace.parent / "home")
    ui = subprocess.Popen(
        [sys.executable, "-m", "checker.mlflow_ui", str(workspace), "--port", str(port)],
        cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        wait_for(f"http://127.0.0.1:{port}/health", ui, seconds=180)
        time.sleep(2)  # let the worker settle before its memory is read
        yield {"url": f"http://127.0.0.1:{port}", "pid": ui.pid}
    finally:
        stop(ui)


def test_the_mlflow_ui_is_lean(mlflow_ui, record_property):
    processes, megabytes = tree_rss(mlflow_ui["pid"])
    record_property("mlflow ui processes", processes)
    record_property("mlflow ui RSS MB", megabytes)
    print(f"\nMLflow UI: {processes} processes, {megabytes} MB resident")
    assert processes <= 3 and megabytes <= 1024, (processes, megabytes)


def test_the_mlflow_ui_shows_the_learners_runs(mlflow_ui, page):
    page.goto(f"{mlflow_ui['url']}/#/experiments/1/runs")
    page.get_by_text("baseline-logreg").first.wait_for()
    shoot(page, "06-mlflow-runs")
    body = page.inner_text("body")
    assert "at-risk-day60" in body and "mlp-h16-lr0.003-resumed" in body


def test_the_mlflow_registry_shows_the_champion(mlflow_ui, page):
    page.goto(f"{mlflow_ui['url']}/#/models/at-risk-day60")
    page.get_by_text("champion").first.wait_for()
    # the alias, not a description that mentions the champion
    row = page.locator("tr, [role='row']").filter(has_text=re.compile(r"@\s*champion")).first
    row.scroll_into_view_if_needed()
    shoot(page, "07-mlflow-registry")
    # stage 07's fixed feature won the paired comparison: the retrained version is the champion
    assert "Version" in row.inner_text() and "retrain" in row.inner_text()
    retired = page.locator("tr, [role='row']").filter(has_text="lifecycle_state").first
    assert "retired" in retired.inner_text()  # the replaced champion, the one version tagged
