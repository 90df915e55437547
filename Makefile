# Two commands on a fresh machine:   make run   (install + the whole pipeline on synthetic data)
#                                     make test  (install + the test suite)
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
PYTEST_ARGS ?=
ASSETS := report-assets
# Passive OpenMP waiting: spinning threads of parallel processes starve each other (src/sass_retrieval/__init__.py).
export OMP_WAIT_POLICY = PASSIVE

.PHONY: install run demo-all test test-fast lint bench-quality bench-speed bench-scale bench-index bench-seed-spread airflow airflow-cluster dag-graph clean

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
# A missing npm or a failed npm ci is a warning locally and an error under SASS_CI=1 (.ci/run): CI runs the
# tests that need these files.
$(ASSETS)/node_modules/.package-lock.json: $(ASSETS)/package.json $(ASSETS)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then cd $(ASSETS) && npm ci --silent || { \
	  if [ -n "$$SASS_CI" ]; then echo "error: npm ci failed (SASS_CI is set)"; exit 1; fi; \
	  echo "warning: npm ci failed: Data Docs will load their scripts and styles from the network"; }; \
	elif [ -n "$$SASS_CI" ]; then echo "error: npm not found (SASS_CI is set)"; exit 1; \
	else echo "warning: npm not found: Data Docs will load their scripts and styles from the network (docs/offline-reports.md)"; fi

# dvc.yaml commands say `python -m pipelines.<stage>`: the venv's bin goes first on PATH.
run: install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro
	@echo; echo "Headline table (all metrics: dvc metrics show; report: reports/run/index.html):"; cat plots/table.md

# The same pipeline with the reference rows of the benchmark (evaluate.benchmark_rows, off the daily path),
# as a DVC experiment (dvc exp show compares it with make run's). `dvc exp run -S` rewrites params.yaml in
# place; the file is put back afterwards, so the next make run is the default run again.
demo-all: install
	@saved=$$(mktemp); cp params.yaml $$saved; \
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc exp run -S 'evaluate.benchmark_rows=[senet_mixed,dssm_single,ctnet,sass_mt]'; \
	status=$$?; cp $$saved params.yaml; rm -f $$saved; exit $$status
	@echo; echo "Headline table with the reference rows (dvc exp show compares runs):"; cat plots/table.md

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

# Several workers on this machine (src/sass_retrieval/cluster): CeleryExecutor, Redis broker, PostgreSQL
# metadata database, moto's S3 as the DVC remote; needs redis-server and postgresql (apt). make airflow-cluster WORKERS=3
WORKERS ?= 2
airflow-cluster: install dag-graph
	SASS_PROJECT_DIR="$(CURDIR)" PATH="$(abspath $(BIN)):$$PATH" $(PY) -m sass_retrieval.cluster --workers $(WORKERS)


# Benchmarks (bench/, docs/benchmark.md): each writes its one current result to bench/results/.
# KuaiRand ones read ../shared/data/kuairand_pure (--data-dir to change it).
bench-quality: install
	$(PY) bench/quality.py

bench-speed: install
	PATH="$(abspath $(BIN)):$$PATH" $(PY) bench/speed.py

bench-scale: install
	PATH="$(abspath $(BIN)):$$PATH" $(PY) bench/scale.py

bench-index: install
	$(PY) bench/index_bench.py

# The synthetic default at train.seed 0 1 2 (a few minutes each): the spread docs/results.md and
# tests/expected/quickstart.yaml's tolerances come from.
bench-seed-spread: install
	PATH="$(abspath $(BIN)):$$PATH" $(PY) bench/seed_spread.py

clean:
	rm -rf data models indexes metrics plots reports runs published .dvc/tmp
