"""The checker's exceptions.

`CheckerError` is the one exception for misuse (an unknown check name, a workspace that is not a
folder); its message says how to fix the call. `ChecksFailed` is what `Report.raise_for_failure()`
raises so that an nbgrader grade cell scores 0. `Invalid` never leaves the package: a check raises it
when an artifact is too broken to read further, and the check becomes a failed result.
"""

from __future__ import annotations


class CheckerError(Exception):
    """The checker was called the wrong way. The message says what to do instead."""


class ChecksFailed(AssertionError):
    """One or more checks failed; the message lists every failure."""


class Invalid(Exception):
    """An artifact cannot be read further. Carries a learner-facing message."""
