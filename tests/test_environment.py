"""environment.yml (conda users) and pyproject.toml (pip users) list the same dependencies."""

from __future__ import annotations

import re
import subprocess
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


# --- the lock ------------------------------------------------------------------------------------

LOCK = ROOT / "requirements.lock"


def _locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (pinned version, hashes), for the lines that apply to Linux with Python 3.11."""
    from packaging.markers import Marker

    env = {"python_version": "3.11", "python_full_version": "3.11.7", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
           "implementation_name": "cpython", "platform_python_implementation": "CPython"}  # fmt: skip
    pins: dict[str, tuple[str, list[str]]] = {}
    text = LOCK.read_text(encoding="utf-8").replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):  # uv's `# via` notes
            continue
        spec = line.partition(" --hash=")[0]
        requirement, _, marker = spec.partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate(env):
            continue
        name, _, version = requirement.strip().partition("==")
        hashes = re.findall(r"sha256:[0-9a-f]{64}", line)
        pins[_normal(name)[0]] = (version.strip(), hashes)
    return pins


def test_the_lock_pins_every_dependency_and_extra_with_hashes():
    """requirements.lock covers pyproject.toml: run `make lock` after changing either."""
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted += extra
    locked = _locked()
    for text in wanted:
        requirement = Requirement(text)
        name = _normal(requirement.name)[0]
        assert name in locked, f"{name} is not in requirements.lock: run `make lock`"
        version, hashes = locked[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements.lock pins {name}=={version}, outside {requirement.specifier}: run `make lock`"
        )
    assert all(hashes for _, hashes in locked.values()), "every pin carries its sha256 hashes"


def test_the_bootstrap_installs_the_lock_by_default():
    plan = subprocess.run(
        ["make", "-n", "-B", ".venv/.installed"], cwd=ROOT, capture_output=True, text=True,
        check=True,
    ).stdout  # fmt: skip
    assert "pip install --quiet --require-hashes -r requirements.lock" in plan
    assert "pip install --quiet --no-deps -e ." in plan
    lock = subprocess.run(
        ["make", "-n", "lock"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "uv pip compile pyproject.toml --all-extras --universal" in lock
    assert "--generate-hashes" in lock


def test_nbgrader_has_the_path_traversal_fix():
    """nbgrader 0.9.6 fixes a path traversal in the exchange (jupyter/nbgrader#1978)."""
    assert _pyproject()["nbgrader"] == ">=0.9.6"


def test_a_workflow_tests_the_newest_versions_on_a_schedule():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "newest.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads `on` as True
    assert triggers["schedule"][0]["cron"]
    steps = [s.get("run", "") for job in workflow["jobs"].values() for s in job["steps"]]
    assert any(s.startswith("LOCK= ") and ".ci/run" in s for s in steps)


def test_the_code_is_mit_licensed_beside_the_datas_cc_by():
    license_text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert license_text.startswith("MIT License") and "CC-BY 4.0" in license_text
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "MIT"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "[MIT](LICENSE)" in readme and "CC-BY 4.0" in readme


def test_the_dask_extra_is_distributed_alone_and_make_test_installs_it():
    """`checker grade --scheduler` needs dask.distributed, an optional extra; CI runs its tests."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert {_normal(r)[0] for r in project["optional-dependencies"]["dask"]} == {"distributed"}
    assert "distributed" in _locked(), "the lock the bootstrap installs holds the dask extra"
    unlocked = next(
        ln
        for ln in (ROOT / "Makefile").read_text().splitlines()
        if "pip install" in ln and "-e '." in ln
    )
    assert "dask" in unlocked and "dev" in unlocked, unlocked
    _, text = _conda()
    assert "distributed" in text  # named for conda users, as the optional extra it is
