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
from collections.abc import Iterable
from functools import partial
from itertools import combinations
from pathlib import Path

from checker.contract import valid_json
from checker.errors import Invalid
from checker.registry import Problems, check
from checker.table import Column, Table, parse
from checker.workspace import MAX_DATA_BYTES, Workspace

MANIFEST = "data/manifest.json"
REQUIRED_SPLITS = ("train", "valid", "test")
MAX_UNCOMPRESSED = 100_000_000  # the real splits are about 2 MB
STAGE = "02-data-preparation.ipynb (cells 'Your turn 1', 'Your turn 2' and 'Your turn 3')"
TOLERANCE = 1e-6


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


GZIP_MAGIC = b"\x1f\x8b"
FEXTRA, FNAME = 0x04, 0x08


def gzip_header(raw: bytes) -> tuple[int, str | None] | None:
    """The modification time and the file name a gzip member's header records (RFC 1952), or
    None when `raw` does not start with a gzip header."""
    if len(raw) < 10 or raw[:2] != GZIP_MAGIC:
        return None
    flags, mtime = raw[3], int.from_bytes(raw[4:8], "little")
    if not flags & FNAME:
        return mtime, None
    start = 10
    if flags & FEXTRA:
        start += 2 + int.from_bytes(raw[10:12], "little")
    end = raw.find(b"\0", start)
    name = raw[start : end if end >= 0 else len(raw)]
    return mtime, name.decode("latin-1")


def gzip_header_problems(raw: bytes, rel: str, field: str) -> Problems:
    """A split must be deterministic gzip: mtime 0 and no file name in its header, so that the
    same rows always give the same bytes and a rerun reproduces the data version."""
    header = gzip_header(raw)
    if header is None or header == (0, None):
        return
    mtime, name = header
    found = [f"mtime {mtime}"] if mtime else []
    found += [f"the file name {name!r}"] if name is not None else []
    yield (
        f"{field}: {rel}: gzip header: expected mtime 0 and no file name (deterministic gzip, "
        f"so that a rerun writes the same bytes and the same data version), found "
        f"{' and '.join(found)}: write it as stage 02's write_csv_gz does "
        f"(gzip.GzipFile(filename='', mtime=0)), not with to_csv(compression='gzip')"
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


def read_manifest(ws: Workspace) -> dict:
    """data/manifest.json for the checks of later stages: an object with a `splits` object, else
    `Invalid` (`data_versioned` grades the rest). Parsed once per grading."""
    manifest = ws.read_json(MANIFEST)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("splits"), dict):
        raise Invalid(f"{MANIFEST}: splits: expected an object naming the split files, found none")
    return manifest


def manifest_field(manifest: dict, name: str, default: str) -> str:
    """A text field of the manifest (`key`, `label`), or `default` when it is not text."""
    value = manifest.get(name)
    return value if isinstance(value, str) else default


def split_table(ws: Workspace, manifest: dict, name: str) -> tuple[Table, str]:
    """The table of the split `name` the manifest names, and its path; `Invalid` naming the
    manifest's field when the split is not there, or naming the file when it cannot be read."""
    split = manifest["splits"].get(name)
    if not isinstance(split, dict) or not isinstance(split.get("path"), str):
        raise Invalid(
            f"{MANIFEST}: splits.{name}.path: expected the {name} split's file, found none"
        )
    rel = split["path"]
    return load_split(ws, rel, f"{MANIFEST}: splits.{name}.path"), rel


def manifest_version(ws: Workspace) -> str | None:
    """The manifest's `version`, or None when the manifest cannot say (data_versioned says why)."""
    try:
        version = read_manifest(ws).get("version")
    except Invalid:
        return None
    return version if isinstance(version, str) else None


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
        described = table.derive(("described", column), partial(_described, col.present))
        for key, value in described.items():
            claimed = given[key]
            if not isinstance(claimed, int | float) or not _close(float(claimed), value):
                yield f"{field}.{column}.{key}: expected {value:.6g} (recomputed), found {claimed!r}"


def _described(values) -> dict[str, float]:
    """Mean, min and max as pandas gives them for a column (NaN skipped)."""
    import numpy as np

    with np.errstate(invalid="ignore", over="ignore"):
        return {
            "mean": float(values.mean()),
            "min": float(values.min()),
            "max": float(values.max()),
        }


def shared_keys(a: Column, b: Column):
    """The key values found in both columns (sorted), compared as numbers when both are numeric."""
    import numpy as np

    left, right = a.distinct, b.distinct
    if left.dtype.kind not in "iuf" or right.dtype.kind not in "iuf":
        left, right = left.astype(str), right.astype(str)
    return np.intersect1d(left, right)


def leak_problems(
    where: str, keys: dict[str, Column], names: Iterable[str], key: str, verdict: str
) -> Problems:
    """A message for each pair of the splits `names` whose `key` columns share a value."""
    for a, b in combinations(names, 2):
        if a in keys and b in keys:
            shared = keys[a].versus(keys[b], shared_keys)
            if len(shared):
                sample = ", ".join(str(k) for k in shared[:3])
                yield (
                    f"{where}: splits.{a} and splits.{b}: expected no {key} in both, "
                    f"found {len(shared)} shared (for example {sample}): {verdict}"
                )


@check("data_versioned", stage=STAGE)
def data_versioned(ws: Workspace) -> Problems:
    """The manifest is valid, its splits are the files it names, and the split is leak-free."""
    manifest = yield from valid_json(ws, MANIFEST, "manifest")
    if manifest is None:
        return
    key = manifest["key"]
    hashes: dict[str, str] = {}
    keys: dict = {}
    for name, split in manifest["splits"].items():
        where = f"{MANIFEST}: splits.{name}.path"
        rel = split["path"]
        try:
            raw, found_hash = file_bytes(ws, rel, where)
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
        if rel.endswith(".csv.gz"):
            yield from gzip_header_problems(raw, rel, where)
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
    yield from leak_problems(MANIFEST, keys, REQUIRED_SPLITS, key, "the split leaks learners")
