# airlift: `make demo` (the whole pipeline on this machine) and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed
export AIRLIFT_SERVICES_DIR ?= /tmp/airlift-services
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: setup services test test-fast demo lint bench clean deploy

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[dev,ngc,dask]'
	@touch $(STAMP)

services: setup
	@VENV=$(CURDIR)/$(VENV) bash scripts/services.sh

test: setup services lint
	@source $(AIRLIFT_SERVICES_DIR)/env && $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# In-process tests of the core: no services, no Prefect server, no network (well under 2 minutes).
test-fast: setup lint
	$(VENV)/bin/python -m pytest tests/fast -q $(PYTEST_ARGS)

demo: setup services
	@source $(AIRLIFT_SERVICES_DIR)/env && $(VENV)/bin/python -m deployments.demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# BENCH_SIZES="1 10" adds the 10 GiB run (default: 1 GiB). Needs the bench extra (matplotlib) for the chart.
bench: setup
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[bench]'
	BENCH_SIZES="$(BENCH_SIZES)" bash bench/run

clean:
	rm -rf $(VENV) .pytest_cache

# Register every deployment in prefect.yaml on the server at PREFECT_API_URL (pool: airlift).
deploy: setup
	.venv/bin/prefect work-pool inspect airlift >/dev/null 2>&1 || .venv/bin/prefect work-pool create airlift --type process
	.venv/bin/prefect --no-prompt deploy --all
	.venv/bin/python -m deployments.mirror_schedule
