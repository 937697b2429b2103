"""A valid `problem.yaml` (stage 01), for tests of checks that read it (stages 01, 04, 05).

The numbers are the ones 01-problem-definition.ipynb derives from the OULAD 2013 presentations.
"""

from __future__ import annotations

from pathlib import Path

VALID_PROBLEM = """\
prediction:
  target: at_risk
  definition: final_result is Fail or Withdrawn
  horizon_day: 60
users:
  - who: tutors
    decision: which learners to call in the week after day 60
success:
  metric: recall_at_budget
  target: 0.5
  budget: 0.3
  outcome: raise completion among contacted learners by 2 points
constraints:
  latency_p95_ms: 200
  max_fairness_gap: 0.1
baseline:
  description: tutors call learners who missed or failed the first assessment
  metric_value: 0.387
"""


def write_problem(ws: Path, text: str = VALID_PROBLEM) -> Path:
    """Write `text` as the workspace's problem.yaml and return its path."""
    ws.mkdir(parents=True, exist_ok=True)
    path = ws / "problem.yaml"
    path.write_text(text, encoding="utf-8")
    return path
