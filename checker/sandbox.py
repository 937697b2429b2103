"""Run untrusted code inside bubblewrap (`bwrap`): the one place that says what learner code sees.

`command(spec, argv)` builds the command line for a `Spec` (what is bound, read-only or
writable, and the `Limits`). Every sandbox gets new user, pid, network, ipc, uts and cgroup
namespaces (no network at all: its loopback is its own), no capabilities, no further user
namespaces, a session of its own, and dies with the process that started it. Its filesystem is
made of read-only binds of what a Python kernel needs (the system's programs and libraries, the
interpreter, the venv, the installed `checker` package, the course's `datasets/`), a private
`/tmp`, its own `/proc`, a minimal `/dev`, and the writable folders of the spec: nothing else of
the machine (no `$HOME`, no submissions, no results, no `solutions/`, no gradebook).

Limits are set with `prlimit` on the sandbox: address space per process, tasks (processes and
threads, counted in the sandbox's own user namespace), the size of any one file, no core dumps.
Root is exempt from the task rlimit, so a grader running as root also puts each learner's runner
in a `pids` cgroup of its own (`learner_cgroup`).

Kernels get there through `SandboxProvisioner`, a jupyter_client kernel provisioner (entry point
`checker-sandbox`): it wraps the kernel's command, talks to it over Unix sockets in a private
folder bound into the sandbox, and hands it only a short list of environment variables.

`learner_scratch(folder, limits)` turns a folder into a size-capped tmpfs that only the calling
process and its children see (a user and mount namespace of their own): `checker.execute`'s
runner calls it so that a learner's notebooks, all of which must share one workspace, cannot
fill the disk.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from checker.errors import CheckerError

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT / "datasets"
PACKAGE = Path(__file__).resolve().parent
ISOLATIONS = ("bwrap", "none")
CGROUP = Path("/sys/fs/cgroup")
INSTALL = "apt install bubblewrap"
# /etc files a kernel reads (the loader's cache, fonts, names of users and time zones); no others.
ETC = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "fonts", "localtime", "passwd", "group",
    "nsswitch.conf", "mime.types",
)  # fmt: skip
# Environment variables a kernel keeps (everything else of the grader's environment is dropped).
KEEP_ENV = (
    "LANG", "LC_ALL", "TZ", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
    "MPLBACKEND", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "MLFLOW_DISABLE_TELEMETRY",
    "PYTHONHASHSEED", "OULAD_DIR",
)  # fmt: skip
CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000  # <linux/sched.h>
MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 2, 4, 16384, 1 << 18  # <linux/mount.h>
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class SandboxUnavailable(CheckerError):
    """bwrap is missing, or this machine refuses the namespaces it needs."""


@dataclass(frozen=True)
class Limits:
    """What one learner may use. Memory is per process; tasks and scratch are per learner."""

    memory_mb: int = 3072  # address space of each process (RLIMIT_AS)
    tasks: int = 256  # processes and threads at once (RLIMIT_NPROC, in the sandbox's namespace)
    scratch_mb: int = 2048  # the learner's writable folder, and the largest file (RLIMIT_FSIZE)
    files: int = 100_000  # files and folders in the writable folder (tmpfs inodes)
    tmp_mb: int = 256  # the private /tmp of each sandbox (a tmpfs)


@dataclass(frozen=True)
class Spec:
    """One sandbox: its writable folders, its read-only binds, where it starts, its environment.

    Every path is bound at its own path, so paths mean the same inside and out.
    """

    writable: tuple[Path, ...]
    cwd: Path
    env: Mapping[str, str] = field(default_factory=dict)
    read_only: tuple[Path, ...] = ()  # default: `kernel_needs()`
    limits: Limits = Limits()


def kernel_needs() -> tuple[Path, ...]:
    """What a Python kernel of this venv needs to read: system, interpreter, venv, checker, data."""
    paths = [Path("/usr"), *(Path("/etc") / name for name in ETC)]
    for prefix in (sys.base_prefix, sys.prefix, Path(sys.executable).resolve().parents[1]):
        paths.append(Path(prefix).resolve())
    paths += [PACKAGE, DATASETS.resolve()]
    unique = []
    for path in paths:
        if path.exists() and path not in unique:
            unique.append(path)
    return tuple(unique)


def _root_links() -> list[str]:
    """`/bin`, `/lib`... as on this machine: links into /usr (merged /usr) or read-only binds."""
    args = []
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    return args


def command(spec: Spec, argv: Sequence[str]) -> list[str]:
    """The command that runs `argv` inside the sandbox `spec` describes."""
    limits = spec.limits
    args = [
        "prlimit",
        f"--as={limits.memory_mb * 1024 * 1024}",
        f"--nproc={limits.tasks}",
        f"--fsize={limits.scratch_mb * 1024 * 1024}",
        "--core=0",
        "--",
        "bwrap",
        "--unshare-all",  # pid, network, ipc, uts, cgroup (and user when it can)
        "--unshare-user",  # user too, or fail
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--cap-drop", "ALL",
        "--hostname", "sandbox",
        "--clearenv",
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", str(limits.tmp_mb * 1024 * 1024),
        "--tmpfs", "/tmp",
        "--size", str(limits.tmp_mb * 1024 * 1024),
        "--tmpfs", "/dev/shm",  # POSIX semaphores and shared memory (multiprocessing, joblib)
    ]  # fmt: skip
    args += _root_links()
    for path in spec.read_only or kernel_needs():
        args += ["--ro-bind", str(path.resolve()), str(path)]  # a link is bound as its target
    for path in spec.writable:  # after /tmp: a writable folder may live under it
        args += ["--bind", str(path), str(path)]
    # Nothing else is writable: not the sandbox's own root, nor its /dev (both would be tmpfs
    # in memory, with no size limit).
    args += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", str(spec.cwd)]
    for name, value in spec.env.items():
        args += ["--setenv", name, value]
    return [*args, "--", *argv]


def kernel_env(env: Mapping[str, str], writable: Sequence[Path], private: Path) -> dict[str, str]:
    """The environment of a sandboxed process: the variables of `KEEP_ENV`, a PATH, and a HOME
    and a TMPDIR inside a writable folder (those of `env` when they are, else `private`)."""
    kept = {k: v for k, v in env.items() if k in KEEP_ENV}
    path = os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"])
    kept["PATH"] = path
    for name in ("HOME", "TMPDIR"):
        given = Path(env.get(name) or "/").resolve()
        inside = any(given.is_relative_to(folder) for folder in writable)
        kept[name] = str(given if inside else private)
    return kept


# --- is it usable here? ---------------------------------------------------------------------------


@functools.cache
def unavailable() -> str | None:
    """Why learner code cannot be sandboxed here (bwrap missing, namespaces refused), or None.

    Tried for real, once a process: a learner scratch tmpfs and a sandboxed interpreter, in a
    child (`python -m checker.sandbox`).
    """
    for program in ("bwrap", "prlimit"):
        if shutil.which(program) is None:
            return f"`{program}` is not installed"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "checker.sandbox"], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        return "a trial sandbox did not finish in 60 s"
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return f"a trial sandbox failed: {lines[-1] if lines else f'exit code {done.returncode}'}"
    return None


def require() -> None:
    """Raise `SandboxUnavailable` with what to do, unless learner code can be sandboxed here."""
    why = unavailable()
    if why:
        raise SandboxUnavailable(
            f"--execute runs learner code inside bubblewrap, which cannot run here: {why}. "
            f"Install it ({INSTALL}; Fedora: dnf install bubblewrap) and allow unprivileged user "
            "namespaces (Ubuntu 24.04: an AppArmor profile for bwrap, or "
            "kernel.apparmor_restrict_unprivileged_userns=0), or pass --sandbox none to run "
            "learner code without it: as your user, able to read and write whatever you can "
            "(other learners, RESULTS, the course, the venv), reach the network and see your "
            "processes; only the memory, time and output limits remain."
        )


def _trial() -> int:
    """`python -m checker.sandbox`: a learner scratch and one sandboxed interpreter, for real."""
    with tempfile.TemporaryDirectory(prefix="checker-sandbox-trial-") as folder:
        scratch = Path(folder)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                learner_scratch(scratch, Limits(scratch_mb=16))
                env = kernel_env({}, (scratch,), scratch)
                spec = Spec(writable=(scratch,), cwd=scratch, env=env)
                probe = "open('ok', 'w').write('ok')"
                code = subprocess.run(command(spec, [sys.executable, "-I", "-c", probe])).returncode
                if code == 0 and (scratch / "ok").read_text() != "ok":
                    code = 1
            except Exception as exc:
                print(f"{exc.__class__.__name__}: {exc}", file=sys.stderr)
            finally:
                os._exit(code)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


# --- the learner's scratch folder: a tmpfs of its own ---------------------------------------------


def learner_scratch(folder: Path, limits: Limits) -> None:
    """Mount a size-capped tmpfs on `folder`, seen by this process and its children only.

    This process enters a user and a mount namespace of its own (so an unprivileged user can
    mount), with its own uid and gid mapped to themselves; the host's mounts stay as they were,
    and the tmpfs goes away with the last process that sees it. Call it in a single-threaded
    process (the kernel refuses a new user namespace to a threaded one).
    """
    uid, gid = os.getuid(), os.getgid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER | CLONE_NEWNS) refused")
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
    Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
    options = f"size={limits.scratch_mb}m,nr_inodes={limits.files},mode=0700"
    for source, target, kind, flags, data in (
        (None, "/", None, MS_REC | MS_PRIVATE, None),  # nothing mounted here reaches the host
        ("tmpfs", str(folder), "tmpfs", MS_NOSUID | MS_NODEV, options),
    ):
        encode = lambda s: None if s is None else s.encode()  # noqa: E731
        if libc.mount(encode(source), encode(target), encode(kind), flags, encode(data)) != 0:
            raise OSError(ctypes.get_errno(), f"mount of {target} refused")


# --- the learner's task count, for root ----------------------------------------------------------


def _pids_hierarchy() -> Path | None:
    """This process's cgroup in the `pids` hierarchy (cgroup v1 or v2), or None."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(","):  # v1
            return CGROUP / "pids" / path.lstrip("/")
    for line in lines:
        if line.startswith("0::"):  # v2: pids.max appears in children when it is delegated
            return CGROUP / line[3:].lstrip("/")
    return None


def learner_cgroup(name: str, limits: Limits) -> Path | None:
    """Move this process into a new `pids` cgroup `name` capped at `limits.tasks`; return it.

    The kernel does not apply RLIMIT_NPROC to the real root user, even inside a user namespace,
    so a grader running as root caps a learner's tasks with a cgroup (when it may make one);
    others get the rlimit, which binds them. None when no cgroup could be made.
    """
    base = _pids_hierarchy()
    if base is None or os.getuid() != 0:
        return None
    folder = base / name
    try:
        folder.mkdir()
    except OSError:
        return None
    try:
        (folder / "pids.max").write_text(str(limits.tasks))
        (folder / "cgroup.procs").write_text(str(os.getpid()))
    except OSError:
        remove_cgroup(folder)
        return None
    return folder


def remove_learner_cgroup(name: str) -> None:
    """Remove the cgroup `learner_cgroup(name)` made, if any, once its processes have exited."""
    base = _pids_hierarchy()
    if base is not None and (base / name).is_dir():
        remove_cgroup(base / name)


def remove_cgroup(folder: Path) -> None:
    for _ in range(100):
        try:
            folder.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:  # still busy: its last processes are being reaped
            time.sleep(0.01)


# --- kernels ------------------------------------------------------------------------------------


@functools.cache
def _provisioner() -> type:
    """`SandboxProvisioner`, made on first use: grading without kernels never imports
    jupyter_client."""
    from jupyter_client.provisioning import LocalProvisioner
    from traitlets import Int, List, Unicode

    class SandboxProvisioner(LocalProvisioner):
        """Start each kernel inside bwrap (jupyter_client entry point `checker-sandbox`).

        Select it with `JUPYTER_DEFAULT_PROVISIONER_NAME=checker-sandbox` (or a kernel spec's
        `metadata.kernel_provisioner`), with `KernelManager.transport = "ipc"`. The kernel may write
        to `writable` (default: its working folder) and to a private folder that holds its
        connection file, its sockets, its HOME and its TMPDIR, removed when the kernel is cleaned up.
        """

        writable = List(Unicode(), help="folders the kernel may write (default: its cwd)").tag(
            config=True
        )
        memory_mb = Int(Limits.memory_mb, help="address space of each process, MB").tag(config=True)
        tasks = Int(Limits.tasks, help="processes and threads at once").tag(config=True)
        file_mb = Int(Limits.scratch_mb, help="the largest file the kernel may write, MB").tag(
            config=True
        )
        private = Unicode("")

        async def pre_launch(self, **kwargs):  # noqa: ANN003, ANN201
            km = self.parent
            if km.transport != "ipc":
                raise CheckerError(
                    "a sandboxed kernel has no network: set KernelManager.transport = 'ipc'"
                )
            if not self.private:  # a restarted kernel keeps its folder
                # Its sockets' paths may not exceed 107 bytes: a long TMPDIR gives way to /tmp.
                short = tempfile.gettempdir() if len(tempfile.gettempdir()) < 60 else "/tmp"
                self.private = tempfile.mkdtemp(prefix="kernel-", dir=short)
            km.connection_file = str(Path(self.private) / "kernel.json")
            km.ip = str(Path(self.private) / "ipc")
            kwargs = await super().pre_launch(**kwargs)
            cwd = Path(kwargs.get("cwd") or os.getcwd()).resolve()
            private = Path(self.private)
            writable = tuple(Path(p).resolve() for p in self.writable) or (cwd,)
            if not any(private.is_relative_to(w) for w in writable):
                writable += (private,)
            env = kernel_env(kwargs.get("env") or {}, writable, private)
            limits = Limits(memory_mb=self.memory_mb, tasks=self.tasks, scratch_mb=self.file_mb)
            spec = Spec(writable=writable, cwd=cwd, env=env, limits=limits)
            datasets = next(
                (f / "datasets" for f in cwd.parents if (f / "datasets").is_dir()), None
            )
            if datasets is not None and datasets.resolve() == DATASETS.resolve():
                # The notebooks find the course's data by walking up from their folder (an
                # nbgrader course links datasets/ at its root): the same data, at that path too.
                spec = Spec(spec.writable, cwd, env, (*kernel_needs(), datasets), limits)
            return kwargs | {"cmd": command(spec, kwargs["cmd"])}

        async def cleanup(self, restart: bool = False) -> None:
            await super().cleanup(restart=restart)
            if self.private and not restart:
                with contextlib.suppress(OSError):
                    shutil.rmtree(self.private)

    return SandboxProvisioner


def __getattr__(name: str):  # noqa: ANN202 - `checker.sandbox:SandboxProvisioner`, made lazily
    if name == "SandboxProvisioner":
        return _provisioner()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux), however it dies.

    `parent` is the pid the caller expects as its parent: if that one already died, this
    process exits at once.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        os._exit(1)


if __name__ == "__main__":
    sys.exit(_trial())
