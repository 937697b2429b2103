"""Four nbgrader preprocessors that `nbgrader_config.py` plugs into nbgrader's pipelines.

- `HideHiddenTests` (feedback): nbgrader's feedback shows the autograded notebook, whose test
  cells hold the hidden tests again (jupyter/nbgrader#917). This removes every
  `### BEGIN HIDDEN TESTS` ... `### END HIDDEN TESTS` region from the feedback, and replaces
  the outputs of those cells with the error's name and message only: an IPython traceback
  quotes the lines around the failing one, and whatever a learner's code printed there may
  echo the hidden data.
- `DeduplicateIds` (autograde): a learner who copies a graded or "your turn" cell duplicates
  its `grade_id`. nbgrader keeps the last copy and empties the metadata of the others to
  `{}`, which its own validator then reads as metadata of schema version 0 and refuses, so
  the learner's whole assignment fails to autograde (jupyter/nbgrader#1083, #1941). This
  version removes the metadata of the extra copies instead: they run as plain cells.
- `OverwriteCells` (autograde): with `add_missing_cells`, nbgrader puts back a grade cell a
  learner deleted, after the source cell before it. Its bookkeeping only knows grade and
  solution cells, so when that earlier cell is a locked read-only cell it raises `KeyError` and
  the learner's whole assignment fails; its index arithmetic also drifts once a cell has been
  added. This version looks each position up afresh, among all the nbgrader cells present.
- `SandboxedExecute` (autograde): nbgrader's `Execute`, with each learner's kernel started inside
  bubblewrap (`checker.sandbox.SandboxKernelManager`), as `checker grade --execute` runs it.
  Only autograde's pipeline gets it: `nbgrader validate` and JupyterLab's own kernels are the
  learner's, and run as usual.

Configure them in `nbgrader_config.py`:

    c.OverwriteCells.add_missing_cells = True
    c.Autograde.sanitize_preprocessors = [ClearOutput, DeduplicateIds, OverwriteKernelspec,
                                          OverwriteCells, CheckCellMetadata]
    c.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTests, CSSHTMLHeaderPreprocessor]
    c.Autograde.autograde_preprocessors = sandboxed(Autograde.autograde_preprocessors default)
"""

from __future__ import annotations

from nbformat import NotebookNode
from nbformat.v4 import new_output
from nbgrader import utils
from nbgrader.preprocessors import ClearHiddenTests, Execute, NbGraderPreprocessor
from nbgrader.preprocessors import OverwriteCells as NbgraderOverwriteCells

WITHHELD = "The outputs of a cell with hidden tests are not shown in feedback."


class HideHiddenTests(ClearHiddenTests):
    """Remove hidden test regions from feedback, with any output that could quote them."""

    enforce_metadata = False  # feedback only reads; a stray region in any cell is removed too

    def preprocess_cell(self, cell: NotebookNode, resources: dict, index: int):
        if cell.cell_type != "code" or self.begin_test_delimeter not in cell.source:
            return cell, resources
        cell, resources = super().preprocess_cell(cell, resources, index)
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        outputs = [new_output("stream", name="stdout", text=WITHHELD + "\n")]
        if errors:
            name, value = errors[0].get("ename", "Error"), errors[0].get("evalue", "")
            outputs.append(
                new_output("error", ename=name, evalue=value, traceback=[f"{name}: {value}"])
            )
        cell.outputs = outputs
        return cell, resources


class DeduplicateIds(NbGraderPreprocessor):
    """Keep nbgrader metadata on the last cell of each `grade_id`; strip it from earlier copies."""

    def preprocess(self, nb: NotebookNode, resources: dict):
        seen: set[str] = set()
        for cell in reversed(nb.cells):
            if not (utils.is_grade(cell) or utils.is_solution(cell) or utils.is_locked(cell)):
                continue
            grade_id = cell.metadata.nbgrader.get("grade_id")
            if grade_id in seen:
                self.log.warning("Cell with id '%s' exists multiple times: kept the last", grade_id)
                del cell.metadata["nbgrader"]
            else:
                seen.add(grade_id)
        return nb, resources


class OverwriteCells(NbgraderOverwriteCells):
    """nbgrader's `OverwriteCells`, with missing grade cells put back where they belong."""

    def add_missing_grade_cells(self, nb: NotebookNode, resources: dict):
        """Put each deleted grade cell back right after the nearest source cell before it that
        the submission still has (grade, solution or locked), or first when there is none."""
        source = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        order = [cell.name for cell in source.source_cells]
        sources = {cell.name: cell for cell in source.source_cells}
        points = {cell.name: cell.max_score for cell in source.grade_cells}
        solutions = {cell.name for cell in source.solution_cells}

        def position(grade_id: str) -> int | None:
            for i, cell in enumerate(nb.cells):
                if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
                    return i
            return None

        for i, grade_id in enumerate(order):
            if grade_id not in points or position(grade_id) is not None:
                continue
            self.log.warning("Missing grade cell %s encountered, adding to notebook", grade_id)
            cell = self.missing_cell_transform(
                sources[grade_id], points[grade_id], is_solution=grade_id in solutions
            )
            before = (position(earlier) for earlier in reversed(order[:i]))
            at = next((p + 1 for p in before if p is not None), 0)
            nb.cells.insert(at, cell)
        return nb, resources


class SandboxedExecute(Execute):
    """nbgrader's `Execute`, each kernel inside bubblewrap (`checker.sandbox`), over Unix sockets."""

    def __init__(self, *args, **kwargs) -> None:
        from checker.sandbox import SandboxKernelManager

        kwargs.setdefault("kernel_manager_class", SandboxKernelManager)
        super().__init__(*args, **kwargs)


def sandboxed(preprocessors: list) -> list:
    """Autograde's preprocessors with `Execute` replaced by `SandboxedExecute`."""
    return [SandboxedExecute if p is Execute else p for p in preprocessors]
