"""`self_assessment.json`, the learner's four confidence ratings, and the `self_assessed` check.

The ratings are checked for shape and range only: any honest answer from 1 to 5 passes.
"""

from __future__ import annotations

from checker.contract import schema_problems
from checker.registry import Problems, check
from checker.workspace import Workspace

SELF_ASSESSMENT = "self_assessment.json"
STAGE = "10-exercise-lab-review.ipynb (cell 'Your turn 3: rate your confidence')"
# The four ratings, each "how confident am I that I can ...", from 1 (not yet) to 5 (could teach it).
QUESTIONS = {
    "problem_and_metric": "define the problem and its success metric before writing model code",
    "data_and_runs": "version the data and track every training run",
    "evaluation_and_serving": "evaluate a model once on untouched data and serve it safely",
    "monitoring_and_retirement": "monitor a model in use and retire it on purpose",
}


@check("self_assessed", stage=STAGE)
def self_assessed(ws: Workspace) -> Problems:
    """The four ratings are there, each a whole number from 1 to 5, and nothing else."""
    yield from schema_problems("self_assessment", ws.read_json(SELF_ASSESSMENT), SELF_ASSESSMENT)
