"""`python -m checker check`, run as a subprocess: exit codes, the `--json` shape, `--only`, and
no traceback for any hostile workspace.

Every command of this module runs once, in parallel, in a module fixture; each test then reads
the outcome of its command.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from checker.__main__ import main
from tests.helpers.untrusted import (
    FOUNDATION,
    HOSTILE_MANIFEST,
    HOSTILE_MAP,
    HOSTILE_STORE,
    edit_manifest,
)

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = list(
    zip(HOSTILE_MANIFEST.items(), HOSTILE_STORE.items(), HOSTILE_MAP.items(), strict=True)
)


def one_more_row(ws: Path) -> None:
    edit_manifest(ws, lambda m: m["splits"]["train"].update(rows=m["splits"]["train"]["rows"] + 1))


def into_a_file(ws: Path) -> None:
    shutil.rmtree(ws)
    ws.write_text("not a folder\n", encoding="utf-8")


def away(ws: Path) -> None:
    shutil.rmtree(ws)


def nothing(ws: Path) -> None:
    pass


def breaking(*cases: Callable[[Path], None]) -> Callable[[Path], None]:
    def apply(ws: Path) -> None:
        for case in cases:
            case(ws)

    return apply


ONLY = ["--only", *FOUNDATION]
HOSTILE_NAMES = [f"{m}+{s}+{y}" for (m, _), (s, _), (y, _) in HOSTILE]
# id -> (how to change a copy of the valid workspace, arguments after `check WORKSPACE`).
# `import checker` costs seconds of CPU, so the subprocesses are few; the hostile cases all run
# through `main()` in this process as well (an escaping exception would fail the test just alike).
COMMANDS: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    "valid": (nothing, ["--json", *ONLY]),
    "violation": (one_more_row, ["--json", *ONLY]),
    "only-one": (one_more_row, ["--only", "lifecycle_map"]),
    "only-unknown": (nothing, ["--only", "nope"]),
    "a-file": (into_a_file, ["--json"]),
    "missing": (away, ["--json"]),
    "hostile": (
        breaking(
            HOSTILE_MANIFEST["split_fifo"],
            HOSTILE_STORE["store_recursive_view"],
            HOSTILE_MAP["map_python_tag"],
        ),
        ["--json", *ONLY],
    ),
}


def command(ws: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "checker", "check", str(ws), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def cli(
    valid_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, subprocess.CompletedProcess[str]]]:
    """Each command's workspace and finished process."""
    prepared = {}
    for name, (change, args) in COMMANDS.items():
        ws = tmp_path_factory.mktemp("cli") / "workspace"
        shutil.copytree(valid_template, ws, symlinks=True)
        change(ws)
        prepared[name] = (ws, args)
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(command, ws, args) for name, (ws, args) in prepared.items()}
        return {name: (prepared[name][0], futures[name].result()) for name in COMMANDS}


def outcome(cli: dict, name: str) -> subprocess.CompletedProcess[str]:
    process = cli[name][1]
    assert "Traceback" not in process.stdout + process.stderr, process.stderr
    return process


def test_a_valid_workspace_exits_0_with_the_documented_json(cli: dict):
    process = outcome(cli, "valid")
    assert (process.returncode, process.stderr) == (0, "")
    report = json.loads(process.stdout)
    assert list(report) == ["workspace", "score", "max_score", "checks"]
    assert (report["workspace"], report["score"], report["max_score"]) == (
        str(cli["valid"][0]),
        30,
        30,
    )
    assert [c["name"] for c in report["checks"]] == FOUNDATION
    for check in report["checks"]:
        assert list(check) == ["name", "passed", "points", "max_points", "messages", "hint"]
        assert (check["passed"], check["messages"], check["hint"]) == (True, [], "")


def test_a_violation_exits_1_with_the_message_in_json(cli: dict):
    process = outcome(cli, "violation")
    assert (process.returncode, process.stderr) == (1, "")
    report = json.loads(process.stdout)
    assert report["score"] == 20
    (manifest,) = [c for c in report["checks"] if c["name"] == "data_versioned"]
    (message,) = manifest["messages"]
    assert message.startswith("data/manifest.json: splits.train.rows: expected 9482 (rows in")
    assert (
        manifest["hint"]
        == "revisit 02-data-preparation.ipynb (cells 'Your turn 1', 'Your turn 2' and 'Your turn 3')"
    )


def test_only_runs_the_named_check_and_prints_a_table(cli: dict):
    process = outcome(cli, "only-one")
    assert (process.returncode, process.stderr) == (0, "")  # the broken manifest is not looked at
    lines = process.stdout.splitlines()
    assert lines[0].split() == ["check", "result", "points"]
    assert [line.split()[0] for line in lines[2:]] == ["lifecycle_map", "total"]
    assert lines[-1].split() == ["total", "10/10"]


def test_only_rejects_an_unknown_name_with_exit_2(cli: dict):
    process = outcome(cli, "only-unknown")
    assert (process.returncode, process.stdout) == (2, "")
    assert "argument --only: invalid choice: 'nope'" in process.stderr


@pytest.mark.parametrize(
    ("name", "what"), [("a-file", "is not a folder"), ("missing", "does not exist")]
)
def test_a_workspace_that_is_not_a_folder_exits_2(cli: dict, name: str, what: str):
    process = outcome(cli, name)
    assert (process.returncode, process.stdout) == (2, "")
    assert process.stderr == (
        f"python -m checker: error: workspace {str(cli[name][0])!r} {what}: pass the folder your "
        "notebooks write to (the WORKSPACE parameter at the top of each notebook)\n"
    )


def test_a_hostile_workspace_exits_1_without_a_traceback(cli: dict):
    process = outcome(cli, "hostile")
    assert (process.returncode, process.stderr) == (1, "")
    assert_failed_cleanly(json.loads(process.stdout))
    assert not (cli["hostile"][0].parent / "hacked").exists()


def assert_failed_cleanly(report: dict) -> None:
    assert [(c["name"], c["passed"]) for c in report["checks"]] == [
        (check, False) for check in FOUNDATION
    ]
    for check in report["checks"]:
        assert check["messages"], check
        assert not any(m.startswith("could not check") for m in check["messages"]), check


@pytest.mark.parametrize("group", HOSTILE, ids=HOSTILE_NAMES)
def test_every_hostile_workspace_fails_cleanly_through_main(
    workspace: Path, capfd: pytest.CaptureFixture[str], group: tuple
):
    for _, breaks in group:
        breaks(workspace)
    code = main(["check", str(workspace), "--json", *ONLY])
    out, err = capfd.readouterr()
    assert (code, err) == (1, "")
    assert_failed_cleanly(json.loads(out))
    assert not (workspace.parent / "hacked").exists()  # the Python YAML tag never ran


def test_an_empty_workspace_fails_through_main(tmp_path: Path, capfd: pytest.CaptureFixture[str]):
    assert main(["check", str(tmp_path), "--json", *ONLY]) == 1
    out, err = capfd.readouterr()
    assert err == ""
    assert [len(c["messages"]) for c in json.loads(out)["checks"]] == [1, 1, 1]
