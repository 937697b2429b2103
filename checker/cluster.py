"""Grade a cohort on a Dask cluster: `checker grade SUBMISSIONS --out RESULTS --scheduler ADDRESS`.

`ADDRESS` is a running dask.distributed scheduler (`tcp://HOST:8786`) or `local:N`, a
`LocalCluster` of N single-threaded workers on this machine (which see its files: their tasks
carry paths, as with `--shared-fs`). Each learner is one task.

- **This process** (the client) discovers the learners, holds the lock on RESULTS, sends tasks,
  draws the progress line and writes every result (`checker.batch`): workers never write RESULTS,
  so resuming, the lock and `kill -9` behave as with the local pool.
- **A task** carries the learner's submission as bytes: a bundle of the workspace's files (or,
  with `--execute`, of the notebooks; see `pack`), size-capped (`--max-submission-mb`), so workers need not share
  the client's filesystem. With `--shared-fs` it carries the folder's path instead.
- **On the worker** the task unpacks the bytes into a scratch folder (in memory when there is
  room) and hands its path to a grading process of its own: a fresh interpreter (`python -m
  checker.cluster`, started with `subprocess`: a Dask worker is daemonic and threaded, so it is
  never forked), one per worker thread, kept warm across learners like a pool worker. It grades
  with `checker.batch.grade_one` (the very function of the local pool, `--execute` and its sandbox
  included) and returns the result and its feedback page as data. It dies with the worker thread
  that started it (`PR_SET_PDEATHSIG`).
- **Faults.** A worker that dies mid-task (killed, out of memory, its machine gone) has its tasks
  rescheduled by the scheduler. A learner whose task was running on two workers that died is
  recorded as a failure for that learner and the batch goes on (the scheduler's
  `distributed.scheduler.allowed-failures`, which `local:N` sets to 1, ends the retries). A learner
  who merely waited on a dying worker is sent again. Anything else that goes wrong on the cluster
  (a worker that cannot start its grading process, a scheduler gone) stops the batch with a
  message, leaving the results written so far for a rerun.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

from checker.batch import Learner, Outcome, _refusal, failure, grade_one
from checker.errors import CheckerError

INSTALL = "pip install -e '.[dask]'"
MAX_SUBMISSION_MB = 256.0  # what one task may carry; a workspace of the course is about 3 MB
STARTED = "checker-grading-started"  # the event topic a task reports its start on
DEATHS = 2  # a learner whose task was running on this many dying workers is not tried again
RESENDS = 3  # at most this many new tasks for a learner who only waited on dying workers
ADDRESS = re.compile(r"^[a-z][a-z0-9+]*://\S+$")
SHM = "/dev/shm"  # memory, where a worker unpacks submissions when it has room (see _memory)
SHM_SPARE = 256_000_000


def distributed():
    """The `distributed` package, or a usage error saying how to install it."""
    try:
        import distributed as module
    except ImportError:
        raise CheckerError(
            f"--scheduler grades on a Dask cluster, which needs dask.distributed; it is not "
            f"installed here: {INSTALL}"
        ) from None
    return module


def parse(scheduler: str) -> int | str:
    """`local:N` gives N (workers to start here); `tcp://HOST:PORT` gives the address as is."""
    text = scheduler.strip()
    if text.startswith("local:"):
        count = text.removeprefix("local:")
        if not count.isdigit() or int(count) < 1:
            raise CheckerError(
                f"--scheduler {scheduler!r}: expected local:N with N a whole number of workers "
                f"of at least 1, found {count!r}"
            )
        return int(count)
    if not ADDRESS.match(text):
        raise CheckerError(
            f"--scheduler {scheduler!r}: expected the address of a Dask scheduler "
            "(tcp://HOST:8786) or local:N (N workers on this machine)"
        )
    return text


# The client: submissions as bytes, tasks, outcomes --------------------------------------------


class TooLarge(Exception):
    """A submission over the size a task may carry."""


def pack(learner: Learner, execute: bool, limit: int) -> bytes:
    """The part of a learner's folder that grading reads, as one bundle of bytes: the workspace,
    or with `execute` the `NN-*.ipynb` entries beside it. Raises TooLarge past `limit` bytes of
    files (checked before each file is read).

    A bundle is one JSON line listing the entries, `[parts, kind, size or link target]` in the
    order they are to be made (a folder before what it holds), then the files' bytes, one after
    the other. Entries are kept as they are: symlinks as links (never followed), FIFOs as FIFOs,
    so that the checks meet on the worker what they would meet here; an absolute symlink into the
    learner's own folder becomes relative, so that it still points there. Sockets and devices are
    left out. (A tar made with `tarfile` cost 20 ms a workspace of the course here, four times
    the reading of its files, and the client packs every learner of the cohort.)
    """
    from checker.batch import workspace_of

    folder = learner.folder
    home = os.path.abspath(folder)
    roots = {home, os.path.realpath(folder)}
    entries: list[list] = []
    chunks: list[bytes] = []
    total = 0

    def add(path: str, parts: list[str], recursive: bool) -> None:
        nonlocal total
        info = os.lstat(path)
        if stat.S_ISDIR(info.st_mode):
            entries.append([parts, "d"])
            if recursive:
                for name in sorted(os.listdir(path)):
                    add(os.path.join(path, name), [*parts, name], True)
        elif stat.S_ISREG(info.st_mode):
            if total + info.st_size > limit:
                raise TooLarge(
                    f"{learner.name!r}: the submission holds over {limit:,} bytes of files, more "
                    f"than a task may carry to a worker (--max-submission-mb {limit / 1e6:g}); "
                    "grade it with the local pool, or with --shared-fs when the workers see "
                    "SUBMISSIONS"
                )
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as handle:
                data = handle.read(limit - total + 1)
            total += len(data)
            entries.append([parts, "f", len(data)])
            chunks.append(data)
        elif stat.S_ISLNK(info.st_mode):
            link = os.readlink(path)
            if os.path.isabs(link):
                target = os.path.normpath(link)
                for root in roots:
                    if target == root or target.startswith(root + os.sep):
                        inside = os.path.join(home, os.path.relpath(target, root))
                        link = os.path.relpath(inside, os.path.dirname(path))
                        break
            entries.append([parts, "l", link])
        elif stat.S_ISFIFO(info.st_mode):
            entries.append([parts, "p"])

    workspace = workspace_of(folder)
    if execute or workspace != folder:
        add(str(folder), [folder.name], recursive=False)
    if execute:
        for path in sorted(folder.glob("[0-9][0-9]-*.ipynb")):
            add(str(path), [folder.name, path.name], recursive=False)
    else:
        parts = [folder.name] if workspace == folder else [folder.name, workspace.name]
        add(str(workspace), parts, recursive=True)
    header = json.dumps(entries, separators=(",", ":")).encode("utf-8")
    return b"".join([header, b"\n", *chunks])


def unpack(bundle: bytes, into: Path) -> Path:
    """Make the entries of a bundle (see `pack`) inside `into`; return the learner's folder there.

    Every entry is one new name inside a folder this function made: no absolute name, no `..`,
    nothing written through a link or over an existing entry. Links keep their targets, for the
    checks to judge.
    """
    end = bundle.index(b"\n")
    entries = json.loads(bundle[:end])
    data = memoryview(bundle)[end + 1 :]
    if not entries or len(entries[0][0]) != 1 or entries[0][1] != "d":
        raise ValueError("the bundle does not start with the learner's folder")
    os.makedirs(into, exist_ok=True)
    made: set[tuple[str, ...]] = {()}
    offset = 0
    for parts, kind, *rest in entries:
        parts = tuple(parts)
        if (
            not parts
            or parts[:-1] not in made
            or any(p in ("", ".", "..") or "/" in p or "\0" in p for p in parts)
        ):
            raise ValueError(f"entry {'/'.join(parts)!r} is not a new name in a folder of its own")
        path = os.path.join(into, *parts)
        if kind == "d":
            os.mkdir(path)
            made.add(parts)
        elif kind == "f":
            size = rest[0]
            if offset + size > len(data):
                raise ValueError(f"entry {'/'.join(parts)!r}: the bundle ends before its bytes")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data[offset : offset + size])
            offset += size
        elif kind == "l":
            os.symlink(rest[0], path)
        elif kind == "p":
            os.mkfifo(path)
        else:
            raise ValueError(f"entry {'/'.join(parts)!r} is of no known kind ({kind!r})")
    return into / entries[0][0][0]


def _request(learner: Learner, execute: dict | None, shared_fs: bool) -> dict:
    request = {"id": learner.id, "name": learner.name, "execute": execute}
    if shared_fs:
        request["path"] = os.path.abspath(learner.folder)
        request["submissions"] = os.path.abspath(learner.folder.parent)
    return request


def graded(
    todo: list[Learner],
    scheduler: str,
    execute: dict | None,
    *,
    shared_fs: bool | None = None,
    max_submission_mb: float | None = None,
) -> Generator[Outcome, None, None]:
    """Grade `todo` on the cluster; yield each learner's outcome as it completes (any order).

    `shared_fs` None: by path for `local:N` (its workers share this machine's files), as bytes
    for a scheduler's address.
    """
    target = parse(scheduler)
    if shared_fs is None:
        shared_fs = isinstance(target, int)
    dist = distributed()
    limit = int((max_submission_mb or MAX_SUBMISSION_MB) * 1_000_000)
    if not todo:
        return
    with _client(dist, target) as client:
        started: collections.Counter[str] = collections.Counter()
        client.subscribe_topic(STARTED, lambda event: started.update([event[1]["key"]]))
        waiting = iter(todo)
        pending: dict = {}  # future -> (learner, how many tasks the learner has had)
        finished = dist.as_completed(with_results=True, raise_errors=False)
        threads = _Threads(client)

        def send(learner: Learner, tries: int = 0) -> Outcome | None:
            payload = None
            if not shared_fs:
                if _refusal(learner):  # not a folder: nothing to send, nothing to run
                    return Outcome(learner, grade_one(learner, execute))
                try:
                    payload = pack(learner, execute is not None, limit)
                except TooLarge as exc:
                    return Outcome(learner, failure(learner, str(exc), execute))
                except OSError as exc:
                    message = f"{learner.name!r}: could not read the submission to send it: {exc}"
                    return Outcome(learner, failure(learner, message, execute))
            key = f"checker-grade-{uuid.uuid4().hex}"
            request = _request(learner, execute, shared_fs) | {"key": key}
            future = client.submit(grade_task, request, payload, key=key, pure=False)
            pending[future] = (learner, tries + 1)
            finished.add(future)
            return None

        def fill() -> Generator[Outcome, None, None]:
            while len(pending) < threads.window():
                learner = next(waiting, None)
                if learner is None:
                    return
                outcome = send(learner)
                if outcome is not None:
                    yield outcome

        yield from fill()
        for future, answer in finished:  # results fetched as tasks finish, not one at a time here
            learner, tries = pending.pop(future)
            runs = started.pop(future.key, 0)
            error = answer if future.status == "cancelled" else None
            if future.status == "error":
                error = answer[1]  # (type, exception, traceback)
            future.release()
            outcome: Outcome | None
            if error is None:
                outcome = Outcome(learner, answer["result"], answer["feedback"])
            elif not isinstance(error, dist.KilledWorker):
                raise CheckerError(
                    f"grading {learner.name!r} on the Dask cluster failed: "
                    f"{error.__class__.__name__}: {error}; learners graded so far are in RESULTS, "
                    "run again to grade the rest"
                )
            elif runs < DEATHS and tries <= RESENDS:  # it only waited on the workers that died
                outcome = send(learner, tries)
            else:
                outcome = Outcome(learner, failure(learner, _killed(learner, error), execute))
            if outcome is not None:
                yield outcome
            yield from fill()


def _killed(learner: Learner, exc: Exception) -> str:
    worker = getattr(getattr(exc, "last_worker", None), "address", "a worker")
    return (
        f"{learner.name!r}: the Dask workers grading this learner died twice while doing so "
        f"(killed, out of memory or their machine lost; the last was {worker}); not tried again"
    )


class _Threads:
    """How many tasks to keep on the cluster: four times its threads, looked up every few seconds
    (workers come and go), so that no worker waits for the client and the client holds a few
    submissions in memory, not a cohort."""

    def __init__(self, client) -> None:
        self.client, self.when, self.count = client, 0.0, 0

    def window(self) -> int:
        if time.monotonic() - self.when > 2:
            self.when = time.monotonic()
            self.count = sum(self.client.nthreads().values())
        return max(8, 4 * self.count)


@contextlib.contextmanager
def _client(dist, target: int | str) -> Iterator:
    import logging

    import dask

    if isinstance(target, int):
        with dask.config.set({"distributed.scheduler.allowed-failures": DEATHS - 1}):
            cluster = dist.LocalCluster(
                n_workers=target,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
        with cluster, dist.Client(cluster) as client:
            yield client
        return
    try:
        client = dist.Client(target)
    except (OSError, TimeoutError) as exc:
        raise CheckerError(
            f"--scheduler {target}: no Dask scheduler answered there ({exc}); start one "
            "(`dask scheduler`) or check the address"
        ) from None
    with client:
        yield client


# The worker: a task hands the submission to a grading process of its own ----------------------


_helpers = threading.local()


def grade_task(request: dict, payload: bytes | None) -> dict:
    """One learner, on a Dask worker: the submission unpacked here (into memory when there is
    room), then graded by this worker thread's grading process."""
    from distributed import get_worker

    from checker.batch import feedback_html

    get_worker().log_event(STARTED, {"key": request["key"]})
    if payload is None:  # --shared-fs: the path is in the request
        return _ask(request)
    with tempfile.TemporaryDirectory(
        prefix="checker-learner-", dir=_memory(len(payload))
    ) as scratch:
        try:
            folder = unpack(payload, Path(scratch))
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            learner = Learner(request["id"], request["name"], Path(scratch))
            message = f"{request['name']!r}: the submission could not be unpacked: {exc}"
            result = failure(learner, message, request["execute"])
            return {"result": result, "feedback": feedback_html(result)}
        return _ask(request | {"path": str(folder)})


def _ask(request: dict) -> dict:
    """This worker thread's grading process grades `request`; started when there is none."""
    helper = getattr(_helpers, "process", None)
    if helper is None or helper.poll() is not None:
        helper = _helpers.process = subprocess.Popen(
            [sys.executable, "-m", "checker.cluster", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
    assert helper.stdin is not None and helper.stdout is not None  # both are pipes
    try:
        helper.stdin.write(json.dumps(request).encode("utf-8") + b"\n")
        helper.stdin.flush()
        line = helper.stdout.readline()
    except BrokenPipeError:
        line = b""
    if not line:  # the grading process died (out of memory, or killed by what it graded)
        code = helper.wait()
        learner = Learner(request["id"], request["name"], Path(request["path"]))
        why = f"signal {-code}" if code < 0 else f"exit code {code}"
        result = failure(learner, f"the grading process died ({why})", request["execute"])
        return {"result": result, "feedback": None}
    answer = json.loads(line)
    if "fatal" in answer:
        raise RuntimeError(answer["fatal"])
    return answer


def _serve(parent: int) -> None:
    """The grading process: one JSON request a line on stdin, one JSON answer a line on stdout."""
    from checker.sandbox import die_with_parent

    die_with_parent(parent)  # with the worker thread that started it, however that dies
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever else prints goes to the worker's log, not into the answers
    from checker import batch

    batch._warm_up()
    for line in sys.stdin.buffer:
        answers.write(json.dumps(_grade(json.loads(line))).encode("utf-8") + b"\n")
        answers.flush()


_sandbox_checked: list[bool] = []


def _grade(request: dict) -> dict:
    from checker import batch

    if batch.isolation(request["execute"]) == "bwrap" and not _sandbox_checked:
        from checker import sandbox

        why = sandbox.unavailable()  # once a grading process: this machine, not the client's
        if why:
            return {
                "fatal": f"--execute runs learner code inside bubblewrap, which cannot run on "
                f"this worker ({os.uname().nodename}): {why}; install it there "
                f"({sandbox.INSTALL}), or pass --sandbox none"
            }
        _sandbox_checked.append(True)
    if "submissions" in request and not Path(request["submissions"]).is_dir():
        return {
            "fatal": f"with --shared-fs every worker must see SUBMISSIONS at the client's path, "
            f"and this one does not see {request['submissions']!r}: mount it there, or leave "
            "out --shared-fs to send each submission with its task"
        }
    learner = Learner(request["id"], request["name"], Path(request["path"]))
    result = batch.grade_one(learner, request["execute"])
    return {"result": result, "feedback": batch.feedback_html(result)}


def _memory(size: int) -> str | None:
    """Where to unpack a submission: /dev/shm when it has room to spare, else the temporary
    folder (TMPDIR). A workspace unpacked and removed took 4 ms in memory here, and 30-100 ms on
    a busy disk, about the time its grading takes."""
    try:
        room = os.statvfs(SHM)
    except OSError:
        return None
    free = room.f_bavail * room.f_frsize
    return SHM if os.access(SHM, os.W_OK) and free > 8 * size + SHM_SPARE else None


if __name__ == "__main__":  # a worker thread's grading process (see grade_task)
    _serve(int(sys.argv[1]))
