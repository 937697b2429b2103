"""nbgrader configuration for the Model Lifecycle course.

The course root is this folder. `solutions/` is nbgrader's source directory and `notebooks/` its
release directory; the whole course is one assignment, `lifecycle`, so the learner notebooks live in
`notebooks/lifecycle/` and are regenerated with:

    nbgrader generate_assignment lifecycle --force

Never edit `notebooks/` by hand: tests/test_release.py fails when it drifts from `solutions/`.
"""

import os
import sys

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import CheckCellMetadata, ClearOutput, GetGrades, OverwriteKernelspec

from checker import sandbox
from checker.nbgrader_plugins import DeduplicateIds, HideHiddenTests, OverwriteCells

c = get_config()  # noqa: F821 - injected by traitlets

c.CourseDirectory.course_id = "model-lifecycle"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"

# Learner versions carry no outputs, like every committed notebook.
c.ClearOutput.enabled = True
# A grade cell that errors scores 0; the checker prints nothing to stderr, so passing cells score.
c.ExecutePreprocessor.timeout = 600

# Autograde: a grade cell a learner deleted is put back in its place and run, so deleting a test
# cannot dodge it; a grade_id a learner duplicated (a copied cell) no longer fails their whole
# assignment (nbgrader#1083): the extra copies run as plain cells (checker/nbgrader_plugins.py).
c.OverwriteCells.add_missing_cells = True
c.Autograde.sanitize_preprocessors = [
    ClearOutput,
    DeduplicateIds,
    OverwriteKernelspec,
    OverwriteCells,
    CheckCellMetadata,
]
# Feedback: hidden tests, and the outputs that could quote them, never reach a learner (nbgrader#917).
c.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTests, CSSHTMLHeaderPreprocessor]

# Learner code runs inside bubblewrap, as with `checker grade --execute` (checker/sandbox.py):
# each kernel in a sandbox of its own that may write only its notebook's folder (the learner's
# copy in autograded/), with no network, over Unix sockets. CHECKER_NBGRADER_SANDBOX=none runs
# kernels unsandboxed; without bwrap they run unsandboxed too, and this says so once on stderr.
if os.environ.get("CHECKER_NBGRADER_SANDBOX", "bwrap") != "none":
    why = sandbox.unavailable()
    if why is None:
        os.environ["JUPYTER_DEFAULT_PROVISIONER_NAME"] = "checker-sandbox"
        c.KernelManager.transport = "ipc"
    else:
        print(
            f"nbgrader_config.py: kernels run UNSANDBOXED: {why} ({sandbox.INSTALL})",
            file=sys.stderr,
        )
