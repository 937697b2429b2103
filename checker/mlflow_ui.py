"""`make mlflow-ui`: MLflow's own UI on a workspace's store, lean, quiet and opened where it helps.

    python -m checker.mlflow_ui WORKSPACE [--port 5000]

- The course depends on `mlflow-skinny`, which ships the `mlflow` command but not the UI (no
  flask, no web page). `ui_missing()` asks for the UI's own parts, and only then is the `ui` extra
  (full `mlflow`) installed: `mlflow --version` succeeds without them.
- One uvicorn worker, no job runner (its huey consumers serve GenAI jobs the course never starts),
  telemetry off: two processes, about 0.6 GB in all, instead of fifteen and 3.6 GB.
- It prints, and serves first, the course's experiment (`at-risk-day60`) rather than MLflow's
  empty `Default`, and the registered model's page, where the aliases say which version is the
  champion (the "Latest version" column only means the highest number, often a retired one).

The store is the learner's own `mlflow.db`; the UI may upgrade its schema, which the checker never
does (the checker reads it read-only).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from checker.errors import CheckerError

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "at-risk-day60"  # stage 03 creates it
MODEL = "at-risk-day60"  # stage 05 registers it
# The UI server's environment: nothing leaves the machine, no background job runner.
QUIET = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken or blocked package
        return False


def ui_missing() -> list[str]:
    """What the UI needs and this environment lacks (empty when `mlflow ui` can serve pages)."""
    missing = [name for name in ("flask", "mlflow") if not _importable(name)]
    if "mlflow" not in missing:
        spec = importlib.util.find_spec("mlflow")
        origin = spec.origin if spec is not None else None
        page = Path(origin).parent / "server" / "js" / "build" / "index.html" if origin else None
        if page is None or not page.is_file():
            missing.append("mlflow's web pages (mlflow/server/js/build)")
    return missing


def install_ui() -> None:
    """Install the `ui` extra (full `mlflow`) into this environment."""
    print("MLflow's UI is not installed (mlflow-skinny has no UI): installing the `ui` extra")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[ui]"], check=True
    )


def store(workspace: Path) -> Path:
    """The workspace's `mlflow.db`, or a `CheckerError` saying which stage writes it."""
    db = workspace / "mlflow.db"
    if not db.is_file():
        raise CheckerError(
            f"no MLflow store at {db}: run 03-training.ipynb first (it writes mlflow.db), "
            "or pass WORKSPACE=<your workspace folder>"
        )
    return db


def start_page(db: Path) -> str:
    """The URL fragment of the course's runs (`#/experiments/<id>/runs`), read-only; `#/` when
    the store has none yet."""
    uri = f"{db.resolve().as_uri()}?mode=ro"
    try:
        with sqlite3.connect(uri, uri=True) as con:
            row = con.execute(
                "SELECT experiment_id FROM experiments WHERE name = ?", (EXPERIMENT,)
            ).fetchone()
    except sqlite3.Error:
        row = None
    return f"#/experiments/{row[0]}/runs" if row else "#/"


def command(db: Path, host: str, port: int) -> list[str]:
    """`mlflow ui` on the store with one worker."""
    mlflow = Path(sys.executable).with_name("mlflow")
    return [
        str(mlflow), "ui", "--backend-store-uri", f"sqlite:///{db.resolve()}",
        "--host", host, "--port", str(port), "--workers", "1",
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m checker.mlflow_ui", description=__doc__)
    parser.add_argument("workspace", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    try:
        db = store(args.workspace.resolve())
    except CheckerError as exc:
        print(exc, file=sys.stderr)
        return 2
    if ui_missing():
        install_ui()
    base = f"http://{args.host}:{args.port}/"
    print(f"MLflow UI for {db}")
    print(f"  the course's runs:  {base}{start_page(db)}")
    print(f"  the registry:       {base}#/models/{MODEL} (aliases name the champion)")
    sys.stdout.flush()
    os.environ.update(QUIET)
    cmd = command(db, args.host, args.port)
    os.execv(cmd[0], cmd)  # the UI replaces this process: Ctrl+C stops it directly


if __name__ == "__main__":
    raise SystemExit(main())
