"""Retiring a model version, and the `retired` check.

Stage 07 retires the version a retrain made redundant. Retirement is an act with traces, and the
check follows each one back to its source:

- the registry (`mlflow.db`, read with `sqlite3` only): the version is tagged
  `lifecycle_state=retired`, no alias points at it any more, and `champion` points at a live one;
- the archive: `archive/at-risk-day60-v<N>/SHA256SUMS` lists the archived files, every hash is
  recomputed, and the archived `MLmodel` is the model that version N was registered from;
- the model card: `MODEL_CARD.md` has a `## Retirement` section with a dated, reasoned entry for
  version N (`- version N retired on YYYY-MM-DD: <why>`).

Every version tagged retired must carry all three traces.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import PurePosixPath

from checker.errors import Invalid
from checker.iteration import iteration_problems, reload_problems, served_versions
from checker.lifecycle_map import placeholder_reason
from checker.registry import Problems, check
from checker.serving import LOG
from checker.store import STORE, Version, read_registry
from checker.workspace import MAX_DATA_BYTES, Workspace, sha256_file

MODEL = "at-risk-day60"
CARD = "MODEL_CARD.md"
SUMS = "SHA256SUMS"
STAGE = "07-iteration-retirement.ipynb (cells 'Your turn: the promotion rule', 'Your turn: `retire(version, reason)`' and 'Your turn: `sha256sums(folder)`')"
MAX_CARD_BYTES = 256_000
MAX_SUMS_BYTES = 1_000_000
MAX_SUMS_LINES = 10_000
MAX_ARCHIVE_BYTES = 1_000_000_000  # all listed files of one archive, hashed
SUM_LINE = re.compile(r"\\?([0-9a-fA-F]{64}) [ *](.+)")
HEADING = re.compile(r"#{1,2}(\s|$)")
ENTRY = re.compile(r"[-*+]\s+version\s+(\d+)\b[\s,]*(.*)", re.IGNORECASE)
RETIRED_ON = re.compile(r"retired\s+on\s+([^\s:]*)\s*:?\s*(.*)", re.IGNORECASE)
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
DATE_SLACK = dt.timedelta(days=1)  # registry times are UTC, a learner's date is local


def archive_folder(version: int) -> str:
    """Where the model files of a retired version are archived, relative to the workspace."""
    return f"archive/{MODEL}-v{version}"


def _champion_problems(versions: dict[int, Version], aliases: dict[str, int]) -> Problems:
    where = f"{STORE}: registered_model_aliases"
    number = aliases.get("champion")
    if number is None:
        found = ", ".join(f"{a}->{v}" for a, v in sorted(aliases.items())) or "no aliases"
        yield f"{where}: expected alias 'champion' on {MODEL}, found {found}"
        return
    version = versions.get(number)
    if version is None:
        yield f"{where}: champion: expected an existing version of {MODEL}, found version {number}, which is not registered"
    elif version.deleted:
        yield f"{where}: champion: expected a live version, found version {number}, which was deleted"
    elif version.status.upper() != "READY":
        yield f"{where}: champion: expected a version with status READY, found version {number} with status {version.status}"
    # a champion that points at a retired version is reported with that version's aliases


def parse_sums(text: str, rel: str) -> Iterator[tuple[int, str, str] | str]:
    """`(line number, hex, path)` per listed file of a sha256sum file, or a message per bad line."""
    lines = text.splitlines()
    if len(lines) > MAX_SUMS_LINES:
        yield f"{rel}: expected at most {MAX_SUMS_LINES:,} lines, found {len(lines):,}"
        return
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        match = SUM_LINE.fullmatch(line.rstrip("\r"))
        if match is None:
            shown = line if len(line) <= 60 else line[:57] + "..."
            yield f"{rel}: line {number}: expected '<64 hex digits>  <path>' (sha256sum format), found {shown!r}"
            continue
        yield number, match.group(1).lower(), match.group(2)


def _archive_problems(ws: Workspace, version: Version) -> Problems:
    """The archive of `version` exists, every listed file recomputes, and it is that version's model."""
    folder = archive_folder(version.number)
    rel = f"{folder}/{SUMS}"
    if not ws.exists(rel):
        yield f"{rel}: expected the archive of retired version {version.number} with a {SUMS} file, found no such file"
        return
    text = ws.read_text(rel, max_bytes=MAX_SUMS_BYTES)
    real_folder = ws.resolve(rel, what=rel, max_bytes=MAX_SUMS_BYTES).parent
    if real_folder != ws.root.resolve() / folder:
        shown = real_folder.relative_to(ws.root.resolve())
        yield f"{folder}: expected a folder of copies, found a link to {shown} (archive copies, not links)"
        return
    listed, hashed, changed, mlmodel = 0, 0, False, None
    for item in parse_sums(text, rel):
        if isinstance(item, str):
            yield item
            continue
        number, expected, path = item
        pure = PurePosixPath(path.replace("\\", "/"))
        if pure.is_absolute() or ".." in pure.parts or not pure.parts:
            yield f"{rel}: line {number}: expected a path inside {folder}/, found {path!r}"
            continue
        target = f"{folder}/{pure}"
        try:
            real = ws.resolve(target, what=f"{rel}: line {number}", max_bytes=MAX_DATA_BYTES)
        except Invalid as exc:
            yield str(exc)
            continue
        if not real.is_relative_to(real_folder):
            yield f"{rel}: line {number}: expected a file inside {folder}/, found {path} leads to {real.relative_to(ws.root.resolve())} (archive copies, not links)"
            continue
        listed += 1
        if pure.name == "MLmodel" and mlmodel is None:
            mlmodel = target
        hashed += real.stat().st_size
        if hashed > MAX_ARCHIVE_BYTES:
            yield f"{rel}: expected at most {MAX_ARCHIVE_BYTES:,} bytes of archived files, found more"
            return
        found = sha256_file(real)
        if found != expected:
            changed = True
            yield f"{rel}: line {number}: {path}: expected sha256 {expected} (as listed), found {found} (recomputed): the archive changed"
    if not listed:
        yield f"{rel}: expected the archived model files listed with their sha256, found none"
    elif mlmodel is None:
        yield f"{rel}: expected the archived model's MLmodel file among the listed files, found none"
    elif not changed:
        yield from _same_model_problems(ws, mlmodel, version)


def _same_model_problems(ws: Workspace, rel: str, version: Version) -> Problems:
    """The archived MLmodel names the logged model (or run) that `version` was registered from."""
    document = ws.read_yaml(rel)
    if not isinstance(document, dict):
        yield f"{rel}: expected an MLflow MLmodel file (a YAML mapping), found {type(document).__name__}"
        return
    source = version.source or ""
    model_id = source.removeprefix("models:/").split("/")[0]
    if source.startswith("models:/m-") and document.get("model_id") is not None:
        if document["model_id"] != model_id:
            yield f"{rel}: model_id: expected {model_id} (the source of version {version.number} in {STORE}), found {document['model_id']}: the archive holds another model"
    elif (
        version.run_id
        and document.get("run_id") is not None
        and document["run_id"] != version.run_id
    ):
        yield f"{rel}: run_id: expected {version.run_id} (the run of version {version.number} in {STORE}), found {document['run_id']}: the archive holds another model"


def retirement_section(text: str) -> list[str] | None:
    """The lines of the `## Retirement` section of a model card, or None when there is none."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.fullmatch(r"##\s+retirement\s*#*\s*", line.strip(), re.IGNORECASE):
            section = []
            for following in lines[i + 1 :]:
                if HEADING.match(following.strip()):
                    break
                section.append(following)
            return section
    return None


def _entry_problems(line: str, version: Version, today: dt.date) -> list[str]:
    """Why one retirement entry for `version` is not a dated, reasoned entry (empty if it is)."""
    where = f"{CARD}: ## Retirement: version {version.number}"
    rest = ENTRY.fullmatch(line.strip())
    match = RETIRED_ON.fullmatch(rest.group(2).strip()) if rest else None
    if match is None:
        return [
            f"{where}: expected '- version {version.number} retired on YYYY-MM-DD: <why>', found {line.strip()[:80]!r}"
        ]
    date_text, reason = match.group(1), match.group(2).strip()
    problems = []
    try:
        day = dt.date.fromisoformat(date_text) if ISO_DATE.fullmatch(date_text) else None
    except ValueError:
        day = None
    if day is None:
        problems.append(
            f"{where}: expected a date YYYY-MM-DD after 'retired on', found {date_text!r}"
        )
    elif version.created and day < version.created - DATE_SLACK:
        problems.append(
            f"{where}: expected a date on or after {version.created} (when version {version.number} was registered), found {day}"
        )
    elif day > today + DATE_SLACK:
        problems.append(f"{where}: expected a date no later than today ({today}), found {day}")
    elif version.tags.get("retired_on") not in (None, date_text):
        problems.append(
            f"{where}: expected the date of the model-version tag retired_on ({version.tags['retired_on']}), found {day}"
        )
    why = placeholder_reason(reason) if reason else "no reason"
    if why:
        problems.append(f"{where}: expected a reason after the date, found {reason!r}, {why}")
    return problems


def _card_problems(section: list[str], version: Version, today: dt.date) -> Problems:
    entries = [
        line
        for line in section
        if (m := ENTRY.fullmatch(line.strip())) and int(m.group(1)) == version.number
    ]
    if not entries:
        yield (
            f"{CARD}: ## Retirement: expected an entry '- version {version.number} retired on "
            f"YYYY-MM-DD: <why>', found none naming version {version.number}"
        )
        return
    problems = [_entry_problems(line, version, today) for line in entries]
    if all(problems):  # one good entry is enough
        yield from problems[0]


@check("retired", stage=STAGE)
def retired(ws: Workspace) -> Problems:
    """A version of at-risk-day60 is retired (tagged, alias-free, archived with recomputable
    hashes, recorded in the model card) and `champion` points at a live version."""
    registry = read_registry(ws, MODEL)
    if registry is None:
        yield f"{STORE}: registered_models: expected a registered model named {MODEL} (stage 05 registers it), found none"
        return
    versions, aliases = registry
    yield from _champion_problems(versions, aliases)
    comparison = yield from iteration_problems(ws, versions, aliases)
    retired_versions = [v for _, v in sorted(versions.items()) if v.retired]
    if not retired_versions and comparison is not None and comparison["verdict"] == "hold":
        return  # the champion held: nothing that served was replaced, nothing to retire
    if not retired_versions:
        states = ", ".join(
            f"{n} ({v.tags.get('lifecycle_state', 'untagged')})"
            for n, v in sorted(versions.items())
        )
        yield (
            f"{STORE}: model_version_tags: expected a version of {MODEL} tagged "
            f"lifecycle_state=retired, found none (versions: {states or 'none'})"
        )
        return
    served = yield from served_versions(ws)
    if served is not None:
        for version in retired_versions:
            if str(version.number) not in served:
                shown = ", ".join(sorted(served, key=lambda v: (len(v), v))) or "none"
                yield (
                    f"{STORE}: model_version_tags: version {version.number} is tagged "
                    f"lifecycle_state=retired: expected a version that served (a model_version of "
                    f"{LOG}), found it never answered a request (versions that served: {shown}): "
                    "retire the champion a new model replaced, not a version that never served"
                )
    if comparison is not None and comparison["verdict"] == "promote":
        yield from reload_problems(ws, retired_versions, aliases.get("champion"))
    try:
        card = ws.read_text(CARD, max_bytes=MAX_CARD_BYTES)
    except Invalid as exc:
        card = None
        yield str(exc) if ws.exists(CARD) else f"{CARD}: expected a model card, found no such file"
    section = retirement_section(card) if card is not None else None
    if card is not None and section is None:
        yield f"{CARD}: expected a section headed '## Retirement', found none"
    today = dt.date.today()
    for version in retired_versions:
        if version.aliases:
            yield (
                f"{STORE}: registered_model_aliases: expected no alias on retired version "
                f"{version.number}, found {', '.join(sorted(version.aliases))}"
            )
        try:
            yield from _archive_problems(ws, version)
        except Invalid as exc:
            yield str(exc)
        if section is not None:
            yield from _card_problems(section, version, today)
