"""Hostile and broken submissions, each made from a valid workspace by one breaking function.

A case names the check it breaks (or `*` when the whole learner is refused) and the words its
message must contain: the file and the problem.
"""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "data/manifest.json"
MAP = "lifecycle_map.yaml"


@dataclass(frozen=True)
class Case:
    name: str  # also the learner's folder name
    check: str  # the check that must score 0, or "*" for every check
    expect: tuple[str, ...]  # words the message must contain (file, problem)
    breaks: Callable[[Path], None]  # turns a copy of a valid workspace into this case


def _manifest(ws: Path) -> dict:
    return json.loads((ws / MANIFEST).read_text())


def _write_manifest(ws: Path, doc: dict) -> None:
    (ws / MANIFEST).write_text(json.dumps(doc))


def _set_split_path(value: str) -> Callable[[Path], None]:
    def breaks(ws: Path) -> None:
        doc = _manifest(ws)
        doc["splits"]["test"]["path"] = value
        _write_manifest(ws, doc)

    return breaks


def _text(rel: str, data: bytes | str) -> Callable[[Path], None]:
    def breaks(ws: Path) -> None:
        path = ws / rel
        path.unlink(missing_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())

    return breaks


def _symlink_out(rel: str) -> Callable[[Path], None]:
    def breaks(ws: Path) -> None:
        (ws / rel).unlink()
        os.symlink("/etc/hostname" if Path("/etc/hostname").exists() else "/etc/passwd", ws / rel)

    return breaks


def _split_fifo(ws: Path) -> None:
    (ws / "data" / "test.csv.gz").unlink()
    os.mkfifo(ws / "data" / "test.csv.gz")


def _corrupt_gzip(ws: Path) -> None:
    path = ws / "data" / "test.csv.gz"
    data = bytearray(path.read_bytes())
    data[20:40] = b"\x00" * 20
    path.write_bytes(bytes(data))
    doc = _manifest(ws)  # the manifest is honest about the broken bytes
    import hashlib

    doc["splits"]["test"]["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    _write_manifest(ws, doc)


def _gzip_bomb(ws: Path) -> None:
    path = ws / "data" / "test.csv.gz"
    with gzip.open(path, "wb") as handle:
        chunk = b"0" * (1 << 20)
        for _ in range(120):  # 120 MB of zeros, about 0.1 MB compressed
            handle.write(chunk)


def _directory_instead(rel: str) -> Callable[[Path], None]:
    def breaks(ws: Path) -> None:
        (ws / rel).unlink()
        (ws / rel).mkdir()

    return breaks


def _store(sql: str) -> Callable[[Path], None]:
    def breaks(ws: Path) -> None:
        db = sqlite3.connect(ws / "mlflow.db")
        db.executescript(sql)
        db.commit()
        db.close()

    return breaks


def _empty_workspace(ws: Path) -> None:
    import shutil

    for child in list(ws.iterdir()):
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(8)
)

CASES = [
    Case(
        "manifest-not-json",
        "data_versioned",
        (MANIFEST, "valid JSON"),
        _text(MANIFEST, "{not json"),
    ),
    Case(
        "manifest-not-utf8",
        "data_versioned",
        (MANIFEST, "UTF-8"),
        _text(MANIFEST, b'{"a": "\xff\xfe"}'),
    ),
    Case("manifest-nan", "data_versioned", (MANIFEST, "NaN"), _text(MANIFEST, '{"version": NaN}')),
    Case(
        "manifest-huge-int",
        "data_versioned",
        (MANIFEST, "too large"),
        _text(MANIFEST, '{"rows": 1' + "0" * 5000 + "}"),
    ),
    Case(
        "manifest-deep",
        "data_versioned",
        (MANIFEST, "nesting"),
        _text(MANIFEST, "[" * 50_000 + "]" * 50_000),
    ),
    Case(
        "manifest-duplicate-keys",
        "data_versioned",
        (MANIFEST, "duplicate key"),
        _text(MANIFEST, '{"key": "a", "key": "b"}'),
    ),
    Case(
        "manifest-oversized",
        "data_versioned",
        (MANIFEST, "over the limit"),
        _text(MANIFEST, '{"pad": "' + "x" * 1_200_000 + '"}'),
    ),
    Case(
        "manifest-is-a-folder",
        "data_versioned",
        (MANIFEST, "regular file"),
        _directory_instead(MANIFEST),
    ),
    Case(
        "split-dotdot",
        "data_versioned",
        ("splits.test.path", ".."),
        _set_split_path("../../etc/passwd"),
    ),
    Case(
        "split-absolute",
        "data_versioned",
        ("splits.test.path", "/etc/passwd"),
        _set_split_path("/etc/passwd"),
    ),
    Case(
        "split-symlink-out",
        "data_versioned",
        ("splits.test.path", "outside the workspace"),
        _symlink_out("data/test.csv.gz"),
    ),
    Case("split-fifo", "data_versioned", ("data/test.csv.gz", "regular file"), _split_fifo),
    Case("split-corrupt-gzip", "data_versioned", ("data/test.csv.gz", "gzip"), _corrupt_gzip),
    Case(
        "split-gzip-bomb",
        "data_versioned",
        ("data/test.csv.gz", "decompresses to more than"),
        _gzip_bomb,
    ),
    Case(
        "map-python-tag",
        "lifecycle_map",
        (MAP, "python/object"),
        _text(MAP, "a: !!python/object/apply:os.system ['touch /tmp/hacked-by-learner']\n"),
    ),
    Case("map-alias-bomb", "lifecycle_map", (MAP, "alias bomb"), _text(MAP, ALIAS_BOMB)),
    Case(
        "map-recursive-alias",
        "lifecycle_map",
        (MAP, "recursive alias"),
        _text(MAP, "a: &a [1, *a]\n"),
    ),
    Case(
        "map-duplicate-keys",
        "lifecycle_map",
        (MAP, "duplicate key"),
        _text(MAP, "use_case: a\nuse_case: b\n"),
    ),
    Case("map-not-utf8", "lifecycle_map", (MAP, "UTF-8"), _text(MAP, b"use_case: \xff\xfe\n")),
    Case(
        "map-deep",
        "lifecycle_map",
        (MAP, "nesting"),
        _text(MAP, "a: " + "[" * 5000 + "]" * 5000 + "\n"),
    ),
    Case("map-symlink-out", "lifecycle_map", (MAP, "outside the workspace"), _symlink_out(MAP)),
    Case(
        "store-not-sqlite",
        "metrics_logged",
        ("mlflow.db", "sqlite"),
        _text("mlflow.db", "I am not a database\n" * 100),
    ),
    Case("store-empty-file", "metrics_logged", ("mlflow.db", "sqlite"), _text("mlflow.db", b"")),
    Case(
        "store-recursive-view",
        "metrics_logged",
        ("mlflow.db", "no table runs"),
        _store(
            "ALTER TABLE runs RENAME TO runs_real;"
            "CREATE VIEW runs AS WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) "
            "SELECT x AS run_uuid, x AS experiment_id, 'n' AS name, 'FINISHED' AS status, "
            "'active' AS lifecycle_stage FROM r;"
        ),
    ),
    Case(
        "store-unknown-revision",
        "metrics_logged",
        ("mlflow.db", "not one this checker knows", "ffffffffffff"),
        _store("UPDATE alembic_version SET version_num = 'ffffffffffff'; DROP TABLE params;"),
    ),
    Case(
        "store-symlink-out",
        "metrics_logged",
        ("mlflow.db", "outside the workspace"),
        _symlink_out("mlflow.db"),
    ),
    Case("empty-workspace", "*", ("found",), _empty_workspace),
]
