# The two commands of the README: `make demo` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3
export TEST_POSTGRES_URL ?= postgresql+psycopg://postgres:postgres@127.0.0.1:5432/hotline_eval_test

.PHONY: setup services demo test test-pbx bench prompts

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@

setup: $(VENV)/.installed

services:
	bash tests/services.sh

# The whole loop on the embedded default (SQLite under var/demo): migrate, FastAGI
# server, simulated Asterisk callers, what landed in the store; then every 差评's
# callback through the sweep, RQ (a private redis-server, installed if absent),
# the dialer and a simulated Asterisk AMI.
demo: setup
	@command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server >/dev/null)
	HOTLINE_EVAL_HOME=var/demo $(BIN)/hotline-eval demo

# The static checks (ruff, mypy), then the whole test suite, on SQLite and on a real PostgreSQL (installed
# and started when absent), with the real-PBX tier on a real Asterisk (built once when absent).
# REQUIRE_POSTGRES and REQUIRE_PBX turn "unreachable" or "cannot be built" into a failure instead of a skip.
# In parallel (pytest-xdist): a worker per core, at most 8 (the Redis databases go to 8 workers), each with
# databases and an Asterisk of its own, a real-PBX module whole on one worker (tests/conftest.py).
# PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= auto
PYTEST_PARALLEL = -n $(PYTEST_WORKERS) --maxprocesses 8
test: setup services
	$(BIN)/ruff check .
	$(BIN)/mypy
	REQUIRE_POSTGRES=1 REQUIRE_PBX=1 $(BIN)/pytest -q -p no:cacheprovider $(PYTEST_PARALLEL)

# The real-PBX tier alone, in one process.
test-pbx: setup services
	REQUIRE_POSTGRES=1 REQUIRE_PBX=1 $(BIN)/pytest -q -p no:cacheprovider -m pbx

bench: setup
	$(BIN)/python benchmarks/agi_concurrency.py
	$(BIN)/python benchmarks/callback_backlog.py
	$(BIN)/python benchmarks/speech.py

prompts: setup
	$(BIN)/hotline-eval prompts build
