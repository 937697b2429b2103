"""Draw a lifecycle map (`lifecycle_map.yaml`) as a diagram: the seven stages as a cycle.

    >>> from checker.diagram import render_map
    >>> fig = render_map(ws / "lifecycle_map.yaml")   # or a dict; a matplotlib Figure
    >>> display(fig)                                  # in a notebook; fig.savefig("map.png") elsewhere

Each stage is a box on a circle, in lifecycle order, holding its tasks; arrows run from stage to
stage and from retirement back to problem definition. A stage with a failure mode is drawn in red
with its signal, threshold and action; a lab review, when present, is summed up in a footnote.
The figure is built without pyplot, so drawing a map changes no global state and works under any
backend (tests use Agg).
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

from checker.errors import CheckerError, Invalid
from checker.lifecycle_map import MAP, STAGES, section_problems
from checker.workspace import MAX_TEXT_BYTES, parse_yaml

TITLES = {
    "problem_definition": "1. Problem definition",
    "data_preparation": "2. Data preparation",
    "training": "3. Training",
    "evaluation": "4. Evaluation",
    "deployment": "5. Deployment and serving",
    "monitoring": "6. Monitoring",
    "retirement": "7. Iteration and retirement",
}
RADIUS = 1.0
WRAP = 26  # characters per line of a task
ALERT = "#c0392b"


def load_map(path_or_dict: str | Path | dict) -> dict:
    """The map as a dict, read safely from a YAML file when given a path.

    Raises `CheckerError` naming what to fix when the map cannot be drawn: it is not a mapping,
    or its use case or any of the seven stages is missing or malformed.
    """
    if isinstance(path_or_dict, dict):
        document = path_or_dict
    else:
        path = Path(path_or_dict)
        if not path.is_file():
            raise CheckerError(
                f"no map at {str(path)!r}: write {MAP} first (exercise 08), "
                "or pass the map as a dict"
            )
        if path.stat().st_size > MAX_TEXT_BYTES:
            raise CheckerError(f"{path.name} is over {MAX_TEXT_BYTES:,} bytes: not a map")
        try:
            document = parse_yaml(path.read_text(encoding="utf-8"), path.name)
        except (Invalid, UnicodeDecodeError) as exc:
            raise CheckerError(f"cannot draw the map: {exc}") from None
    problems = section_problems(document, ("use_case", "stages"))
    if problems:
        raise CheckerError("cannot draw the map: " + "; ".join(problems))
    return document


def _wrap(text: str, width: int = WRAP) -> str:
    return "\n".join(textwrap.wrap(" ".join(str(text).split()), width)) or " "


def _position(i: int) -> tuple[float, float]:
    """Stage i on the circle, clockwise from the top."""
    angle = math.pi / 2 - 2 * math.pi * i / len(STAGES)
    return RADIUS * math.cos(angle), RADIUS * math.sin(angle)


def _failure_notes(document: dict) -> dict[str, list[str]]:
    """Per stage, one short text per failure mode: `signal > threshold -> action`."""
    notes: dict[str, list[str]] = {}
    modes = document.get("failure_modes")
    for mode in modes if isinstance(modes, list) else []:
        if not isinstance(mode, dict) or mode.get("stage") not in STAGES:
            continue
        found = mode.get("signal")
        signal: dict = found if isinstance(found, dict) else {}
        sign = {"above": ">", "below": "<"}.get(str(signal.get("direction")), "?")
        rule = f"{signal.get('name', '?')} {sign} {signal.get('threshold', '?')}"
        notes.setdefault(mode["stage"], []).append(
            f"FAILURE MODE: {_wrap(rule)}\n-> {_wrap(mode.get('action', ''))}"
        )
    return notes


def _lab_line(document: dict) -> str | None:
    review = document.get("lab_review")
    if not isinstance(review, dict):
        return None
    covers, ignores = review.get("covers"), review.get("ignores")
    if not (isinstance(covers, list) and isinstance(ignores, list)):
        return None
    return (
        f"Lab review ({review.get('lab', 'the lab')}): covers {', '.join(map(str, covers)) or 'nothing'}; "
        f"ignores {', '.join(map(str, ignores)) or 'nothing'}"
    )


def render_map(path_or_dict: str | Path | dict) -> Figure:
    """Draw the map at `path_or_dict` (a `lifecycle_map.yaml` path or the parsed dict).

    Returns a matplotlib `Figure`; raises `CheckerError` when the use case or a stage is
    missing (failure modes and the lab review are optional).
    """
    document = load_map(path_or_dict)
    notes = _failure_notes(document)

    fig = Figure(figsize=(10, 9.5), layout="constrained")  # checker.plots.MAX_WIDTH
    ax = fig.add_subplot()
    ax.set_xlim(-1.55, 1.55)
    ax.set_ylim(-1.45, 1.45)
    ax.axis("off")
    ax.set_title(_wrap(document["use_case"], 80), fontsize=14, fontweight="bold")
    centre = "the model lifecycle\n\nretirement feeds the\nnext problem definition"
    ax.text(0, 0, centre, ha="center", va="center", fontsize=11, color="dimgray")

    for i, stage in enumerate(STAGES):
        x, y = _position(i)
        lines = [TITLES[stage], *(f"- {_wrap(t)}" for t in document["stages"][stage]["tasks"])]
        failing = stage in notes
        ax.text(
            x,
            y,
            "\n".join(lines + notes.get(stage, [])),
            ha="center",
            va="center",
            fontsize=10,
            bbox={
                "boxstyle": "round,pad=0.6",
                "facecolor": "#fdecea" if failing else "#eaf2fb",
                "edgecolor": ALERT if failing else "#2c6fb7",
                "linewidth": 2.5 if failing else 1.2,
            },
            zorder=3,
        )

    for i in range(len(STAGES)):
        start, end = _position(i), _position((i + 1) % len(STAGES))
        last = i == len(STAGES) - 1
        ax.add_patch(
            FancyArrowPatch(
                (start[0] * 0.55, start[1] * 0.55),
                (end[0] * 0.55, end[1] * 0.55),
                connectionstyle="arc3,rad=-0.3",
                arrowstyle="-|>",
                mutation_scale=18,
                color=ALERT if last else "#2c6fb7",
                linestyle="--" if last else "-",
                linewidth=1.5,
                zorder=1,
            )
        )
    legend = ["red: a stage with a failure mode (its signal, threshold and action)"]
    lab = _lab_line(document)
    if lab:
        legend.append(_wrap(lab, 110))
    ax.text(-1.55, -1.45, "\n".join(legend), fontsize=10, color="dimgray", va="bottom")
    return fig
