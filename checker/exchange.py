"""nbgrader's exchange for one machine: a course-local folder, and releases without local work.

`nbgrader_config.py` points `Exchange.root` at the course's `build/exchange/` (git-ignored) unless the
`NBGRADER_EXCHANGE` environment variable names another folder, so JupyterLab's Assignments panel,
`release_assignment`, `fetch_assignment`, `submit` and `collect` work from a fresh clone with no
`/srv/nbgrader/exchange`. A shared server sets `NBGRADER_EXCHANGE` (or its own config) instead.

`ReleaseAssignment` is nbgrader's release with `RELEASE_IGNORE` added to the course's ignore
patterns: a workspace, an MLflow store or checkpoints that an instructor's own run left beside the
notebooks are never copied to learners. The patterns apply to releasing only: a learner's
submission, collected and autograded, must keep its `workspace/`, which the checks grade.
"""

from __future__ import annotations

import os
from pathlib import Path

from nbgrader.exchange.default.release_assignment import (
    ExchangeReleaseAssignment as _NbgraderRelease,
)

LOCAL_EXCHANGE = Path("build") / "exchange"  # below the course folder
# What a run of the notebooks leaves beside them (the WORKSPACE default is `workspace/`).
RELEASE_IGNORE = ["workspace", "mlflow.db", "mlruns", "mlartifacts", "*.ipynb_checkpoints"]


def exchange_root(course: Path) -> Path:
    """The exchange folder: `$NBGRADER_EXCHANGE`, or `build/exchange/` in the `course` folder.

    Created when missing, writable by every local account like nbgrader's own (mode 0777), so a
    learner's first `fetch_assignment` or the Assignments panel never meets a missing folder.
    """
    root = Path(os.environ.get("NBGRADER_EXCHANGE") or Path(course) / LOCAL_EXCHANGE).resolve()
    if not root.exists():
        root.mkdir(parents=True)
        root.chmod(0o777)
    return root


class ReleaseAssignment(_NbgraderRelease):
    """`nbgrader release_assignment` that never releases what a local run left behind."""

    def do_copy(self, src, dest, log=None):
        extra = [p for p in RELEASE_IGNORE if p not in self.coursedir.ignore]
        self.coursedir.ignore = [*self.coursedir.ignore, *extra]
        try:
            return super().do_copy(src, dest, log)
        finally:
            self.coursedir.ignore = [p for p in self.coursedir.ignore if p not in extra]
