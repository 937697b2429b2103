"""The nbgrader preprocessors of `checker/nbgrader_plugins.py`, on small notebooks (no nbgrader
command here; tests/test_roundtrip.py runs them inside real nbgrader commands)."""

from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from nbgrader.nbgraderformat import MetadataValidator, SchemaTooOldError
from nbgrader.preprocessors import CheckCellMetadata
from nbgrader.preprocessors import DeduplicateIds as StockDeduplicateIds

from checker.nbgrader_plugins import WITHHELD, DeduplicateIds, HideHiddenTests, OverwriteCells

SECRET = "SECRET_SAMPLE = [1, 2, 3]"
TEST_CELL = f"""assert f(1) == 1
### BEGIN HIDDEN TESTS
{SECRET}
assert f(SECRET_SAMPLE) == 6, "hidden test failed: a list"
### END HIDDEN TESTS"""


def grade_cell(source: str, grade_id: str, **meta: object) -> nbformat.NotebookNode:
    cell = new_code_cell(source)
    cell.metadata["nbgrader"] = {
        "grade": True,
        "solution": False,
        "locked": True,
        "points": 5,
        "grade_id": grade_id,
        "schema_version": 3,
    } | meta
    return cell


def solution_cell(source: str, grade_id: str) -> nbformat.NotebookNode:
    cell = new_code_cell(source)
    cell.metadata["nbgrader"] = {
        "grade": False,
        "solution": True,
        "locked": False,
        "grade_id": grade_id,
        "schema_version": 3,
    }
    return cell


def failed_output() -> nbformat.NotebookNode:
    traceback = [
        "AssertionError                            Traceback (most recent call last)",
        f"Cell In[7], line 4\n      2 ### BEGIN HIDDEN TESTS\n      3 {SECRET}\n----> 4 assert ...",
        "AssertionError: hidden test failed: a list",
    ]
    return new_output(
        "error", ename="AssertionError", evalue="hidden test failed: a list", traceback=traceback
    )


def hide(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb, _ = HideHiddenTests().preprocess(nb, {})
    return nb


def test_hidden_regions_and_their_tracebacks_leave_the_feedback():
    cell = grade_cell(TEST_CELL, "t-1")
    cell.outputs = [new_output("stream", name="stdout", text=f"echo {SECRET}\n"), failed_output()]
    nb = hide(new_notebook(cells=[cell]))
    text = nbformat.writes(nb)
    assert SECRET not in text and "BEGIN HIDDEN TESTS" not in text
    assert nb.cells[0].source == "assert f(1) == 1"
    stream, error = nb.cells[0].outputs
    assert stream.text == WITHHELD + "\n"
    assert (error.ename, error.evalue) == ("AssertionError", "hidden test failed: a list")
    assert error.traceback == ["AssertionError: hidden test failed: a list"]


def test_a_passing_hidden_cell_shows_only_the_notice():
    cell = grade_cell(TEST_CELL, "t-1")
    cell.outputs = [new_output("stream", name="stdout", text="ok\n")]
    (output,) = hide(new_notebook(cells=[cell])).cells[0].outputs
    assert output.text == WITHHELD + "\n"


def test_other_cells_keep_their_outputs():
    plain = grade_cell("assert True", "t-2")
    plain.outputs = [new_output("stream", name="stdout", text="visible\n")]
    notes = new_markdown_cell("### BEGIN HIDDEN TESTS is how instructors mark hidden tests")
    nb = hide(new_notebook(cells=[plain, notes]))
    assert nb.cells[0].outputs[0].text == "visible\n"
    assert nb.cells[1].source.startswith("### BEGIN HIDDEN TESTS")


def duplicated() -> nbformat.NotebookNode:
    """A learner copied a solution cell and a grade cell: two grade_ids appear twice."""
    answer = solution_cell("x = 1", "q-answer")
    test = grade_cell("assert x == 1", "q-test")
    copies = [nbformat.from_dict(answer), nbformat.from_dict(test)]
    for i, copy in enumerate(copies):
        copy["id"] = f"pasted-{i}"  # JupyterLab gives a pasted cell a new id, not new metadata
    return new_notebook(cells=[answer, copies[0], test, copies[1]])


def test_stock_nbgrader_fails_the_whole_notebook_on_a_duplicated_id():
    """The bug the plugin works around (nbgrader#1083): stock dedup leaves `nbgrader: {}`."""
    nb, _ = StockDeduplicateIds().preprocess(duplicated(), {})
    assert nb.cells[0].metadata["nbgrader"] == {}
    with pytest.raises(SchemaTooOldError, match="Outdated schema version: 0"):
        CheckCellMetadata().preprocess(nb, {})


def test_duplicated_ids_keep_the_last_copy_and_validate():
    nb, _ = DeduplicateIds().preprocess(duplicated(), {})
    assert ["nbgrader" in c.metadata for c in nb.cells] == [False, True, False, True]
    assert nb.cells[1].metadata["nbgrader"]["grade_id"] == "q-answer"
    assert nb.cells[3].metadata["nbgrader"]["grade_id"] == "q-test"
    CheckCellMetadata().preprocess(nb, {})
    MetadataValidator().validate_nb(nb)


def test_unique_ids_are_left_alone():
    nb = new_notebook(cells=[solution_cell("x = 1", "a"), grade_cell("assert x", "b")])
    before = nbformat.writes(nb)
    DeduplicateIds().preprocess(nb, {})
    assert nbformat.writes(nb) == before


class FakeGradebook:
    """What `add_missing_grade_cells` reads from nbgrader's gradebook: a notebook's saved cells."""

    def __init__(self, cells: list[nbformat.NotebookNode]):
        from types import SimpleNamespace

        saved = []
        for cell in cells:
            meta = cell.metadata["nbgrader"]
            saved.append(
                SimpleNamespace(
                    name=meta["grade_id"],
                    source=cell.source,
                    cell_type=cell.cell_type,
                    locked=meta["locked"],
                    checksum="0",
                    max_score=meta.get("points"),
                    grade=meta["grade"],
                    solution=meta["solution"],
                )
            )
        self.notebook = SimpleNamespace(
            source_cells=saved,
            grade_cells=[c for c in saved if c.grade],
            solution_cells=[c for c in saved if c.solution],
        )

    def find_notebook(self, notebook_id: str, assignment_id: str) -> object:
        return self.notebook


def restore(released: list[nbformat.NotebookNode], submitted: list) -> list[str]:
    plugin = OverwriteCells()
    plugin.gradebook = FakeGradebook(released)
    plugin.notebook_id, plugin.assignment_id = "nb", "a"
    nb, _ = plugin.add_missing_grade_cells(new_notebook(cells=submitted), {})
    return [c.metadata.get("nbgrader", {}).get("grade_id", c.source) for c in nb.cells]


def locked_cell(source: str, grade_id: str) -> nbformat.NotebookNode:
    cell = new_code_cell(source)
    cell.metadata["nbgrader"] = {
        "grade": False,
        "solution": False,
        "locked": True,
        "grade_id": grade_id,
        "schema_version": 3,
    }
    return cell


def test_a_deleted_check_returns_after_the_locked_cell_before_it():
    """nbgrader's own version raises KeyError here and drops the learner's assignment."""
    answer, writer = solution_cell("x = 1", "answer"), locked_cell("write(x)", "writer")
    check = grade_cell("check()", "check")
    after = new_code_cell("print('the end')")
    found = restore([answer, writer, check], [answer, writer, after])
    assert found == ["answer", "writer", "check", "print('the end')"]


def test_several_deleted_cells_return_in_their_places():
    cells = [
        solution_cell("a = 1", "a"),
        grade_cell("assert a", "test-a"),
        solution_cell("b = 2", "b"),
        grade_cell("assert b", "test-b"),
    ]
    assert restore(cells, [cells[0], cells[2]]) == ["a", "test-a", "b", "test-b"]
    assert restore(cells, [cells[2]]) == ["test-a", "b", "test-b"]


def test_a_restored_cell_runs_the_original_test():
    check = grade_cell("assert answer == 42", "check")
    plugin = OverwriteCells()
    plugin.gradebook = FakeGradebook([solution_cell("answer = 42", "answer"), check])
    plugin.notebook_id, plugin.assignment_id = "nb", "a"
    nb, _ = plugin.add_missing_grade_cells(new_notebook(cells=[]), {})
    restored = nb.cells[0]
    assert restored.source.splitlines()[0].startswith("# This cell (id:check) was missing")
    assert restored.source.rstrip().endswith("assert answer == 42")
    assert restored.metadata["nbgrader"]["grade"] and restored.metadata["nbgrader"]["points"] == 5


def test_stock_nbgrader_drops_the_learner_when_a_locked_cell_precedes_the_deleted_one():
    from nbgrader.preprocessors import OverwriteCells as Stock

    answer, writer = solution_cell("x = 1", "answer"), locked_cell("write(x)", "writer")
    stock = Stock()
    stock.gradebook = FakeGradebook([answer, writer, grade_cell("check()", "check")])
    stock.notebook_id, stock.assignment_id = "nb", "a"
    with pytest.raises(KeyError, match="writer"):
        stock.add_missing_grade_cells(new_notebook(cells=[answer, writer]), {})
