"""The typical lab of exercise 10 (`datasets/labs/typical-lab.ipynb`), and the `lab_improved` check.

The learner reviews a lab of the kind trainees meet (a random row split, no test set, nothing
logged, nothing versioned), then improves their own copy in ONE way and records which in
`lab/improvement.json`:

- `test_set`: a leak-free test set. `lab/manifest.json` names the split files (train and test at
  least) with their sha256 and rows; no `key` value is in two splits.
- `versioning`: the data versioned. `lab/manifest.json` names the files the lab trained on; every
  sha256, row count and the version (the contract's formula) recompute.
- `tracking`: runs logged. The MLflow store `mlflow.db` holds an experiment `typical-lab` with a
  FINISHED run that has at least one param and one metric, every value finite.

As everywhere in the checker, nothing is taken on trust: files are re-hashed and re-counted and
the store is opened read-only.
"""

from __future__ import annotations

import json
from pathlib import Path

from checker.contract import valid_json
from checker.errors import CheckerError, Invalid
from checker.lifecycle_map import placeholder_reason
from checker.manifest import data_version, file_bytes, leak_problems, load_split
from checker.registry import Problems, check
from checker.store import STORE, finite_metric, open_store
from checker.workspace import Workspace

LAB = Path("datasets") / "labs" / "typical-lab.ipynb"
IMPROVEMENT = "lab/improvement.json"
LAB_MANIFEST = "lab/manifest.json"
EXPERIMENT = "typical-lab"
KINDS = ("test_set", "versioning", "tracking")
STAGE = "10-exercise-lab-review.ipynb (cell 'Your turn 2: improve your copy of the lab')"


def find_lab(start: str | Path | None = None) -> Path:
    """The typical lab notebook: the first `datasets/labs/typical-lab.ipynb` walking up from `start`."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / LAB).is_file():
            return folder / LAB
    raise CheckerError(
        f"no {LAB} found above {here}: open this notebook from a clone of the course"
    )


def lab_markdown(path: str | Path) -> str:
    """The lab's cells as one Markdown text (code in fenced blocks), to read inside a notebook."""
    cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    parts = []
    for i, cell in enumerate(cells, start=1):
        source = "".join(cell["source"]).strip()
        if cell["cell_type"] == "code":
            parts.append(f"*cell {i} (code)*\n\n```python\n{source}\n```")
        else:
            quoted = "\n".join(f"> {line}" for line in source.splitlines())
            parts.append(f"*cell {i} (markdown)*\n\n{quoted}")
    return "\n\n".join(parts)


def _manifest_problems(ws: Workspace, *, test_set: bool) -> Problems:
    manifest = yield from valid_json(ws, LAB_MANIFEST, "lab_manifest")
    if manifest is None:
        return
    splits, key = manifest["splits"], manifest["key"]
    hashes: dict[str, str] = {}
    keys: dict = {}
    for name, split in splits.items():
        where = f"{LAB_MANIFEST}: splits.{name}.path"
        try:
            _, found = file_bytes(ws, split["path"], where)
            hashes[name] = found
            if found != split["sha256"]:
                yield (
                    f"{LAB_MANIFEST}: splits.{name}.sha256: expected {found} (the sha256 of "
                    f"{split['path']}), found {split['sha256']}"
                )
            table = load_split(ws, split["path"], where)
        except Invalid as exc:
            yield str(exc)
            continue
        if len(table) != split["rows"]:
            yield f"{LAB_MANIFEST}: splits.{name}.rows: expected {len(table)} (rows in {split['path']}), found {split['rows']}"
        if key in table.frame.columns:
            keys[name] = table.column(key)
        elif test_set:
            yield f"{LAB_MANIFEST}: key: expected a column of {split['path']}, found {key!r} is not one"
    if len(hashes) == len(splits):
        expected = data_version(hashes)
        if manifest["version"] != expected:
            yield (
                f"{LAB_MANIFEST}: version: expected {expected} (sha256 of the sorted "
                f"'<split>:<sha256>' lines), found {manifest['version']}"
            )
    if not test_set:
        return
    absent = [name for name in ("train", "test") if name not in splits]
    if absent:
        yield f"{LAB_MANIFEST}: splits: expected a train and a test split, found no {' or '.join(absent)}"
    elif "test" in keys and len(keys["test"]) == 0:
        yield f"{LAB_MANIFEST}: splits.test: expected rows to test on, found an empty test split"
    yield from leak_problems(LAB_MANIFEST, keys, sorted(keys), key, "the test set leaks")


def _tracking_problems(ws: Workspace) -> Problems:
    with open_store(ws) as store:
        store.require(("experiments", "runs", "params", "metrics"))
        found = store.query(
            "SELECT experiment_id FROM experiments WHERE name = ? AND lifecycle_stage = 'active'",
            (EXPERIMENT,),
        )
        if not found:
            names = [row[0] for row in store.query("SELECT name FROM experiments")][:5]
            yield f"{STORE}: experiments: expected an experiment named {EXPERIMENT!r}, found {names}"
            return
        runs = [
            row[0]
            for row in store.query(
                "SELECT run_uuid FROM runs WHERE experiment_id = ? AND status = 'FINISHED' "
                "AND lifecycle_stage = 'active'",
                (found[0][0],),
            )
        ]
        if not runs:
            yield f"{STORE}: experiment {EXPERIMENT}: expected a FINISHED run, found none (a crashed or RUNNING run does not count)"
            return
        marks = ",".join("?" * len(runs))
        params = {
            row[0]
            for row in store.query(
                f"SELECT run_uuid FROM params WHERE run_uuid IN ({marks})", tuple(runs)
            )
        }
        metrics = store.query(
            f"SELECT run_uuid, key, value, is_nan FROM metrics WHERE run_uuid IN ({marks})",
            tuple(runs),
        )
        measured = {run for run, *_ in metrics}
        if not params & measured:
            yield (
                f"{STORE}: experiment {EXPERIMENT}: expected a run with at least one param and "
                f"one metric, found {len(params)} run(s) with params and {len(measured)} with metrics"
            )
        for run, name, value, is_nan in metrics:
            if not finite_metric(value, is_nan):
                yield f"{STORE}: experiment {EXPERIMENT}: run {run[:8]}: metric {name}: expected finite values, found NaN or infinity"
                break


@check("lab_improved", stage=STAGE)
def lab_improved(ws: Workspace) -> Problems:
    """`lab/improvement.json` names one improvement of the typical lab, and the workspace shows it:
    a leak-free test set or versioned data (`lab/manifest.json`), or tracked runs (`mlflow.db`)."""
    improvement = yield from valid_json(ws, IMPROVEMENT, "lab_improvement")
    if improvement is None:
        return
    reason = placeholder_reason(improvement["summary"])
    if reason:
        yield f"{IMPROVEMENT}: summary: expected a sentence saying what you changed, found {improvement['summary']!r}, {reason}"
    kind = improvement["kind"]
    if kind == "tracking":
        yield from _tracking_problems(ws)
    else:
        yield from _manifest_problems(ws, test_set=kind == "test_set")
