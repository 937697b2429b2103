"""`checker grade --scheduler`: a real `dask scheduler` and real `dask worker` processes on
127.0.0.1 (free ports, killed at teardown) grade exactly as the local pool does, through worker
deaths, a killed client, and workers that cannot see SUBMISSIONS.

Grading on the cluster always runs in a `python -m checker grade` process of its own: this test
process forks the local pool, so it never holds a Dask client's threads.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.workspace import learner_notebook, unpack_cell

if importlib.util.find_spec("distributed") is None:
    pytest.skip(
        "dask.distributed is not installed: pip install -e '.[dask]' (make test installs it)",
        allow_module_level=True,
    )

from checker.batch import Learner, discover, grade
from checker.cluster import TooLarge, pack, parse, unpack
from checker.errors import CheckerError
from tests.helpers.processes import Quiet, free_port

pytestmark = pytest.mark.slow

DASK = Path(sys.executable).with_name("dask")
ENV = os.environ | {
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1",  # a learner's task dies twice at most
    "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "5s",
}


def wait_for(condition, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Cluster:
    """A `dask scheduler` and any number of `dask worker`s, each in a process group of its own."""

    def __init__(self, root: Path):
        self.root = root
        self.groups: list[subprocess.Popen] = []
        port = free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        self.scheduler = self._start("scheduler", [DASK, "scheduler", "--host", "127.0.0.1"]
                                     + ["--port", str(port), "--no-dashboard"])  # fmt: skip
        wait_for(lambda: "Scheduler at" in self.log("scheduler"), "the scheduler")

    def _start(self, name: str, argv: list, **options) -> subprocess.Popen:
        log = (self.root / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [str(a) for a in argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=ENV,
            start_new_session=True,
            **options,
        )
        self.groups.append(process)
        return process

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def worker(
        self, name: str, *, prefix: tuple = (), local: str | None = None
    ) -> subprocess.Popen:
        """Start a single-threaded worker (under `prefix`, e.g. a bwrap command); wait for it."""
        folder = local or str(self.root / f"{name}-space")
        argv = [*prefix, DASK, "worker", self.address, "--nthreads", "1", "--name", name]
        argv += ["--host", "127.0.0.1", "--no-dashboard", "--local-directory", folder]
        process = self._start(name, argv, cwd="/")
        wait_for(lambda: "Registered to" in self.log(name), f"worker {name}")
        return process

    def kill(self, process: subprocess.Popen) -> None:
        with_suppress_kill(process)

    def close(self) -> None:
        for process in self.groups:
            with_suppress_kill(process)


def with_suppress_kill(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.fixture
def cluster(tmp_path: Path):
    running = Cluster(tmp_path)
    try:
        yield running
    finally:
        running.close()


def cli(subs: Path, out: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "checker", "grade", str(subs), "--out", str(out), *options]


def run(subs: Path, out: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(cli(subs, out, *options), capture_output=True, text=True, env=ENV)


def results_of(results: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(results.glob("*/result.json"))}


def grades(results: Path) -> str:
    return (results / "grades.csv").read_text()


def group_alive(pgid: int, marker: bytes = b"") -> list[int]:
    """Live processes of a process group (holding `marker` in their command line)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        state, _, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(pgrp) == pgid and state != "Z" and marker in cmdline:
            found.append(int(entry.name))
    return found


def cohort(template: Path, root: Path, n: int, broken: bool = True) -> Path:
    """n copies of a valid workspace; with `broken`, some broken in one artifact each, and
    entries that are not learner folders at all."""
    subs = root / "submissions"
    for i in range(n):
        shutil.copytree(template, subs / f"learner-{i:03d}", symlinks=True)
    if broken:
        (subs / "learner-001" / "lifecycle_map.yaml").write_text("use_case: [unclosed\n")
        (subs / "learner-002" / "data" / "manifest.json").write_text('{"version": 1}')
        manifest = json.loads((subs / "learner-003" / "data" / "manifest.json").read_text())
        train = subs / "learner-003" / manifest["splits"]["train"]["path"]
        train.write_bytes(train.read_bytes()[:300])
        # An absolute symlink into the learner's own workspace still points there on a worker.
        own = subs / "learner-004"
        (own / "copy").mkdir()
        shutil.move(own / "lifecycle_map.yaml", own / "copy" / "map.yaml")
        (own / "lifecycle_map.yaml").symlink_to((own / "copy" / "map.yaml").absolute())
        (subs / "learner-005" / "data" / "manifest.json").unlink()
        (subs / "learner-005" / "data" / "manifest.json").symlink_to("/etc/hostname")
        (subs / "not-a-folder").write_text("a file handed in instead of a folder\n")
        (subs / "a-link").symlink_to(subs / "learner-000")
        (subs / "empty").mkdir()
    return subs


def test_a_cohort_grades_the_same_on_a_cluster_as_in_the_local_pool(
    valid_template: Path, tmp_path: Path, cluster: Cluster
):
    subs = cohort(valid_template, tmp_path, 8)
    bloated = subs / "learner-007" / "padding.bin"
    bloated.write_bytes(os.urandom(3_000_000))
    grade(subs, tmp_path / "pool", jobs=2, progress=Quiet)
    cluster.worker("a")
    cluster.worker("b")
    limit = "2.5"  # MB: every workspace fits but the padded one
    remote = run(
        subs, tmp_path / "remote", "--scheduler", cluster.address, "--max-submission-mb", limit
    )
    assert remote.returncode == 0, remote.stderr
    here = run(subs, tmp_path / "here", "--scheduler", "local:2", "--max-submission-mb", limit)
    assert here.returncode == 0, here.stderr
    pool = results_of(tmp_path / "pool")
    padded = pool.pop("learner-007")
    assert padded["score"] == pool["learner-000"]["score"] > 0  # graded in place, padding ignored
    results = results_of(tmp_path / "remote")  # bytes: the padded submission is over the cap
    refused = results.pop("learner-007")
    assert refused["score"] == 0 and "--max-submission-mb 2.5" in refused["error"]
    assert results == pool
    assert without_007(grades(tmp_path / "remote")) == without_007(grades(tmp_path / "pool"))
    # local:N workers share this machine's files: paths, no cap, everyone graded as in the pool
    assert results_of(tmp_path / "here") == pool | {"learner-007": padded}
    assert grades(tmp_path / "here") == grades(tmp_path / "pool")
    scores = {k: r["score"] for k, r in pool.items()}
    assert all(scores[f"learner-00{i}"] < scores["learner-000"] for i in (1, 2, 3, 5))
    assert scores["learner-004"] == scores["learner-000"]  # the absolute link still resolved
    assert "expected a folder" in pool["not-a-folder"]["error"]
    assert "Traceback" not in remote.stderr + here.stderr


def without_007(csv: str) -> list[str]:
    return [row for row in csv.splitlines() if not row.startswith("learner-007,")]


def test_a_worker_killed_mid_batch_is_replaced_and_every_learner_graded_once(
    valid_template: Path, tmp_path: Path, cluster: Cluster
):
    subs = cohort(valid_template, tmp_path, 60)
    grade(subs, tmp_path / "pool", jobs=2, progress=Quiet)
    doomed = cluster.worker("doomed")
    cluster.worker("survivor")
    out = tmp_path / "cluster"
    client = subprocess.Popen(
        cli(subs, out, "--scheduler", cluster.address),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    wait_for(lambda: len(list(out.glob("*/result.json"))) >= 8, "the first results")
    helpers = group_alive(doomed.pid, b"checker.cluster")
    assert helpers, "the doomed worker should be grading"
    cluster.kill(doomed)
    graded_when_killed = len(results_of(out))
    _, err = client.communicate(timeout=300)
    assert client.returncode == 0, err
    assert graded_when_killed < len(discover(subs)), "the kill should land mid-batch"
    wait_for(lambda: not group_alive(doomed.pid), "the killed worker's grading process to die", 10)
    assert results_of(out) == results_of(tmp_path / "pool")
    assert grades(out) == grades(tmp_path / "pool")
    total = len(discover(subs))
    lines = err.splitlines()
    assert any(f"] {total}/{total} graded" in line for line in lines), err  # each counted once
    assert not any(f"{total + 1}/{total}" in line for line in lines)


def test_kill_9_of_the_client_then_a_rerun_ends_as_one_uninterrupted_run(
    valid_template: Path, tmp_path: Path, cluster: Cluster
):
    subs = cohort(valid_template, tmp_path, 40)
    grade(subs, tmp_path / "pool", jobs=2, progress=Quiet)
    cluster.worker("a")
    cluster.worker("b")
    for engine in (cluster.address, "local:2"):
        out = tmp_path / engine.replace("/", "_").replace(":", "_")
        client = subprocess.Popen(
            cli(subs, out, "--scheduler", engine),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=ENV,
            start_new_session=True,
        )
        some = lambda out=out: len(list(out.glob("*/result.json"))) >= 4  # noqa: E731
        wait_for(some, f"results from {engine}")
        os.kill(client.pid, signal.SIGKILL)  # the client alone: what it started must follow it
        client.wait()
        partial = len(results_of(out))
        assert partial < len(discover(subs)), f"{engine}: the kill should land mid-batch"
        gone = lambda pid=client.pid: not group_alive(pid)  # noqa: E731
        wait_for(gone, f"{engine}: the client's processes", 30)
        rerun = run(subs, out, "--scheduler", engine)
        assert rerun.returncode == 0, rerun.stderr
        assert results_of(out) == results_of(tmp_path / "pool"), engine
        assert grades(out) == grades(tmp_path / "pool"), engine


KILL_MY_WORKER = """\
import os, signal, time
def parent(pid):
    stat = open(f"/proc/{pid}/stat").read()
    return int(stat[stat.rindex(")") + 2 :].split()[1])
def command(pid):
    return open(f"/proc/{pid}/cmdline", "rb").read()
pid = os.getpid()
while b"checker.cluster" not in command(pid) or b"checker.cluster" in command(parent(pid)):
    pid = parent(pid)
os.kill(parent(pid), signal.SIGKILL)  # the Dask worker above this learner's grading process
time.sleep(60)
"""


def test_a_learner_whose_task_kills_its_worker_twice_is_a_failure_and_the_batch_goes_on(
    valid_template: Path, tmp_path: Path, cluster: Cluster
):
    """Unsandboxed (`--sandbox none`), learner code can reach the worker's process and kill it;
    the nanny restarts the worker, the scheduler reschedules the task, and after the second death
    the learner is a failure. (In bubblewrap it cannot see the worker at all.)"""
    subs = tmp_path / "submissions"
    copy = f"import shutil\nshutil.copytree({str(valid_template)!r}, WORKSPACE, dirs_exist_ok=True)"
    for name, source in (("good-a", copy), ("good-b", copy), ("killer", KILL_MY_WORKER)):
        (subs / name).mkdir(parents=True)
        (subs / name / "01-stage.ipynb").write_text(learner_notebook(source))
    options = ("--execute", "--sandbox", "none", "--timeout", "120", "--jobs", "2")
    alone = run(subs, tmp_path / "pool", *options)
    assert alone.returncode == 0, alone.stderr
    cluster.worker("a")
    cluster.worker("b")
    done = run(subs, tmp_path / "cluster", *options, "--scheduler", cluster.address)
    assert done.returncode == 0, done.stderr
    results = results_of(tmp_path / "cluster")
    killer = results.pop("killer")
    assert killer["score"] == 0 and killer["checks"] == []
    assert "died twice" in killer["error"] and "not tried again" in killer["error"]
    pool = results_of(tmp_path / "pool")
    assert pool.pop("killer")["error"]  # on the pool there is no Dask worker to find: an error
    assert results == pool and results["good-a"]["score"] > 0
    deaths = sum(cluster.log(n).count("was killed by signal 9") for n in ("a", "b"))
    assert deaths == 2, cluster.log("a") + cluster.log("b")  # twice, then never again


def test_a_worker_that_cannot_see_submissions_grades_from_the_bytes_its_tasks_carry(
    valid_template: Path, tmp_path: Path, cluster: Cluster
):
    """The worker runs in a mount namespace (bubblewrap) where the whole machine is read-only and
    the test's folder, which holds SUBMISSIONS and RESULTS, is an empty tmpfs of its own. (Only
    that folder: the course and its venv may themselves live under /tmp, as in a fresh clone.)"""
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed: apt-get install bubblewrap")
    subs = cohort(valid_template, tmp_path, 6)
    grade(subs, tmp_path / "pool", jobs=2, progress=Quiet)
    hidden = ("bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc")
    hidden += ("--tmpfs", str(tmp_path), "--tmpfs", "/dev/shm", "--die-with-parent", "--")
    cluster.worker("blind", prefix=hidden, local="/dev/shm/dask-worker")
    shared = run(subs, tmp_path / "shared", "--scheduler", cluster.address, "--shared-fs")
    assert shared.returncode == 2 and "does not see" in shared.stderr, shared.stderr
    assert "Traceback" not in shared.stderr and not results_of(tmp_path / "shared")
    sent = run(subs, tmp_path / "sent", "--scheduler", cluster.address)
    assert sent.returncode == 0, sent.stderr
    assert results_of(tmp_path / "sent") == results_of(tmp_path / "pool")
    assert grades(tmp_path / "sent") == grades(tmp_path / "pool")


# The bundle a task carries ---------------------------------------------------------------------


def test_a_bundle_unpacks_to_the_same_entries_links_and_fifos_included(tmp_path: Path):
    folder = tmp_path / "subs" / "alice"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "x.csv").write_bytes(b"a,b\n1,2\n")
    (folder / "empty.txt").write_bytes(b"")
    (folder / "data" / "rel").symlink_to("x.csv")
    (folder / "data" / "abs").symlink_to(folder / "data" / "x.csv")
    (folder / "out").symlink_to("/etc/passwd")
    os.mkfifo(folder / "pipe")
    made = unpack(pack(Learner("alice", "alice", folder), False, 10**6), tmp_path / "worker")
    assert made == tmp_path / "worker" / "alice"
    assert (made / "data" / "x.csv").read_bytes() == b"a,b\n1,2\n"
    assert (made / "empty.txt").read_bytes() == b""
    assert os.readlink(made / "data" / "rel") == "x.csv"
    assert os.readlink(made / "data" / "abs") == "x.csv"  # made relative: it still points inside
    assert os.readlink(made / "out") == "/etc/passwd"  # kept: the checks refuse it, as here
    assert (made / "pipe").is_fifo()


def test_execute_mode_sends_only_the_notebooks(tmp_path: Path):
    folder = tmp_path / "bob"
    (folder / "workspace").mkdir(parents=True)
    (folder / "workspace" / "big.bin").write_bytes(b"x" * 10_000)
    (folder / "01-stage.ipynb").write_text("{}")
    (folder / "notes.txt").write_text("not a notebook")
    made = unpack(pack(Learner("bob", "bob", folder), True, 1000), tmp_path / "worker")
    assert sorted(p.name for p in made.iterdir()) == ["01-stage.ipynb"]


def test_a_bundle_over_the_cap_is_refused_before_it_is_read(tmp_path: Path):
    folder = tmp_path / "carol"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"x" * 600)
    (folder / "b.bin").write_bytes(b"x" * 600)
    with pytest.raises(TooLarge, match="over 1,000 bytes"):
        pack(Learner("carol", "carol", folder), False, 1000)


@pytest.mark.parametrize(
    "entries",
    [
        [[["a"], "d"], [["a", ".."], "d"]],
        [[["a"], "d"], [["b", "x"], "f", 0]],  # a file in a folder the bundle never made
        [[["a"], "d"], [["a", "l"], "l", "/etc"], [["a", "l", "passwd"], "f", 0]],  # through a link
        [[["a"], "d"], [["a", "x"], "f", 0], [["a", "x"], "f", 0]],  # over an entry
        [[["a"], "d"], [["a", "x"], "f", 99]],  # bytes missing
        [[["/etc"], "d"]],
        [[["a"], "d"], [["a", "dev"], "c"]],
    ],
)
def test_unpack_refuses_entries_outside_their_folder(tmp_path: Path, entries: list):
    bundle = json.dumps(entries).encode() + b"\n"
    with pytest.raises((ValueError, OSError)):
        unpack(bundle, tmp_path)


def test_scheduler_addresses():
    assert parse("local:3") == 3
    assert parse("tcp://10.0.0.5:8786") == "tcp://10.0.0.5:8786"
    for wrong in ("local:0", "local:two", "10.0.0.5:8786", ""):
        with pytest.raises(CheckerError, match="--scheduler"):
            parse(wrong)


def test_discovery_is_the_clients_alone(valid_template: Path, tmp_path: Path):
    """What a task carries names the learner as the client found them: id, name, folder name."""
    subs = cohort(valid_template, tmp_path, 1, broken=False)
    (learner,) = discover(subs)
    made = unpack(pack(learner, False, 10**8), tmp_path / "worker")
    assert made.name == learner.folder.name
    assert sorted(p.name for p in made.iterdir()) == sorted(
        p.name for p in learner.folder.iterdir()
    )


def test_execute_mode_on_a_cluster_runs_in_the_same_sandbox_and_grades_the_same(
    valid_template: Path, tmp_path: Path, cluster: Cluster
):
    from checker import sandbox

    why = sandbox.unavailable()
    if why:
        pytest.skip(f"bubblewrap cannot run here ({why}): {sandbox.INSTALL}")
    subs = tmp_path / "submissions"
    cases = {
        "good": learner_notebook(unpack_cell(valid_template)),
        "crash": learner_notebook("import os\nos._exit(3)"),
    }
    cases["not-json"] = "this is not a notebook"
    for name, text in cases.items():
        (subs / name).mkdir(parents=True)
        (subs / name / "01-stage.ipynb").write_text(text)
    options = ("--execute", "--timeout", "120", "--jobs", "2")
    cluster.worker("a")
    cluster.worker("b")
    for out, more in (("pool", ()), ("cluster", ("--scheduler", cluster.address))):
        done = run(subs, tmp_path / out, *options, *more)
        assert done.returncode == 0, done.stderr
    results = results_of(tmp_path / "cluster")
    assert results == results_of(tmp_path / "pool")
    assert {r["isolation"] for r in results.values()} == {"bwrap"}
    assert results["good"]["score"] > 0 and results["good"]["error"] is None
    assert "01-stage.ipynb" in results["crash"]["error"] and results["crash"]["score"] == 0
    assert grades(tmp_path / "cluster") == grades(tmp_path / "pool")
