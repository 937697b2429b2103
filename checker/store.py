"""`mlflow.db`, the learner's MLflow tracking store, read with `sqlite3` in read-only mode, and the
`metrics_logged` check.

The checker never imports MLflow: MLflow's SQLAlchemy store creates and migrates tables, and a
learner's file must not change. Here the file is opened with a `file:…?mode=ro` URI, with
`trusted_schema` off, and with a progress handler that aborts runaway queries (a recursive view
named like an MLflow table, say). Tables must be real tables, not views.
"""

from __future__ import annotations

import datetime as dt
import math
import sqlite3
import stat
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from checker.errors import Invalid
from checker.manifest import manifest_version
from checker.registry import Problems, check
from checker.workspace import MAX_DATA_BYTES, Workspace

STORE = "mlflow.db"
STAGE = "03-training.ipynb (cell 'Your turn: log one epoch')"
SQLITE_HEADER = b"SQLite format 3\x00"
JOURNAL_MAGIC = bytes.fromhex("d9d505f920a163d7")  # a rollback journal that is still live
QUERY_SECONDS = 2.0
# Alembic heads of the MLflow releases this checker was tested on; tests/test_store.py fails when
# the installed MLflow writes a newer one, so this set is kept current.
KNOWN_REVISIONS = {"dc11669786a5"}
TRACKING_TABLES = ("experiments", "runs", "params", "metrics", "tags")


class Store:
    """A read-only connection to an MLflow sqlite store."""

    def __init__(self, connection: sqlite3.Connection, rel: str):
        self._db = connection
        self.rel = rel
        self._deadline = 0.0
        self._tables: set[str] | None = None
        connection.set_progress_handler(self._abort_if_late, 10_000)

    def _abort_if_late(self) -> int:
        return 1 if time.monotonic() > self._deadline else 0

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        self._deadline = time.monotonic() + QUERY_SECONDS
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "interrupted" in str(exc):
                raise Invalid(
                    f"{self.rel}: a query ran longer than {QUERY_SECONDS:.0f} s and was stopped "
                    "(a recursive view or trigger?)"
                ) from None
            raise Invalid(f"{self.rel}: expected an MLflow tracking store, found: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise Invalid(
                f"{self.rel}: expected a readable sqlite database, found: {exc}"
            ) from None

    def tables(self) -> set[str]:
        if self._tables is None:
            rows = self.query("SELECT name FROM sqlite_master WHERE type = 'table'")
            self._tables = {row[0] for row in rows}
        return self._tables

    def revision(self) -> str | None:
        if "alembic_version" not in self.tables():
            return None
        rows = self.query("SELECT version_num FROM alembic_version")
        return str(rows[0][0]) if rows else None

    def require(self, names: tuple[str, ...]) -> None:
        """Raise `Invalid` unless every name is a real table (not a view), naming the revision."""
        tables = self.tables()
        missing = [n for n in names if n not in tables]
        if missing:
            revision = self.revision()
            if revision is None:
                known = " (and no alembic_version table: not an MLflow store)"
            elif revision in KNOWN_REVISIONS:
                known = ""
            else:
                known = f" (schema revision {revision!r}, not one this checker knows)"
            raise Invalid(
                f"{self.rel}: expected MLflow tables {', '.join(names)}, found no table "
                f"{', '.join(missing)}{known}"
            )


def _head(path: Path, suffix: str) -> bytes:
    """The first bytes of the file `<path><suffix>` beside the store; b"" when there is no such
    regular file (a symlink is not followed)."""
    side = path.with_name(path.name + suffix)
    try:
        if not stat.S_ISREG(side.lstat().st_mode):
            return b""
        with side.open("rb") as handle:
            return handle.read(len(JOURNAL_MAGIC))
    except OSError:
        return b""


def _unsaved(rel: str, suffix: str) -> str:
    return (
        f"{rel}: expected every change saved into {rel}, found unsaved changes in {rel}{suffix} "
        "(close the program that writes to the store, then check again)"
    )


@contextmanager
def open_store(ws: Workspace, rel: str = STORE) -> Iterator[Store]:
    """The workspace's store, opened read-only once per grading (the checks that read it share
    one connection, closed with the Workspace); raise `Invalid` saying why it cannot be read."""
    store = ws.memo(("store", rel), lambda: _connect(ws, rel))
    try:
        yield store
    except sqlite3.DatabaseError as exc:
        raise Invalid(f"{rel}: expected a readable sqlite database, found: {exc}") from None


def _connect(ws: Workspace, rel: str) -> Store:
    path = ws.resolve(rel, what=rel, max_bytes=MAX_DATA_BYTES)
    with path.open("rb") as handle:
        header = handle.read(100)
    if header[: len(SQLITE_HEADER)] != SQLITE_HEADER:
        raise Invalid(
            f"{rel}: expected an sqlite database (an MLflow store), found another kind of file"
        )
    # A read-only reader of a WAL-mode file creates `-wal` and `-shm` files beside it; opened as
    # immutable it creates nothing. A pending write-ahead log would then be ignored, so refuse it,
    # as a hot rollback journal (a write cut short), which only a writer may roll back.
    wal = header[18:20] == b"\x02\x02"
    if wal and _head(path, "-wal"):
        raise Invalid(_unsaved(rel, "-wal"))
    if _head(path, "-journal") == JOURNAL_MAGIC:
        raise Invalid(_unsaved(rel, "-journal"))
    uri = f"file:{quote(str(path))}?mode=ro" + ("&immutable=1" if wal else "")
    try:
        connection = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise Invalid(f"{rel}: cannot open read-only: {exc}") from None
    try:
        connection.execute("PRAGMA trusted_schema = OFF")
        connection.execute("PRAGMA query_only = ON")
    except sqlite3.DatabaseError as exc:
        connection.close()
        raise Invalid(f"{rel}: expected a readable sqlite database, found: {exc}") from None
    ws.on_close(connection.close)
    return Store(connection, rel)


REGISTRY_TABLES = (
    "registered_models",
    "model_versions",
    "model_version_tags",
    "registered_model_aliases",
)
DELETED = "deleted_internal"  # MLflow keeps a deleted version's row with this current_stage


@dataclass
class Version:
    """A registered model version as the registry's tables hold it."""

    number: int
    stage: str
    status: str
    run_id: str | None
    source: str | None
    created: dt.date | None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)

    @property
    def deleted(self) -> bool:
        return self.stage.lower() == DELETED

    @property
    def retired(self) -> bool:
        return self.tags.get("lifecycle_state") == "retired"


def _utc_date(millis: object) -> dt.date | None:
    if not isinstance(millis, int) or isinstance(millis, bool):
        return None
    try:
        return dt.datetime.fromtimestamp(millis / 1000, tz=dt.UTC).date()
    except (OverflowError, OSError, ValueError):
        return None


def read_registry(ws: Workspace, name: str) -> tuple[dict[int, Version], dict[str, int]] | None:
    """The versions of the registered model `name` (with their tags and aliases) and its alias
    map, read from the registry's tables once per grading; None when `name` is not registered.
    The one reader of the model registry (stages 05 and 07)."""
    return ws.memo(("registry", name), lambda: _read_registry(ws, name))


def _read_registry(ws: Workspace, name: str) -> tuple[dict[int, Version], dict[str, int]] | None:
    with open_store(ws) as store:
        store.require(REGISTRY_TABLES)
        if not store.query("SELECT name FROM registered_models WHERE name = ?", (name,)):
            return None
        versions = {}
        for number, stage, status, run_id, source, created in store.query(
            "SELECT version, current_stage, status, run_id, source, creation_time "
            "FROM model_versions WHERE name = ?",
            (name,),
        ):
            if isinstance(number, int):
                versions[number] = Version(
                    number, str(stage or ""), str(status or ""), run_id, source, _utc_date(created)
                )
        for key, value, number in store.query(
            "SELECT key, value, version FROM model_version_tags WHERE name = ?", (name,)
        ):
            if number in versions and isinstance(key, str):
                versions[number].tags[key] = str(value)
        aliases = {}
        for alias, number in store.query(
            "SELECT alias, version FROM registered_model_aliases WHERE name = ?", (name,)
        ):
            aliases[str(alias)] = number
            if number in versions:
                versions[number].aliases.append(str(alias))
    return versions, aliases


def finite_metric(value: object, is_nan: object) -> bool:
    """MLflow stores NaN as `is_nan = 1` and +-inf as +-sys.float_info.max."""
    if is_nan or isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and abs(value) < sys.float_info.max


@check("metrics_logged", stage=STAGE)
def metrics_logged(ws: Workspace) -> Problems:
    """Two or more finished runs in one experiment, each tagged with the data version, with params
    and `val_*` metrics; one run logged per epoch; every value finite."""
    with open_store(ws) as store:
        store.require(TRACKING_TABLES)
        runs = store.query(
            "SELECT r.run_uuid, r.experiment_id, r.name FROM runs r "
            "JOIN experiments e ON e.experiment_id = r.experiment_id "
            "WHERE r.status = 'FINISHED' AND r.lifecycle_stage = 'active' "
            "AND e.lifecycle_stage = 'active'"
        )
        by_experiment: dict[object, list[tuple]] = {}
        for run in runs:
            by_experiment.setdefault(run[1], []).append(run)
        chosen = max(by_experiment.values(), key=len, default=[])
        if len(chosen) < 2:
            yield (
                f"{STORE}: runs: expected an experiment with at least 2 FINISHED runs, "
                f"found {len(chosen)} (runs that crashed or are still RUNNING do not count)"
            )
            return
        ids = tuple(run[0] for run in chosen)
        marks = ",".join("?" * len(ids))
        tags = dict(
            store.query(
                f"SELECT run_uuid, value FROM tags WHERE key = 'data_version' AND run_uuid IN ({marks})",
                ids,
            )
        )
        params = {
            row[0]
            for row in store.query(
                f"SELECT DISTINCT run_uuid FROM params WHERE run_uuid IN ({marks})", ids
            )
        }
        metrics = store.query(
            f"SELECT run_uuid, key, step, value, is_nan FROM metrics WHERE run_uuid IN ({marks})",
            ids,
        )
        version = manifest_version(ws)
        val_runs: set = set()
        steps: dict = {}
        bad: list = []
        for run_uuid, key, step, value, is_nan in metrics:
            if key.startswith("val_"):
                val_runs.add(run_uuid)
            steps.setdefault((run_uuid, key), set()).add(step)
            if not finite_metric(value, is_nan):
                bad.append((run_uuid, key))
        for run_uuid, _, name in chosen:
            label = f"run {name or run_uuid} ({run_uuid[:8]})"
            tag = tags.get(run_uuid)
            if tag is None:
                yield f"{STORE}: {label}: tag data_version: expected the manifest's version, found no tag"
            elif version is None:
                yield f"{STORE}: {label}: tag data_version: expected to match data/manifest.json's version, found no readable manifest"
            elif tag != version:
                yield f"{STORE}: {label}: tag data_version: expected {version} (data/manifest.json), found {tag}"
            if run_uuid not in params:
                yield f"{STORE}: {label}: params: expected at least one logged param, found none"
            if run_uuid not in val_runs:
                yield f"{STORE}: {label}: metrics: expected at least one metric named val_*, found none"
        if not any(len(s) >= 3 for s in steps.values()):
            longest = max((len(s) for s in steps.values()), default=0)
            yield (
                f"{STORE}: metrics: expected a run with a metric history of 3 or more steps "
                f"(log once per epoch with step=epoch), found at most {longest}"
            )
        for run_uuid, key in bad[:3]:
            yield f"{STORE}: run {run_uuid[:8]}: metric {key}: expected finite values, found NaN or infinity"
