# The developer's front door. `make run` and `make test` work on a fresh clone
# with nothing installed but Python 3.11: both create .venv/ when it is missing.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DBT_SEND_ANONYMOUS_USAGE_STATS := False
export DO_NOT_TRACK := 1
export SCARF_ANALYTICS := false

.PHONY: help venv run test airflow bi bi-password bench clean lint

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check uv
	$(BIN)/uv pip install -q --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP) ## create .venv/ with the pinned stack

run: $(STAMP) ## simulate a week and run the nightly pipeline for each day
	$(BIN)/program-reporting demo

# Three workers (pytest-xdist) on two cores: the end-to-end tests wait much of the time
# (docs/testing.md). Groups of tests that share a worker: tests/conftest.py. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 3
test: lint ## lint, then run the whole test suite (TEST_WORKERS=3 processes)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

PY_SOURCES := include dags tests bench bi
lint: $(STAMP) ## ruff (lint and format check), sqlfluff on the dbt project, the import contracts
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/sqlfluff lint dbt_project/models dbt_project/macros dbt_project/tests
	$(BIN)/lint-imports

airflow: $(STAMP) ## start Airflow (standalone, SQLite, LocalExecutor) with the UI on localhost:8080
	$(BIN)/program-reporting airflow

# Apache Superset with the "Program KPIs" dashboard (docs/bi.md): its own .venv-bi/ from
# bi/requirements-bi.lock, created on first use. The admin's password has no default.
bi: bi-password $(STAMP) ## Superset on 127.0.0.1:8088 (PROGRAM_REPORTING_BI_PORT), dashboard "Program KPIs"
	$(BIN)/program-reporting bi

bi-password:
	@test -n "$${PROGRAM_REPORTING_BI_ADMIN_PASSWORD// /}" || { \
	  echo "make bi: PROGRAM_REPORTING_BI_ADMIN_PASSWORD is not set. Superset's admin has no default password:" >&2; \
	  echo "  PROGRAM_REPORTING_BI_ADMIN_PASSWORD=<a long passphrase> make bi" >&2; exit 2; }

SCALE ?= 1000000
DAYS ?= 180
HISTORY ?= daily
bench: $(STAMP) ## benchmark a nightly run: make bench SCALE=1000000 DAYS=180 [HISTORY=one-file]
	$(BIN)/python bench/run_bench.py --merchants $(SCALE) --days $(DAYS) --history $(HISTORY) $(BENCH_ARGS)

clean: ## remove data/ (drop folder and warehouse); keeps .venv/
	rm -rf data dbt_project/target dbt_project/logs
