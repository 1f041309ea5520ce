# cloudnet: `make up` runs the mesh, `make test` runs every test. Both install what they need.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# The interpreter the venv is made from: Debian's python3.11 where there is one (built with
# profile-guided optimisation and LTO, libpython linked in), else the first python3 on PATH. This
# machine's python3 is pyenv's default build (neither, libpython shared): on it the command app
# spent about 14 % more CPU per create, in process (docs/BENCHMARKS.md, fifteenth session).
PYTHON := $(firstword $(wildcard /usr/bin/python3.11) python3)
# Named after the interpreter, so a venv made from another one is made again.
SYNCED := $(VENV)/.synced-$(subst /,-,$(PYTHON))
UV := .tools/bin/uv
UV_VERSION := 0.13.9
# Debian packages the mesh runs (PostgreSQL and RabbitMQ binaries come with this machine kind).
APT_PACKAGES := nginx prometheus prometheus-node-exporter prometheus-postgres-exporter \
                prometheus-nginx-exporter
APT_BINARIES := /usr/sbin/nginx /usr/bin/prometheus /usr/bin/promtool \
                /usr/bin/prometheus-node-exporter /usr/bin/prometheus-postgres-exporter \
                /usr/bin/prometheus-nginx-exporter

.PHONY: up down status test unit integration e2e lint deps system-deps clean compose-deps compose-up compose-down compose-test bench bench-store bench-load bench-gateway bench-connections bench-tools bench-replay

up: deps ## Start the whole mesh in the background (gateway on :8080)
	$(VENV)/bin/cloudnet up

down: ## Stop everything `make up` started
	@if [ -x $(VENV)/bin/cloudnet ]; then $(VENV)/bin/cloudnet down; fi

status: ## Each process of the mesh and its health
	$(VENV)/bin/cloudnet status

test: deps lint ## Lint, then unit, integration and e2e tests, then the containerised mesh
	$(PY) -m pytest tests/unit tests/integration tests/e2e
	$(MAKE) --no-print-directory compose-test

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

deps: system-deps $(SYNCED)

$(UV):
	python3 -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

# --compile-bytecode: with PYTHONDONTWRITEBYTECODE set (as on this machine) Python never caches
# what it compiles, so without it every process compiled its ~550 imported modules at start
# (importing the command service in a fresh venv: 3.2 s of CPU without, 1.6 s with;
# docs/BENCHMARKS.md).
$(SYNCED): $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	touch $@

system-deps:
	@missing=""; for binary in $(APT_BINARIES); do [ -x $$binary ] || missing="$$missing $$binary"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing:$$missing; run as root or: sudo apt-get install $(APT_PACKAGES)"; exit 1; fi; \
	  echo "installing$$missing from Debian"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(APT_PACKAGES); \
	fi

# The containerised mesh (compose.yaml + infra/compose/local-images.yaml) on podman, with images
# built here from Debian's packages (infra/compose/local/images.sh; the first build takes a few
# minutes, later ones come from podman's cache). Gateway on :8080, Prometheus on :9090 unless
# COMPOSE_ARGS="--gateway-port N --prometheus-port M".
COMPOSE_PACKAGES := podman netavark aardvark-dns runc debootstrap uidmap slirp4netns iptables
COMPOSE_BINARIES := /usr/bin/podman /usr/lib/podman/netavark /usr/lib/podman/aardvark-dns \
                    /usr/sbin/runc /usr/sbin/debootstrap /usr/sbin/iptables
COMPOSE_ARGS ?=

compose-deps:
	@missing=""; for binary in $(COMPOSE_BINARIES); do [ -x $$binary ] || missing="$$missing $$binary"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "the containerised mesh needs$$missing: run as root or: sudo apt-get install $(COMPOSE_PACKAGES)" >&2; exit 1; \
	  fi; \
	  echo "installing$$missing from Debian"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(COMPOSE_PACKAGES) \
	    || { echo "could not install podman from Debian: the containerised mesh cannot run" >&2; exit 1; }; \
	fi

compose-up: deps compose-deps ## The mesh in containers on podman (local images), waits until it answers
	$(PY) -m infra.compose.podman up $(COMPOSE_ARGS)

compose-down: ## Stop and remove the containerised mesh (its data stays: COMPOSE_ARGS=--volumes)
	$(PY) -m infra.compose.podman down $(COMPOSE_ARGS)

compose-test: deps compose-deps ## Tests against the running containers (own project, ports)
	$(PY) -m pytest -rP tests/compose

clean: down
	rm -rf $(VENV) .tools .cloudnet

bench: deps bench-tools ## Every benchmark next to its same-run baseline; writes docs/BENCHMARKS.md
	ulimit -n $(BENCH_OPEN_FILES) 2>/dev/null || ulimit -n $$(ulimit -Hn); \
	$(PY) -m benchmarks.suite $(BENCH_ARGS)

bench-store: deps ## Event store throughput next to raw asyncpg, same run
	$(PY) -m benchmarks.eventstore

# Through the gateway (docs/BENCHMARKS.md): each uses the mesh that is up in CLOUDNET_STATE_DIR,
# else starts one on 127.0.0.1:24000+ (gateway :24126) and stops it afterwards. Extra options:
# BENCH_ARGS="--seconds 60" (see `$(PY) -m benchmarks.<name> --help`).
BENCH_ARGS ?=
# wrk keeps one descriptor per connection: 10,000 connections need more than the usual 1,024.
BENCH_OPEN_FILES := 65536

bench-load: deps ## Realistic mix through the gateway (300 s): latency, errors, projection lag
	$(PY) -m benchmarks.load $(BENCH_ARGS)

bench-gateway: deps bench-tools ## wrk on 4 endpoints next to a minimal FastAPI app, same nginx
	ulimit -n $(BENCH_OPEN_FILES) 2>/dev/null || ulimit -n $$(ulimit -Hn); \
	$(PY) -m benchmarks.gateway $(BENCH_ARGS)

bench-connections: deps bench-tools ## 10,000 concurrent connections at the gateway (wrk)
	ulimit -n $(BENCH_OPEN_FILES) 2>/dev/null || ulimit -n $$(ulimit -Hn); \
	$(PY) -m benchmarks.connections $(BENCH_ARGS)

bench-tools: ## wrk from Debian (installed when missing and run as root)
	@if ! command -v wrk >/dev/null; then \
	  if [ "$$(id -u)" != 0 ]; then echo "wrk is missing; run as root or: sudo apt-get install wrk"; exit 1; fi; \
	  echo "installing wrk from Debian"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk; \
	fi

bench-replay: deps ## Replay events/s next to the raw read ceiling, same run
	$(PY) -m benchmarks.replay
