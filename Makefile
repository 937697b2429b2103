# Model Lifecycle: every command bootstraps .venv from nothing on a fresh machine.
#   make test        ruff, mypy and the whole test suite (every notebook executed; what CI runs)
#   make demo        run the seven stage solutions into build/demo/workspace and grade it
#   make lab         JupyterLab on the course
#   make notebooks   regenerate the learner notebooks in notebooks/ from solutions/ (nbgrader)
#   make mlflow-ui   MLflow's UI for a workspace (installs the `ui` extra on demand)

PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
PY := $(BIN)/python
WORKSPACE ?= build/demo/workspace
PORT ?= 5000
LAB_ARGS ?=  # e.g. --allow-root inside a container that runs as root

# nbgrader runs `alembic` and papermill runs kernels through PATH: the venv comes first.
export PATH := $(BIN):$(PATH)
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false

.PHONY: test demo lab notebooks mlflow-ui bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(PY) -m pytest

demo: $(VENV)/.installed
	$(PY) -m checker.chain --out build/demo

lab: $(VENV)/.installed
	$(BIN)/jupyter lab --ip=127.0.0.1 --no-browser --ServerApp.root_dir=. \
		--LabApp.default_url=/lab/tree/notebooks/lifecycle $(LAB_ARGS)

notebooks: $(VENV)/.installed
	$(BIN)/nbgrader generate_assignment lifecycle --force --log-level=WARN

mlflow-ui: $(VENV)/.installed
	$(BIN)/mlflow --version >/dev/null 2>&1 || $(PY) -m pip install --quiet -e '.[ui]'
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(abspath $(WORKSPACE))/mlflow.db \
		--host 127.0.0.1 --port $(PORT)

bench: $(VENV)/.installed
	$(PY) bench/check_speed.py
	$(PY) bench/chain_speed.py
	$(PY) bench/grade_speed.py

clean:
	rm -rf build gradebook.db .pytest_cache .ruff_cache
