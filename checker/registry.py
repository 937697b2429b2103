"""The registry of checks, and the wrapper that turns a check's problems into a `CheckResult`.

A check is written as a generator over a `Workspace` that yields one learner-facing message per
problem and raises `Invalid` when an artifact is too broken to look at further. `@check` registers
it under its public name and makes it a pure function `Path -> CheckResult`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from checker.errors import Invalid
from checker.result import CheckResult
from checker.workspace import Workspace

POINTS = 10

Problems = Iterator[str]
# A check step that yields problems and returns what it read (`value = yield from step(...)`).


@dataclass(frozen=True)
class Check:
    name: str
    stage: str  # the notebook (and section) to revisit when the check fails
    func: Callable[[Workspace], Problems]
    max_points: int = POINTS

    def __call__(self, workspace: str | Path | Workspace) -> CheckResult:
        owned = not isinstance(workspace, Workspace)
        ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
        messages: list[str] = []
        try:
            for message in self.func(ws):
                messages.append(message)
        except Invalid as exc:
            messages.append(str(exc))
        except RecursionError:
            messages.append("an artifact is nested too deeply to check")
        except Exception as exc:  # a safety net: a hostile artifact must never crash a batch
            messages.append(f"could not check the workspace: {exc.__class__.__name__}: {exc}")
        finally:
            if owned:
                ws.close()
        passed = not messages
        return CheckResult(
            name=self.name,
            passed=passed,
            points=self.max_points if passed else 0,
            max_points=self.max_points,
            messages=messages,
            hint="" if passed else f"revisit {self.stage}",
        )


CHECKS: dict[str, Check] = {}


def check(name: str, *, stage: str) -> Callable[[Callable[[Workspace], Problems]], Check]:
    """Register a check generator under `name`; `stage` is where a learner should look."""

    def register(func: Callable[[Workspace], Problems]) -> Check:
        if name in CHECKS:
            raise ValueError(f"check {name!r} is registered twice")
        CHECKS[name] = Check(name=name, stage=stage, func=func)
        return CHECKS[name]

    return register
