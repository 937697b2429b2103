"""Helpers for breaking a valid foundation workspace, and the hostile cases the tests share.

Each function in `HOSTILE_MANIFEST`, `HOSTILE_STORE` and `HOSTILE_MAP` breaks one artifact of a
copy of the valid workspace the way a careless or malicious learner might: files that hang a naive
reader (FIFOs), escape the workspace (symlinks, `..`), exhaust memory (alias bombs, deep nesting)
or run code (Python YAML tags). The module tests check each message; `tests/test_cli.py` runs the
command line on all of them and checks that nothing crashes.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import sqlite3
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import checker

MANIFEST = "data/manifest.json"
MAP = "lifecycle_map.yaml"
STORE = "mlflow.db"
FOUNDATION = ["data_versioned", "metrics_logged", "lifecycle_map"]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def snapshot(ws: Path) -> dict[str, str]:
    """Every entry under `ws` (not following symlinks): the sha256 of a file's bytes, or its kind."""
    entries = {}
    for folder, dirs, files in os.walk(ws):
        for name in dirs + files:
            path = Path(folder) / name
            info = path.lstat()
            rel = str(path.relative_to(ws))
            if stat.S_ISLNK(info.st_mode):
                entries[rel] = f"symlink to {os.readlink(path)}"
            elif stat.S_ISREG(info.st_mode):
                entries[rel] = sha256_bytes(path.read_bytes())
            else:
                entries[rel] = "directory" if stat.S_ISDIR(info.st_mode) else "special file"
    return entries


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail with TimeoutError instead of hanging (a blocked `open()` of a FIFO is interrupted)."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --- data/manifest.json ---------------------------------------------------------------------------


def failed(name: str, ws: Path, seconds: float = 30) -> checker.CheckResult:
    """Run the check `name` on `ws` and assert that it failed as every check must: within
    `seconds`, with 0 points, at least one message, the hint naming its notebook, and the
    workspace unchanged. The one home of "run the check and assert it failed"."""
    before = snapshot(ws)
    with deadline(seconds):
        result = checker.check(name, ws)[name]
    assert snapshot(ws) == before, f"{name} changed the workspace"
    assert not result.passed and result.points == 0 and result.messages, result
    assert result.hint == f"revisit {checker.CHECKS[name].stage}", result.hint
    return result


def fails_with(name: str, ws: Path, *fragments: str, seconds: float = 30) -> str:
    """Run the check `name`, assert it failed (`failed`) with one message holding every
    fragment, and return that message."""
    found = failed(name, ws, seconds).messages
    matching = [m for m in found if all(f in m for f in fragments)]
    assert matching, f"no message with {fragments} in:\n" + "\n".join(found)
    return matching[0]


def load_manifest(ws: Path) -> dict:
    return json.loads((ws / MANIFEST).read_text(encoding="utf-8"))


def save_manifest(ws: Path, manifest: dict) -> None:
    (ws / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def edit_manifest(ws: Path, change: Callable[[dict], None]) -> dict:
    manifest = load_manifest(ws)
    change(manifest)
    save_manifest(ws, manifest)
    return manifest


def version_of(hashes: dict[str, str]) -> str:
    """The contract's data version, written out independently of `checker.manifest`."""
    lines = "".join(f"{name}:{hashes[name]}\n" for name in sorted(hashes))
    return sha256_bytes(lines.encode("utf-8"))


def rehash(ws: Path, manifest: dict) -> dict:
    """Make each split's sha256, and the version, agree with the files as they are now."""
    for split in manifest["splits"].values():
        split["sha256"] = sha256_bytes((ws / split["path"]).read_bytes())
    manifest["version"] = version_of({n: s["sha256"] for n, s in manifest["splits"].items()})
    return manifest


def point_split(ws: Path, name: str, rel: str) -> None:
    """Make the manifest's split `name` name the path `rel` (and nothing else changes)."""
    edit_manifest(ws, lambda m: m["splits"][name].update(path=rel))


def manifest_nan(ws: Path) -> None:
    (ws / MANIFEST).write_text('{"version": NaN}', encoding="utf-8")


def manifest_deep(ws: Path) -> None:
    (ws / MANIFEST).write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")


def manifest_huge_int(ws: Path) -> None:
    edit_manifest(ws, lambda m: m["splits"]["train"].update(rows=10**4000))


def split_fifo(ws: Path) -> None:
    os.mkfifo(ws / "data" / "fifo.csv")
    point_split(ws, "train", "data/fifo.csv")


def split_dotdot(ws: Path) -> None:
    (ws.parent / "outside.csv").write_text("id_student\n1\n", encoding="utf-8")
    point_split(ws, "train", "../outside.csv")


def split_absolute(ws: Path) -> None:
    point_split(ws, "train", str((ws / "data" / "train.csv.gz").resolve()))


def split_symlink_out(ws: Path) -> None:
    outside = ws.parent / "outside.csv.gz"
    outside.write_bytes((ws / "data" / "train.csv.gz").read_bytes())
    (ws / "data" / "link.csv.gz").symlink_to(outside)
    point_split(ws, "train", "data/link.csv.gz")


def split_corrupt_gzip(ws: Path) -> None:
    (ws / "data" / "train.csv.gz").write_bytes(b"\x1f\x8b\x08\x00not really gzip")


def split_directory(ws: Path) -> None:
    (ws / "data" / "folder.csv").mkdir()
    point_split(ws, "train", "data/folder.csv")


HOSTILE_MANIFEST: dict[str, Callable[[Path], None]] = {
    "manifest_nan": manifest_nan,
    "manifest_deep": manifest_deep,
    "manifest_huge_int": manifest_huge_int,
    "split_fifo": split_fifo,
    "split_dotdot": split_dotdot,
    "split_absolute": split_absolute,
    "split_symlink_out": split_symlink_out,
    "split_corrupt_gzip": split_corrupt_gzip,
    "split_directory": split_directory,
}

# --- mlflow.db ------------------------------------------------------------------------------------


def sql(ws: Path, script: str) -> None:
    """Change a copy's store with plain sqlite3 (what MLflow's API will not do)."""
    connection = sqlite3.connect(ws / STORE)
    try:
        connection.executescript(script)
    finally:
        connection.close()


RECURSIVE_VIEW = """
PRAGMA foreign_keys = OFF;
DROP TABLE runs;
CREATE VIEW runs AS
  WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r)
  SELECT CAST(x AS TEXT) AS run_uuid, 1 AS experiment_id, 'r' AS name, 'FINISHED' AS status,
         'active' AS lifecycle_stage
  FROM r;
"""


def store_text(ws: Path) -> None:
    (ws / STORE).write_text("this is not a database\n", encoding="utf-8")


def store_empty_sqlite(ws: Path) -> None:
    (ws / STORE).unlink()
    connection = sqlite3.connect(ws / STORE)
    connection.execute("PRAGMA user_version = 1")  # writes the header: a valid, empty database
    connection.close()


def store_recursive_view(ws: Path) -> None:
    sql(ws, RECURSIVE_VIEW)


def store_malformed_schema(ws: Path) -> None:
    sql(
        ws,
        "PRAGMA writable_schema = ON;"
        "UPDATE sqlite_master SET sql = 'CREATE TABLE tags (oops' WHERE name = 'tags';",
    )


def store_corrupt_pages(ws: Path) -> None:
    data = bytearray((ws / STORE).read_bytes())
    data[100:4096] = b"\xa5" * (4096 - 100)  # keep the sqlite header, wreck the schema page
    (ws / STORE).write_bytes(bytes(data))


def store_fifo(ws: Path) -> None:
    (ws / STORE).unlink()
    os.mkfifo(ws / STORE)


def store_directory(ws: Path) -> None:
    (ws / STORE).unlink()
    (ws / STORE).mkdir()


def store_symlink_out(ws: Path) -> None:
    outside = ws.parent / "outside.db"
    (ws / STORE).rename(outside)
    (ws / STORE).symlink_to(outside)


def store_unknown_revision(ws: Path) -> None:
    sql(
        ws,
        "PRAGMA foreign_keys = OFF; UPDATE alembic_version SET version_num = 'ffffffffffff';"
        "DROP TABLE tags;",
    )


HOSTILE_STORE: dict[str, Callable[[Path], None]] = {
    "store_text": store_text,
    "store_empty_sqlite": store_empty_sqlite,
    "store_recursive_view": store_recursive_view,
    "store_malformed_schema": store_malformed_schema,
    "store_corrupt_pages": store_corrupt_pages,
    "store_fifo": store_fifo,
    "store_directory": store_directory,
    "store_symlink_out": store_symlink_out,
    "store_unknown_revision": store_unknown_revision,
}

# --- lifecycle_map.yaml ---------------------------------------------------------------------------


def write_map(ws: Path, text: str | bytes) -> None:
    path = ws / MAP
    if path.is_dir():
        path.rmdir()
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")


def billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def map_python_tag(ws: Path) -> None:
    marker = ws.parent / "hacked"
    write_map(ws, f"!!python/object/apply:os.system ['touch {marker}']\n")


def map_alias_bomb(ws: Path) -> None:
    write_map(ws, billion_laughs())


def map_recursive_alias(ws: Path) -> None:
    write_map(ws, "use_case: &a [*a]\n")


def map_non_utf8(ws: Path) -> None:
    write_map(ws, b"use_case: caf\xe9 \xff\xfe\n")


def map_deep(ws: Path) -> None:
    write_map(ws, "[" * 1000 + "]" * 1000 + "\n")


def map_huge_int(ws: Path) -> None:
    write_map(ws, "use_case: " + "9" * 5000 + "\n")


def map_too_big(ws: Path) -> None:
    write_map(ws, "use_case: " + "x" * 2_000_000 + "\n")


def map_directory(ws: Path) -> None:
    (ws / MAP).unlink()
    (ws / MAP).mkdir()


def map_duplicate_keys(ws: Path) -> None:
    write_map(ws, "use_case: one\nuse_case: two\n")


HOSTILE_MAP: dict[str, Callable[[Path], None]] = {
    "map_python_tag": map_python_tag,
    "map_alias_bomb": map_alias_bomb,
    "map_recursive_alias": map_recursive_alias,
    "map_non_utf8": map_non_utf8,
    "map_deep": map_deep,
    "map_huge_int": map_huge_int,
    "map_too_big": map_too_big,
    "map_directory": map_directory,
    "map_duplicate_keys": map_duplicate_keys,
}


def write_csv_gz_bytes(path: Path, data: bytes) -> None:
    """gzip `data` into `path` deterministically."""
    with path.open("wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(data)
