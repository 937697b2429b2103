"""`lifecycle_map.yaml`, the learner's map of the seven stages, and its checks.

Three exercises write the map one section at a time: 08 the use case and the seven stages, 09 the
failure modes, 10 the lab review. Each section has a pure function that lists its problems, so
each exercise is graded on its own section (`stages_mapped`, `failure_mode_sketched`) and the
whole map by `lifecycle_map`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

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
STAGES_STAGE = "08-exercise-lifecycle-map.ipynb (cells 'Your turn 1' and 'Your turn 2')"
FAILURE_STAGE = "09-exercise-failure-mode.ipynb (cell 'Your turn 1: one failure mode')"
# The full map's schema with no section required: validates whichever sections a map has so far.
SECTIONS_SCHEMA = "lifecycle_map_sections"
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


def section_problems(document: object, sections: Iterable[str]) -> list[str]:
    """Schema problems of the named top-level sections only, plus one message per missing section.

    The other sections are not looked at, so an exercise is graded on its own part of the map.
    """
    if not isinstance(document, dict):
        return schema_problems(SECTIONS_SCHEMA, document, MAP)
    present = {key: document[key] for key in sections if key in document}
    problems = schema_problems(SECTIONS_SCHEMA, present, MAP)
    missing = [key for key in sections if key not in document]
    return [f"{MAP}: {key}: expected this field, found it missing" for key in missing] + problems


def stage_problems(document: dict) -> Problems:
    """The use case and the seven stages (a schema-valid `stages`): lifecycle order, 1-2 concrete
    tasks per stage, no task repeated."""
    reason = placeholder_reason(document["use_case"])
    if reason:
        yield f"{MAP}: use_case: expected a use case of your own, found {document['use_case']!r}, {reason}"
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


def failure_mode_problems(document: dict) -> Problems:
    """Each failure mode (schema-valid) has a finite threshold, sentences for failure and action,
    and a named signal."""
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


def lab_review_problems(document: dict) -> Problems:
    """The lab review (schema-valid): covers and ignores split the seven stages, and the
    improvement is a sentence."""
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


@check("lifecycle_map", stage=STAGE)
def lifecycle_map(ws: Workspace) -> Problems:
    """The map names all seven stages with 1-2 real tasks each, at least one failure mode with a
    numeric signal, and a lab review whose covers/ignores split the seven stages."""
    document = ws.read_yaml(MAP)
    problems = schema_problems("lifecycle_map", document, MAP)
    if problems:
        yield from problems
        return
    yield from stage_problems(document)
    yield from failure_mode_problems(document)
    yield from lab_review_problems(document)


@check("stages_mapped", stage=STAGES_STAGE)
def stages_mapped(ws: Workspace) -> Problems:
    """Exercise 08's part of the map: a use case of the learner's own and the seven stages in
    order, each with 1-2 concrete tasks. The other sections may be absent."""
    document = ws.read_yaml(MAP)
    problems = section_problems(document, ("use_case", "stages"))
    if problems:
        yield from problems
        return
    yield from stage_problems(document)


@check("failure_mode_sketched", stage=FAILURE_STAGE)
def failure_mode_sketched(ws: Workspace) -> Problems:
    """Exercise 09's part of the map: at least one failure mode for a named stage, with a signal,
    a finite numeric threshold, a direction and an action. The other sections may be absent."""
    document = ws.read_yaml(MAP)
    problems = section_problems(document, ("failure_modes",))
    if problems:
        yield from problems
        return
    yield from failure_mode_problems(document)
