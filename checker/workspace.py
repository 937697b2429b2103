"""Safe access to a learner's workspace: paths that stay inside it, size caps, safe parsers.

Everything in a workspace is untrusted. Each reader here either returns data or raises `Invalid`
with a message that names the file and the problem. Nothing here writes to the workspace.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from checker.errors import Invalid

MAX_TEXT_BYTES = 1_000_000  # manifests, maps, reports: small text files
MAX_DATA_BYTES = 200_000_000  # split files and stores
MAX_DEPTH = 32  # nesting of JSON/YAML containers
MAX_YAML_NODES = 20_000  # YAML nodes after expanding aliases (alias bombs)
MAX_INT_DIGITS = 30


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes, read in 1 MB blocks (checkpoints, archives: large files)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Workspace:
    """A learner's workspace folder, opened for reading only."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._real = self.root.resolve()
        self._real_text = str(self._real).rstrip("/")
        self._memo: dict = {}
        self._resolved: dict[str, tuple[Path, int]] = {}  # rel -> (real path, size)
        self._closers: list[Callable[[], Any]] = []

    def on_close(self, closer: Callable[[], Any]) -> None:
        """Call `closer` when this Workspace is closed (an open store's connection)."""
        self._closers.append(closer)

    def close(self) -> None:
        """Release what the checks opened; the memo is forgotten."""
        while self._closers:
            self._closers.pop()()
        self._memo.clear()
        self._resolved.clear()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def memo(self, key: tuple, compute: Callable[[], Any]) -> Any:
        """The value of `compute()`, computed once per key for this Workspace object.

        `check_all` shares one Workspace between checks, so a split file that several checks
        recompute from is read and parsed once per grading. A failure (`Invalid`) is remembered too.
        """
        if key not in self._memo:
            try:
                self._memo[key] = (True, compute())
            except Invalid as exc:
                self._memo[key] = (False, exc)
        ok, value = self._memo[key]
        if not ok:
            raise Invalid(str(value))
        return value

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    def resolve(self, rel: str, *, what: str, max_bytes: int = MAX_DATA_BYTES) -> Path:
        """Return the real path of the regular file `rel`, or raise `Invalid`.

        `what` names where the path came from (for example `data/manifest.json: splits.train.path`).
        The path must be relative, must not climb out with `..`, and must not lead out of the
        workspace through a symlink; it must be a regular file (no FIFOs or devices, which hang a
        reader) no larger than `max_bytes`.
        """
        found = self._resolved.get(rel) if isinstance(rel, str) else None
        if found is not None:  # resolved before in this grading (several checks read one file)
            real, size = found
            if size > max_bytes:
                raise Invalid(
                    f"{what}: {rel} is {size:,} bytes, over the limit of {max_bytes:,} bytes"
                )
            return real
        if not isinstance(rel, str) or not rel or "\x00" in rel:
            raise Invalid(f"{what}: expected a relative path inside the workspace, found {rel!r}")
        pure = PurePosixPath(rel.replace("\\", "/"))
        if pure.is_absolute() or Path(rel).is_absolute() or ".." in pure.parts:
            raise Invalid(
                f"{what}: expected a path relative to the workspace without '..', found {rel!r}"
            )
        walked = self._walk(pure)
        if walked is not None:  # the common case: no symlink on the way, nothing unusual
            real, size = walked
            if size > max_bytes:
                raise Invalid(
                    f"{what}: {rel} is {size:,} bytes, over the limit of {max_bytes:,} bytes"
                )
            self._resolved[rel] = walked
            return real
        candidate = self.root / pure
        try:
            real = candidate.resolve(strict=True)
        except FileNotFoundError:
            raise Invalid(f"{what}: file {rel} not found in the workspace") from None
        except (OSError, RuntimeError) as exc:  # symlink loops, permissions
            raise Invalid(f"{what}: cannot open {rel}: {exc.__class__.__name__}") from None
        if not real.is_relative_to(self._real):
            raise Invalid(f"{what}: {rel} leads outside the workspace (a symlink to {real})")
        info = real.stat()
        if not stat.S_ISREG(info.st_mode):
            raise Invalid(f"{what}: expected {rel} to be a regular file, found something else")
        if info.st_size > max_bytes:
            raise Invalid(
                f"{what}: {rel} is {info.st_size:,} bytes, over the limit of {max_bytes:,} bytes"
            )
        self._resolved[rel] = (real, info.st_size)
        return real

    def _walk(self, pure: PurePosixPath) -> tuple[Path, int] | None:
        """The real path and size of a regular file reached from the workspace's real root
        through real folders only (one `lstat` a component); None when anything is unusual (a
        symlink, a missing part, not a regular file), for `resolve` to say exactly what."""
        path = self._real_text
        try:
            for part in pure.parts:
                path = f"{path}/{part}"
                info = os.lstat(path)
                if stat.S_ISLNK(info.st_mode):
                    return None
        except OSError:
            return None
        if not pure.parts or not stat.S_ISREG(info.st_mode):
            return None
        return Path(path), info.st_size

    def exists(self, rel: str) -> bool:
        return (self.root / rel).exists() or (self.root / rel).is_symlink()

    def read_text(self, rel: str, *, max_bytes: int = MAX_TEXT_BYTES) -> str:
        path = self.resolve(rel, what=rel, max_bytes=max_bytes)
        data = path.read_bytes()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Invalid(
                f"{rel}: expected UTF-8 text, found an invalid byte at offset {exc.start}"
            ) from None

    def read_json(self, rel: str) -> Any:
        """Parsed JSON; callers must not mutate it (it is shared between checks)."""
        return self.memo(("json", rel), lambda: parse_json(self.read_text(rel), rel))

    def read_yaml(self, rel: str) -> Any:
        """Parsed YAML; callers must not mutate it (it is shared between checks)."""
        return self.memo(("yaml", rel), lambda: parse_yaml(self.read_text(rel), rel))


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed (numbers must be finite)")


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits is too large")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]} is out of range")
    return value


def _depth(value: Any) -> int:
    """Nesting depth of lists and dicts, computed without recursion."""
    if isinstance(value, dict) and not any(isinstance(v, dict | list) for v in value.values()):
        return 1  # the common case (a log record): flat
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            items = list(item.values())
        elif isinstance(item, list):
            items = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in items)
    return deepest


def parse_json(text: str, name: str) -> Any:
    """Parse JSON strictly: no NaN/Infinity, no huge integers, no duplicate keys, bounded depth."""

    try:
        value = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_int=_parse_int,
            parse_float=_parse_float,
            object_pairs_hook=_no_duplicates,
        )
    except json.JSONDecodeError as exc:
        raise Invalid(
            f"{name}: expected valid JSON, found a syntax error at line {exc.lineno} "
            f"column {exc.colno} ({exc.msg})"
        ) from None
    except ValueError as exc:
        raise Invalid(f"{name}: expected valid JSON, found {exc}") from None
    except RecursionError:
        raise Invalid(
            f"{name}: expected at most {MAX_DEPTH} levels of nesting, found more"
        ) from None
    # Nesting can be no deeper than the brackets opened: most documents skip the walk.
    if text.count("{") + text.count("[") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise Invalid(f"{name}: expected at most {MAX_DEPTH} levels of nesting, found more")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return out


class _SafeConstruction:
    """The constructor's caps, shared by both loaders: no huge integers, no duplicate keys."""

    def construct_yaml_int(self, node):
        text = str(node.value)
        if len(text.lstrip("+-").replace("_", "")) > MAX_INT_DIGITS:
            raise yaml.YAMLError(
                f"an integer of {len(text)} characters at line {node.start_mark.line + 1} "
                f"(at most {MAX_INT_DIGITS} digits)"
            )
        return super().construct_yaml_int(node)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`, resolved by PyYAML
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                raise yaml.YAMLError(
                    f"unhashable mapping key at line {key_node.start_mark.line + 1}"
                ) from None
            if duplicate:
                raise yaml.YAMLError(
                    f"duplicate key {key!r} at line {key_node.start_mark.line + 1}"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _BoundedLoader(_SafeConstruction, yaml.SafeLoader):
    """`yaml.SafeLoader` with caps: nodes after alias expansion, nesting depth, no recursive
    aliases, no duplicate keys, no huge integers. Python tags are already refused by the safe
    constructor."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._nodes = 0
        self._level = 0
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._sizes:
                raise yaml.YAMLError(
                    f"recursive alias *{event.anchor} at line {event.start_mark.line + 1}"
                )
            self._count(self._sizes.get(id(target), 1))
            return super().compose_node(parent, index)
        self._level += 1
        if self._level > MAX_DEPTH:
            raise yaml.YAMLError(f"more than {MAX_DEPTH} levels of nesting")
        before = self._nodes
        self._count(1)
        node = super().compose_node(parent, index)
        self._sizes[id(node)] = self._nodes - before
        self._level -= 1
        return node

    def _count(self, n: int) -> None:
        self._nodes += n
        if self._nodes > MAX_YAML_NODES:
            raise yaml.YAMLError(
                f"more than {MAX_YAML_NODES:,} nodes once aliases are expanded (an alias bomb?)"
            )


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


def _children(node: yaml.Node) -> list:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_graph(root: yaml.Node) -> None:
    """Refuse a composed node graph that is cyclic, deeper than MAX_DEPTH or larger than
    MAX_YAML_NODES once aliases are expanded; iterative, each node visited once."""
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            on_path.discard(key)
            children = _children(node)
            size[key] = 1 + sum(size[id(c)] for c in children)
            height[key] = 1 + max((height[id(c)] for c in children), default=0)
            if size[key] > MAX_YAML_NODES or height[key] > MAX_DEPTH:
                raise yaml.YAMLError("over the node or depth cap")
            continue
        if key in size:
            continue
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise yaml.YAMLError("a recursive alias")
            if id(child) not in size:
                stack.append((child, False))


class _FastLoader(_SafeConstruction, getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's C parser and composer with the same constructor caps: about ten times faster
    than `_BoundedLoader`. Its node graph is checked by `_check_graph` before construction."""


_FastLoader.add_constructor("tag:yaml.org,2002:int", _FastLoader.construct_yaml_int)
FAST_YAML = hasattr(yaml, "CSafeLoader")  # False: PyYAML was built without libyaml


def parse_yaml(text: str, name: str) -> Any:
    """Parse YAML safely with caps; never `yaml.load`.

    The fast path (libyaml) parses valid documents; anything it refuses is parsed again by the
    pure-Python `_BoundedLoader`, whose error names the problem precisely (line, anchor, key).
    """
    # libyaml recurses in C; it caps flow nesting itself (1000), but the slow path needs no trust.
    if FAST_YAML and text.count("[") + text.count("{") < 2_000:
        loader = _FastLoader(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                _check_graph(node)
            return None if node is None else loader.construct_document(node)
        except (yaml.YAMLError, RecursionError):
            pass
        finally:
            loader.dispose()
    return _parse_yaml_slowly(text, name)


def _parse_yaml_slowly(text: str, name: str) -> Any:
    loader = _BoundedLoader(text)
    try:
        value = loader.get_single_data()
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        detail = " ".join(str(exc).split())
        raise Invalid(f"{name}: expected plain YAML, found a problem: {detail or first}") from None
    except RecursionError:
        raise Invalid(
            f"{name}: expected at most {MAX_DEPTH} levels of nesting, found more"
        ) from None
    finally:
        loader.dispose()
    return value
