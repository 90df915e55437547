# Two commands on a fresh machine:   make run   (install + the whole pipeline on synthetic data)
#                                     make test  (install + the test suite)
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
PYTEST_ARGS ?=
ASSETS := report-assets
# Passive OpenMP waiting: spinning threads of parallel processes starve each other (src/sass_retrieval/__init__.py).
export OMP_WAIT_POLICY = PASSIVE

.PHONY: install run test test-fast lint bench-quality bench-speed bench-scale bench-index airflow dag-graph clean

install: $(VENV)/.installed $(ASSETS)/node_modules/.package-lock.json

# torch is pinned and installed first: an unpinned torch pulls gigabytes of CUDA wheels.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

# The Data Docs' CDN files, exact versions from the npm registry (package-lock.json), copied next to the
# docs by src/sass_retrieval/data/offline_assets.py so the reports open offline (docs/offline-reports.md).
$(ASSETS)/node_modules/.package-lock.json: $(ASSETS)/package.json $(ASSETS)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then cd $(ASSETS) && npm ci --silent || echo "warning: npm ci failed: Data Docs will load their scripts and styles from the network"; \
	else echo "warning: npm not found: Data Docs will load their scripts and styles from the network (docs/offline-reports.md)"; fi

# dvc.yaml commands say `python -m pipelines.<stage>`: the venv's bin goes first on PATH.
run: install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro
	@echo; echo "Headline table (all metrics: dvc metrics show; report: reports/run/index.html):"; cat plots/table.md

test: install
	PATH="$(abspath $(BIN)):$$PATH" DVC_NO_ANALYTICS=1 $(PY) -m pytest $(PYTEST_ARGS)

test-fast: install
	PATH="$(abspath $(BIN)):$$PATH" DVC_NO_ANALYTICS=1 $(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src pipelines dags tests bench

# The DAG file reads the stage graph from .dvc/tmp/sass-dag-graph.json (DVC's index of dvc.yaml, cached);
# it regenerates itself when dvc.yaml or params.yaml change, this writes it ahead of time.
dag-graph: install
	$(PY) -m sass_retrieval.orchestration.dvc_graph --write .

airflow: install dag-graph
	bash scripts/airflow-standalone.sh


bench-quality: install
	$(PY) bench/quality.py

bench-index: install
	$(PY) bench/index_bench.py

clean:
	rm -rf data models indexes metrics plots reports runs published .dvc/tmp
