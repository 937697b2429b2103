"""`problem.yaml`, the learner's definition of the problem, and the `problem_defined` check.

The file says what is predicted and by when, who acts on it, how success is measured (a metric,
a target and the outreach budget, which every later stage uses), the serving and fairness constraints
later stages are held to, and today's baseline. The check validates the shape with the JSON Schema
`schemas/problem.schema.json`, then the meaning: numbers in range, a budget when the metric needs
one, a baseline below the target, and no placeholder text.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from checker.contract import schema_problems
from checker.errors import Invalid
from checker.lifecycle_map import PLACEHOLDERS, placeholder_reason
from checker.registry import Problems, check
from checker.workspace import Workspace

PROBLEM = "problem.yaml"
STAGE = "01-problem-definition.ipynb (cells 'Your turn 1', 'Your turn 2' and 'Your turn 3')"
# The metrics later stages log and report (stage 03's val_* metrics, stage 04's report.json).
METRICS = ("recall_at_budget", "roc_auc", "pr_auc", "recall", "precision", "f1", "accuracy")
MAX_HORIZON_DAY = 270  # the longest OULAD presentation lasts 269 days


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _between(value: Any, low: float, high: float, *, low_open: bool, high_open: bool) -> bool:
    if not _number(value):
        return False
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    return above and below


def _sentence_problems(field: str, text: str) -> Iterator[str]:
    reason = placeholder_reason(text)
    if reason:
        yield f"{PROBLEM}: {field}: expected a sentence of your own, found {text!r}, {reason}"


def _name_problems(field: str, text: str) -> Iterator[str]:
    if PLACEHOLDERS.search(text) or not text.strip():
        yield f"{PROBLEM}: {field}: expected a name, found the placeholder {text!r}"


def problem_messages(document: Any) -> Problems:
    """Every way `document` (the parsed problem.yaml) breaks the stage 01 contract."""
    problems = schema_problems("problem", document, PROBLEM)
    if problems:
        yield from problems
        return
    prediction, success = document["prediction"], document["success"]
    constraints, baseline = document["constraints"], document["baseline"]

    horizon = prediction["horizon_day"]
    if type(horizon) is not int or not 1 <= horizon <= MAX_HORIZON_DAY:
        yield (
            f"{PROBLEM}: prediction.horizon_day: expected a whole day of the presentation from 1 "
            f"to {MAX_HORIZON_DAY}, found {horizon!r}"
        )
    yield from _sentence_problems("prediction.definition", prediction["definition"])
    for i, user in enumerate(document["users"]):
        yield from _name_problems(f"users[{i}].who", user["who"])
        yield from _sentence_problems(f"users[{i}].decision", user["decision"])

    metric, target = success["metric"], success["target"]
    target_ok = _between(target, 0, 1, low_open=True, high_open=False)
    if not target_ok:
        yield f"{PROBLEM}: success.target: expected a value of {metric} in (0, 1], found {target!r}"
    if "budget" in success:
        budget = success["budget"]
        if not _between(budget, 0, 1, low_open=True, high_open=True):
            yield (
                f"{PROBLEM}: success.budget: expected the share of learners you can act on, "
                f"a number in (0, 1), found {budget!r}"
            )
    else:  # every later stage needs it, whatever the metric
        yield (
            f"{PROBLEM}: success.budget: expected the share of learners you can act on "
            f"(required whatever the metric: stage 04 sets its threshold from it, stages 06 "
            f"and 07 measure recall at it), found it missing"
        )
    yield from _sentence_problems("success.outcome", success["outcome"])

    latency = constraints["latency_p95_ms"]
    if not _number(latency) or latency <= 0:
        yield (
            f"{PROBLEM}: constraints.latency_p95_ms: expected a positive number of "
            f"milliseconds, found {latency!r}"
        )
    gap = constraints["max_fairness_gap"]
    if not _between(gap, 0, 1, low_open=True, high_open=True):
        yield (
            f"{PROBLEM}: constraints.max_fairness_gap: expected the largest acceptable gap in "
            f"recall between groups, a number in (0, 1), found {gap!r}"
        )

    yield from _sentence_problems("baseline.description", baseline["description"])
    value = baseline["metric_value"]
    if not _between(value, 0, 1, low_open=False, high_open=False):
        yield (
            f"{PROBLEM}: baseline.metric_value: expected today's value of {metric}, "
            f"a number in [0, 1], found {value!r}"
        )
    elif target_ok and value >= target:
        yield (
            f"{PROBLEM}: baseline.metric_value: expected a value below success.target "
            f"({target!r}), found {value!r}: a target the baseline already meets is no target"
        )


FIELDS = {
    "success": ("metric", "target", "budget"),
    "constraints": ("latency_p95_ms", "max_fairness_gap"),
}


def problem_fields(ws: Workspace) -> dict[str, Any]:
    """The fields of problem.yaml the checks of later stages compare with: `metric` (a name),
    `target`, `budget`, `latency_p95_ms` and `max_fairness_gap` (finite numbers), each present
    only when the file is readable and the field usable. Empty without a usable file: those checks
    grade their own artifacts and `problem_defined` says what is wrong with it. Read once per
    grading; the one reader of problem.yaml besides `problem_defined`."""

    def read() -> dict[str, Any]:
        if not ws.exists(PROBLEM):
            return {}
        try:
            document = ws.read_yaml(PROBLEM)
        except Invalid:
            return {}
        fields: dict[str, Any] = {}
        for section, names in FIELDS.items():
            part = document.get(section) if isinstance(document, dict) else None
            if not isinstance(part, dict):
                continue
            for name in names:
                value = part.get(name)
                if isinstance(value, str) if name == "metric" else _number(value):
                    fields[name] = value
        return fields

    return ws.memo(("problem fields",), read)


@check("problem_defined", stage=STAGE)
def problem_defined(ws: Workspace) -> Problems:
    """problem.yaml frames the prediction, its users, a measurable success criterion with a
    budget, the constraints later stages are held to, and a baseline below the target."""
    yield from problem_messages(ws.read_yaml(PROBLEM))
