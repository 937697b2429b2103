"""`checkpoints/`, the per-epoch checkpoints of training runs, and the `checkpointed` check.

Stage 03 saves the pipeline after every epoch to `checkpoints/<run_id>/epoch-<NNN>.joblib` and
lists the files in `checkpoints/<run_id>/index.json`. A checkpoint is a pickle, and loading a
pickle runs code, so the check never loads one: it re-hashes each file's bytes, compares the
index with the MLflow store (read-only, through `open_store`) and follows the lineage tags of a
run resumed from a checkpoint (`resumed_from_run`, `resumed_from_epoch`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from checker.contract import valid_json
from checker.errors import Invalid
from checker.registry import Problems, check
from checker.store import STORE, open_store
from checker.workspace import MAX_DATA_BYTES, Workspace, sha256_file

CHECKPOINTS = "checkpoints"
STAGE = "03-training.ipynb (cells 'Your turn: write a checkpoint' and 'Your turn: load a checkpoint safely')"
MAX_RUN_FOLDERS = 200
MAX_HASHED_BYTES = 2_000_000_000  # all checkpoint files of a workspace together
TOLERANCE = 1e-9  # index val_roc_auc vs the store: the same float, written twice
RESUME_TAGS = ("resumed_from_run", "resumed_from_epoch")


@dataclass
class Index:
    """What one run's index.json claims, once read."""

    run_id: str
    rel: str
    epochs: list[int] = field(default_factory=list)


def _index_rel(run_id: str) -> str:
    return f"{CHECKPOINTS}/{run_id}/index.json"


def _checkpoint_rel(run_id: str, epoch: int) -> str:
    return f"{CHECKPOINTS}/{run_id}/epoch-{epoch:03d}.joblib"


def _run_folders(ws: Workspace) -> list[str]:
    """The names of the folders in `checkpoints/` (hidden ones skipped), sorted."""
    root = ws.root / CHECKPOINTS
    if not root.exists() and not root.is_symlink():
        return []
    real = root.resolve()
    if not real.is_relative_to(ws.root.resolve()):
        raise Invalid(f"{CHECKPOINTS}/: leads outside the workspace (a symlink to {real})")
    if not real.is_dir():
        raise Invalid(f"{CHECKPOINTS}: expected a folder of run folders, found something else")
    names = []
    with os.scandir(real) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            names.append(entry.name)
            if len(names) > MAX_RUN_FOLDERS:
                raise Invalid(
                    f"{CHECKPOINTS}/: expected at most {MAX_RUN_FOLDERS} run folders, found more"
                )
    return sorted(names)


def _resume_epoch(value: str | None) -> int | None:
    """The `resumed_from_epoch` tag as an epoch number, or None when it is not one."""
    if value is None or not value.strip().isdigit() or len(value.strip()) > 9:
        return None
    return int(value.strip())


def _consecutive(epochs: list[int], first: int) -> str | None:
    """Why `epochs` is not `first, first + 1, ...`, or None when it is."""
    if epochs == list(range(first, first + len(epochs))):
        return None
    shown = ", ".join(map(str, epochs[:12])) + (", ..." if len(epochs) > 12 else "")
    if epochs and epochs[0] != first:
        return f"expected the first epoch to be {first}, found {shown}"
    missing = sorted(set(range(first, max(epochs) + 1)) - set(epochs))
    if missing:
        gap = ", ".join(map(str, missing[:5]))
        return f"expected one checkpoint per epoch in order, found {shown} (no epoch {gap})"
    return f"expected one checkpoint per epoch in order, each once, found {shown}"


class _Budget:
    def __init__(self) -> None:
        self.left = MAX_HASHED_BYTES

    def spend(self, size: int) -> None:
        self.left -= size
        if self.left < 0:
            raise Invalid(
                f"{CHECKPOINTS}/: expected at most {MAX_HASHED_BYTES:,} bytes of checkpoints, "
                "found more (keep the checkpoints of this course's runs only)"
            )


def _check_index(
    ws: Workspace,
    folder: str,
    runs: dict[str, tuple[str, str]],
    tags: dict[str, dict[str, str]],
    val_auc: dict[tuple[str, int], list[float | None]],
    budget: _Budget,
) -> Generator[str, None, Index | None]:
    """Problems with `checkpoints/<folder>/`; returns its `Index` (None when unreadable)."""
    rel = _index_rel(folder)
    if not ws.exists(rel):
        yield f"{rel}: expected the index of the run's checkpoints, found no such file"
        return None
    document = yield from valid_json(ws, rel, "checkpoint_index")
    if document is None:
        return None
    run_id = document["run_id"]
    if run_id != folder:
        yield f"{rel}: run_id: expected {folder} (the name of its folder), found {run_id}"
        return None
    if run_id not in runs:
        yield f"{rel}: run_id: expected the id of a run in {STORE}, found {run_id}, which is not one"
        return None
    index = Index(run_id, rel, [entry["epoch"] for entry in document["epochs"]])
    resumed_from = _resume_epoch(tags.get(run_id, {}).get("resumed_from_epoch"))
    first = 1 if resumed_from is None else resumed_from + 1
    order = _consecutive(index.epochs, first)
    if order:
        why = "" if resumed_from is None else f" (the run resumed after epoch {resumed_from})"
        yield f"{rel}: epochs: {order}{why}"
    for i, entry in enumerate(document["epochs"]):
        epoch, where = entry["epoch"], f"{rel}: epochs[{i}]"
        try:
            path = ws.resolve(entry["path"], what=f"{where}.path", max_bytes=MAX_DATA_BYTES)
        except Invalid as exc:
            yield str(exc)
            continue
        expected_rel = _checkpoint_rel(run_id, epoch)
        given_rel = PurePosixPath(entry["path"].replace("\\", "/")).as_posix()
        if given_rel != expected_rel:
            yield f"{where}.path: expected {expected_rel}, found {entry['path']}"
        budget.spend(path.stat().st_size)
        found = sha256_file(path)
        if found != entry["sha256"]:
            yield (
                f"{where}.sha256: expected {found} (the sha256 of {entry['path']}), found "
                f"{entry['sha256']}: the file changed after it was indexed"
            )
        stored = val_auc.get((run_id, epoch))
        claimed = entry["val_roc_auc"]
        if not stored:
            yield (
                f"{where}.val_roc_auc: expected the value {STORE} holds for run {run_id[:8]} at "
                f"step {epoch}, found no val_roc_auc logged at that step"
            )
        elif not any(
            value is not None and math.isclose(value, claimed, rel_tol=TOLERANCE, abs_tol=TOLERANCE)
            for value in stored
        ):
            shown = "NaN" if stored[-1] is None else repr(stored[-1])
            yield (
                f"{where}.val_roc_auc: expected {shown} ({STORE}, run {run_id[:8]}, step "
                f"{epoch}), found {claimed!r}"
            )
    name, status = runs[run_id]
    logged = sorted({step for (run, step) in val_auc if run == run_id} - set(index.epochs))
    if status == "FINISHED" and logged:
        steps = ", ".join(map(str, logged[:8]))
        yield (
            f"{rel}: epochs: expected a checkpoint for every epoch run {name or run_id[:8]} logged "
            f"val_roc_auc for, found none for step {steps}"
        )
    return index


def _check_resumed(
    store,
    resumed: dict[str, dict[str, str]],
    runs: dict[str, tuple[str, str]],
    indexes: dict[str, Index],
) -> Problems:
    """Problems with the runs tagged `resumed_from_run`: lineage, histories, completion."""
    finished = []
    for run_id in sorted(resumed):
        name, status = runs.get(run_id, ("", "?"))
        label = f"{STORE}: run {name or run_id} ({run_id[:8]})"
        source = resumed[run_id].get("resumed_from_run", "")
        epoch_tag = resumed[run_id].get("resumed_from_epoch")
        epoch = _resume_epoch(epoch_tag)
        ok = True
        if source == run_id:
            yield f"{label}: tag resumed_from_run: expected the id of the interrupted run, found the run's own id"
            ok = False
        elif source not in runs:
            yield f"{label}: tag resumed_from_run: expected the id of a run in {STORE}, found {source!r}"
            ok = False
        if epoch is None:
            yield (
                f"{label}: tag resumed_from_epoch: expected the epoch number of the checkpoint it "
                f"loaded, found {epoch_tag!r}"
            )
            ok = False
        elif source in runs and source != run_id:
            source_index = indexes.get(source)
            if source_index is None:
                yield (
                    f"{label}: tag resumed_from_run: expected a run with checkpoints "
                    f"({_index_rel(source)}), found no readable index"
                )
                ok = False
            elif epoch not in source_index.epochs:
                listed = ", ".join(map(str, source_index.epochs[:12]))
                yield (
                    f"{label}: tag resumed_from_epoch: expected an epoch checkpointed in "
                    f"{source_index.rel} ({listed}), found {epoch}"
                )
                ok = False
        if epoch is not None:
            # The per-epoch history (val_*, train_*): later stages may log other metrics on the
            # run (stage 04 logs test_* at step 0 on the model it evaluates).
            first = store.query(
                "SELECT key, MIN(step) FROM metrics WHERE run_uuid = ? "
                "AND (key LIKE 'val\\_%' ESCAPE '\\' OR key LIKE 'train\\_%' ESCAPE '\\') "
                "GROUP BY key ORDER BY key",
                (run_id,),
            )
            early = [(key, step) for key, step in first if step <= epoch]
            if not first:
                yield f"{label}: metrics: expected the epochs after epoch {epoch}, found no metrics"
                ok = False
            elif early:
                key, step = early[0]
                yield (
                    f"{label}: metrics: expected only epochs after the resume epoch {epoch}, "
                    f"found {key} at step {step}"
                )
                ok = False
        if run_id not in indexes:
            yield (
                f"{_index_rel(run_id)}: expected the resumed run's own checkpoints, found no "
                "readable index"
            )
            ok = False
        if ok and status == "FINISHED":
            finished.append(run_id)
    if resumed and not finished:
        yield (
            f"{STORE}: runs: expected a resumed run that FINISHED and whose lineage checks out, "
            f"found none among {len(resumed)} resumed run(s)"
        )


@check("checkpointed", stage=STAGE)
def checkpointed(ws: Workspace) -> Problems:
    """Every indexed checkpoint is the file its sha256 says, epochs follow one another, the index
    agrees with the store, and a run resumed from a real checkpoint logs only later epochs."""
    folders = _run_folders(ws)
    if not folders:
        yield (
            f"{CHECKPOINTS}/: expected one folder per training run, named by its MLflow run id, "
            "with epoch-NNN.joblib files and an index.json, found none"
        )
        return
    with open_store(ws) as store:
        store.require(("runs", "metrics", "tags"))
        runs = {
            run_id: (name or "", status or "")
            for run_id, name, status in store.query("SELECT run_uuid, name, status FROM runs")
        }
        tags: dict[str, dict[str, str]] = {}
        for run_id, key, value in store.query(
            "SELECT run_uuid, key, value FROM tags WHERE key IN (?, ?)", RESUME_TAGS
        ):
            tags.setdefault(run_id, {})[key] = value
        ids = tuple(f for f in folders if f in runs)
        val_auc: dict[tuple[str, int], list[float | None]] = {}
        if ids:
            marks = ",".join("?" * len(ids))
            for run_id, step, value, is_nan in store.query(
                "SELECT run_uuid, step, value, is_nan FROM metrics WHERE key = 'val_roc_auc' "
                f"AND run_uuid IN ({marks}) ORDER BY timestamp",
                ids,
            ):
                val_auc.setdefault((run_id, step), []).append(None if is_nan else value)
        indexes: dict[str, Index] = {}
        budget = _Budget()
        for folder in folders:
            try:
                index = yield from _check_index(ws, folder, runs, tags, val_auc, budget)
            except Invalid as exc:
                if str(exc).startswith(f"{CHECKPOINTS}/:"):
                    raise
                yield str(exc)
                continue
            if index is not None:
                indexes[folder] = index
        yield from _selection_problems(ws, store)
        resumed = {run_id: t for run_id, t in tags.items() if "resumed_from_run" in t}
        if not resumed:
            yield (
                f"{STORE}: tags: expected a run tagged resumed_from_run and resumed_from_epoch "
                "(training resumed from a checkpoint in a new run), found none"
            )
            return
        yield from _check_resumed(store, resumed, runs, indexes)


# --- the choices stage 03 makes: on the declared success metric -------------------------------

SELECTION_TOLERANCE = 1e-9  # the same float, read back from the store
SELECTION_TAGS = ("role", "best", "best_epoch", "data_version", "model_uri")


def _selection_problems(ws: Workspace, store) -> Problems:
    """The run tagged best=true (at best_epoch) and the one run tagged role=baseline hold the
    highest `val_<success.metric>` among the FINISHED runs of their kind (candidates; baseline
    and baseline trials) of their experiment and data version."""
    from checker.problem import problem_fields

    metric = problem_fields(ws).get("metric", "recall_at_budget")
    key = f"val_{metric}"
    runs = {
        run_id: (experiment, name or run_id[:8])
        for run_id, experiment, name in store.query(
            "SELECT run_uuid, experiment_id, name FROM runs "
            "WHERE status = 'FINISHED' AND lifecycle_stage = 'active'"
        )
    }
    marks = ",".join("?" * len(SELECTION_TAGS))
    tags: dict[str, dict[str, str]] = {}
    for run_id, tag, value in store.query(
        f"SELECT run_uuid, key, value FROM tags WHERE key IN ({marks})", SELECTION_TAGS
    ):
        if run_id in runs:
            tags.setdefault(run_id, {})[tag] = str(value)
    values: dict[str, dict[int, float]] = {}
    for run_id, step, value, is_nan in store.query(
        "SELECT run_uuid, step, value, is_nan FROM metrics WHERE key = ? ORDER BY timestamp",
        (key,),
    ):
        if run_id in runs and not is_nan and isinstance(value, int | float):
            values.setdefault(run_id, {})[step] = float(value)
    why = f"{key}: problem.yaml's success.metric on the valid split"

    def label(run_id: str) -> str:
        return f"run {runs[run_id][1]} ({run_id[:8]})"

    def kind(run_id: str, roles: tuple[str, ...]) -> list[str]:
        experiment, version = runs[run_id][0], tags[run_id].get("data_version")
        return [
            r
            for r in runs
            if runs[r][0] == experiment
            and tags.get(r, {}).get("role") in roles
            and tags[r].get("data_version") == version
        ]

    def beaten(run_id: str, value: float, rivals: list[str], what: str) -> Problems:
        missing = [r for r in rivals if not values.get(r)]
        if missing:
            yield f"{STORE}: {label(missing[0])}: metrics: expected {key} logged ({why}), found none"
            return
        top = max(rivals, key=lambda r: max(values[r].values()))
        step = max(values[top], key=lambda s: values[top][s])
        if value < values[top][step] - SELECTION_TOLERANCE:
            yield (
                f"{STORE}: {label(run_id)}: {what}: expected the highest {key} among its kind "
                f"({why}), found {value:.6f} while {label(top)} has {values[top][step]:.6f} at "
                f"step {step}: choose on the declared metric, not on another"
            )

    best = [r for r in runs if tags.get(r, {}).get("best") == "true"]
    if len(best) != 1:
        yield (
            f"{STORE}: tags: expected exactly one finished run tagged best=true (the chosen "
            f"candidate), found {len(best)}"
        )
    else:
        run_id = best[0]
        epoch = tags[run_id].get("best_epoch", "")
        step = int(epoch) if epoch.isdigit() else None
        if tags[run_id].get("role") != "candidate":
            yield f"{STORE}: {label(run_id)}: tag role: expected 'candidate' on the run tagged best=true, found {tags[run_id].get('role')!r}"
        elif step is None or step not in values.get(run_id, {}):
            yield f"{STORE}: {label(run_id)}: tag best_epoch: expected an epoch at which the run logged {key}, found {epoch!r}"
        else:
            yield from beaten(
                run_id, values[run_id][step], kind(run_id, ("candidate",)), "best_epoch"
            )
    baselines = [r for r in runs if tags.get(r, {}).get("role") == "baseline"]
    if len(baselines) != 1:
        yield (
            f"{STORE}: tags: expected exactly one finished run tagged role=baseline (stage 05 "
            f"registers it as version 1; the other trials are role=baseline_trial), found "
            f"{len(baselines)}"
        )
        return
    run_id = baselines[0]
    if "model_uri" not in tags[run_id]:
        yield f"{STORE}: {label(run_id)}: tag model_uri: expected the baseline's logged model, found none"
    if not values.get(run_id):
        yield f"{STORE}: {label(run_id)}: metrics: expected {key} logged ({why}), found none"
        return
    rivals = kind(run_id, ("baseline", "baseline_trial"))
    yield from beaten(run_id, max(values[run_id].values()), rivals, "role=baseline")
