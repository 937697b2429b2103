"""The per-exercise checks on lifecycle_map.yaml: `stages_mapped` (08) and
`failure_mode_sketched` (09), which grade one section each so that the exercises are graded
independently, and the pure functions they share with `lifecycle_map`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

import checker
from checker.lifecycle_map import section_problems
from tests.helpers.untrusted import HOSTILE_MAP, failed, write_map
from tests.helpers.workspace import VALID_MAP

STAGES_HINT = "revisit 08-exercise-lifecycle-map.ipynb (cells 'Your turn 1' and 'Your turn 2')"
FAILURE_HINT = "revisit 09-exercise-failure-mode.ipynb (cell 'Your turn 1: one failure mode')"


def run(name: str, ws: Path) -> checker.CheckResult:
    return checker.check(name, ws)[name]


def messages(name: str, ws: Path) -> list[str]:
    result = failed(name, ws)
    assert (
        result.hint == {"stages_mapped": STAGES_HINT, "failure_mode_sketched": FAILURE_HINT}[name]
    )
    return result.messages


def write(ws: Path, change: Callable[[dict], None]) -> None:
    document = yaml.safe_load(VALID_MAP)
    change(document)
    write_map(ws, yaml.safe_dump(document, sort_keys=False, allow_unicode=True))


def keep(*sections: str) -> Callable[[dict], None]:
    def apply(d: dict) -> None:
        for key in list(d):
            if key not in sections:
                del d[key]

    return apply


def test_the_sections_schema_is_the_map_schema_without_required_sections():
    # Read from the files: a compiled validator may have rewritten the cached dicts' $refs.
    folder = Path(checker.__file__).parent / "schemas"
    full, sections = (
        json.loads((folder / f"{name}.schema.json").read_text(encoding="utf-8"))
        for name in ("lifecycle_map", "lifecycle_map_sections")
    )
    assert full["required"] == ["use_case", "stages", "failure_modes", "lab_review"]
    assert "required" not in sections
    assert {k: v for k, v in full.items() if k not in ("required", "$id", "title")} == {
        k: v for k, v in sections.items() if k not in ("$id", "title")
    }


@pytest.mark.parametrize("name", ["stages_mapped", "failure_mode_sketched", "lifecycle_map"])
def test_the_full_valid_map_passes_every_map_check(workspace: Path, name: str):
    assert run(name, workspace).passed


# --- stages_mapped (exercise 08) -------------------------------------------------------------------


def test_a_map_after_exercise_08_alone_passes_stages_mapped(workspace: Path):
    write(workspace, keep("use_case", "stages"))
    assert run("stages_mapped", workspace).passed
    assert not run("lifecycle_map", workspace).passed


def test_stages_mapped_ignores_a_broken_later_section(workspace: Path):
    write(workspace, lambda d: d.update(failure_modes=[], lab_review="later"))
    assert run("stages_mapped", workspace).passed


def test_no_map_fails_stages_mapped(workspace: Path):
    (workspace / "lifecycle_map.yaml").unlink()
    assert messages("stages_mapped", workspace) == [
        "lifecycle_map.yaml: file lifecycle_map.yaml not found in the workspace"
    ]


def test_missing_sections_are_named(workspace: Path):
    write(workspace, keep("failure_modes"))
    assert messages("stages_mapped", workspace) == [
        "lifecycle_map.yaml: use_case: expected this field, found it missing",
        "lifecycle_map.yaml: stages: expected this field, found it missing",
    ]


def test_a_placeholder_use_case_is_named(workspace: Path):
    write(workspace, lambda d: d.update(use_case="TODO: pick one"))
    expected = (
        "lifecycle_map.yaml: use_case: expected a use case of your own, found 'TODO: pick one', "
        "a placeholder (TODO, TBD, '...' or <...>)"
    )
    assert messages("stages_mapped", workspace) == [expected]
    assert run("lifecycle_map", workspace).messages == [expected]


def test_a_missing_stage_is_named_by_stages_mapped(workspace: Path):
    write(workspace, lambda d: d["stages"].pop("monitoring"))
    assert messages("stages_mapped", workspace) == [
        "lifecycle_map.yaml: stages.monitoring: expected this field, found it missing"
    ]


def test_a_placeholder_task_is_named_by_stages_mapped(workspace: Path):
    write(workspace, lambda d: d["stages"]["retirement"].update(tasks=["<your task>"]))
    assert messages("stages_mapped", workspace) == [
        "lifecycle_map.yaml: stages.retirement.tasks[0]: expected a concrete task, found "
        "'<your task>', a placeholder (TODO, TBD, '...' or <...>)"
    ]


def test_stages_out_of_order_fail_stages_mapped(workspace: Path):
    def reverse(d: dict) -> None:
        d["stages"] = dict(reversed(d["stages"].items()))

    write(workspace, reverse)
    (message,) = messages("stages_mapped", workspace)
    assert message.startswith("lifecycle_map.yaml: stages: expected the seven stages in lifecycle")


def test_a_task_as_a_number_is_named(workspace: Path):
    write(workspace, lambda d: d["stages"]["training"].update(tasks=[42]))
    assert messages("stages_mapped", workspace) == [
        "lifecycle_map.yaml: stages.training.tasks[0]: expected a value of type string, found 42"
    ]


# --- failure_mode_sketched (exercise 09) -----------------------------------------------------------


def test_a_map_with_only_failure_modes_passes_failure_mode_sketched(workspace: Path):
    write(workspace, keep("failure_modes"))
    assert run("failure_mode_sketched", workspace).passed
    assert not run("stages_mapped", workspace).passed


def test_no_failure_modes_are_named(workspace: Path):
    write(workspace, keep("use_case", "stages"))
    assert messages("failure_mode_sketched", workspace) == [
        "lifecycle_map.yaml: failure_modes: expected this field, found it missing"
    ]


def test_an_empty_failure_mode_list_is_named(workspace: Path):
    write(workspace, lambda d: d.update(failure_modes=[]))
    assert messages("failure_mode_sketched", workspace) == [
        "lifecycle_map.yaml: failure_modes: expected minItems 1, found []"
    ]


def test_a_failure_mode_without_action_is_named(workspace: Path):
    write(workspace, lambda d: d["failure_modes"][0].pop("action"))
    assert messages("failure_mode_sketched", workspace) == [
        "lifecycle_map.yaml: failure_modes[0].action: expected this field, found it missing"
    ]


def test_a_text_threshold_is_named(workspace: Path):
    write(workspace, lambda d: d["failure_modes"][0]["signal"].update(threshold="high"))
    assert messages("failure_mode_sketched", workspace) == [
        "lifecycle_map.yaml: failure_modes[0].signal.threshold: expected a value of type number, "
        "found 'high'"
    ]


def test_an_infinite_threshold_is_named(workspace: Path):
    write_map(workspace, VALID_MAP.replace("threshold: 0.25", "threshold: .inf"))
    assert messages("failure_mode_sketched", workspace) == [
        "lifecycle_map.yaml: failure_modes[0].signal.threshold: expected a finite number, found inf"
    ]


def test_a_one_word_failure_is_named(workspace: Path):
    write(workspace, lambda d: d["failure_modes"][0].update(failure="Drift"))
    assert messages("failure_mode_sketched", workspace) == [
        "lifecycle_map.yaml: failure_modes[0].failure: expected a sentence, found 'Drift'"
    ]


def test_a_failure_mode_for_an_unknown_stage_is_named(workspace: Path):
    write(workspace, lambda d: d["failure_modes"][0].update(stage="launch"))
    (message,) = messages("failure_mode_sketched", workspace)
    assert message.startswith("lifecycle_map.yaml: failure_modes[0].stage: expected one of ")


# --- hostile and shared -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["stages_mapped", "failure_mode_sketched"])
@pytest.mark.parametrize("case", ["map_python_tag", "map_alias_bomb", "map_directory"])
def test_hostile_maps_fail_the_section_checks(workspace: Path, name: str, case: str):
    HOSTILE_MAP[case](workspace)
    (message,) = messages(name, workspace)
    assert message.startswith("lifecycle_map.yaml: ")
    assert not (workspace.parent / "hacked").exists()


def test_a_map_that_is_not_a_mapping_is_named():
    assert section_problems(["use_case"], ["use_case"]) == [
        "lifecycle_map.yaml: (top level): expected a value of type object, found ['use_case']"
    ]
