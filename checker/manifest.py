"""`data/manifest.json`, the data version, and the `data_versioned` check.

The check trusts nothing the manifest says: it re-hashes every split file, re-counts rows and
columns, recomputes the version and the per-column missing counts and means, and checks that no
learner (`key`) appears in two of train, valid and test.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import zlib
from itertools import combinations
from pathlib import Path

from checker.contract import schema_problems
from checker.errors import Invalid
from checker.registry import Problems, check
from checker.table import Column, Table, parse
from checker.workspace import MAX_DATA_BYTES, Workspace

MANIFEST = "data/manifest.json"
REQUIRED_SPLITS = ("train", "valid", "test")
MAX_UNCOMPRESSED = 100_000_000  # the real splits are about 2 MB
STAGE = "02-data-preparation.ipynb (cells 'Your turn 1', 'Your turn 2' and 'Your turn 3')"
TOLERANCE = 1e-6


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_version(split_hashes: dict[str, str]) -> str:
    """The contract's version: sha256 of one `"<split>:<sha256>\\n"` line per split, sorted."""
    text = "".join(f"{name}:{split_hashes[name]}\n" for name in sorted(split_hashes))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def dtype_family(dtype: str) -> str | None:
    """Fold a dtype name (`int64`, `Int64`, `float32`, `object`, `str`, `category`, ...) into one
    of integer, float, boolean, datetime, string; None when it is not a dtype name we know."""
    d = str(dtype).strip().lower()
    if d.startswith(("int", "uint")):
        return "integer"
    if d.startswith("float"):
        return "float"
    if d.startswith("bool"):
        return "boolean"
    if d.startswith("datetime"):
        return "datetime"
    if d in {"object", "str", "string", "category"} or d.startswith("string"):
        return "string"
    return None


def parse_split(raw: bytes, rel: str, digest: str | None = None) -> Table:
    """The table of a split file's bytes (`.csv`, or `.csv.gz` with a cap on the decompressed
    size); `digest` is their sha256 when the caller has it."""
    if rel.endswith(".csv.gz"):
        return parse(raw, rel, "split.gz", decode=lambda data: _gunzip(data, rel), digest=digest)
    if rel.endswith(".csv"):
        return parse(raw, rel, "split", digest=digest)
    raise Invalid(
        f"{rel}: expected a .csv or .csv.gz file, found {Path(rel).suffix or 'no suffix'}"
    )


def _gunzip(raw: bytes, rel: str) -> bytes:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
            data = stream.read(MAX_UNCOMPRESSED + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise Invalid(f"{rel}: expected a gzip-compressed CSV, found {exc}") from None
    if len(data) > MAX_UNCOMPRESSED:
        raise Invalid(f"{rel}: decompresses to more than {MAX_UNCOMPRESSED:,} bytes")
    return data


def file_bytes(ws: Workspace, rel: str, what: str) -> tuple[bytes, str]:
    """The bytes of the data file `rel` and their sha256, read once per grading."""

    def read() -> tuple[bytes, str]:
        raw = ws.resolve(rel, what=what, max_bytes=MAX_DATA_BYTES).read_bytes()
        return raw, hashlib.sha256(raw).hexdigest()

    return ws.memo(("file", rel), read)


def load_split(ws: Workspace, rel: str, what: str) -> Table:
    """The split file `rel` of a workspace, resolved safely and parsed once per grading.

    Checks that recompute from the splits (metrics, PSI) use this; the table is read-only.
    """

    def read() -> Table:
        raw, digest = file_bytes(ws, rel, what)
        return parse_split(raw, rel, digest)

    return ws.memo(("split", rel), read)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=TOLERANCE, abs_tol=TOLERANCE)


def _stats_problems(name: str, table: Table, stats: dict) -> Problems:
    field = f"{MANIFEST}: splits.{name}.stats"
    frame = table.frame
    missing_cols = [c for c in frame.columns if c not in stats]
    if missing_cols:
        yield f"{field}: expected stats for every column, found none for {', '.join(missing_cols[:5])}"
    for column in frame.columns:
        given = stats.get(column)
        if not isinstance(given, dict):
            continue
        col = table.column(column)
        found = col.missing
        if given.get("missing") != found:
            yield f"{field}.{column}.missing: expected {found} (recomputed), found {given.get('missing')!r}"
        if not col.numeric:
            if "top" not in given:
                yield f"{field}.{column}: expected 'top' categories for a non-numeric column, found none"
            continue
        absent = [k for k in ("mean", "std", "min", "max") if k not in given]
        if absent:
            yield f"{field}.{column}: expected mean, std, min and max for a numeric column, found no {', '.join(absent)}"
            continue
        if found == len(frame):
            continue
        described = table.derive(("described", column), lambda c=col: _described(c.present))
        for key, value in described.items():
            claimed = given[key]
            if not isinstance(claimed, int | float) or not _close(float(claimed), value):
                yield f"{field}.{column}.{key}: expected {value:.6g} (recomputed), found {claimed!r}"


def _described(values) -> dict[str, float]:  # noqa: ANN001 - a float array, no NaN
    """Mean, min and max as pandas gives them for a column (NaN skipped)."""
    import numpy as np

    with np.errstate(invalid="ignore", over="ignore"):
        return {
            "mean": float(values.mean()),
            "min": float(values.min()),
            "max": float(values.max()),
        }


def shared_keys(a: Column, b: Column):  # noqa: ANN201 - a numpy array
    """The key values found in both columns (sorted), compared as numbers when both are numeric."""
    import numpy as np

    left, right = a.distinct, b.distinct
    if left.dtype.kind not in "iuf" or right.dtype.kind not in "iuf":
        left, right = left.astype(str), right.astype(str)
    return np.intersect1d(left, right)


@check("data_versioned", stage=STAGE)
def data_versioned(ws: Workspace) -> Problems:
    """The manifest is valid, its splits are the files it names, and the split is leak-free."""
    manifest = ws.read_json(MANIFEST)
    problems = schema_problems("manifest", manifest, MANIFEST)
    if problems:
        yield from problems
        return
    key = manifest["key"]
    hashes: dict[str, str] = {}
    keys: dict = {}
    for name, split in manifest["splits"].items():
        where = f"{MANIFEST}: splits.{name}.path"
        rel = split["path"]
        try:
            _, found_hash = file_bytes(ws, rel, where)
        except Invalid as exc:
            yield str(exc)
            continue
        hashes[name] = found_hash
        if found_hash != split["sha256"]:
            yield (
                f"{MANIFEST}: splits.{name}.sha256: expected {found_hash} (the sha256 of {rel}), "
                f"found {split['sha256']}"
            )
        try:
            table = load_split(ws, rel, where)
        except Invalid as exc:
            yield str(exc)
            continue
        frame = table.frame
        if len(frame) != split["rows"]:
            yield f"{MANIFEST}: splits.{name}.rows: expected {len(frame)} (rows in {rel}), found {split['rows']}"
        declared = split["columns"]
        if list(frame.columns) != list(declared):
            yield (
                f"{MANIFEST}: splits.{name}.columns: expected the columns of {rel} "
                f"{list(frame.columns)[:8]}, found {list(declared)[:8]}"
            )
        else:
            for column, dtype in declared.items():
                family, actual = dtype_family(dtype), dtype_family(frame[column].dtype)
                if family is None:
                    yield f"{MANIFEST}: splits.{name}.columns.{column}: expected a dtype name such as int64, float64 or str, found {dtype!r}"
                elif family != actual and not (family == "float" and actual == "integer"):
                    yield (
                        f"{MANIFEST}: splits.{name}.columns.{column}: expected a dtype of the {actual} "
                        f"family (as read from {rel}), found {dtype!r}"
                    )
        yield from _stats_problems(name, table, split["stats"])
        if name in REQUIRED_SPLITS:
            if key not in frame.columns:
                yield f"{MANIFEST}: key: expected a column of {rel}, found {key!r} is not one"
            else:
                keys[name] = table.column(key)
    if len(hashes) == len(manifest["splits"]):
        expected = data_version(hashes)
        if manifest["version"] != expected:
            yield (
                f"{MANIFEST}: version: expected {expected} (sha256 of the sorted "
                f"'<split>:<sha256>' lines), found {manifest['version']}"
            )
    for a, b in combinations(REQUIRED_SPLITS, 2):
        if a in keys and b in keys:
            shared = keys[a].versus(keys[b], shared_keys)
            if len(shared):
                sample = ", ".join(str(k) for k in shared[:3])
                yield (
                    f"{MANIFEST}: splits.{a} and splits.{b}: expected no {key} in both, "
                    f"found {len(shared)} shared (for example {sample}): the split leaks learners"
                )
