"""The Model Lifecycle checker: grades a learner's workspace by recomputing from its files.

    >>> import checker
    >>> report = checker.check_all("workspace")
    >>> report.raise_for_failure()      # in an nbgrader grade cell

Each check is a pure function from a workspace folder to a `CheckResult`; see `checker/README.md`
for the artifact contract they grade.
"""

from __future__ import annotations

from pathlib import Path

# Importing a check module registers its checks.
from checker import (  # noqa: F401
    checkpoints,
    evaluation,
    lab,
    lifecycle_map,
    manifest,
    monitoring,
    problem,
    retirement,
    self_assessment,
    serving,
    store,
)
from checker.errors import CheckerError, ChecksFailed
from checker.registry import CHECKS
from checker.result import CheckResult, Report
from checker.workspace import Workspace

# The checks in the order of the course: stages 01-07, the exercises 08-10, then the whole map.
COURSE_ORDER = (
    "problem_defined",
    "data_versioned",
    "metrics_logged",
    "checkpointed",
    "evaluated",
    "deployed",
    "monitored",
    "retired",
    "stages_mapped",
    "failure_mode_sketched",
    "lab_improved",
    "self_assessed",
    "lifecycle_map",
)
for _name in sorted(CHECKS, key=lambda n: COURSE_ORDER.index(n) if n in COURSE_ORDER else 99):
    CHECKS[_name] = CHECKS.pop(_name)

__all__ = ["CHECKS", "CheckResult", "CheckerError", "ChecksFailed", "Report", "check", "check_all"]


def _workspace(workspace: str | Path) -> Path:
    path = Path(workspace)
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is not a folder"
        raise CheckerError(
            f"workspace {str(path)!r} {what}: pass the folder your notebooks write to "
            "(the WORKSPACE parameter at the top of each notebook)"
        )
    return path


def _lookup(name: str):
    if name not in CHECKS:
        import difflib

        close = difflib.get_close_matches(name, list(CHECKS), n=1)
        suggestion = f"; did you mean {close[0]!r}?" if close else "."
        raise CheckerError(f"no check named {name!r}{suggestion} Known checks: {', '.join(CHECKS)}")
    return CHECKS[name]


def check(name: str, workspace: str | Path) -> Report:
    """Run one check on a workspace folder."""
    path = _workspace(workspace)
    return Report(str(path), [_lookup(name)(path)])


def check_all(workspace: str | Path, only: list[str] | None = None) -> Report:
    """Run every check (or those named in `only`, in course order) on a workspace folder."""
    path = _workspace(workspace)
    names = list(CHECKS) if not only else [n for n in CHECKS if n in set(only)]
    for name in only or []:
        _lookup(name)
    # Shared, so a file several checks need is read once per grading; closed at the end.
    with Workspace(path) as ws:
        return Report(str(path), [CHECKS[name](ws) for name in names])
