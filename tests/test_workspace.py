"""The safe readers in `checker.workspace`: strict JSON, bounded YAML, and paths that stay inside
the workspace and lead only to regular files of bounded size."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from checker.errors import Invalid
from checker.workspace import (
    MAX_DEPTH,
    MAX_INT_DIGITS,
    MAX_TEXT_BYTES,
    Workspace,
    parse_json,
    parse_yaml,
)
from tests.helpers.untrusted import deadline, snapshot


def invalid(call, *args, **kwargs) -> str:
    """The message of the `Invalid` that `call(*args, **kwargs)` raises."""
    with deadline(10), pytest.raises(Invalid) as caught:
        call(*args, **kwargs)
    return str(caught.value)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    (root / "data").mkdir(parents=True)
    (root / "data" / "a.csv").write_text("x\n1\n", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("outside\n", encoding="utf-8")
    return Workspace(root)


# --- parse_json -----------------------------------------------------------------------------------


def test_parse_json_reads_plain_json():
    assert parse_json('{"a": [1, 2.5, "x", null, true]}', "f.json") == {
        "a": [1, 2.5, "x", None, True]
    }


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_parse_json_refuses_non_finite_constants(constant: str):
    assert invalid(parse_json, f'{{"x": {constant}}}', "f.json") == (
        f"f.json: expected valid JSON, found {constant} is not allowed (numbers must be finite)"
    )


def test_parse_json_refuses_a_float_that_overflows():
    assert invalid(parse_json, '{"x": 1e999}', "f.json") == (
        "f.json: expected valid JSON, found the number 1e999 is out of range"
    )


def test_parse_json_caps_integer_digits():
    assert parse_json("9" * MAX_INT_DIGITS, "f.json") == int("9" * MAX_INT_DIGITS)
    assert parse_json("-" + "9" * MAX_INT_DIGITS, "f.json") == -int("9" * MAX_INT_DIGITS)
    assert invalid(parse_json, "9" * (MAX_INT_DIGITS + 1), "f.json") == (
        f"f.json: expected valid JSON, found an integer of {MAX_INT_DIGITS + 1} digits is too large"
    )
    # Far past Python's own int-string limit (4300 digits): still our message, quickly.
    assert "is too large" in invalid(parse_json, "1" * 100_000, "f.json")


def test_parse_json_bounds_depth():
    assert parse_json("[" * MAX_DEPTH + "]" * MAX_DEPTH, "f.json") is not None
    deeper = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    expected = f"f.json: expected at most {MAX_DEPTH} levels of nesting, found more"
    assert invalid(parse_json, deeper, "f.json") == expected
    assert invalid(
        parse_json, '{"a":' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1), "f.json"
    ) == (expected)


def test_parse_json_survives_100000_levels():
    assert invalid(parse_json, "[" * 100_000 + "]" * 100_000, "f.json") == (
        f"f.json: expected at most {MAX_DEPTH} levels of nesting, found more"
    )


def test_parse_json_refuses_duplicate_keys():
    assert invalid(parse_json, '{"a": 1, "b": {"c": 1, "c": 2}}', "f.json") == (
        "f.json: expected valid JSON, found duplicate key 'c'"
    )


def test_parse_json_names_the_line_of_a_syntax_error():
    assert invalid(parse_json, '{\n  "a": 1,\n}', "f.json") == (
        "f.json: expected valid JSON, found a syntax error at line 3 column 1 "
        "(Expecting property name enclosed in double quotes)"
    )


def test_read_json_refuses_non_utf8(ws: Workspace):
    (ws.root / "f.json").write_bytes(b'{"a": "caf\xe9"}')
    assert invalid(ws.read_json, "f.json") == (
        "f.json: expected UTF-8 text, found an invalid byte at offset 10"
    )


def test_read_json_remembers_a_file_once_per_workspace(ws: Workspace):
    (ws.root / "f.json").write_text('{"a": 1}', encoding="utf-8")
    first = ws.read_json("f.json")
    (ws.root / "f.json").write_text('{"a": 2}', encoding="utf-8")
    assert ws.read_json("f.json") is first
    assert Workspace(ws.root).read_json("f.json") == {"a": 2}


# --- parse_yaml -----------------------------------------------------------------------------------


def test_parse_yaml_reads_plain_yaml():
    assert parse_yaml("a: [1, 2.5, x, null, true]\nb: {c: d}\n", "f.yaml") == {
        "a": [1, 2.5, "x", None, True],
        "b": {"c": "d"},
    }


def test_parse_yaml_bounds_depth():
    assert parse_yaml("[" * MAX_DEPTH + "]" * MAX_DEPTH, "f.yaml") is not None
    deeper = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    assert invalid(parse_yaml, deeper, "f.yaml") == (
        f"f.yaml: expected plain YAML, found a problem: more than {MAX_DEPTH} levels of nesting"
    )


@pytest.mark.parametrize("text", ["9" * 31, "-" + "9" * 31, "0x" + "f" * 40, "1_" * 31 + "1"])
def test_parse_yaml_caps_integers(text: str):
    message = invalid(parse_yaml, f"x: {text}\n", "f.yaml")
    assert message == (
        f"f.yaml: expected plain YAML, found a problem: an integer of {len(text)} characters at "
        f"line 1 (at most {MAX_INT_DIGITS} digits)"
    )


def test_parse_yaml_keeps_ordinary_integers():
    assert parse_yaml("[0, -7, 0x1f, 017, 1_000, 190:20:30]", "f.yaml") == [
        0,
        -7,
        31,
        15,
        1000,
        685230,
    ]


@pytest.mark.parametrize(
    "text",
    [
        "!!python/object/apply:os.system ['true']",
        "!!python/name:os.system",
        "!!python/object/new:dict {}",
        "!!python/tuple [1, 2]",
    ],
)
def test_parse_yaml_refuses_python_tags(text: str):
    assert "could not determine a constructor for the tag" in invalid(parse_yaml, text, "f.yaml")


def test_parse_yaml_refuses_an_unhashable_key():
    assert invalid(parse_yaml, "? [a, b]\n: 1\n", "f.yaml") == (
        "f.yaml: expected plain YAML, found a problem: unhashable mapping key at line 1"
    )


def test_parse_yaml_allows_reusing_an_anchor():
    assert parse_yaml("a: &x {k: 1}\nb: *x\n", "f.yaml") == {"a": {"k": 1}, "b": {"k": 1}}


# --- Workspace.resolve ----------------------------------------------------------------------------


def test_resolve_returns_the_real_path_of_a_file(ws: Workspace):
    assert ws.resolve("data/a.csv", what="w") == (ws.root / "data" / "a.csv").resolve()
    assert ws.resolve("./data/a.csv", what="w") == (ws.root / "data" / "a.csv").resolve()


@pytest.mark.parametrize(
    "rel", ["../secret.txt", "data/../../secret.txt", "data/../data/a.csv", "..\\secret.txt"]
)
def test_resolve_refuses_dotdot(ws: Workspace, rel: str):
    assert invalid(ws.resolve, rel, what="m.json: p") == (
        f"m.json: p: expected a path relative to the workspace without '..', found {rel!r}"
    )


def test_resolve_refuses_absolute_paths(ws: Workspace):
    for rel in (str(ws.root.parent / "secret.txt"), str((ws.root / "data" / "a.csv").resolve())):
        assert "expected a path relative to the workspace" in invalid(ws.resolve, rel, what="w")


@pytest.mark.parametrize("rel", ["", "data/a\x00.csv", None, 7])
def test_resolve_refuses_what_is_not_a_path(ws: Workspace, rel: object):
    assert invalid(ws.resolve, rel, what="w") == (
        f"w: expected a relative path inside the workspace, found {rel!r}"
    )


def test_resolve_refuses_a_symlink_out(ws: Workspace):
    (ws.root / "data" / "link.txt").symlink_to(ws.root.parent / "secret.txt")
    assert invalid(ws.resolve, "data/link.txt", what="w") == (
        f"w: data/link.txt leads outside the workspace "
        f"(a symlink to {(ws.root.parent / 'secret.txt').resolve()})"
    )


def test_resolve_refuses_a_symlinked_folder_out(ws: Workspace):
    (ws.root / "up").symlink_to(ws.root.parent, target_is_directory=True)
    assert "leads outside the workspace" in invalid(ws.resolve, "up/secret.txt", what="w")


def test_resolve_refuses_a_symlink_to_a_device(ws: Workspace):
    (ws.root / "null").symlink_to("/dev/null")
    assert "leads outside the workspace" in invalid(ws.resolve, "null", what="w")


def test_resolve_allows_a_symlink_inside(ws: Workspace):
    (ws.root / "alias.csv").symlink_to("data/a.csv")
    assert ws.resolve("alias.csv", what="w") == (ws.root / "data" / "a.csv").resolve()


def test_resolve_works_from_a_symlinked_workspace(ws: Workspace, tmp_path: Path):
    (tmp_path / "link").symlink_to(ws.root, target_is_directory=True)
    assert Workspace(tmp_path / "link").resolve("data/a.csv", what="w").read_text() == "x\n1\n"


def test_resolve_names_a_missing_file(ws: Workspace):
    assert invalid(ws.resolve, "data/b.csv", what="w") == (
        "w: file data/b.csv not found in the workspace"
    )
    (ws.root / "dangling").symlink_to("nowhere")
    assert invalid(ws.resolve, "dangling", what="w") == (
        "w: file dangling not found in the workspace"
    )
    assert ws.exists("dangling") and not ws.exists("data/b.csv")


def test_resolve_names_a_symlink_loop(ws: Workspace):
    (ws.root / "loop").symlink_to("loop")
    assert invalid(ws.resolve, "loop", what="w").startswith("w: cannot open loop: ")


def test_resolve_refuses_a_fifo_without_opening_it(ws: Workspace):
    os.mkfifo(ws.root / "data" / "fifo.csv")
    assert invalid(ws.resolve, "data/fifo.csv", what="w") == (
        "w: expected data/fifo.csv to be a regular file, found something else"
    )
    assert invalid(ws.read_text, "data/fifo.csv") == (
        "data/fifo.csv: expected data/fifo.csv to be a regular file, found something else"
    )


def test_resolve_refuses_a_folder(ws: Workspace):
    assert invalid(ws.resolve, "data", what="w") == (
        "w: expected data to be a regular file, found something else"
    )


def test_resolve_caps_the_size(ws: Workspace):
    assert ws.resolve("data/a.csv", what="w", max_bytes=4)  # exactly 4 bytes: allowed
    assert invalid(ws.resolve, "data/a.csv", what="w", max_bytes=3) == (
        "w: data/a.csv is 4 bytes, over the limit of 3 bytes"
    )


def test_read_text_caps_the_size_before_reading(ws: Workspace):
    with (ws.root / "big.txt").open("wb") as handle:  # sparse: big on paper, nothing to read
        handle.truncate(MAX_TEXT_BYTES + 1)
    assert invalid(ws.read_text, "big.txt") == (
        f"big.txt: big.txt is {MAX_TEXT_BYTES + 1:,} bytes, over the limit of "
        f"{MAX_TEXT_BYTES:,} bytes"
    )


def test_readers_never_write(ws: Workspace):
    (ws.root / "f.json").write_text('{"a": 1}', encoding="utf-8")
    (ws.root / "f.yaml").write_text("a: 1\n", encoding="utf-8")
    before = snapshot(ws.root)
    ws.read_json("f.json")
    ws.read_yaml("f.yaml")
    ws.resolve("data/a.csv", what="w")
    assert snapshot(ws.root) == before
