"""One plot style for the course: figures readable on a 1366-pixel laptop screen.

    >>> from checker.plots import readable
    >>> readable()          # once, after `import matplotlib.pyplot as plt`
    >>> caption("What to look at, in plain words.")   # under a plot, in the cell that draws it

JupyterLab shows a figure at its own size until it is wider than the notebook column, then
shrinks it, text and all: a 17-inch figure with 8-point text ends up at about half size. So
figures are at most `MAX_WIDTH` inches wide and no text is smaller than `MIN_POINTS` points.

`audit(fig)` lists what breaks those rules in a figure: too wide, text too small, a visible axis
without a label, a time axis whose ticks read like `45:39.000000`. With the environment variable
`CHECKER_PLOT_AUDIT` naming a file, `readable()` also audits every figure a notebook shows and
appends one JSON line per figure to that file (tests/test_plots.py runs the course that way).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import matplotlib as mpl

MAX_WIDTH = 10.0  # inches
MIN_POINTS = 10.0
STYLE: dict[str, Any] = {
    "figure.figsize": (9.0, 3.6),
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "legend.title_fontsize": 10,
    "figure.titlesize": 13,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_RAW_TIME = re.compile(r":\d\d\.\d{3,}")  # 45:39.000000: seconds with raw fractions


def readable() -> None:
    """Apply the course's style to every figure drawn from now on in this process."""
    mpl.rcParams.update(STYLE)  # type: ignore[arg-type]
    if os.environ.get("CHECKER_PLOT_AUDIT"):
        _audit_every_shown_figure(os.environ["CHECKER_PLOT_AUDIT"])


def audit(fig) -> list[str]:
    """What makes `fig` hard to read on a laptop; empty when nothing does."""
    from matplotlib.text import Text

    problems = []
    width = fig.get_size_inches()[0]
    if width > MAX_WIDTH + 1e-9:
        problems.append(f"{width:.1f} inches wide (at most {MAX_WIDTH:g})")
    fig.canvas.draw()
    small = sorted(
        {
            round(t.get_fontsize(), 1)
            for t in fig.findobj(Text)
            if t.get_visible() and t.get_text().strip() and t.get_fontsize() < MIN_POINTS
        }
    )
    if small:
        problems.append(f"text at {small} pt (at least {MIN_POINTS:g})")
    for i, ax in enumerate(fig.axes):
        if not (ax.get_visible() and ax.axison):
            continue
        for name, axis, label in (
            ("x", ax.xaxis, ax.get_xlabel()),
            ("y", ax.yaxis, ax.get_ylabel()),
        ):
            ticks = [
                t.get_text() for t in axis.get_ticklabels() if t.get_visible() and t.get_text()
            ]
            if ticks and not label.strip() and not _shared_label(ax, name, fig):
                problems.append(f"axes {i} ({ax.get_title() or 'untitled'}): no {name} label")
            raw = [t for t in ticks if _RAW_TIME.search(t)]
            if raw:
                problems.append(
                    f"axes {i}: {name} ticks read like {raw[0]!r}: format the time axis"
                )
    return problems


def _shared_label(ax, name: str, fig) -> bool:
    """A row or column of axes sharing one axis may carry one label for all (or a figure label)."""
    if fig.get_supxlabel() if name == "x" else fig.get_supylabel():
        return True
    shared = ax.get_shared_x_axes() if name == "x" else ax.get_shared_y_axes()
    siblings = [a for a in fig.axes if a is not ax and shared.joined(a, ax)]
    return any((a.get_xlabel() if name == "x" else a.get_ylabel()).strip() for a in siblings)


def _audit_every_shown_figure(path: str) -> None:
    """Wrap the canvas's print_figure (what the inline backend calls to show a figure)."""
    from matplotlib.backend_bases import FigureCanvasBase

    if FigureCanvasBase.print_figure.__name__ == "audited_print_figure":
        return
    original = FigureCanvasBase.print_figure

    def audited_print_figure(self, *args, **kwargs):
        fig = self.figure
        titles = [t for t in [fig.get_suptitle(), *(a.get_title() for a in fig.axes)] if t]
        record = {"size": list(fig.get_size_inches()), "titles": titles, "problems": audit(fig)}
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")
        return original(self, *args, **kwargs)

    FigureCanvasBase.print_figure = audited_print_figure  # type: ignore[method-assign]


def caption(sentence: str) -> None:
    """Show one sentence in plain words under a plot: what to look at, and what it means."""
    from IPython.display import Markdown, display

    display(Markdown(f"*{sentence}*"))
