"""Hostile notebook cells for tests/test_sandbox.py: what one extra cell of a learner tries.

`ATTACKS` are the attempts of issue 13, each a Python expression run by `attempt(name, ...)` in
the learner's kernel; the outcome ("done: ..." or "blocked: ...") goes to
`WORKSPACE/attempts.json`. `TARGETS` (the paths and the port the attacker aims at) is filled in
by the test. The other cells are whole hostile notebooks' worth of code: a fork bomb, a disk
fill, a flood of output, exits, and killing everything the kernel can see.
"""

from __future__ import annotations

import json

PRELUDE = """\
import json, os, signal, socket, sys
from pathlib import Path
TARGETS = {targets}
seen = {{}}
def attempt(name, action):
    try:
        seen[name] = "done: " + repr(action())
    except BaseException as exc:
        seen[name] = f"blocked: {{exc.__class__.__name__}}: {{exc}}"[:300]
    Path(WORKSPACE, "attempts.json").write_text(json.dumps(seen))
def processes():  # every process this kernel can see, by command line; one that exits is skipped
    found = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            line = Path(f"/proc/{{pid}}/cmdline").read_bytes()
        except OSError:
            continue
        found.append(line.decode(errors="replace").replace("\\0", " ")[:80])
    return found
"""

ATTACKS = {
    "append to the grader's source": 'open(TARGETS["checker_source"], "a").write("\\n# mine\\n")',
    "drop a .pth into site-packages": (
        'Path(TARGETS["site_packages"], "zz-mine.pth").write_text("import os\\n")'
    ),
    "read another learner": 'Path(TARGETS["other_notebook"]).read_text()[:40]',
    "write another learner": 'open(TARGETS["other_notebook"], "a").write(" ")',
    "write RESULTS": 'Path(TARGETS["results"], "planted.txt").write_text("mine")',
    "connect to 127.0.0.1": (
        'socket.create_connection(("127.0.0.1", TARGETS["port"]), timeout=3).sendall(b"hello")'
    ),
    "write $HOME": 'Path(TARGETS["home"], TARGETS["marker"]).write_text("mine")',
    "write /tmp": 'Path("/tmp", TARGETS["marker"]).write_text("mine")',
    "list processes": "processes()",
    "read the answer key of exercise 10": 'Path(TARGETS["answer_key"]).read_text()[:40]',
    "list solutions/": 'os.listdir(TARGETS["solutions"])',
    "list the course's tests/": 'os.listdir(TARGETS["tests"])',
}


def attack_cells(targets: dict) -> list[str]:
    """The prelude (with `targets`), then one cell per attempt."""
    prelude = PRELUDE.format(targets=json.dumps(targets))
    return [prelude] + [f"attempt({name!r}, lambda: {code})" for name, code in ATTACKS.items()]


# A fork bomb: every process forks again, ten times (1024 processes without a limit). Each one
# adds a byte to a file, so the original process counts how many there were.
FORK_BOMB = """\
import os, time, json
from pathlib import Path
assert os.getpid() <= 3, "not inside a sandbox: no fork bomb on the host"
counter = os.open(Path(WORKSPACE, "bomb.count"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
original, failures = os.getpid(), 0
for _ in range(10):
    try:
        os.fork()
    except OSError:
        failures += 1
        break
if os.getpid() != original:
    os.write(counter, b"x")
    time.sleep(3)
    os._exit(0)
time.sleep(4)
processes = Path(WORKSPACE, "bomb.count").stat().st_size
Path(WORKSPACE, "bomb.json").write_text(json.dumps({"processes": processes}))
"""

# The report is written into space taken before the disk is full (overwriting needs no more).
DISK_FILL = """\
import json
from pathlib import Path
Path(WORKSPACE, "fill.json").write_text(" " * 200)
written, error = 0, None
try:
    with open(Path(WORKSPACE, "fill.bin"), "wb") as handle:
        chunk = b"\\0" * (8 << 20)
        while written < (8 << 30):
            handle.write(chunk)
            handle.flush()
            written += len(chunk)
except OSError as exc:
    error = exc.strerror
with open(Path(WORKSPACE, "fill.json"), "r+") as handle:
    handle.write(json.dumps({"written": written, "error": error}).ljust(200))
"""

BIG_OUTPUT = "print('x' * 100_000_000)"

# Only where the kernel's pid shows a pid namespace of its own: never on the host.
KILL_EVERYTHING = """\
import os, signal
from pathlib import Path
assert os.getpid() <= 3, "not inside a sandbox: refusing to kill the host's processes"
tried = []
for pid in [os.getppid(), 1, -1] + [int(p) for p in os.listdir("/proc") if p.isdigit()]:
    if pid != os.getpid():
        try:
            os.kill(pid, signal.SIGKILL)
            tried.append(pid)
        except OSError:
            pass
Path(WORKSPACE, "killed.txt").write_text(repr(tried))
"""
