# One entry point for everything: `make up` runs Swarm, `make test` tests it, `make check`
# runs every check a commit needs (ruff, mypy, tests). `make test-fast` is the lane to run
# every few minutes: everything but the slow families (markers in pyproject.toml).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=
# The slow families, which `make test-fast` leaves out (`make test` runs them all).
SLOW_LANES := agents or browser or chaos or e2e
# The dashboard's browser tests drive Debian's Chromium (never a downloaded browser).
CHROMIUM ?= /usr/bin/chromium
APT := DEBIAN_FRONTEND=noninteractive apt-get -y -q
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)

.PHONY: install browser sandbox up test test-fast lint typecheck check fmt clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Swarm needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP)

$(CHROMIUM):
	$(SUDO) $(APT) install chromium || ($(SUDO) $(APT) update && $(SUDO) $(APT) install chromium)

browser: $(CHROMIUM)

# The agent sandbox (Debian's bubblewrap). Where it cannot be installed, adapters run agents
# without it and say so at start (SWARM_SANDBOX=auto), so this never fails the build.
BWRAP ?= /usr/bin/bwrap
$(BWRAP):
	@$(SUDO) $(APT) install bubblewrap || ($(SUDO) $(APT) update && $(SUDO) $(APT) install bubblewrap) \
		|| echo "bubblewrap is not installed: adapters will run agents without a sandbox"

sandbox: $(BWRAP)

up: install sandbox
	$(BIN)/swarm up --demo

test: install browser sandbox
	$(BIN)/pytest $(PYTEST_ARGS)

# No browser needed: the browser tests are among the slow lanes it leaves out. Two workers
# (pytest-xdist), each with its own template database; TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
test-fast: install sandbox
	$(BIN)/pytest -n $(TEST_WORKERS) -m "not ($(SLOW_LANES))" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: install
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# `make bench`: every benchmark of issue 19 on the test servers, three repetitions, Celery 5 as
# the baseline in the same run (bench/README.md); writes bench/results/<date>.{json,md,png}
# and prints the table. Its extra dependencies (the `bench` extra) are installed on first
# use. BENCH_ARGS passes options: `make bench BENCH_ARGS="--only throughput --reps 1 --quick"`.
BENCH_ARGS ?=
BENCH_STAMP := $(VENV)/.bench-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	@rm -f $(VENV)/.bench-*
	@touch $(BENCH_STAMP)

.PHONY: bench
bench: $(BENCH_STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)
