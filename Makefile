# Two commands for a newcomer: `make demo` (the TUI on a built-in YOLOv5n) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/omdp demo

# The default suite skips tests marked slow (a real demo, the emulated lab, an old device
# stack built once); `make test ALL=1` runs them too, as CI does.
test: lint
	$(BIN)/pytest -q $(if $(ALL),,-m "not slow") $(PYTEST_ARGS)

# Style, types on the engine, and the layer contracts (pyproject's [tool.importlinter]).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .import_linter_cache build *.egg-info
