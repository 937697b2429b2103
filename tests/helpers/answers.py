"""Learner answers for tests that submit notebooks: the release filled in from the solutions,
and the plausible wrong answers the hidden tests must catch."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

from checker.chain import SOLUTIONS


def load(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def by_id(nb: nbformat.NotebookNode, grade_id: str) -> int:
    return next(
        i
        for i, c in enumerate(nb.cells)
        if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id
    )


def answered(release: Path, skip: tuple[str, ...] = ()) -> nbformat.NotebookNode:
    """The learner version with every answer cell filled in from the solution (except `skip`),
    the way a learner who got everything right submits it."""
    nb = load(release)
    solution = load(SOLUTIONS / release.name)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and meta["grade_id"] not in skip:
            source = solution.cells[by_id(solution, meta["grade_id"])].source
            cell.source = re.sub(
                r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", "", source, flags=re.M
            )
    return nb


WRONG_PSI = '''
def psi(reference, current):
    """Forgets the bin for missing values: right on the visible tests, wrong on hidden ones."""
    reference, current = pd.Series(reference).dropna(), pd.Series(current).dropna()
    if pd.api.types.is_numeric_dtype(reference) and not pd.api.types.is_bool_dtype(reference):
        edges = np.unique(np.quantile(reference, np.arange(1, 10) / 10))
        p = np.bincount(np.searchsorted(edges, reference), minlength=len(edges) + 1)
        q = np.bincount(np.searchsorted(edges, current), minlength=len(edges) + 1)
    else:
        categories = sorted(set(reference.astype(str)) | set(current.astype(str)))
        p = np.array([(reference.astype(str) == c).sum() for c in categories])
        q = np.array([(current.astype(str) == c).sum() for c in categories])
    p, q = p / p.sum(), q / q.sum()
    p, q = np.where(p == 0, 1e-4, p), np.where(q == 0, 1e-4, q)
    return float(np.sum((q - p) * np.log(q / p)))
'''
