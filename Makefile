# Everything a fresh machine needs: `make demo` and `make test` create .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format bench bench-deps clean dvc-yaml

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The main job: the active-learning loop on the embedded synthetic dataset.
demo: $(STAMP)
	$(BIN)/alseg make-synthetic
	$(BIN)/alseg run --baseline random

# One pytest worker per core, a test file's tests on one worker (module fixtures once).
PYTEST_PARALLEL ?= -n auto --dist loadfile

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_PARALLEL)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# dvc.yaml is generated from alseg_core/pipeline/{layout,engine}.py (a test checks it).
dvc-yaml: $(STAMP)
	$(BIN)/python -m alseg_core.pipeline.dvcfile > dvc.yaml

bench: $(STAMP)
	$(BIN)/python bench/superpixels.py
	$(BIN)/python bench/orchestration.py
	$(BIN)/python bench/label_efficiency.py --preset quick

clean:
	rm -rf $(VENV) data/synthetic data/superpixels data/runs

# Benchmark-only peers (never runtime dependencies): baal 2.1.0 for bench/mc_scoring.py.
bench-deps: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps baal==2.1.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check structlog scikit-learn torchmetrics
