"""`checker.execute`: the runner is a fork of the grading process, yet isolated and always reaped.

Each test executes a small notebook with `run_submission` in this process, the way a grading
worker does; its cells report (into the workspace) what the kernel sees of its runner, which
only an unsandboxed kernel can see (`sandbox="none"`). What the sandbox blocks is in
tests/test_sandbox.py; the limits and the reaping here hold in both modes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import nbformat
import pytest

import checker.execute as execute
from checker.execute import run_submission
from tests.helpers.workspace import learner_notebook

pytestmark = pytest.mark.slow

REPORT = """\
import json, os, resource
from pathlib import Path
from ipykernel import get_connection_file
runner = os.getppid()
connection = get_connection_file()
Path(WORKSPACE, "seen.json").write_text(json.dumps({
    "connection_file": connection,
    "transport": json.loads(Path(connection).read_text())["transport"],
    "runner_pid": runner,
    "runner_sid": os.getsid(runner),
    "runner_cmdline": Path(f"/proc/{runner}/cmdline").read_bytes().decode().split("\\0"),
    "memory_limit": resource.getrlimit(resource.RLIMIT_AS)[0],
    "cwd": os.getcwd(),
    "runner_files": {n: os.readlink(f"/proc/{runner}/fd/{n}") for n in os.listdir(f"/proc/{runner}/fd")},
    "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MPLBACKEND")},
}))
"""


def submission(root: Path, *sources: str) -> Path:
    folder = root / "learner"
    folder.mkdir()
    (folder / "01-stage.ipynb").write_text(learner_notebook(*sources), encoding="utf-8")
    return folder


def alive(marker: str) -> list[int]:
    """Processes whose command line holds `marker` (a learner's leftovers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                state = next(
                    line for line in (entry / "status").read_text().splitlines()
                    if line.startswith("State:")
                )  # fmt: skip
            except (OSError, StopIteration):
                continue
            if marker.encode() in cmdline and "zombie" not in state:
                found.append(int(entry.name))
    return found


def sleeper(marker: str, how: str = "child") -> str:
    """A cell that leaves a process sleeping: a `child` of the kernel, in a `group` of its own,
    or a `daemon` (forked twice, in a session of its own, adopted by the runner)."""
    argv = f"[sys.executable, '-c', 'import time; time.sleep(600)', {marker!r}]"
    if how == "daemon":
        return (
            "import os, sys\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    if os.fork() == 0:\n"
            f"        os.execv(sys.executable, {argv})\n"
            "    os._exit(0)\n"
            "os.wait()\n"
        )
    group = 0 if how == "group" else None
    return f"import subprocess, sys\nsubprocess.Popen({argv}, process_group={group})\n"


def gone(marker: str) -> bool:
    """Whether no process holding `marker` is left (SIGKILL is delivered, not awaited)."""
    deadline = time.monotonic() + 5
    while alive(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive(marker) == []


WORKER = """\
import json, os, resource, signal, sys
from pathlib import Path
from checker.execute import run_submission
cwd, env = os.getcwd(), dict(os.environ)
limit, handler = resource.getrlimit(resource.RLIMIT_AS), signal.getsignal(signal.SIGALRM)
read, write = os.pipe()  # like a grading worker's task queue
workspace, error = run_submission(
    Path(sys.argv[1]), Path(sys.argv[2]), timeout=30, memory_mb=2048, sandbox="none"
)
print(json.dumps({
    "error": error,
    "workspace": str(workspace),
    "pipe": f"pipe:[{os.fstat(write).st_ino}]",
    "sid": os.getsid(0),
    "cmdline": Path("/proc/self/cmdline").read_bytes().decode().split("\\0"),
    "untouched": (os.getcwd(), dict(os.environ)) == (cwd, env)
    and resource.getrlimit(resource.RLIMIT_AS) == limit
    and signal.getsignal(signal.SIGALRM) == handler,
}))
"""


def test_the_runner_is_isolated_and_this_process_is_untouched(tmp_path: Path):
    # In a process of its own, single-threaded like a grading worker (this test process may hold
    # threads from other tests, and then the runner is a fresh interpreter: the next test).
    folder = submission(tmp_path, REPORT)
    done = subprocess.run(
        [sys.executable, "-c", WORKER, str(folder), str(tmp_path / "scratch")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    worker = json.loads(done.stdout)
    assert worker["error"] is None and worker["untouched"]
    seen = json.loads((Path(worker["workspace"]) / "seen.json").read_text())
    assert seen["runner_sid"] == seen["runner_pid"] != worker["sid"]  # its own session
    assert seen["runner_cmdline"] == worker["cmdline"]  # a fork, not a new python
    assert seen["memory_limit"] == 2048 * 1024 * 1024
    assert seen["env"] == execute.RUNNER_ENV
    assert seen["transport"] == "ipc"  # no TCP port for two runners to race for
    assert Path(seen["connection_file"]).parent == tmp_path / "scratch" / "tmp"  # removed after
    assert Path(seen["cwd"]) == tmp_path / "scratch" / "notebooks"
    assert worker["pipe"] not in seen["runner_files"].values()  # the worker's files are closed
    assert [seen["runner_files"][n] for n in "012"] == ["/dev/null"] * 3


def test_with_another_thread_running_the_runner_is_a_fresh_interpreter(tmp_path: Path):
    folder = submission(tmp_path, REPORT)
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        workspace, error = run_submission(folder, tmp_path / "scratch", timeout=30, sandbox="none")
    finally:
        stop.set()
        thread.join()
    assert error is None
    seen = json.loads((workspace / "seen.json").read_text())
    assert "checker.execute" in seen["runner_cmdline"]
    assert seen["runner_sid"] == seen["runner_pid"] != os.getsid(0)
    assert seen["env"] == execute.RUNNER_ENV


MODES = [pytest.param("bwrap", marks=pytest.mark.sandbox), "none"]


@pytest.mark.parametrize("sandbox", MODES)
@pytest.mark.parametrize("how", ["child", "group", "daemon"])
def test_no_process_of_the_learner_outlives_the_run(tmp_path: Path, how: str, sandbox: str):
    marker = f"learner-leftover-{uuid.uuid4().hex}"
    folder = submission(tmp_path, sleeper(marker, how), "x = 1")
    _, error = run_submission(folder, tmp_path / "scratch", timeout=30, sandbox=sandbox)
    assert error is None
    assert gone(marker)


@pytest.mark.parametrize("sandbox", MODES)
def test_an_infinite_loop_is_stopped_by_the_cell_timeout(tmp_path: Path, sandbox: str):
    folder = submission(tmp_path, "while True:\n    pass", "x = 1")
    start = time.monotonic()
    _, error = run_submission(folder, tmp_path / "scratch", timeout=3, sandbox=sandbox)
    assert "01-stage.ipynb" in error and "Timeout" in error
    assert time.monotonic() - start < 30


@pytest.mark.parametrize("sandbox", MODES)
def test_the_wall_cap_stops_the_runner_and_everything_it_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sandbox: str
):
    marker = f"learner-leftover-{uuid.uuid4().hex}"
    folder = submission(
        tmp_path,
        sleeper(marker, "group"),
        sleeper(marker, "daemon"),
        "import time\ntime.sleep(600)",
    )
    wait = execute._wait
    monkeypatch.setattr(execute, "_wait", lambda pid, wall: wait(pid, 4.0))
    start = time.monotonic()
    _, error = run_submission(folder, tmp_path / "scratch", timeout=300, sandbox=sandbox)
    assert time.monotonic() - start < 30
    assert error == "the notebooks ran longer than 360 s in all and were stopped"
    assert gone(marker)


def test_a_killed_runner_is_reported_as_out_of_memory(tmp_path: Path):
    folder = submission(tmp_path, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)")
    _, error = run_submission(
        folder, tmp_path / "scratch", timeout=30, memory_mb=2048, sandbox="none"
    )
    assert error == ("executing the notebooks failed: the runner ran out of memory (limit 2048 MB)")


@pytest.mark.sandbox
def test_the_executed_notebook_is_written_once_with_its_outputs(tmp_path: Path):
    folder = submission(tmp_path, "print('hello from the kernel')")
    _, error = run_submission(folder, tmp_path / "scratch", timeout=30)
    assert error is None
    executed = nbformat.read(tmp_path / "scratch" / "executed" / "01-stage.ipynb", as_version=4)
    assert "hello from the kernel" in executed.cells[-1].outputs[0]["text"]
    runs = json.loads((tmp_path / "scratch" / "runs.json").read_text())["runs"]
    assert (
        runs[0]["output_bytes"]
        == (tmp_path / "scratch" / "executed" / "01-stage.ipynb").stat().st_size
    )
