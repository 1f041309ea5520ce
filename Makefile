# cloudnet: `make up` runs the mesh, `make test` runs every test. Both install what they need.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
UV := .tools/bin/uv
UV_VERSION := 0.13.9
# Debian packages the mesh runs (PostgreSQL and RabbitMQ binaries come with this machine kind).
APT_PACKAGES := nginx prometheus prometheus-node-exporter prometheus-postgres-exporter \
                prometheus-nginx-exporter
APT_BINARIES := /usr/sbin/nginx /usr/bin/prometheus /usr/bin/promtool \
                /usr/bin/prometheus-node-exporter /usr/bin/prometheus-postgres-exporter \
                /usr/bin/prometheus-nginx-exporter

.PHONY: up down status test unit integration e2e lint deps system-deps clean bench-store

up: deps ## Start the whole mesh in the background (gateway on :8080)
	$(VENV)/bin/cloudnet up

down: ## Stop everything `make up` started
	@if [ -x $(VENV)/bin/cloudnet ]; then $(VENV)/bin/cloudnet down; fi

status: ## Each process of the mesh and its health
	$(VENV)/bin/cloudnet status

test: deps lint ## Lint, then unit, integration and e2e tests
	$(PY) -m pytest tests/unit tests/integration tests/e2e

unit: deps
	$(PY) -m pytest tests/unit

integration: deps
	$(PY) -m pytest tests/integration

e2e: deps
	$(PY) -m pytest tests/e2e

lint: deps ## ruff and mypy --strict
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy events command_api query_api projectors infra

deps: system-deps $(VENV)/.synced

$(UV):
	python3 -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(VENV)/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen
	touch $@

system-deps:
	@missing=""; for binary in $(APT_BINARIES); do [ -x $$binary ] || missing="$$missing $$binary"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing:$$missing; run as root or: sudo apt-get install $(APT_PACKAGES)"; exit 1; fi; \
	  echo "installing$$missing from Debian"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(APT_PACKAGES); \
	fi

clean: down
	rm -rf $(VENV) .tools .cloudnet

bench-store: deps ## Event store throughput next to raw asyncpg, same run
	$(PY) -m benchmarks.eventstore
