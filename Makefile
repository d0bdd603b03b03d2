# OrderFlow — the commands a newcomer needs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The virtualenv is rebuilt whenever a pyproject.toml changes (OrderFlow's, or its dev tooling's).
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml services/devtools/pyproject.toml 2>/dev/null | sha1sum | cut -c1-12)
export PACT_DO_NOT_TRACK := true

.PHONY: help venv demo test e2e screenshot bench bench-saga bench-services bench-operator bench-trace bench-transports chaos lint prereqs contracts contracts-verify contracts-generate kafka-start kafka-stop clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 16

venv: $(STAMP) ## create .venv and install OrderFlow with its dev tools (services/devtools)

$(STAMP): pyproject.toml services/devtools/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]' -e services/devtools
	@rm -f $(VENV)/.installed-* && touch $@

demo: venv ## run the four services on a local Kafka and place a batch of orders
	$(BIN)/orderflow demo

prereqs: venv ## fetch/build/install what the tests need: Kafka, kube-apiserver+etcd+kubectl, Jaeger, AsyncAPI, PostgreSQL, RabbitMQ, NATS
	$(BIN)/python -c 'from orderflow_dev.kafka import ensure_jars; print("kafka jars:", ensure_jars())'
	bash tests/envtest/build.sh
	bash tests/jaeger/build.sh
	bash contracts/tools/install-asyncapi.sh
	bash tests/support/install-postgres.sh
	bash tests/support/install-rabbitmq.sh
	bash tests/support/install-nats.sh
	$(BIN)/python -m tests.deploy.skaffold_schema

test: prereqs ## run the whole test suite against real Kafka and a real kube-apiserver (all but the e2e suite)
	$(BIN)/python -m pytest

e2e: prereqs ## the whole product on a real kind cluster, deployed by skaffold (see tests/e2e/README.md)
	bash tests/e2e/cluster/up.sh
	$(BIN)/python -m pytest -m e2e tests/e2e --timeout=1800 -rA

screenshot: prereqs ## one order's trace from a real Jaeger, drawn and photographed by headless Chromium: docs/order-trace.png
	bash tests/tracing/install-chromium.sh
	$(BIN)/python -m pytest -m screenshot tests/tracing/test_screenshot.py -rA

bench: venv ## all benchmarks; figures are ratios to a baseline measured in the same run
	$(BIN)/python -m bench

bench-saga: venv ## the saga against a raw-Kafka ceiling in the same run: burst, HTTP at half capacity, idle latency
	$(BIN)/python -m bench saga $(ARGS)

bench-services: venv ## batched vs per-message consumer throughput; the demo on SQLite and PostgreSQL
	$(BIN)/python -m bench services

bench-trace: venv ## orderflow trace among 100,000 events of other orders, vs reading every partition
	$(BIN)/python -m bench trace

bench-transports: venv ## the saga on Kafka, NATS JetStream and RabbitMQ: burst, HTTP capacity, idle latency, as ratios to Kafka
	$(BIN)/python -m bench transports $(ARGS)

bench-operator: venv ## operator: lag-burst reaction time and a load ramp vs a KEDA-like baseline
	$(BIN)/python -m bench operator

contracts: venv ## the contract suite alone (pacts, provider verification, failure proofs, drift, graph, AsyncAPI)
	bash contracts/tools/install-asyncapi.sh
	$(BIN)/python -m pytest tests/contracts -q

contracts-verify: venv ## verify every consumer x provider pair and print the matrix (exit 1 on any failure)
	$(BIN)/orderflow contracts verify

contracts-generate: venv ## regenerate the pacts, contracts/asyncapi.yaml and the flow graph (then review and commit)
	$(BIN)/orderflow contracts generate

chaos: venv ## SIGKILLs every ~3 s and a broker outage under 2,000 orders: p50/p99, deadline cancellations, stalls
	$(BIN)/python -m bench chaos

lint: venv ## ruff, then mypy --strict (its settings and files are in pyproject.toml)
	$(BIN)/ruff check services operator tests bench
	$(BIN)/mypy

kafka-start: venv ## start a local Kafka broker in the background (127.0.0.1:19092)
	$(BIN)/orderflow kafka start

kafka-stop: venv ## stop it
	$(BIN)/orderflow kafka stop

clean: ## remove the virtualenv and caches in the tree (not ~/.cache/orderflow)
	rm -rf $(VENV) .pytest_cache .mypy_cache .hypothesis build *.egg-info
