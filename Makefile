# Each target bootstraps .venv itself, so a fresh clone needs nothing but python3 (>= 3.11).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck bench docs clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/python examples/rag_pipeline.py

lint: $(BIN)/.installed
	$(BIN)/ruff check appsdk tests examples benchmarks
	$(BIN)/ruff format --check appsdk tests examples benchmarks

typecheck: $(BIN)/.installed
	$(BIN)/mypy --strict appsdk
	$(BIN)/mypy --strict tests/typed_usage.py

docs: $(BIN)/.installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir site

test: lint typecheck docs
	$(BIN)/pytest

# Peers (langfuse, bare OTel, traceloop, OpenInference, logfire) each get a pinned virtualenv
# under .bench-envs/, created once and reused.
bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks.peers --setup
	$(BIN)/python -m benchmarks --write docs/performance.md

clean:
	rm -rf $(VENV) .appsdk .pytest_cache .mypy_cache .ruff_cache
