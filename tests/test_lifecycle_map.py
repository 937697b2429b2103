"""The `lifecycle_map` check on lifecycle_map.yaml: the valid map, one test per rule, and hostile
YAML (Python tags, alias bombs, deep nesting, huge files) that must fail fast and run nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

import checker
from checker.lifecycle_map import STAGES, placeholder_reason
from tests.helpers.untrusted import HOSTILE_MAP, MAP, billion_laughs, failed, write_map
from tests.helpers.workspace import VALID_MAP

HINT = (
    "revisit the exercises 08-exercise-lifecycle-map, 09-exercise-failure-mode and "
    "10-exercise-lab-review"
)
PLAIN = "lifecycle_map.yaml: expected plain YAML, found a problem: "


def run(ws: Path) -> checker.CheckResult:
    return checker.check("lifecycle_map", ws)["lifecycle_map"]


def messages(ws: Path) -> list[str]:
    result = failed("lifecycle_map", ws, seconds=10)
    assert result.hint == HINT
    return result.messages


def edit(ws: Path, change: Callable[[dict], None]) -> None:
    document = yaml.safe_load(VALID_MAP)
    change(document)
    write_map(ws, yaml.safe_dump(document, sort_keys=False, allow_unicode=True))


def tasks(stage: str, *items: str) -> Callable[[dict], None]:
    return lambda d: d["stages"][stage].update(tasks=list(items))


def test_the_valid_map_passes(workspace: Path):
    result = run(workspace)
    assert result.passed, result.messages
    assert (result.points, result.max_points) == (10, 10)


def test_the_valid_map_survives_a_yaml_round_trip(workspace: Path):
    edit(workspace, lambda d: None)
    assert run(workspace).passed


# --- shape ----------------------------------------------------------------------------------------


def test_a_missing_stage_is_named(workspace: Path):
    edit(workspace, lambda d: d["stages"].pop("training"))
    assert messages(workspace) == [
        "lifecycle_map.yaml: stages.training: expected this field, found it missing"
    ]


def test_stages_out_of_order_are_named(workspace: Path):
    def swap(d: dict) -> None:
        stages = d["stages"]
        order = ["problem_definition", "data_preparation", "evaluation", "training"]
        d["stages"] = {k: stages[k] for k in order} | stages

    edit(workspace, swap)
    found = [*STAGES[:2], "evaluation", "training", *STAGES[4:]]
    assert messages(workspace) == [
        f"lifecycle_map.yaml: stages: expected the seven stages in lifecycle order "
        f"{list(STAGES)}, found {found}"
    ]


def test_an_unknown_stage_is_named(workspace: Path):
    edit(workspace, lambda d: d["stages"].update(marketing={"tasks": ["Write the launch blog"]}))
    (message,) = messages(workspace)
    assert message.startswith("lifecycle_map.yaml: stages: expected only the documented fields")
    assert "'marketing' was unexpected" in message


def test_three_tasks_are_too_many(workspace: Path):
    edit(
        workspace,
        tasks("training", "Train one model well", "Train two models well", "Train a third model"),
    )
    (message,) = messages(workspace)
    assert message.startswith("lifecycle_map.yaml: stages.training.tasks: expected maxItems 2")


def test_no_tasks_are_too_few(workspace: Path):
    edit(workspace, tasks("deployment"))
    assert messages(workspace) == [
        "lifecycle_map.yaml: stages.deployment.tasks: expected minItems 1, found []"
    ]


@pytest.mark.parametrize(
    "task",
    [
        "TODO write the training task",
        "tbd: decide the training task later",
        "Train the model and then ...",
        "Train the model and then …",
        "<describe the training task here>",
        "FIXME this is not a real task",
    ],
)
def test_a_placeholder_task_is_named(workspace: Path, task: str):
    edit(workspace, tasks("training", task))
    assert messages(workspace) == [
        f"lifecycle_map.yaml: stages.training.tasks[0]: expected a concrete task, found {task!r}, "
        "a placeholder (TODO, TBD, '...' or <...>)"
    ]


def test_a_task_under_four_words_is_named(workspace: Path):
    edit(workspace, tasks("evaluation", "Compute the AUC"))
    assert messages(workspace) == [
        "lifecycle_map.yaml: stages.evaluation.tasks[0]: expected a concrete task, found "
        "'Compute the AUC', only 3 words (at least 4 needed)"
    ]


def test_words_inside_longer_words_are_no_placeholder():
    assert placeholder_reason("Tabulate todos from the stakeholder interviews") is None


def test_a_task_repeated_across_stages_is_named(workspace: Path):
    task = yaml.safe_load(VALID_MAP)["stages"]["training"]["tasks"][0]
    edit(workspace, tasks("evaluation", task.upper() + "!"))  # case and punctuation ignored
    assert messages(workspace) == [
        "lifecycle_map.yaml: stages.evaluation.tasks[0]: expected a task of its own, found the "
        "same task as stages.training"
    ]


def test_a_task_repeated_in_one_stage_is_named(workspace: Path):
    task = "Train a logistic regression baseline first"
    edit(workspace, tasks("training", task, task))
    assert messages(workspace) == [
        f"lifecycle_map.yaml: stages.training.tasks[1]: expected two different tasks, found "
        f"{task!r} twice"
    ]


def test_an_extra_top_level_key_is_named(workspace: Path):
    edit(workspace, lambda d: d.update(owner="me"))
    assert messages(workspace) == [
        "lifecycle_map.yaml: (top level): expected only the documented fields, found Additional "
        "properties are not allowed ('owner' was unexpected)"
    ]


def test_a_map_that_is_a_list_is_named(workspace: Path):
    write_map(workspace, "- use_case\n- stages\n")
    assert messages(workspace) == [
        "lifecycle_map.yaml: (top level): expected a value of type object, found ['use_case', "
        "'stages']"
    ]


# --- failure modes --------------------------------------------------------------------------------


def failure_mode(**change: object) -> Callable[[dict], None]:
    def apply(d: dict) -> None:
        mode = d["failure_modes"][0]
        for key, value in change.items():
            if key in ("name", "threshold", "direction"):
                mode["signal"][key] = value
            else:
                mode[key] = value

    return apply


def test_a_failure_mode_with_an_unknown_stage_is_named(workspace: Path):
    edit(workspace, failure_mode(stage="marketing"))
    assert messages(workspace) == [
        "lifecycle_map.yaml: failure_modes[0].stage: expected one of "
        + ", ".join(STAGES)
        + ", found 'marketing'"
    ]


@pytest.mark.parametrize(
    ("threshold", "found"), [("0.25", "'0.25'"), (True, "True"), (None, "None")]
)
def test_a_threshold_that_is_not_a_number_is_named(workspace: Path, threshold, found: str):
    edit(workspace, failure_mode(threshold=threshold))
    assert messages(workspace) == [
        "lifecycle_map.yaml: failure_modes[0].signal.threshold: expected a value of type number, "
        f"found {found}"
    ]


@pytest.mark.parametrize(
    ("text", "found"), [(".nan", "nan"), (".inf", "inf"), ("-.INF", "-inf"), ("1.0e+999", "inf")]
)
def test_a_threshold_that_is_not_finite_is_named(workspace: Path, text: str, found: str):
    write_map(workspace, VALID_MAP.replace("threshold: 0.25", f"threshold: {text}"))
    assert messages(workspace) == [
        "lifecycle_map.yaml: failure_modes[0].signal.threshold: expected a finite number, "
        f"found {found}"
    ]


def test_an_integer_threshold_passes(workspace: Path):
    write_map(workspace, VALID_MAP.replace("threshold: 0.25", "threshold: 3"))
    assert run(workspace).passed


def test_an_invalid_direction_is_named(workspace: Path):
    edit(workspace, failure_mode(direction="sideways"))
    assert messages(workspace) == [
        "lifecycle_map.yaml: failure_modes[0].signal.direction: expected one of above, below, "
        "found 'sideways'"
    ]


def test_no_failure_mode_is_too_few(workspace: Path):
    edit(workspace, lambda d: d.update(failure_modes=[]))
    assert messages(workspace) == [
        "lifecycle_map.yaml: failure_modes: expected minItems 1, found []"
    ]


@pytest.mark.parametrize("key", ["failure", "action"])
def test_a_failure_or_action_that_is_no_sentence_is_named(workspace: Path, key: str):
    edit(workspace, failure_mode(**{key: "Drift"}))
    assert messages(workspace) == [
        f"lifecycle_map.yaml: failure_modes[0].{key}: expected a sentence, found 'Drift'"
    ]


def test_a_placeholder_signal_name_is_named(workspace: Path):
    edit(workspace, failure_mode(name="<signal>"))
    assert messages(workspace) == [
        "lifecycle_map.yaml: failure_modes[0].signal.name: expected a named signal, found "
        "'<signal>'"
    ]


# --- lab review -----------------------------------------------------------------------------------


def test_covers_and_ignores_overlapping_are_named(workspace: Path):
    edit(workspace, lambda d: d["lab_review"]["covers"].append("evaluation"))
    assert messages(workspace) == [
        "lifecycle_map.yaml: lab_review: expected covers and ignores to be disjoint, found "
        "['evaluation'] in both"
    ]


def test_covers_and_ignores_must_name_all_seven(workspace: Path):
    edit(workspace, lambda d: d["lab_review"]["ignores"].remove("retirement"))
    assert messages(workspace) == [
        "lifecycle_map.yaml: lab_review: expected covers and ignores to name all seven stages, "
        "found no ['retirement']"
    ]


def test_covers_with_an_unknown_stage_is_named(workspace: Path):
    edit(workspace, lambda d: d["lab_review"]["covers"].append("marketing"))
    (message,) = messages(workspace)
    assert message.startswith("lifecycle_map.yaml: lab_review.covers[2]: expected one of ")


def test_a_short_improvement_is_named(workspace: Path):
    edit(workspace, lambda d: d["lab_review"].update(improvement="Split better"))
    assert messages(workspace) == [
        "lifecycle_map.yaml: lab_review.improvement: expected a sentence, found 'Split better'"
    ]


def test_every_problem_is_reported_at_once(workspace: Path):
    def break_three(d: dict) -> None:
        d["stages"]["monitoring"]["tasks"] = ["TODO"]
        d["failure_modes"][0]["action"] = "Retrain"
        d["lab_review"]["ignores"].remove("monitoring")

    edit(workspace, break_three)
    found = messages(workspace)
    assert [m.split(":")[1].strip() for m in found] == [
        "stages.monitoring.tasks[0]",
        "failure_modes[0].action",
        "lab_review",
    ]


# --- hostile YAML ---------------------------------------------------------------------------------


def test_a_python_tag_is_refused_and_never_run(workspace: Path):
    HOSTILE_MAP["map_python_tag"](workspace)
    (message,) = messages(workspace)
    assert message.startswith(
        PLAIN + "could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/object/apply:os.system'"
    )
    assert not (workspace.parent / "hacked").exists()


def test_a_python_tag_deep_in_a_valid_map_is_refused(workspace: Path):
    marker = workspace.parent / "opened"
    write_map(
        workspace,
        VALID_MAP.replace(
            "use_case: Flag", f"use_case: !!python/object/apply:builtins.open ['{marker}', 'w']\n#"
        ),
    )
    (message,) = messages(workspace)
    assert message.startswith(PLAIN + "could not determine a constructor")
    assert not marker.exists()


def test_a_billion_laughs_fails_fast(workspace: Path):
    HOSTILE_MAP["map_alias_bomb"](workspace)
    start = time.monotonic()
    assert messages(workspace) == [
        PLAIN + "more than 20,000 nodes once aliases are expanded (an alias bomb?)"
    ]
    assert time.monotonic() - start < 2


def test_a_small_alias_tree_is_allowed(workspace: Path):
    write_map(workspace, billion_laughs(levels=2))  # 9 * 9 * 9 nodes: valid YAML, wrong map
    found = messages(workspace)
    assert not any(m.startswith(PLAIN) for m in found)
    assert "lifecycle_map.yaml: (top level): expected only the documented fields" in found[-1]


def test_a_recursive_alias_is_refused(workspace: Path):
    HOSTILE_MAP["map_recursive_alias"](workspace)
    assert messages(workspace) == [PLAIN + "recursive alias *a at line 1"]


@pytest.mark.parametrize(
    ("text", "line"),
    [("use_case: one\nuse_case: two\n", 2), ("a: {b: 1, c: 2, b: 3}\n", 1)],
)
def test_duplicate_keys_are_refused(workspace: Path, text: str, line: int):
    write_map(workspace, text)
    key = "use_case" if "use_case" in text else "b"
    assert messages(workspace) == [PLAIN + f"duplicate key {key!r} at line {line}"]


def test_a_duplicate_stage_is_refused(workspace: Path):
    duplicated = VALID_MAP.replace(
        "  training:\n", "  training:\n    tasks: [Train a first throwaway model]\n  training:\n"
    )
    write_map(workspace, duplicated)
    (message,) = messages(workspace)
    assert message.startswith(PLAIN + "duplicate key 'training' at line")


def test_merge_keys_are_plain_yaml(workspace: Path):
    merged = VALID_MAP.replace(
        "lab_review:\n  lab: typical-lab.ipynb\n", "lab_review:\n  <<: {lab: typical-lab.ipynb}\n"
    )
    assert merged != VALID_MAP
    write_map(workspace, merged)
    assert run(workspace).passed


def test_non_utf8_bytes_are_named(workspace: Path):
    HOSTILE_MAP["map_non_utf8"](workspace)
    assert messages(workspace) == [
        "lifecycle_map.yaml: expected UTF-8 text, found an invalid byte at offset 13"
    ]


@pytest.mark.parametrize(
    "text",
    ["[" * 1000 + "]" * 1000, "a:\n" + "".join("  " * i + "b:\n" for i in range(1, 100))],
    ids=["flow", "block"],
)
def test_deep_nesting_is_refused(workspace: Path, text: str):
    write_map(workspace, text)
    assert messages(workspace) == [PLAIN + "more than 32 levels of nesting"]


def test_a_two_megabyte_map_is_refused_before_it_is_read(workspace: Path):
    HOSTILE_MAP["map_too_big"](workspace)
    size = (workspace / MAP).stat().st_size
    assert messages(workspace) == [
        f"lifecycle_map.yaml: lifecycle_map.yaml is {size:,} bytes, over the limit of "
        "1,000,000 bytes"
    ]


@pytest.mark.parametrize("digits", [31, 5000])
def test_huge_integers_are_refused(workspace: Path, digits: int):
    write_map(workspace, VALID_MAP.replace("threshold: 0.25", "threshold: " + "9" * digits))
    assert messages(workspace) == [
        PLAIN + f"an integer of {digits} characters at line 28 (at most 30 digits)"
    ]


def test_a_thirty_digit_threshold_is_a_number(workspace: Path):
    write_map(workspace, VALID_MAP.replace("threshold: 0.25", "threshold: " + "9" * 30))
    assert run(workspace).passed


def test_an_empty_file_is_named(workspace: Path):
    write_map(workspace, "")
    assert messages(workspace) == [
        "lifecycle_map.yaml: (top level): expected a value of type object, found None"
    ]


def test_two_documents_are_refused(workspace: Path):
    write_map(workspace, VALID_MAP + "---\nuse_case: again\n")
    (message,) = messages(workspace)
    assert message.startswith(PLAIN + "expected a single document in the stream")


def test_a_directory_named_like_the_map_is_named(workspace: Path):
    HOSTILE_MAP["map_directory"](workspace)
    assert messages(workspace) == [
        "lifecycle_map.yaml: expected lifecycle_map.yaml to be a regular file, found something else"
    ]


def test_a_missing_map_is_named(workspace: Path):
    (workspace / MAP).unlink()
    assert messages(workspace) == [
        "lifecycle_map.yaml: file lifecycle_map.yaml not found in the workspace"
    ]
