"""`CheckResult` and `Report`: scoring, the terminal table, the HTML table, `raise_for_failure`
and the documented `--json` shape."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from checker import CheckResult, ChecksFailed, Report

README = Path(__file__).resolve().parents[1] / "checker" / "README.md"


def passed(name: str) -> CheckResult:
    return CheckResult(name, True, 10, 10)


def failed(
    name: str, *messages: str, hint: str = "revisit 02-data-preparation.ipynb"
) -> CheckResult:
    return CheckResult(name, False, 0, 10, list(messages), hint)


@pytest.fixture
def mixed() -> Report:
    return Report(
        "ws",
        [
            passed("data_versioned"),
            failed("metrics_logged", "mlflow.db: runs: expected 2, found 1", hint="revisit 03"),
            failed("lifecycle_map", "a.yaml: x: expected y, found z", "a.yaml: w: expected v"),
        ],
    )


def test_scores_add_up(mixed: Report):
    assert (mixed.score, mixed.max_score, mixed.passed) == (10, 30, False)
    assert Report("ws", [passed("a"), passed("b")]).passed
    assert Report("ws", []).passed and Report("ws", []).score == 0


def test_a_report_is_indexed_by_check_name(mixed: Report):
    assert mixed["metrics_logged"].messages == ["mlflow.db: runs: expected 2, found 1"]
    with pytest.raises(KeyError):
        mixed["nope"]


def test_the_terminal_table(mixed: Report):
    assert str(mixed) == "\n".join(
        [
            "check           result  points",
            "--------------  ------  ------",
            "data_versioned  pass    10/10",
            "metrics_logged  FAIL     0/10",
            "                  - mlflow.db: runs: expected 2, found 1",
            "                  hint: revisit 03",
            "lifecycle_map   FAIL     0/10",
            "                  - a.yaml: x: expected y, found z",
            "                  - a.yaml: w: expected v",
            "                  hint: revisit 02-data-preparation.ipynb",
            "total                   10/30",
        ]
    )


def test_the_terminal_table_of_no_checks():
    assert str(Report("ws", [])).splitlines() == [
        "check  result  points",
        "-----  ------  ------",
        "total           0/0",
    ]


def test_the_html_table_escapes_everything_a_learner_wrote():
    evil = "<script>alert('x')</script>"
    report = Report(f"ws{evil}", [CheckResult(f"c{evil}", False, 0, 10, [evil, "a & b"], evil)])
    page = report._repr_html_()
    assert "<script>" not in page
    assert page.count("&lt;script&gt;") == 4
    assert "a &amp; b" in page
    assert "<strong>Checker: 0/10</strong>" in page
    assert "✗ FAIL" in page and "✓ pass" not in page


def test_the_html_table_marks_passes_and_hides_their_hints(mixed: Report):
    page = mixed._repr_html_()
    assert page.count("✓ pass") == 1 and page.count("✗ FAIL") == 2
    assert page.count("<tr>") == 4  # a header and one row per check
    assert "<em>hint: revisit 03</em>" in page


def test_raise_for_failure_lists_each_failed_check(mixed: Report):
    with pytest.raises(ChecksFailed) as caught:
        mixed.raise_for_failure()
    assert str(caught.value) == "\n".join(
        [
            "Some checks failed:",
            "metrics_logged: 0/10",
            "  - mlflow.db: runs: expected 2, found 1",
            "  hint: revisit 03",
            "lifecycle_map: 0/10",
            "  - a.yaml: x: expected y, found z",
            "  - a.yaml: w: expected v",
            "  hint: revisit 02-data-preparation.ipynb",
        ]
    )
    assert isinstance(caught.value, AssertionError)  # nbgrader scores an AssertionError as 0


def test_raise_for_failure_is_silent_on_success(capfd: pytest.CaptureFixture[str]):
    report = Report("ws", [passed("data_versioned"), passed("lifecycle_map")])
    assert report.raise_for_failure() is None
    assert capfd.readouterr() == ("", "")


def documented_json() -> dict:
    text = README.read_text(encoding="utf-8")
    (block,) = re.findall(r"```json\n(.*?)```", text, flags=re.DOTALL)
    return json.loads(block)


def shape(value: object) -> object:
    """The keys (in order) and value types of a JSON document, for comparing shapes."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value[:1]]
    return type(value).__name__


def test_to_dict_has_exactly_the_documented_shape():
    documented = documented_json()
    check = documented["checks"][0]
    report = Report(
        documented["workspace"],
        [CheckResult(check["name"], check["passed"], check["points"], check["max_points"])],
    )
    produced = json.loads(json.dumps(report.to_dict()))
    assert list(produced) == list(documented)
    assert list(produced["checks"][0]) == list(check)
    assert shape(produced) == shape(documented)
    assert produced == documented | {"score": 10, "max_score": 10}


def test_to_dict_of_a_failure_carries_its_messages(mixed: Report):
    produced = mixed.to_dict()
    assert produced["checks"][2] == {
        "name": "lifecycle_map",
        "passed": False,
        "points": 0,
        "max_points": 10,
        "messages": ["a.yaml: x: expected y, found z", "a.yaml: w: expected v"],
        "hint": "revisit 02-data-preparation.ipynb",
    }
    assert json.loads(json.dumps(produced)) == produced


def test_pass_and_fail_read_without_an_emoji_font(mixed: Report):
    """Words, and marks from the Dingbats block that every common text font draws (no emoji)."""
    page = mixed._repr_html_()
    assert not any(0x1F000 <= ord(ch) <= 0x1FAFF or ch in "\u2705\u274c" for ch in page)


def test_a_failed_report_renders_in_a_notebook_as_one_line_not_a_traceback(mixed: Report):
    """IPython shows `_render_traceback_` in place of the traceback: the report displayed above
    is not repeated and the checker's source is not quoted, yet the cell still errors."""
    with pytest.raises(ChecksFailed) as caught:
        mixed.raise_for_failure()
    [line] = caught.value._render_traceback_()
    assert line.startswith("ChecksFailed: 2 check(s) failed (")
    assert "the report above" in line and "raise_for_failure" not in line


def test_ipython_shows_the_one_line_and_still_errors_the_cell(mixed: Report, capfd):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.user_ns["report"] = mixed
    result = shell.run_cell("report.raise_for_failure()")
    assert isinstance(result.error_in_exec, ChecksFailed)  # the grade cell scores 0
    shown = capfd.readouterr()
    text = shown.out + shown.err
    assert "ChecksFailed: 2 check(s) failed" in text
    assert "Traceback" not in text and "raise ChecksFailed" not in text
