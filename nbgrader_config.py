"""nbgrader configuration for the Model Lifecycle course.

The course root is this folder. `solutions/` is nbgrader's source directory and `notebooks/` its
release directory; the whole course is one assignment, `lifecycle`, so the learner notebooks live in
`notebooks/lifecycle/` and are regenerated with:

    nbgrader generate_assignment lifecycle --force

Never edit `notebooks/` by hand: tests/test_release.py fails when it drifts from `solutions/`.
"""

c = get_config()  # noqa: F821 - injected by traitlets

c.CourseDirectory.course_id = "model-lifecycle"
c.CourseDirectory.root = "."
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"

# Learner versions carry no outputs, like every committed notebook.
c.ClearOutput.enabled = True
# A grade cell that errors scores 0; the checker prints nothing to stderr, so passing cells score.
c.ExecutePreprocessor.timeout = 600
