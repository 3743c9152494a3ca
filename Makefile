# The two commands: `make demo` and `make test`. Both create .venv on first use
# and are quick the second time (the install is skipped while pyproject.toml is unchanged).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test test-slow lint bench install clean help

help:
	@echo "make demo       set up and run the platform on embedded defaults"
	@echo "make test       run the whole test suite"
	@echo "make test-slow  run the slow/scale tests (CI runs them too)"
	@echo "make lint       ruff"
	@echo "make bench      benchmarks (figures and ratios against named peers)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,postgres,redis]'
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/sophia demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS) || [ $$? -eq 5 ]  # 5: no slow tests selected

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf var build dist *.egg-info
