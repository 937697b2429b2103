"""`lifecycle_map.yaml`, the learner's map of the seven stages, and the `lifecycle_map` check."""

from __future__ import annotations

import math
import re

from checker.contract import schema_problems
from checker.registry import Problems, check
from checker.workspace import Workspace

MAP = "lifecycle_map.yaml"
STAGES = (
    "problem_definition",
    "data_preparation",
    "training",
    "evaluation",
    "deployment",
    "monitoring",
    "retirement",
)
STAGE = (
    "the exercises 08-exercise-lifecycle-map, 09-exercise-failure-mode and 10-exercise-lab-review"
)
PLACEHOLDERS = re.compile(r"\b(todo|tbd|fixme|xxx)\b|\.\.\.|…|<[^>]*>", re.IGNORECASE)
MIN_WORDS = 4


def _normal(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def placeholder_reason(task: str) -> str | None:
    """Why `task` reads as a placeholder rather than a real task, or None."""
    if PLACEHOLDERS.search(task):
        return "a placeholder (TODO, TBD, '...' or <...>)"
    words = len(task.split())
    if words < MIN_WORDS:
        return f"only {words} word{'s' if words != 1 else ''} (at least {MIN_WORDS} needed)"
    return None


@check("lifecycle_map", stage=STAGE)
def lifecycle_map(ws: Workspace) -> Problems:
    """The map names all seven stages with 1-2 real tasks each, at least one failure mode with a
    numeric signal, and a lab review whose covers/ignores split the seven stages."""
    document = ws.read_yaml(MAP)
    problems = schema_problems("lifecycle_map", document, MAP)
    if problems:
        yield from problems
        return
    order = list(document["stages"])
    if order != list(STAGES):
        yield f"{MAP}: stages: expected the seven stages in lifecycle order {list(STAGES)}, found {order}"
    seen: dict[str, str] = {}
    for stage in STAGES:
        for i, task in enumerate(document["stages"][stage]["tasks"]):
            field = f"{MAP}: stages.{stage}.tasks[{i}]"
            reason = placeholder_reason(task)
            if reason:
                yield f"{field}: expected a concrete task, found {task!r}, {reason}"
            normal = _normal(task)
            if normal in seen and seen[normal] != stage:
                yield f"{field}: expected a task of its own, found the same task as stages.{seen[normal]}"
            elif normal in seen:
                yield f"{field}: expected two different tasks, found {task!r} twice"
            seen.setdefault(normal, stage)
    for i, mode in enumerate(document["failure_modes"]):
        field = f"{MAP}: failure_modes[{i}]"
        threshold = mode["signal"]["threshold"]
        if isinstance(threshold, bool) or not math.isfinite(float(threshold)):
            yield f"{field}.signal.threshold: expected a finite number, found {threshold!r}"
        for key in ("failure", "action"):
            if len(mode[key].split()) < 2 or PLACEHOLDERS.search(mode[key]):
                yield f"{field}.{key}: expected a sentence, found {mode[key]!r}"
        if PLACEHOLDERS.search(mode["signal"]["name"]):
            yield f"{field}.signal.name: expected a named signal, found {mode['signal']['name']!r}"
    review = document["lab_review"]
    covers, ignores = review["covers"], review["ignores"]
    both = sorted(set(covers) & set(ignores), key=STAGES.index)
    if both:
        yield f"{MAP}: lab_review: expected covers and ignores to be disjoint, found {both} in both"
    missing = [s for s in STAGES if s not in covers and s not in ignores]
    if missing:
        yield f"{MAP}: lab_review: expected covers and ignores to name all seven stages, found no {missing}"
    if len(review["improvement"].split()) < MIN_WORDS:
        yield f"{MAP}: lab_review.improvement: expected a sentence, found {review['improvement']!r}"
