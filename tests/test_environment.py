"""environment.yml (conda users) and pyproject.toml (pip users) list the same dependencies."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _normal(requirement: str) -> tuple[str, str]:
    """Split `name>=1,<2` into a normalised name and its version specifier."""
    match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*$", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(1)).lower(), match.group(2).replace(" ", "")


def _pyproject() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return dict(_normal(r) for r in project["dependencies"])


def _conda() -> tuple[dict[str, str], str]:
    text = (ROOT / "environment.yml").read_text(encoding="utf-8")
    deps = yaml.safe_load(text)["dependencies"]
    pins = dict(_normal(d) for d in deps if isinstance(d, str))
    return pins, text


def test_environment_and_pyproject_list_the_same_dependencies():
    conda, _ = _conda()
    python = conda.pop("python")
    conda.pop("pip")
    assert conda == _pyproject()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert python == project["requires-python"]


def test_every_conda_dependency_says_which_stage_needs_it():
    _, text = _conda()
    for name in _pyproject():
        line = next(ln for ln in text.splitlines() if re.match(rf"\s*-\s*{re.escape(name)}\b", ln))
        assert "#" in line and len(line.split("#", 1)[1].strip()) > 10, line


def test_the_checker_does_not_depend_on_full_mlflow():
    """mlflow-skinny is the runtime dependency; full mlflow is only the `ui` extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = {_normal(r)[0] for r in project["dependencies"]}
    assert "mlflow-skinny" in names and "mlflow" not in names
    assert {_normal(r)[0] for r in project["optional-dependencies"]["ui"]} == {"mlflow"}


def test_the_dask_extra_is_distributed_alone_and_make_test_installs_it():
    """`checker grade --scheduler` needs dask.distributed, an optional extra; CI runs its tests."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert {_normal(r)[0] for r in project["optional-dependencies"]["dask"]} == {"distributed"}
    install = next(
        ln
        for ln in (ROOT / "Makefile").read_text().splitlines()
        if "pip install" in ln and "-e" in ln
    )
    assert "dask" in install and "dev" in install, install
    _, text = _conda()
    assert "distributed" in text  # named for conda users, as the optional extra it is
