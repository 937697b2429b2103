"""The tests in the stage notebooks' grade cells, for the rules no artifact shows.

The checker grades what a stage writes; some rules a notebook teaches leave no trace there: that
`load_checkpoint` checks the sha256 *before* it unpickles (stage 03), `decide`'s precedence when
no serving alert fired in the learner's data (stage 06), the promotion rule's edges (stage 07), the
canary verdict's branches beyond the one the learner's data take (stage 05). Their
grade cells hold visible tests and hidden ones, as exercise 09 does for `psi`. Here the solution
passes them, each plausible wrong answer fails with the case it broke, and the learner versions
keep the visible tests but not the hidden ones.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import joblib
import nbformat
import numpy as np
import pytest

from checker.chain import RELEASE, SOLUTIONS

HIDDEN = {
    "03-training.ipynb": ("s03-load-checkpoint-tests", "HIDDEN_S03_CHECKPOINT"),
    "05-deployment.ipynb": ("s05-verdict-tests", "HIDDEN_S05_VERDICT"),
    "06-monitoring.ipynb": ("s06-decide-tests", "HIDDEN_S06_DECIDE"),
    "07-iteration-retirement.ipynb": ("s07-promotion-tests", "HIDDEN_S07_PROMOTE"),
}


def cell(notebook: str, grade_id: str, folder: Path = SOLUTIONS) -> str:
    nb = nbformat.read(str(folder / notebook), as_version=4)
    return next(
        c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id
    )


def visible(source: str) -> str:
    """The grade cell as a learner sees it: nbgrader drops the hidden region."""
    kept, hidden = [], False
    for line in source.splitlines(keepends=True):
        if "### BEGIN HIDDEN TESTS" in line:
            hidden = True
        elif "### END HIDDEN TESTS" in line:
            hidden = False
        elif not hidden:
            kept.append(line)
    return "".join(kept)


def run(source: str, namespace: dict) -> dict:
    exec(compile(source, "<grade cell>", "exec"), namespace)
    return namespace


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- stage 03: load_checkpoint ----------------------------------------------------------------


def checkpoint_namespace(ws: Path) -> dict:
    return {"ws": ws, "json": json, "joblib": joblib, "os": os, "sha256_file": sha256_file}


def solution_load_checkpoint(ws: Path) -> dict:
    return run(cell("03-training.ipynb", "s03-resume"), checkpoint_namespace(ws))


UNVERIFIED = """
def load_checkpoint(run_id, epoch=None):
    index = json.loads((ws / "checkpoints" / run_id / "index.json").read_text())
    entries = index["epochs"]
    entry = entries[-1] if epoch is None else next(e for e in entries if e["epoch"] == epoch)
    return joblib.load(ws / entry["path"]), entry["epoch"]
"""

LOAD_THEN_VERIFY = """
def load_checkpoint(run_id, epoch=None):
    index = json.loads((ws / "checkpoints" / run_id / "index.json").read_text())
    entries = index["epochs"]
    entry = entries[-1] if epoch is None else next(e for e in entries if e["epoch"] == epoch)
    pipe = joblib.load(ws / entry["path"])
    if sha256_file(ws / entry["path"]) != entry["sha256"]:
        raise ValueError("changed")
    return pipe, entry["epoch"]
"""

VERIFIES_THE_LAST = """
def load_checkpoint(run_id, epoch=None):
    index = json.loads((ws / "checkpoints" / run_id / "index.json").read_text())
    last = index["epochs"][-1]
    if sha256_file(ws / last["path"]) != last["sha256"]:
        raise ValueError("changed")
    entry = last if epoch is None else next(e for e in index["epochs"] if e["epoch"] == epoch)
    return joblib.load(ws / entry["path"]), entry["epoch"]
"""

BY_POSITION = """
def load_checkpoint(run_id, epoch=None):
    index = json.loads((ws / "checkpoints" / run_id / "index.json").read_text())
    entry = index["epochs"][-1 if epoch is None else epoch - 1]
    if sha256_file(ws / entry["path"]) != entry["sha256"]:
        raise ValueError("changed")
    return joblib.load(ws / entry["path"]), entry["epoch"]
"""


def test_the_solution_load_checkpoint_passes_and_leaves_no_scratch_folder(tmp_path: Path):
    namespace = solution_load_checkpoint(tmp_path)
    run(cell("03-training.ipynb", "s03-load-checkpoint-tests"), namespace)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == []


@pytest.mark.parametrize(
    ("wrong", "fails"),
    [
        (UNVERIFIED, "a file whose sha256 differs from the index must raise ValueError"),
        (LOAD_THEN_VERIFY, "a file whose sha256 differs from the index must raise ValueError"),
        (VERIFIES_THE_LAST, "hidden test failed: a tampered earlier epoch"),
        (BY_POSITION, "hidden test failed: an epoch found by its number"),
    ],
    ids=["never-verifies", "loads-then-verifies", "verifies-the-last", "by-position"],
)
def test_a_load_checkpoint_that_unpickles_unverified_files_fails(
    tmp_path: Path, wrong: str, fails: str
):
    namespace = run(wrong, checkpoint_namespace(tmp_path))
    with pytest.raises(AssertionError, match=fails):
        run(cell("03-training.ipynb", "s03-load-checkpoint-tests"), namespace)
    assert not (tmp_path / "checkpoints" / ".selftest").exists()


def test_verifying_the_last_file_only_passes_the_visible_tests(tmp_path: Path):
    namespace = run(VERIFIES_THE_LAST, checkpoint_namespace(tmp_path))
    run(visible(cell("03-training.ipynb", "s03-load-checkpoint-tests")), namespace)


# --- stage 05: canary_verdict --------------------------------------------------------------

PROMOTE_FIRST = """
def canary_verdict(low, high, challenger_p95_ms, budget_ms, fallback_gap, margin=FALLBACK_MARGIN):
    if low > 0:
        return "promote"
    if high < 0 or challenger_p95_ms > budget_ms or fallback_gap > margin:
        return "rollback"
    return "hold"
"""

NO_FALLBACK_RULE = """
def canary_verdict(low, high, challenger_p95_ms, budget_ms, fallback_gap, margin=FALLBACK_MARGIN):
    if high < 0 or challenger_p95_ms > budget_ms:
        return "rollback"
    return "promote" if low > 0 else "hold"
"""

INCLUSIVE_BOUNDS = """
def canary_verdict(low, high, challenger_p95_ms, budget_ms, fallback_gap, margin=FALLBACK_MARGIN):
    if high <= 0 or challenger_p95_ms >= budget_ms or fallback_gap >= margin:
        return "rollback"
    return "promote" if low >= 0 else "hold"
"""


def verdict_namespace() -> dict:
    return {"FALLBACK_MARGIN": 0.01}


def test_the_solution_canary_verdict_passes():
    namespace = run(cell("05-deployment.ipynb", "s05-verdict"), verdict_namespace())
    run(cell("05-deployment.ipynb", "s05-verdict-tests"), namespace)


def test_a_verdict_that_promotes_before_it_checks_safety_fails_the_visible_tests():
    namespace = run(PROMOTE_FIRST, verdict_namespace())
    with pytest.raises(AssertionError, match="better, but over the budget"):
        run(cell("05-deployment.ipynb", "s05-verdict-tests"), namespace)


@pytest.mark.parametrize(
    ("wrong", "fails"),
    [
        (NO_FALLBACK_RULE, "better, but falls back more than the margin"),
        (INCLUSIVE_BOUNDS, "a fallback gap of exactly the margin"),
    ],
    ids=["ignores-fallbacks", "inclusive-bounds"],
)
def test_a_verdict_that_breaks_a_hidden_branch_passes_visible_tests_but_not_hidden_ones(
    wrong: str, fails: str
):
    source = cell("05-deployment.ipynb", "s05-verdict-tests")
    run(visible(source), run(wrong, verdict_namespace()))
    with pytest.raises(AssertionError, match=fails):
        run(source, run(wrong, verdict_namespace()))


# --- stage 06: decide ------------------------------------------------------------------------

RETRAIN_FIRST = """
def decide(alerts):
    fired = {a["rule"] for a in alerts if a["fired"]}
    if fired - {"latency_p95_ms", "error_rate"}:
        return "retrain"
    if fired:
        return "rollback"
    return "keep"
"""

ALWAYS_RETRAIN = """
def decide(alerts):
    return "retrain" if any(a["fired"] for a in alerts) else "keep"
"""


LISTED_MODEL_RULES = """
def decide(alerts):
    fired = {a["rule"] for a in alerts if a["fired"]}
    if fired & {"latency_p95_ms", "error_rate"}:
        return "rollback"
    if fired & {"feature_psi_max", "prediction_psi", "auc_drop"}:
        return "retrain"
    return "keep"
"""


def test_the_solution_decide_passes():
    namespace = run(cell("06-monitoring.ipynb", "s06-decide").split("\ndecision =")[0], {})
    run(cell("06-monitoring.ipynb", "s06-decide-tests"), namespace)


def test_a_decide_that_retrains_when_a_serving_alert_fired_fails():
    namespace = run(ALWAYS_RETRAIN, {})
    with pytest.raises(AssertionError, match="a serving rule fired: rollback"):
        run(cell("06-monitoring.ipynb", "s06-decide-tests"), namespace)


def test_a_decide_that_puts_retrain_first_passes_visible_tests_but_not_hidden_ones():
    source = cell("06-monitoring.ipynb", "s06-decide-tests")
    run(visible(source), run(RETRAIN_FIRST, {}))
    with pytest.raises(AssertionError, match="a serving alert and a drift alert: rollback first"):
        run(source, run(RETRAIN_FIRST, {}))


def test_a_decide_that_ignores_the_concept_drift_trigger_passes_visible_tests_but_not_hidden_ones():
    """The retrain trigger of stage 06 is a rule like any other model rule: it must retrain."""
    source = cell("06-monitoring.ipynb", "s06-decide-tests")
    run(visible(source), run(LISTED_MODEL_RULES, {}))
    with pytest.raises(AssertionError, match="concept drift alone: the retrain trigger"):
        run(source, run(LISTED_MODEL_RULES, {}))


# --- stage 07: should_promote ----------------------------------------------------------------
# The rule: promote when the paired interval's lower bound is a number above 0.

POINT_ESTIMATE = """
def should_promote(comparison):
    return comparison["estimate"] > 0
"""

OLD_MARGIN = """
def should_promote(comparison):
    return comparison["estimate"] >= 0.005
"""

LOW_AT_LEAST_ZERO = """
def should_promote(comparison):
    return comparison["low"] is not None and comparison["low"] >= 0
"""

LOW_WITHOUT_NONE = """
def should_promote(comparison):
    return comparison["low"] > 0
"""

SHARE_BETTER = """
def should_promote(comparison):
    return comparison["share_better"] is not None and comparison["share_better"] >= 0.95
"""

ESTIMATE_AND_SHARE = """
def should_promote(comparison):
    return comparison["estimate"] > 0 and (comparison["share_better"] or 0) > 0.95
"""


def test_the_solution_should_promote_passes():
    namespace = run(cell("07-iteration-retirement.ipynb", "s07-promotion-rule"), {"np": np})
    run(cell("07-iteration-retirement.ipynb", "s07-promotion-tests"), namespace)


@pytest.mark.parametrize(
    ("wrong", "fails"),
    [
        (POINT_ESTIMATE, "straddles 0: not enough evidence"),
        (OLD_MARGIN, "straddles 0: not enough evidence"),
    ],
    ids=["point-estimate", "fixed-margin"],
)
def test_a_promotion_rule_without_the_interval_fails_the_visible_tests(wrong: str, fails: str):
    source = visible(cell("07-iteration-retirement.ipynb", "s07-promotion-tests"))
    with pytest.raises(AssertionError, match=fails):
        run(source, run(wrong, {"np": np}))


@pytest.mark.parametrize(
    ("wrong", "fails"),
    [
        (LOW_AT_LEAST_ZERO, "hidden test failed: a lower bound of exactly 0"),
        (LOW_WITHOUT_NONE, "hidden test failed: an interval that could not be computed"),
        (SHARE_BETTER, "hidden test failed: a lower bound of exactly 0"),
        (ESTIMATE_AND_SHARE, "hidden test failed: a lower bound of exactly 0"),
    ],
    ids=["lower-bound-at-least-0", "no-interval-crashes", "share-better", "estimate-and-share"],
)
def test_a_near_miss_promotion_rule_passes_visible_tests_but_not_hidden_ones(
    wrong: str, fails: str
):
    source = cell("07-iteration-retirement.ipynb", "s07-promotion-tests")
    run(visible(source), run(wrong, {"np": np}))
    with pytest.raises(AssertionError, match=fails):
        run(source, run(wrong, {"np": np}))


# --- the learner versions -----------------------------------------------------------------------


@pytest.mark.parametrize("notebook", sorted(HIDDEN))
def test_learner_versions_keep_the_visible_tests_and_drop_the_hidden_ones(notebook: str):
    grade_id, marker = HIDDEN[notebook]
    solution, released = cell(notebook, grade_id), cell(notebook, grade_id, RELEASE)
    assert marker in solution and marker not in released
    assert "BEGIN HIDDEN TESTS" not in released
    assert released.strip() == visible(solution).strip()
