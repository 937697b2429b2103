"""`checker.diagram.render_map`: the lifecycle map drawn as a cycle (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest
import yaml
from matplotlib.figure import Figure

from checker.diagram import TITLES, render_map
from checker.errors import CheckerError
from checker.lifecycle_map import STAGES
from tests.helpers.workspace import VALID_MAP

matplotlib.use("Agg")
PNG = b"\x89PNG\r\n\x1a\n"


def texts(fig: Figure) -> str:
    return "\n".join(t.get_text() for ax in fig.axes for t in ax.texts + [ax.title])


def test_the_valid_map_renders_to_png(tmp_path: Path):
    path = tmp_path / "lifecycle_map.yaml"
    path.write_text(VALID_MAP, encoding="utf-8")
    fig = render_map(path)
    assert isinstance(fig, Figure)
    fig.savefig(tmp_path / "map.png", dpi=50)
    assert (tmp_path / "map.png").read_bytes().startswith(PNG)
    drawn = texts(fig)
    for stage in STAGES:
        assert TITLES[stage] in drawn
    assert "Flag learners at risk" in drawn


def test_a_dict_renders_the_same_tasks(tmp_path: Path):
    document = yaml.safe_load(VALID_MAP)
    drawn = " ".join(texts(render_map(document)).split())
    for stage in STAGES:
        for task in document["stages"][stage]["tasks"]:
            assert " ".join(task.split()) in drawn


def test_failure_modes_are_marked_on_their_stage():
    fig = render_map(yaml.safe_load(VALID_MAP))
    boxes = {t.get_text().split("\n")[0]: t for t in fig.axes[0].texts}
    monitoring = boxes[TITLES["monitoring"]]
    assert "FAILURE MODE: psi_code_module > 0.25" in monitoring.get_text()
    assert (
        monitoring.get_bbox_patch().get_edgecolor()
        != boxes[TITLES["training"]].get_bbox_patch().get_edgecolor()
    )
    assert "FAILURE MODE" not in boxes[TITLES["training"]].get_text()


def test_a_map_of_exercise_08_alone_renders():
    document = yaml.safe_load(VALID_MAP)
    del document["failure_modes"], document["lab_review"]
    drawn = texts(render_map(document))
    assert "FAILURE MODE" not in drawn and "Lab review" not in drawn


def test_a_missing_stage_raises_a_clear_error():
    document = yaml.safe_load(VALID_MAP)
    del document["stages"]["training"]
    with pytest.raises(CheckerError) as caught:
        render_map(document)
    assert str(caught.value) == (
        "cannot draw the map: lifecycle_map.yaml: stages.training: expected this field, "
        "found it missing"
    )


def test_a_missing_use_case_raises_a_clear_error():
    document = yaml.safe_load(VALID_MAP)
    del document["use_case"]
    with pytest.raises(CheckerError, match="use_case: expected this field, found it missing"):
        render_map(document)


def test_a_missing_file_says_what_to_do(tmp_path: Path):
    with pytest.raises(CheckerError, match="write lifecycle_map.yaml first"):
        render_map(tmp_path / "lifecycle_map.yaml")


def test_unsafe_yaml_is_refused_not_run(tmp_path: Path):
    path = tmp_path / "lifecycle_map.yaml"
    marker = tmp_path / "ran"
    path.write_text(f"use_case: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(CheckerError, match="could not determine a constructor"):
        render_map(path)
    assert not marker.exists()


def test_rendering_leaves_pyplot_alone():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    render_map(yaml.safe_load(VALID_MAP))
    assert plt.get_fignums() == before
