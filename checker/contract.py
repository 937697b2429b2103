"""The artifact contract's JSON Schemas, shipped in `checker/schemas/`, and schema validation
that reports each problem as `file: field: expected …, found …`."""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Generator
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from checker.workspace import Workspace

MAX_SCHEMA_MESSAGES = 8


@cache
def schema(name: str) -> dict:
    """The JSON Schema `checker/schemas/<name>.schema.json`."""
    text = resources.files("checker").joinpath("schemas", f"{name}.schema.json").read_text("utf-8")
    return json.loads(text)


@cache
def _validator(name: str):
    # Imported here, and without the optional `rfc3987_syntax`: importing it compiles dozens of
    # lark grammars (2-4 s on a small machine) for the `iri` format, which no schema here uses and
    # which is not checked anyway (no format checker). A grade cell pays every second of import.
    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema(name))


def _field(path) -> str:
    parts: list[str] = []
    for part in path:
        parts.append(f"[{part}]" if isinstance(part, int) else f".{part}" if parts else str(part))
    return "".join(parts) or "(top level)"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@cache
def _fast(name: str):
    """A validator compiled to Python by fastjsonschema: the fast path for valid documents.

    Batch grading validates thousands of documents (every line of a request log); jsonschema's
    interpreter takes ~0.4 ms per small document, the compiled one a few microseconds. Only when
    it says invalid do we ask jsonschema, for messages that name every problem.
    """
    try:
        import fastjsonschema
    except ImportError:  # optional: without it, every document goes through jsonschema
        return None
    return fastjsonschema.compile(copy.deepcopy(schema(name)))  # it rewrites $refs in place


@cache
def _fast_many(name: str):
    if _fast(name) is None:
        return None
    import fastjsonschema

    one = copy.deepcopy(schema(name))
    one.pop("$schema", None)
    one.pop("$id", None)
    many = {"$schema": schema(name).get("$schema"), "type": "array", "items": one}
    if "$defs" in one:
        many["$defs"] = one.pop("$defs")
    return fastjsonschema.compile(many)


def compile_all() -> None:
    """Compile every schema's fast validator now: a batch does it once, before its workers fork,
    instead of once per worker on its first learner."""
    for entry in resources.files("checker").joinpath("schemas").iterdir():
        if entry.name.endswith(".schema.json"):
            _fast(entry.name.removesuffix(".schema.json"))
    _fast_many("serving_request")


def all_valid(name: str, documents: list) -> bool:
    """Whether every document is valid against schema `name`, checked in one call (a request log
    of thousands of lines). False means: ask `schema_problems` about each, for the messages."""
    fast = _fast_many(name)
    if fast is None:
        return not any(schema_problems(name, d, "") for d in documents)
    try:
        fast(documents)
    except Exception:
        return False
    return True


def schema_problems(name: str, document: Any, file: str) -> list[str]:
    """Messages for every way `document` breaks schema `name` (at most a few, most shallow first)."""
    fast = _fast(name)
    if fast is not None:
        try:
            fast(document)
            return []
        except Exception:
            pass
    errors = sorted(
        _validator(name).iter_errors(document), key=lambda e: (len(e.path), list(map(str, e.path)))
    )
    messages = []
    for error in errors[:MAX_SCHEMA_MESSAGES]:
        where = _field(error.absolute_path)
        if error.validator == "required":
            missing = error.message.split("'")[1] if "'" in error.message else error.message
            prefix = f"{where}." if error.absolute_path else ""
            messages.append(f"{file}: {prefix}{missing}: expected this field, found it missing")
        elif error.validator == "additionalProperties" and error.validator_value is False:
            messages.append(
                f"{file}: {where}: expected only the documented fields, found {error.message}"
            )
        else:
            expected = _expected(error)
            messages.append(f"{file}: {where}: expected {expected}, found {_short(error.instance)}")
    if len(errors) > MAX_SCHEMA_MESSAGES:
        messages.append(f"{file}: ... and {len(errors) - MAX_SCHEMA_MESSAGES} more schema problems")
    return messages


def _expected(error) -> str:
    v, value = error.validator, error.validator_value
    if v == "type":
        return f"a value of type {value if isinstance(value, str) else ' or '.join(value)}"
    if v == "pattern":
        return f"text matching {value}"
    if v == "enum":
        return "one of " + ", ".join(map(str, value))
    if v == "const":
        return repr(value)
    if v in {"minItems", "maxItems", "minLength", "maxLength", "minProperties"}:
        return f"{v} {value}"
    if v in {"minimum", "maximum"}:
        return f"{'at least' if v == 'minimum' else 'at most'} {value}"
    return error.message


def valid_json(ws: Workspace, rel: str, name: str) -> Generator[str, None, Any]:
    """Read `rel` as strict JSON and yield every way it breaks schema `name`; return the document
    when it matches, None when it does not (`document = yield from valid_json(...)`)."""
    document = ws.read_json(rel)
    problems = schema_problems(name, document, rel)
    yield from problems
    return None if problems else document
