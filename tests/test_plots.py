"""Plots readable on a 1366-pixel laptop: at most 10 inches wide, text 10 pt and up, every axis
labelled, time axes formatted, and a sentence in plain words under each."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import matplotlib
import pytest

matplotlib.use("Agg")
from matplotlib.figure import Figure

from checker.chain import SOLUTIONS, stage_notebooks
from checker.plots import MAX_WIDTH, MIN_POINTS, STYLE, audit, readable


def test_a_hard_to_read_figure_is_caught_on_every_count():
    fig = Figure(figsize=(17, 4))
    ax = fig.add_subplot()
    start = datetime(2026, 1, 1, 12, 45, 39)
    ax.plot([start + timedelta(milliseconds=20 * i) for i in range(50)], range(50))  # 45:39.000000
    ax.set_title("tiny", fontsize=7)
    problems = audit(fig)
    assert any("17.0 inches wide" in p for p in problems)
    assert any("text at [7.0] pt" in p for p in problems)
    assert any("no x label" in p for p in problems) and any("no y label" in p for p in problems)
    assert any("format the time axis" in p for p in problems), problems


def test_a_readable_figure_passes():
    with matplotlib.rc_context(STYLE):
        fig = Figure()
        ax = fig.add_subplot()
        ax.plot([0, 1], [0.5, 0.75])
        ax.set(xlabel="epoch", ylabel="ROC AUC", title="learning curve")
        assert audit(fig) == []


def test_the_course_style_sets_laptop_sizes():
    with matplotlib.rc_context():
        readable()
        rc = matplotlib.rcParams
        assert rc["figure.figsize"][0] <= MAX_WIDTH
        for key in ("font.size", "axes.labelsize", "xtick.labelsize", "legend.fontsize"):
            assert rc[key] >= MIN_POINTS, key


def _cells(path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _shows_a_plot(cell) -> bool:
    """A pyplot figure (the lifecycle map carries its own footnote: checker/diagram.py)."""
    return cell["cell_type"] == "code" and "plt.show()" in "".join(cell["source"])


@pytest.mark.parametrize("notebook", [p.name for p in stage_notebooks(SOLUTIONS)])
def test_a_sentence_in_plain_words_follows_each_plot(notebook):
    cells = _cells(SOLUTIONS / notebook)
    for i, cell in enumerate(cells):
        if not _shows_a_plot(cell):
            continue
        if "caption(" in "".join(cell["source"]):
            continue  # checker.plots.caption: the sentence, shown under the plot by its own cell
        after = cells[i + 1] if i + 1 < len(cells) else None
        text = "".join(after["source"]).strip() if after else ""
        assert after is not None and after["cell_type"] == "markdown", (notebook, cell["id"])
        assert not text.startswith("#"), f"{notebook} {cell['id']}: a heading follows the plot"


@pytest.mark.slow
def test_every_figure_the_course_shows_is_readable(chain):
    """The solution chain ran with CHECKER_PLOT_AUDIT (tests/conftest.py): each figure shown was
    audited as the notebook drew it."""
    records = [json.loads(line) for line in chain.plot_audit.read_text().splitlines()]
    assert len(records) >= 20  # every stage and exercise draws
    bad = [(r["titles"], r["problems"]) for r in records if r["problems"]]
    assert not bad, bad
