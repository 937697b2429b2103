"""The checker's exceptions.

`CheckerError` is the one exception for misuse (an unknown check name, a workspace that is not a
folder); its message says how to fix the call. `ChecksFailed` is what `Report.raise_for_failure()`
raises so that an nbgrader grade cell scores 0. `Invalid` never leaves the package: a check raises it
when an artifact is too broken to read further, and the check becomes a failed result.
"""

from __future__ import annotations


class CheckerError(Exception):
    """The checker was called the wrong way. The message says what to do instead.

    In a notebook, IPython shows the message alone (`_render_traceback_`): the learner needs what
    to do, not the checker's source. The cell still errors, so a run stops there.
    """

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


class ChecksFailed(AssertionError):
    """One or more checks failed; the message lists every failure.

    In a notebook the report was just displayed above the error, so IPython shows one line in
    place of a traceback that would repeat it and quote the checker's source. The cell still
    errors: an nbgrader grade cell scores 0.
    """

    def __init__(self, message: str, summary: str = "") -> None:
        super().__init__(message)
        self.summary = summary or message.splitlines()[0]

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self.summary}"]


class Invalid(Exception):
    """An artifact cannot be read further. Carries a learner-facing message."""
