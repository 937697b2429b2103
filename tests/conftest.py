from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from checker import sandbox
from checker.chain import CI_PARAMETERS, NotebookRun, run_chain, stage_notebooks
from tests.helpers.workspace import build_workspace


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `sandbox` need bubblewrap: skip them where it cannot run."""
    marked = [item for item in items if item.get_closest_marker("sandbox")]
    why = sandbox.unavailable() if marked else None
    if why:
        for item in marked:
            item.add_marker(pytest.mark.skip(reason=f"no sandbox here: {why}"))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "sandbox" in r.keywords]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} sandbox tests skipped: bubblewrap cannot run here "
            f"({sandbox.unavailable()}); install it with `{sandbox.INSTALL}` (CI's .ci/run does)"
        )


@pytest.fixture(scope="session")
def valid_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_workspace(tmp_path_factory.mktemp("template") / "workspace")


@pytest.fixture
def workspace(valid_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of a valid foundation workspace (data, runs, map), for a test to break."""
    return Path(shutil.copytree(valid_template, tmp_path / "workspace", symlinks=True))


@dataclass(frozen=True)
class Chain:
    workspace: Path
    executed: Path
    snapshots: Path  # snapshots/<notebook stem>/: the workspace right after that notebook ran
    runs: list[NotebookRun]
    plot_audit: Path  # one JSON line per figure shown (checker.plots, CHECKER_PLOT_AUDIT)

    def before(self, notebook: str) -> Path | None:
        """The workspace as the notebook before `notebook` left it (None for the first)."""
        names = [r.notebook for r in self.runs]
        i = names.index(notebook)
        return self.snapshots / Path(names[i - 1]).stem if i else None


@pytest.fixture(scope="session")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    """The stage solution notebooks executed once, in order, at the CI sample size."""
    root = tmp_path_factory.mktemp("chain")
    workspace, snapshots = root / "workspace", root / "snapshots"

    def snapshot(run: NotebookRun) -> None:
        shutil.copytree(workspace, snapshots / Path(run.notebook).stem, symlinks=True)

    plot_audit = root / "plots.jsonl"
    plot_audit.touch()
    os.environ["CHECKER_PLOT_AUDIT"] = str(plot_audit)  # the kernels inherit it
    runs = run_chain(
        stage_notebooks(),
        workspace,
        root / "executed",
        CI_PARAMETERS,
        after=snapshot,
        log=lambda _: None,
    )
    del os.environ["CHECKER_PLOT_AUDIT"]
    return Chain(workspace, root / "executed", snapshots, runs, plot_audit)


@pytest.fixture
def chain_workspace(chain: Chain, tmp_path: Path) -> Path:
    """A fresh copy of the workspace the stage solutions wrote, for a test to break."""
    failed = [f"{r.notebook}: {r.error}" for r in chain.runs if r.error]
    if failed:
        pytest.fail("the solution chain failed: " + "; ".join(failed))
    return Path(shutil.copytree(chain.workspace, tmp_path / "workspace", symlinks=True))
