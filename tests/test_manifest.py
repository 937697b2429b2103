"""The `data_versioned` check on data/manifest.json: the valid workspace, one test per broken
field, hostile split files, and the helpers `data_version` and `dtype_family`."""

from __future__ import annotations

import gzip
import hashlib
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import checker
from checker import manifest as manifest_module
from checker.manifest import data_version, dtype_family
from tests.helpers.untrusted import (
    MANIFEST,
    edit_manifest,
    failed,
    load_manifest,
    point_split,
    rehash,
    save_manifest,
    sha256_bytes,
    snapshot,
    version_of,
    write_csv_gz_bytes,
)
from tests.helpers.workspace import column_stats, write_csv_gz

HINT = "revisit 02-data-preparation.ipynb (cells 'Your turn 1', 'Your turn 2' and 'Your turn 3')"


def run(ws: Path) -> checker.CheckResult:
    return checker.check("data_versioned", ws)["data_versioned"]


def messages(ws: Path) -> list[str]:
    """The messages of a failed check (and the check did fail, with the stage to revisit)."""
    result = failed("data_versioned", ws)
    assert result.hint == HINT
    return result.messages


def file_sha(ws: Path, rel: str) -> str:
    return sha256_bytes((ws / rel).read_bytes())


def test_the_valid_workspace_passes(workspace: Path):
    before = snapshot(workspace)
    result = run(workspace)
    assert result.passed, result.messages
    assert (result.points, result.max_points, result.hint) == (10, 10, "")
    assert snapshot(workspace) == before


def test_the_fixture_version_is_the_contract_version(workspace: Path):
    manifest = load_manifest(workspace)
    hashes = {name: file_sha(workspace, s["path"]) for name, s in manifest["splits"].items()}
    assert manifest["version"] == version_of(hashes) == data_version(hashes)


# --- schema ---------------------------------------------------------------------------------------


def test_a_missing_test_split_is_named(workspace: Path):
    edit_manifest(workspace, lambda m: m["splits"].pop("test"))
    assert messages(workspace) == [
        "data/manifest.json: splits.test: expected this field, found it missing"
    ]


def test_a_malformed_sha256_is_named(workspace: Path):
    edit_manifest(workspace, lambda m: m["splits"]["train"].update(sha256="abc123"))
    assert messages(workspace) == [
        "data/manifest.json: splits.train.sha256: expected text matching ^[0-9a-f]{64}$, "
        "found 'abc123'"
    ]


def test_a_negative_row_count_breaks_the_schema(workspace: Path):
    edit_manifest(workspace, lambda m: m["splits"]["valid"].update(rows=-1))
    assert messages(workspace) == [
        "data/manifest.json: splits.valid.rows: expected at least 0, found -1"
    ]


def test_a_manifest_that_is_not_an_object(workspace: Path):
    (workspace / MANIFEST).write_text("[]", encoding="utf-8")
    assert messages(workspace) == [
        "data/manifest.json: (top level): expected a value of type object, found []"
    ]


def test_a_missing_manifest_is_named(workspace: Path):
    (workspace / MANIFEST).unlink()
    assert messages(workspace) == [
        "data/manifest.json: file data/manifest.json not found in the workspace"
    ]


def test_nan_in_the_manifest_is_refused(workspace: Path):
    text = (workspace / MANIFEST).read_text(encoding="utf-8")
    (workspace / MANIFEST).write_text(text.replace('"rows": 9482', '"rows": NaN'), "utf-8")
    assert messages(workspace) == [
        "data/manifest.json: expected valid JSON, found NaN is not allowed (numbers must be finite)"
    ]


def test_a_huge_integer_in_the_manifest_is_refused(workspace: Path):
    edit_manifest(workspace, lambda m: m["splits"]["train"].update(rows=10**40))
    (message,) = messages(workspace)
    assert message.startswith("data/manifest.json: expected valid JSON, found an integer of 41")


# --- recomputed fields ----------------------------------------------------------------------------


def test_a_wrong_sha256_names_the_real_one(workspace: Path):
    edit_manifest(workspace, lambda m: m["splits"]["train"].update(sha256="0" * 64))
    real = file_sha(workspace, "data/train.csv.gz")
    assert messages(workspace) == [
        f"data/manifest.json: splits.train.sha256: expected {real} "
        f"(the sha256 of data/train.csv.gz), found {'0' * 64}"
    ]


def test_a_wrong_row_count_names_the_real_one(workspace: Path):
    rows = len(pd.read_csv(workspace / "data" / "valid.csv.gz"))
    edit_manifest(workspace, lambda m: m["splits"]["valid"].update(rows=rows + 1))
    assert messages(workspace) == [
        f"data/manifest.json: splits.valid.rows: expected {rows} (rows in data/valid.csv.gz), "
        f"found {rows + 1}"
    ]


def test_a_renamed_column_is_named(workspace: Path):
    def rename(m: dict) -> None:
        columns = m["splits"]["train"]["columns"]
        m["splits"]["train"]["columns"] = {
            ("sex" if k == "gender" else k): v for k, v in columns.items()
        }

    edit_manifest(workspace, rename)
    (message,) = messages(workspace)
    assert message.startswith(
        "data/manifest.json: splits.train.columns: expected the columns of data/train.csv.gz "
        "['id_student', 'code_module', 'code_presentation', 'gender',"
    )
    assert "found ['id_student', 'code_module', 'code_presentation', 'sex'," in message


def test_columns_out_of_file_order_fail(workspace: Path):
    def swap(m: dict) -> None:
        columns = m["splits"]["test"]["columns"]
        m["splits"]["test"]["columns"] = dict(reversed(list(columns.items())))

    edit_manifest(workspace, swap)
    (message,) = messages(workspace)
    assert message.startswith("data/manifest.json: splits.test.columns: expected the columns of")


def test_a_dtype_of_the_wrong_family_is_named(workspace: Path):
    edit_manifest(
        workspace, lambda m: m["splits"]["train"]["columns"].update(studied_credits="str")
    )
    assert messages(workspace) == [
        "data/manifest.json: splits.train.columns.studied_credits: expected a dtype of the "
        "integer family (as read from data/train.csv.gz), found 'str'"
    ]


def test_an_unknown_dtype_name_is_named(workspace: Path):
    edit_manifest(workspace, lambda m: m["splits"]["train"]["columns"].update(gender="banana"))
    assert messages(workspace) == [
        "data/manifest.json: splits.train.columns.gender: expected a dtype name such as int64, "
        "float64 or str, found 'banana'"
    ]


@pytest.mark.parametrize(
    ("column", "dtype"),
    [
        ("gender", "object"),
        ("gender", "string"),
        ("studied_credits", "Int32"),
        ("at_risk", "float64"),
    ],
)
def test_dtype_names_of_the_same_family_pass(workspace: Path, column: str, dtype: str):
    # pandas 2 says object where pandas 3 says str; an integer column may be declared float.
    edit_manifest(workspace, lambda m: m["splits"]["train"]["columns"].update({column: dtype}))
    assert run(workspace).passed


def test_a_version_that_does_not_recompute_is_named(workspace: Path):
    manifest = edit_manifest(workspace, lambda m: m.update(version="f" * 64))
    expected = version_of(
        {n: file_sha(workspace, s["path"]) for n, s in manifest["splits"].items()}
    )
    assert messages(workspace) == [
        f"data/manifest.json: version: expected {expected} (sha256 of the sorted "
        f"'<split>:<sha256>' lines), found {'f' * 64}"
    ]


def test_a_split_gzipped_with_a_timestamp_and_a_file_name_fails_at_stage_02(workspace: Path):
    """`to_csv(path, compression="gzip")` records the time and the file name in the header: the
    same rows give other bytes on every rerun, so the data version never reproduces."""
    manifest = load_manifest(workspace)
    rel = manifest["splits"]["train"]["path"]
    frame = pd.read_csv(workspace / rel)
    frame.to_csv(workspace / rel, index=False, compression="gzip")
    save_manifest(workspace, rehash(workspace, manifest))  # every hash agrees with the files
    [message] = messages(workspace)  # and the hint is stage 02's (messages() asserts it)
    assert message.startswith(f"data/manifest.json: splits.train.path: {rel}: gzip header: ")
    assert "expected mtime 0 and no file name" in message
    assert "found mtime " in message and "the file name 'train.csv'" in message


def test_a_gzip_header_with_only_a_file_name_fails(workspace: Path):
    manifest = load_manifest(workspace)
    rel = manifest["splits"]["valid"]["path"]
    data = gzip.decompress((workspace / rel).read_bytes())
    with (
        (workspace / rel).open("wb") as raw,
        gzip.GzipFile(filename="valid.csv", fileobj=raw, mode="wb", mtime=0) as gz,
    ):
        gz.write(data)
    save_manifest(workspace, rehash(workspace, manifest))
    [message] = messages(workspace)
    assert "gzip header" in message and "found the file name 'valid.csv'" in message
    assert "mtime 1" not in message


def test_the_optional_production_split_can_go(workspace: Path):
    manifest = load_manifest(workspace)
    del manifest["splits"]["production"]
    save_manifest(workspace, rehash(workspace, manifest))
    assert run(workspace).passed


def test_a_learner_in_train_and_test_is_a_leak(workspace: Path):
    manifest = load_manifest(workspace)
    train = pd.read_csv(workspace / "data" / "train.csv.gz")
    test = pd.read_csv(workspace / "data" / "test.csv.gz")
    leaked = test.iloc[[0]]
    train = pd.concat([train, leaked], ignore_index=True)
    write_csv_gz(train, workspace / "data" / "train.csv.gz")
    back = pd.read_csv(workspace / "data" / "train.csv.gz")
    manifest["splits"]["train"].update(rows=len(back), stats=column_stats(back))
    save_manifest(workspace, rehash(workspace, manifest))
    student = int(leaked["id_student"].iloc[0])
    assert messages(workspace) == [
        "data/manifest.json: splits.train and splits.test: expected no id_student in both, "
        f"found 1 shared (for example {student}): the split leaks learners"
    ]


def test_a_key_that_is_no_column_is_named(workspace: Path):
    edit_manifest(workspace, lambda m: m.update(key="student"))
    assert messages(workspace) == [
        f"data/manifest.json: key: expected a column of data/{name}.csv.gz, "
        "found 'student' is not one"
        for name in ("train", "valid", "test")
    ]


# --- stats ----------------------------------------------------------------------------------------


def test_stats_missing_for_a_column_are_named(workspace: Path):
    edit_manifest(workspace, lambda m: m["splits"]["train"]["stats"].pop("region"))
    assert messages(workspace) == [
        "data/manifest.json: splits.train.stats: expected stats for every column, found none "
        "for region"
    ]


def test_a_wrong_missing_count_names_the_real_one(workspace: Path):
    missing = int(pd.read_csv(workspace / "data" / "train.csv.gz")["imd_band"].isna().sum())
    assert missing > 0  # the real data has missing imd_band values
    edit_manifest(workspace, lambda m: m["splits"]["train"]["stats"]["imd_band"].update(missing=0))
    assert messages(workspace) == [
        f"data/manifest.json: splits.train.stats.imd_band.missing: expected {missing} "
        "(recomputed), found 0"
    ]


@pytest.mark.parametrize("key", ["mean", "min", "max"])
def test_a_wrong_numeric_stat_names_the_recomputed_one(workspace: Path, key: str):
    series = pd.read_csv(workspace / "data" / "valid.csv.gz")["studied_credits"]
    real = float(getattr(series, key)())
    edit_manifest(
        workspace,
        lambda m: m["splits"]["valid"]["stats"]["studied_credits"].update({key: real + 1}),
    )
    assert messages(workspace) == [
        f"data/manifest.json: splits.valid.stats.studied_credits.{key}: expected {real:.6g} "
        f"(recomputed), found {real + 1!r}"
    ]


def test_a_stat_within_the_tolerance_passes(workspace: Path):
    def nudge(m: dict) -> None:
        m["splits"]["train"]["stats"]["at_risk"]["mean"] *= 1 + 1e-9

    edit_manifest(workspace, nudge)
    assert run(workspace).passed


def test_a_null_mean_is_not_a_number(workspace: Path):
    edit_manifest(workspace, lambda m: m["splits"]["test"]["stats"]["at_risk"].update(mean=None))
    (message,) = messages(workspace)
    assert message.startswith(
        "data/manifest.json: splits.test.stats.at_risk.mean: expected 0."
    ) and message.endswith("(recomputed), found None")


def test_a_numeric_column_needs_all_four_stats(workspace: Path):
    edit_manifest(workspace, lambda m: m["splits"]["train"]["stats"]["at_risk"].pop("std"))
    assert messages(workspace) == [
        "data/manifest.json: splits.train.stats.at_risk: expected mean, std, min and max for a "
        "numeric column, found no std"
    ]


def test_a_text_column_needs_top_categories(workspace: Path):
    edit_manifest(workspace, lambda m: m["splits"]["train"]["stats"]["gender"].pop("top"))
    assert messages(workspace) == [
        "data/manifest.json: splits.train.stats.gender: expected 'top' categories for a "
        "non-numeric column, found none"
    ]


# --- split files ----------------------------------------------------------------------------------


def test_a_missing_split_file_is_named(workspace: Path):
    (workspace / "data" / "valid.csv.gz").unlink()
    assert messages(workspace) == [
        "data/manifest.json: splits.valid.path: file data/valid.csv.gz not found in the workspace"
    ]


def test_a_path_climbing_out_with_dotdot_fails(workspace: Path):
    (workspace.parent / "outside.csv.gz").write_bytes(
        (workspace / "data" / "train.csv.gz").read_bytes()
    )
    point_split(workspace, "train", "../outside.csv.gz")
    assert messages(workspace) == [
        "data/manifest.json: splits.train.path: expected a path relative to the workspace "
        "without '..', found '../outside.csv.gz'"
    ]


def test_a_harmless_dotdot_fails_too(workspace: Path):
    point_split(workspace, "train", "data/../data/train.csv.gz")
    assert messages(workspace) == [
        "data/manifest.json: splits.train.path: expected a path relative to the workspace "
        "without '..', found 'data/../data/train.csv.gz'"
    ]


def test_an_absolute_path_fails_even_into_the_workspace(workspace: Path):
    absolute = str((workspace / "data" / "train.csv.gz").resolve())
    point_split(workspace, "train", absolute)
    assert messages(workspace) == [
        "data/manifest.json: splits.train.path: expected a path relative to the workspace "
        f"without '..', found {absolute!r}"
    ]


def test_a_symlink_out_of_the_workspace_fails(workspace: Path):
    outside = workspace.parent / "outside.csv.gz"
    outside.write_bytes((workspace / "data" / "train.csv.gz").read_bytes())
    (workspace / "data" / "link.csv.gz").symlink_to(outside)
    point_split(workspace, "train", "data/link.csv.gz")
    assert messages(workspace) == [
        "data/manifest.json: splits.train.path: data/link.csv.gz leads outside the workspace "
        f"(a symlink to {outside.resolve()})"
    ]


def test_a_symlinked_data_folder_out_of_the_workspace_fails(workspace: Path):
    outside = workspace.parent / "elsewhere"
    (workspace / "data").rename(outside)
    (workspace / "data").symlink_to(outside, target_is_directory=True)
    assert len(messages(workspace)) == 1  # the manifest itself is outside now
    assert "leads outside the workspace" in messages(workspace)[0]


def test_a_symlink_inside_the_workspace_is_allowed(workspace: Path):
    (workspace / "data" / "alias.csv.gz").symlink_to("train.csv.gz")
    point_split(workspace, "train", "data/alias.csv.gz")
    assert run(workspace).passed


def test_a_fifo_as_a_split_file_fails_without_hanging(workspace: Path):
    os.mkfifo(workspace / "data" / "fifo.csv")
    point_split(workspace, "train", "data/fifo.csv")
    start = time.monotonic()
    assert messages(workspace) == [
        "data/manifest.json: splits.train.path: expected data/fifo.csv to be a regular file, "
        "found something else"
    ]
    assert time.monotonic() - start < 5


def test_a_folder_as_a_split_file_fails(workspace: Path):
    (workspace / "data" / "folder.csv").mkdir()
    point_split(workspace, "train", "data/folder.csv")
    assert messages(workspace) == [
        "data/manifest.json: splits.train.path: expected data/folder.csv to be a regular file, "
        "found something else"
    ]


def test_a_split_over_the_size_cap_fails(workspace: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(manifest_module, "MAX_DATA_BYTES", 1000)
    size = (workspace / "data" / "train.csv.gz").stat().st_size
    assert (
        f"data/train.csv.gz is {size:,} bytes, over the limit of 1,000 bytes"
        in messages(workspace)[0]
    )


def test_a_gzip_bomb_is_capped(workspace: Path, monkeypatch: pytest.MonkeyPatch):
    # A cap above the real splits (1.4 MB at most) and below the bomb, to keep the test fast.
    monkeypatch.setattr(manifest_module, "MAX_UNCOMPRESSED", 4_000_000)
    rows = b"id_student\n" + b"1\n" * 4_000_000  # 8 MB that gzips to under 10 kB
    write_csv_gz_bytes(workspace / "data" / "train.csv.gz", rows)
    assert (workspace / "data" / "train.csv.gz").stat().st_size < 10_000
    save_manifest(workspace, rehash(workspace, load_manifest(workspace)))
    assert messages(workspace) == ["data/train.csv.gz: decompresses to more than 4,000,000 bytes"]


def test_the_decompressed_size_cap_is_bounded():
    assert manifest_module.MAX_UNCOMPRESSED <= 1_000_000_000


@pytest.mark.parametrize(
    ("content", "found"),
    [
        (b"\x1f\x8b\x08\x00not really gzip", "expected a gzip-compressed CSV, found"),
        (b"plain text, not gzip", "expected a gzip-compressed CSV, found Not a gzipped file"),
    ],
)
def test_a_corrupt_gzip_fails(workspace: Path, content: bytes, found: str):
    (workspace / "data" / "train.csv.gz").write_bytes(content)
    save_manifest(workspace, rehash(workspace, load_manifest(workspace)))
    (message,) = messages(workspace)
    assert message.startswith(f"data/train.csv.gz: {found}")


def test_a_truncated_gzip_fails(workspace: Path):
    data = (workspace / "data" / "train.csv.gz").read_bytes()
    (workspace / "data" / "train.csv.gz").write_bytes(data[: len(data) // 2])
    save_manifest(workspace, rehash(workspace, load_manifest(workspace)))
    (message,) = messages(workspace)
    assert message.startswith("data/train.csv.gz: expected a gzip-compressed CSV, found ")


def test_an_empty_csv_fails(workspace: Path):
    write_csv_gz_bytes(workspace / "data" / "train.csv.gz", b"")
    save_manifest(workspace, rehash(workspace, load_manifest(workspace)))
    assert messages(workspace) == [
        "data/train.csv.gz: expected a readable CSV with a header row, found: "
        "No columns to parse from file"
    ]


def test_a_split_that_is_not_csv_fails(workspace: Path):
    (workspace / "data" / "train.csv.gz").rename(workspace / "data" / "train.parquet")
    point_split(workspace, "train", "data/train.parquet")
    assert messages(workspace) == [
        "data/train.parquet: expected a .csv or .csv.gz file, found .parquet"
    ]


def test_a_plain_csv_split_passes(workspace: Path):
    data = gzip.decompress((workspace / "data" / "valid.csv.gz").read_bytes())
    (workspace / "data" / "valid.csv.gz").unlink()
    (workspace / "data" / "valid.csv").write_bytes(data)
    manifest = load_manifest(workspace)
    manifest["splits"]["valid"]["path"] = "data/valid.csv"
    save_manifest(workspace, rehash(workspace, manifest))
    assert run(workspace).passed


def test_every_problem_is_reported_at_once(workspace: Path):
    def break_three(m: dict) -> None:
        m["splits"]["train"]["rows"] += 1
        m["splits"]["valid"]["stats"]["gender"].pop("top")
        m["version"] = "0" * 64

    edit_manifest(workspace, break_three)
    found = messages(workspace)
    assert [m.split(":")[1].split()[0] for m in found] == [
        "splits.train.rows",
        "splits.valid.stats.gender",
        "version",
    ]


# --- helpers --------------------------------------------------------------------------------------


def test_data_version_is_the_sha256_of_the_sorted_lines():
    hashes = {"valid": "b" * 64, "train": "a" * 64, "test": "c" * 64}
    text = f"test:{'c' * 64}\ntrain:{'a' * 64}\nvalid:{'b' * 64}\n"
    assert data_version(hashes) == hashlib.sha256(text.encode()).hexdigest()
    assert data_version(dict(reversed(list(hashes.items())))) == data_version(hashes)
    assert data_version(hashes | {"test": "d" * 64}) != data_version(hashes)


@pytest.mark.parametrize(
    ("dtype", "family"),
    [
        ("int64", "integer"),
        ("Int64", "integer"),
        ("uint8", "integer"),
        (np.dtype("int32"), "integer"),
        ("float64", "float"),
        ("Float32", "float"),
        (np.dtype("float16"), "float"),
        ("bool", "boolean"),
        ("boolean", "boolean"),
        ("datetime64[ns]", "datetime"),
        ("datetime64[ns, UTC]", "datetime"),
        ("object", "string"),
        ("str", "string"),
        ("string", "string"),
        ("string[pyarrow]", "string"),
        ("category", "string"),
        (pd.StringDtype(), "string"),
        (pd.CategoricalDtype(["a"]), "string"),
        (" INT64 ", "integer"),
        ("complex128", None),
        ("timedelta64[ns]", None),
        ("period[D]", None),
        ("banana", None),
        ("", None),
    ],
)
def test_dtype_family(dtype: object, family: str | None):
    assert dtype_family(dtype) == family


def test_dtype_family_of_nullable_and_object_columns():
    frame = pd.DataFrame(
        {
            "i": pd.array([1, None], dtype="Int64"),
            "f": pd.array([0.5, None], dtype="Float64"),
            "b": pd.array([True, None], dtype="boolean"),
            "o": pd.Series(["x", None], dtype=object),
            "t": pd.to_datetime(["2024-01-01", None]),
        }
    )
    assert {c: dtype_family(frame[c].dtype) for c in frame} == {
        "i": "integer",
        "f": "float",
        "b": "boolean",
        "o": "string",
        "t": "datetime",
    }


def test_dtype_family_agrees_with_the_manifest_on_the_real_data(workspace: Path):
    frame = pd.read_csv(workspace / "data" / "train.csv.gz")
    declared = load_manifest(workspace)["splits"]["train"]["columns"]
    assert {c: dtype_family(frame[c].dtype) for c in frame} == {
        c: dtype_family(d) for c, d in declared.items()
    }
