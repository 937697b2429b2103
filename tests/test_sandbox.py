"""`checker.sandbox`: learner code executed by `checker grade --execute` is contained.

A cohort of hostile learners (tests/helpers/sandbox_attacks.py) is graded once, sandboxed, beside two
honest ones. Every attempt of issue 13 is blocked or contained, the attackers' artifacts are
graded as usual, every honest learner's result equals grading that learner alone, and the
course tree and the venv are byte-identical before and after. The same attacks graded with
`--sandbox none` succeed (against decoys where they would harm the checkout), which shows each
test can fail. Tests marked `sandbox` need bwrap; without it they are skipped (one line says so).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import uuid
from pathlib import Path

import pytest

from checker import batch, sandbox
from checker.batch import grade
from checker.chain import ROOT
from checker.sandbox import Limits, Spec, command
from tests.helpers.processes import Quiet
from tests.helpers.sandbox_attacks import (
    BIG_OUTPUT,
    DISK_FILL,
    FORK_BOMB,
    KILL_EVERYTHING,
    attack_cells,
)
from tests.helpers.untrusted import snapshot
from tests.helpers.workspace import learner_notebook, unpack_cell

SCRATCH_MB = 320  # small enough to fill quickly, big enough for 100 MB of output
EXECUTE = {"timeout": 60, "memory_mb": 3072, "sandbox": "bwrap", "scratch_mb": SCRATCH_MB}
ANSWER_KEY = ROOT / "solutions" / "lifecycle" / "10-exercise-lab-review.ipynb"


def test_the_command_isolates_everything_and_binds_only_what_a_kernel_needs(tmp_path: Path):
    spec = Spec(writable=(tmp_path,), cwd=tmp_path, env={"HOME": str(tmp_path)})
    args = command(spec, ["python", "-c", "pass"])
    bwrap = args[args.index("bwrap") :]
    for flag in ("--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
                 "--new-session", "--clearenv"):  # fmt: skip
        assert flag in bwrap
    assert "--share-net" not in bwrap
    assert bwrap[bwrap.index("--cap-drop") + 1] == "ALL"
    assert bwrap[bwrap.index("--chdir") - 2 : bwrap.index("--chdir")] == ["--remount-ro", "/"]
    binds = [bwrap[i + 1] for i, a in enumerate(bwrap) if a in ("--bind", "--ro-bind")]
    writable = [bwrap[i + 1] for i, a in enumerate(bwrap) if a == "--bind"]
    assert writable == [str(tmp_path)]
    assert str(sandbox.PACKAGE) in binds and str(sandbox.DATASETS) in binds
    for secret in (Path.home(), ROOT, ROOT / "solutions", ROOT / "tests", Path("/etc")):
        assert str(secret) not in binds
    limits = {a.split("=")[0]: a.split("=")[1] for a in args[: args.index("--")] if "=" in a}
    assert limits == {
        "--as": str(Limits.memory_mb << 20),
        "--nproc": str(Limits.tasks),
        "--fsize": str(Limits.scratch_mb << 20),
        "--core": "0",
    }
    assert args[-4:] == ["--", "python", "-c", "pass"]


def test_without_bwrap_execute_refuses_with_one_clear_message(valid_template: Path, tmp_path: Path):
    (tmp_path / "subs" / "alice").mkdir(parents=True)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "bwrap").write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to create a new namespace' >&2\nexit 1\n"
    )
    (fake / "bwrap").chmod(0o755)
    for path in (str(Path(sys.executable).parent), f"{fake}:{os.environ['PATH']}"):
        done = subprocess.run(
            [sys.executable, "-m", "checker", "grade", str(tmp_path / "subs"),
             "--out", str(tmp_path / "res"), "--execute"],
            capture_output=True, text=True, env=os.environ | {"PATH": path},
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
        assert "apt install bubblewrap" in done.stderr and "--sandbox none" in done.stderr
        assert "other learners, RESULTS" in done.stderr  # what running without it gives up
    assert "No permissions to create a new namespace" in done.stderr
    assert not (tmp_path / "res" / "alice").exists()  # nothing graded


# --- a hostile cohort, graded once ------------------------------------------------------------


class Listener:
    """A TCP server on the host's 127.0.0.1 that records whoever connects."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.connections: list[bytes] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                connection, _ = self.server.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(2)
                try:
                    self.connections.append(connection.recv(100))
                except OSError:
                    self.connections.append(b"")

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.server.close()


def attacker_targets(root: Path, subs: Path, results: Path, port: int, decoys: bool) -> dict:
    """What the attacker aims at: the real grader, course and venv, or (decoys) copies of the
    two targets that would harm this checkout when an unsandboxed attack succeeds."""
    checker_source = sandbox.PACKAGE / "__init__.py"
    site_packages = Path(sysconfig.get_paths()["purelib"])
    if decoys:
        (root / "decoy-site").mkdir()
        checker_source = Path(shutil.copy(checker_source, root / "decoy-init.py"))
        site_packages = root / "decoy-site"
    return {
        "checker_source": str(checker_source),
        "site_packages": str(site_packages),
        "other_notebook": str(subs / "good-b" / "01-stage.ipynb"),
        "results": str(results),
        "port": port,
        "home": str(Path.home()),
        "marker": f"sandbox-test-{uuid.uuid4().hex}",
        "answer_key": str(ANSWER_KEY),
        "solutions": str(ROOT / "solutions"),
        "tests": str(ROOT / "tests"),
    }


def write_learner(subs: Path, name: str, *notebooks: list[str]) -> None:
    (subs / name).mkdir(parents=True)
    for i, cells in enumerate(notebooks, start=1):
        (subs / name / f"{i:02d}-stage.ipynb").write_text(learner_notebook(*cells))


def tree(*roots: Path) -> dict[str, str]:
    """sha256 of every file under the roots (not .git, not bytecode caches the grader writes)."""
    entries = {}
    for root in roots:
        for rel, digest in snapshot(root).items():
            if not ({".git", "__pycache__", ".pytest_cache", "build"} & set(Path(rel).parts)):
                entries[f"{root}/{rel}"] = digest
    return entries


def course_and_venv() -> tuple[Path, ...]:
    return (
        ROOT / "checker",
        ROOT / "solutions",
        ROOT / "notebooks",
        ROOT / "datasets",
        Path(sys.prefix),
    )


class HostProcesses:
    """Samples how many processes the machine runs, from a thread, while a cohort is graded."""

    def __init__(self):
        self.peak, self.stop = 0, threading.Event()
        self.before = self.count()
        self.spawn_failures = 0
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    @staticmethod
    def count() -> int:
        return sum(name.isdigit() for name in os.listdir("/proc"))

    def _sample(self) -> None:
        while not self.stop.wait(0.1):
            self.peak = max(self.peak, self.count())
            if subprocess.run(["true"]).returncode != 0:  # the host can still start processes
                self.spawn_failures += 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


class KeepScratch:
    """Stands in for `shutil` in `checker.batch`: a learner's scratch folder is moved aside
    instead of removed, so a test can read what the kernels wrote there."""

    def __init__(self, kept: Path):
        self.kept = kept

    def __getattr__(self, name: str):
        return getattr(shutil, name)

    def rmtree(self, path, ignore_errors: bool = False) -> None:
        self.kept.mkdir(exist_ok=True)
        shutil.move(path, self.kept / uuid.uuid4().hex)


def learner_of(scratch: Path, originals: dict[Path, bytes]) -> str:
    copy = (scratch / "notebooks" / "01-stage.ipynb").read_bytes()
    return next(
        path.parent.name
        for path, data in originals.items()
        if data.rstrip() == copy.rstrip() and path.name == "01-stage.ipynb"  # " " appended
    )


def graded_cohort(root: Path, template: Path, mode: str) -> dict:
    subs, results = root / "subs", root / "res"
    listener = Listener()
    good = [unpack_cell(template)]
    write_learner(subs, "good-a", good)
    write_learner(subs, "good-b", good)
    decoys = mode == "none"
    targets = attacker_targets(root, subs, results, listener.port, decoys)
    write_learner(subs, "attacker", attack_cells(targets) + good)
    if mode == "bwrap":  # contained only by the sandbox: never run on the host itself
        write_learner(subs, "fork-bomb", good + [FORK_BOMB])
        write_learner(subs, "disk-fill", good + [DISK_FILL])
        write_learner(subs, "big-output", good + [BIG_OUTPUT])
        write_learner(subs, "exits", good + ["import sys\nsys.exit()", "x = 1"], ["import os\nos._exit(3)"])  # fmt: skip
        write_learner(subs, "kills-all", good + [KILL_EVERYTHING], ["x = 1"])
    originals = {p: p.read_bytes() for p in subs.glob("*/*.ipynb")}
    before = tree(*course_and_venv()) if mode == "bwrap" else {}
    kept = root / "kept"
    host = HostProcesses()
    try:
        with pytest.MonkeyPatch.context() as patch:  # the forked workers inherit it
            patch.setattr(batch, "shutil", KeepScratch(kept))
            results_list = grade(
                subs, results, jobs=2, execute=EXECUTE | {"sandbox": mode}, progress=Quiet
            )
    finally:
        host.close()
        listener.close()
    alone_subs = root / "alone"
    shutil.copytree(subs / "good-a", alone_subs / "good-a")
    alone = grade(alone_subs, root / "alone-res", jobs=1, execute=EXECUTE | {"sandbox": mode}, progress=Quiet)  # fmt: skip
    return {
        "results": {r["learner"]: r for r in results_list},
        "scratch": {learner_of(folder, originals): folder for folder in kept.iterdir()},
        "alone": alone[0],
        "targets": targets,
        "connections": listener.connections,
        "originals": originals,
        "before": before,
        "after": tree(*course_and_venv()) if mode == "bwrap" else {},
        "host": host,
        "subs": subs,
        "res": results,
        "root": root,
    }


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory, valid_template: Path) -> dict:
    return graded_cohort(tmp_path_factory.mktemp("sandboxed"), valid_template, "bwrap")


@pytest.fixture(scope="module")
def unsandboxed(tmp_path_factory: pytest.TempPathFactory, valid_template: Path) -> dict:
    return graded_cohort(tmp_path_factory.mktemp("unsandboxed"), valid_template, "none")


def written(graded: dict, learner: str, name: str) -> dict:
    """A JSON file the learner's kernels wrote into their workspace."""
    return json.loads((graded["scratch"][learner] / "workspace" / name).read_text())


def host_side(graded: dict) -> dict[str, bool]:
    """Whether each attempt took effect, judged from outside the sandbox where the machine can
    tell (files, connections), else from the kernel's own record (what it read or listed)."""
    t, subs = graded["targets"], graded["subs"]
    seen = written(graded, "attacker", "attempts.json")
    other = subs / "good-b" / "01-stage.ipynb"
    return {
        "append to the grader's source": Path(t["checker_source"]).read_text().endswith("# mine\n"),
        "drop a .pth into site-packages": (Path(t["site_packages"]) / "zz-mine.pth").exists(),
        "read another learner": seen["read another learner"].startswith("done"),
        "write another learner": other.read_bytes() != graded["originals"][other],
        "write RESULTS": (Path(t["results"]) / "planted.txt").exists(),
        "connect to 127.0.0.1": bool(graded["connections"]),
        "write $HOME": (Path(t["home"]) / t["marker"]).exists(),
        "write /tmp": (Path("/tmp") / t["marker"]).exists(),
        "list processes": any(  # any process but bwrap's init and the kernel itself
            "ipykernel_launcher" not in c and not c.startswith("bwrap")
            for c in ast.literal_eval(seen["list processes"][len("done: ") :])
        ),
        "read the answer key of exercise 10": seen["read the answer key of exercise 10"].startswith(
            "done"
        ),
        "list solutions/": seen["list solutions/"].startswith("done"),
        "list the course's tests/": seen["list the course's tests/"].startswith("done"),
    }


@pytest.mark.sandbox
def test_every_attempt_is_blocked_inside_the_sandbox(cohort: dict):
    took_effect = host_side(cohort)
    assert [name for name, done in took_effect.items() if done] == []
    seen = written(cohort, "attacker", "attempts.json")
    for name in took_effect:
        if name not in ("write /tmp", "list processes"):  # a private /tmp; a private /proc
            assert seen[name].startswith("blocked"), (name, seen[name])
    assert len(ast.literal_eval(seen["list processes"][len("done: ") :])) == 2  # init, kernel


@pytest.mark.sandbox
def test_unsandboxed_the_same_attempts_take_effect(unsandboxed: dict):
    """The other side: without the sandbox every attempt works (against decoys of the checkout),
    so the test above fails when the protection is absent."""
    took_effect = host_side(unsandboxed)
    t = unsandboxed["targets"]
    try:
        assert [name for name, done in took_effect.items() if not done] == []
    finally:
        for leftover in (Path(t["home"]) / t["marker"], Path("/tmp") / t["marker"]):
            leftover.unlink(missing_ok=True)


@pytest.mark.sandbox
def test_the_course_tree_and_the_venv_are_byte_identical(cohort: dict):
    assert len(cohort["before"]) > 1000
    changed = {k for k in cohort["before"].keys() | cohort["after"].keys()
               if cohort["before"].get(k) != cohort["after"].get(k)}  # fmt: skip
    assert changed == set()


@pytest.mark.sandbox
def test_attackers_are_graded_as_usual_and_others_as_if_alone(cohort: dict):
    results, alone = cohort["results"], cohort["alone"]
    assert alone["error"] is None and alone["score"] == alone["max_score"] - 0 or alone["score"] > 0
    for name, result in results.items():
        assert result["isolation"] == "bwrap", name
        assert result["checks"] == alone["checks"], name  # the same artifacts, graded the same
    for name in ("good-a", "good-b", "attacker", "fork-bomb", "kills-all"):
        assert results[name]["error"] is None, (name, results[name]["error"])
    rows = (cohort["res"] / "grades.csv").read_text().splitlines()
    assert rows[0].endswith(",isolation") and all(r.endswith(",bwrap") for r in rows[1:])
    saved = json.loads((cohort["res"] / "attacker" / "result.json").read_text())
    assert saved["isolation"] == "bwrap"


@pytest.mark.sandbox
def test_a_fork_bomb_stops_at_the_task_limit_and_the_host_goes_on(cohort: dict):
    bomb = written(cohort, "fork-bomb", "bomb.json")
    assert 10 < bomb["processes"] < Limits.tasks  # 1023 without the limit
    host = cohort["host"]
    assert host.spawn_failures == 0
    assert host.peak - host.before < 2 * Limits.tasks  # measured: see the report


@pytest.mark.sandbox
def test_filling_the_disk_stops_at_the_scratch_cap(cohort: dict):
    fill = written(cohort, "disk-fill", "fill.json")
    assert fill["error"] == "No space left on device"
    assert fill["written"] <= SCRATCH_MB << 20


@pytest.mark.sandbox
def test_100_mb_of_output_is_contained(cohort: dict):
    error = cohort["results"]["big-output"]["error"]
    # Either it arrived whole (and weighs too much) or papermill gave up waiting for it.
    assert error.startswith("01-stage.ipynb: ")
    assert "outputs over 50 MB" in error or "Timeout waiting for IOPub output" in error, error


@pytest.mark.sandbox
def test_exits_and_killing_everything_in_reach_cost_only_the_learners_own_notebook(cohort: dict):
    exits = cohort["results"]["exits"]["error"]
    assert exits.startswith("02-stage.ipynb: DeadKernelError"), exits  # os._exit: that notebook
    killed = (cohort["scratch"]["kills-all"] / "workspace" / "killed.txt").read_text()
    assert "1" in killed  # it did signal its parent, pid 1 and everyone: none of it reached out
    assert (cohort["scratch"]["kills-all"] / "executed" / "02-stage.ipynb").is_file()


# --- killing the grader ---------------------------------------------------------------------------


def started(pid: int) -> str | None:
    """A process's start time (tells a pid from a later reuse of it), None when gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    return None if fields[0] == b"Z" else fields[19].decode()


def carrying(marker: str) -> list[int]:
    """Live processes whose command line names `marker` (the test's own folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline and started(int(entry.name)):
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize("execute", [False, pytest.param(True, marks=pytest.mark.sandbox)])
def test_killing_the_grader_leaves_no_process_of_the_batch(
    valid_template: Path, tmp_path: Path, execute: bool
):
    from checker.execute import _descendants

    subs = tmp_path / "subs"
    if execute:  # kernels busy in every sandbox when the grader dies
        for i in range(4):
            write_learner(
                subs, f"learner-{i}", [unpack_cell(valid_template), "import time\ntime.sleep(120)"]
            )
    else:
        for i in range(80):
            shutil.copytree(valid_template, subs / f"learner-{i:03d}", symlinks=True)
    (tmp_path / "tmp").mkdir()  # scratch folders, kernels' files: all named by this test's folder
    command = [sys.executable, "-m", "checker", "grade", str(subs), "--out", str(tmp_path / "res"),
               "--jobs", "2", *(["--execute", "--timeout", "300"] if execute else [])]  # fmt: skip
    log = (tmp_path / "grader.log").open("w")
    grader = subprocess.Popen(
        command, stdout=log, stderr=log, env=os.environ | {"TMPDIR": str(tmp_path / "tmp")}
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            batch_now = _descendants(grader.pid)
            kernels = [p for p in carrying("ipykernel_launcher") if p in batch_now]
            busy = len(kernels) >= 2 and len(batch_now) >= 6  # workers, runners, sandboxes, kernels
            if busy if execute else list((tmp_path / "res").glob("*/result.json")):
                break
            time.sleep(0.05)
        else:
            log.close()
            tail = (tmp_path / "grader.log").read_text()[-2000:]
            pytest.fail(f"the batch never got going ({grader.poll()=}, {len(batch_now)=}): {tail}")
        below = {pid: started(pid) for pid in _descendants(grader.pid)}
        names = [Path(f"/proc/{p}/cmdline").read_bytes()[:120] for p in below]
        assert len(below) >= (6 if execute else 2), names  # workers, runners, sandboxes, kernels
        os.kill(grader.pid, signal.SIGKILL)
    finally:
        grader.kill()
        grader.wait()
    deadline = time.monotonic() + 10
    left = lambda: [p for p, t in below.items() if t and started(p) == t] + carrying(str(tmp_path))  # noqa: E731
    while left() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left() == []
    assert len(list((tmp_path / "res").glob("*/result.json"))) < (4 if execute else 80)


NBGRADER_KERNEL = """\
import sys
import nbformat
from nbclient import NotebookClient
from nbgrader.converters import Autograde
from traitlets.config.loader import PyFileConfigLoader
config = PyFileConfigLoader("nbgrader_config.py", path=sys.argv[1]).load_config()
cell = "import os; print(os.getpid(), len([p for p in os.listdir('/proc') if p.isdigit()]))"
resources = {"metadata": {"path": sys.argv[2]}}
def notebook():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb
steps = config.Autograde.get("autograde_preprocessors") or Autograde.class_traits()[
    "autograde_preprocessors"].default()
autograded = notebook()
steps[0](config=config).preprocess(autograded, resources)  # autograde runs the notebook
learners = notebook()  # a kernel as JupyterLab or `nbgrader validate` starts it, same config
NotebookClient(learners, config=config, kernel_name="python3", resources=resources).execute()
print(steps[0].__name__, autograded.cells[0].outputs[0]["text"].strip())
print(learners.cells[0].outputs[0]["text"].strip())
"""


@pytest.mark.sandbox
@pytest.mark.parametrize("mode", ["bwrap", "none"])
def test_nbgrader_kernels_run_inside_the_sandbox(tmp_path: Path, mode: str):
    """The course's nbgrader_config.py starts autograde's kernels inside bwrap, and only those:
    a learner's own kernels (JupyterLab, validate) loading the same config run as usual."""
    done = subprocess.run(
        [sys.executable, "-c", NBGRADER_KERNEL, str(ROOT), str(tmp_path)],
        capture_output=True, text=True, timeout=180,
        env=os.environ | {"CHECKER_NBGRADER_SANDBOX": mode},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    *_, autograde_line, learner_line = done.stdout.strip().splitlines()
    step, pid, processes = autograde_line.split()[-3:]
    learner_pid, learner_processes = map(int, learner_line.split()[-2:])
    if mode == "bwrap":
        assert step == "SandboxedExecute"
        assert (int(pid), int(processes)) == (2, 2)  # own pid namespace: bwrap's init, the kernel
    else:
        assert step == "Execute"
        assert int(pid) > 2 and int(processes) > 2
    assert learner_pid > 2 and learner_processes > 2  # never sandboxed by the config
