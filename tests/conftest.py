from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from builders import build_workspace


@pytest.fixture(scope="session")
def valid_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_workspace(tmp_path_factory.mktemp("template") / "workspace")


@pytest.fixture
def workspace(valid_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of a valid workspace, for a test to break."""
    return Path(shutil.copytree(valid_template, tmp_path / "workspace", symlinks=True))
