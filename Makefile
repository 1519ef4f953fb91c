# Two jobs a newcomer needs: `make demo` (train a bundled recipe) and `make test`.
# Each creates .venv on first use. torch is pinned to the CPU wheel on disk before anything
# else, so no other request can pull a multi-GB CUDA build.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-all bench lint docs architecture clean

$(STAMP): pyproject.toml
	@# Graphviz renders `blocks graph --format svg|png`; optional, a Debian package away.
	-@command -v dot >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && apt-get install -y -qq graphviz) >/dev/null 2>&1; } || \
	  echo "note: Graphviz not installed; SVG/PNG graph tests will be skipped"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/blocks train seed_cnn --out runs/demo --force

# The default run skips the tests marked slow or multiprocess (a few minutes on 2 cores); CI
# (CI=true) and `make test-all` run every test.
MARKERS := $(if $(filter true 1,$(CI)),,-m "not slow and not multiprocess")

test: $(STAMP)
	$(VENV)/bin/ruff check blocks tests benchmarks tools
	$(PY) -m pytest -q $(MARKERS)

test-all: $(STAMP)
	$(VENV)/bin/ruff check blocks tests benchmarks tools
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m benchmarks

# The docs site (mkdocs-material): reference pages and pictures are generated during the build.
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

# Redraw docs/architecture.md from the imports and check the layering rules.
architecture:
	python3 tools/architecture.py --write

lint: $(STAMP)
	$(VENV)/bin/ruff check blocks tests benchmarks tools
	$(VENV)/bin/blocks lint blocks

clean:
	rm -rf $(VENV) runs site .pytest_cache
