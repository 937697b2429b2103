# Model Lifecycle: every command bootstraps .venv from nothing on a fresh machine.
#   make test        ruff, mypy and the whole test suite (every notebook executed; what CI runs)
#   make demo        run the seven stage solutions into build/demo/workspace and grade it
#   make lab         JupyterLab on your working copy of the notebooks (build/lab/lifecycle/)
#   make notebooks   regenerate the learner notebooks in notebooks/ from solutions/ (nbgrader)
#   make mlflow-ui   MLflow's UI for a workspace (installs the `ui` extra on demand)
#   make lock        regenerate requirements.lock (hashed versions the bootstrap installs)

PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
PY := $(BIN)/python
WORKSPACE ?= build/demo/workspace
PORT ?= 5000
LAB_ARGS ?=  # e.g. --allow-root inside a container that runs as root
LAB_DIR := build/lab/lifecycle
LOCKFILE := requirements.lock
LOCK ?= $(LOCKFILE)

# nbgrader runs `alembic` and papermill runs kernels through PATH: the venv comes first.
export PATH := $(BIN):$(PATH)
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false

.PHONY: test demo lab notebooks mlflow-ui bench clean lock

# The bootstrap installs the locked versions (every extra, with hashes), then the course itself.
# `make test LOCK=` installs the newest versions pyproject.toml allows instead (the scheduled
# workflow .github/workflows/newest.yml does this, so a breaking release shows up before a cohort).
$(VENV)/.installed: pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
ifeq ($(strip $(LOCK)),)
	$(PY) -m pip install --quiet --upgrade -e '.[dev,ui,dask]'
else
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
endif
	touch $@

# Regenerate the lock from pyproject.toml: every extra, one universal resolution (Linux, macOS,
# Windows), Python 3.11 and newer. Rerun after changing dependencies or extras in pyproject.toml.
lock: $(VENV)/.installed
	$(BIN)/uv pip compile pyproject.toml --all-extras --universal --python-version 3.11 \
		--generate-hashes --quiet -o $(LOCKFILE)

# The sandboxed execute tests fork runners from the test process, as `checker grade` forks them
# from its own lean process: they run first, in a pytest of their own, before the rest of the
# suite has loaded a browser driver, a Dask client and their threads into the process.
test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(PY) -m pytest -m sandbox
	$(PY) -m pytest -m "not sandbox"

demo: $(VENV)/.installed
	$(PY) -m checker.chain --out build/demo

# Learners work in a git-ignored copy of the released notebooks (build/lab/lifecycle/): saving from
# the UI never touches a tracked file, and a notebook already there (their work) is never replaced.
lab: $(VENV)/.installed
	$(PY) -m checker.working_copy $(LAB_DIR)
	$(BIN)/jupyter lab --ip=127.0.0.1 --no-browser --ServerApp.root_dir=. \
		--LabApp.default_url=/lab/tree/$(LAB_DIR) $(LAB_ARGS)

notebooks: $(VENV)/.installed
	$(BIN)/nbgrader generate_assignment lifecycle --force --log-level=WARN

# Installs the `ui` extra when the UI's own parts are missing (mlflow-skinny has the command but
# no UI); one worker, telemetry off; prints the course's experiment and registry pages.
mlflow-ui: $(VENV)/.installed
	$(PY) -m checker.mlflow_ui $(WORKSPACE) --port $(PORT)

bench: $(VENV)/.installed
	$(PY) -m bench.check_speed
	$(PY) -m bench.chain_speed
	$(PY) -m bench.grade_speed
	$(PY) -m bench.speed_budget

# Keeps what people made: learners' working copies (build/lab) and the exchange (build/exchange).
clean:
	find build -mindepth 1 -maxdepth 1 ! -name lab ! -name exchange -exec rm -rf {} + 2>/dev/null || true
	rm -rf gradebook.db .pytest_cache .ruff_cache
