# RAG Engine — every day-to-day command. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.SUFFIXES:

PY := .venv/bin/python
export ORT_DISABLE_TELEMETRY := 1
export UV_PYTHON_DOWNLOADS := never

.PHONY: help setup dev test test-docker lint fmt bench bench-ocr bench-mcp bench-reembed bench-quality docs-snapshot soak fuzz open-webui-check up down logs ps clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-8s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo "  make dev ports: DEV_REDIS_PORT DEV_CHROMA_PORT DEV_GATEWAY_PORT DEV_INGEST_PORT"
	@echo "  DEV_QUERY_PORT DEV_WORKER_HEALTH_PORT and DEV_<SERVICE>_HEALTH_PORT,"
	@echo "  e.g. make dev DEV_REDIS_PORT=6390"

setup: ## Install what is missing (uv, redis-server, nginx, prometheus, wrk, chromium, tesseract, curl, openssl, Node.js) and sync .venv
	@deploy/scripts/setup.sh

dev: setup ## Run the whole stack natively on loopback, print its URLs; Ctrl-C stops it all
	@$(PY) deploy/scripts/dev.py

# pytest-xdist workers: half the cores, at least 2 (each test runs several processes of its
# own). On the 2-core CI machine two workers took pytest from 10:45 to 7:23; one core: one
# process (0). Tests that share a stack stay on one worker (tests/conftest.py).
PYTEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); if [ $$n -ge 4 ]; then echo $$((n / 2)); elif [ $$n -ge 2 ]; then echo 2; else echo 0; fi)
# Bytecode is compiled while lint runs (each needs about a minute of one core on a fresh
# clone, and they share nothing); the tests start once both are done.
test: ## Set up, lint, then run every test (unit, integration, e2e) with real services
	@deploy/scripts/setup.sh --no-bytecode
	@deploy/scripts/setup.sh --bytecode > .venv/bytecode.log 2>&1 & bytecode=$$!; \
	  $(MAKE) --no-print-directory lint; lint=$$?; \
	  wait $$bytecode || { cat .venv/bytecode.log; echo "setup: compiling bytecode failed"; exit 1; }; \
	  exit $$lint
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# Both compose stacks for real, in a private Docker engine it starts and stops (root; local
# stand-ins for the third-party images when no registry is reachable): deploy/docker/offline.
test-docker: setup ## Build both images, run compose.yml and compose.prod.yml, test through nginx (~10 min)
	RAG_TEST_DOCKER=1 $(PY) -m pytest tests/docker -n 0 -v $(PYTEST_ARGS)

lint: ## ruff check, ruff format --check, mypy --strict on libs and services
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy libs/*/src services/*/src deploy/scripts bench

bench: setup ## Measure ingest, query quality, latency, load and scale (docs/benchmarks.md, docs/img; ~170 min, BENCH_ARGS=--no-scale ~65)
	$(PY) bench/ingest_throughput.py $(BENCH_ARGS)
	$(PY) bench/ocr.py
	$(PY) bench/mcp_overhead.py
	$(PY) bench/reembed.py

bench-ocr: setup ## OCR seconds per scanned page, dense and sparse, at 300 and 200 dpi (docs/benchmarks.md; ~2 min)
	$(PY) bench/ocr.py

bench-mcp: setup ## Latency of search and answer as MCP tool calls next to /v1, through nginx (docs/benchmarks.md; ~3 min)
	$(PY) bench/mcp_overhead.py

bench-reembed: setup ## A collection moved to another embedding model while searched and written (docs/benchmarks.md; ~13 min)
	$(PY) bench/reembed.py

bench-quality: setup ## Quality ablations (2-fold CV on SciFact), SciFact and docs/ answers through the API (docs/benchmarks.md; ~60 min)
	$(PY) bench/quality.py $(BENCH_ARGS)

docs-snapshot: ## Freeze README.md, docs/ and the docs question sets as the corpus of make test's docs gates (then re-measure them: tests/fixtures/docs_snapshot/SNAPSHOT.md)
	rm -rf tests/fixtures/docs_snapshot/docs tests/fixtures/docs_snapshot/questions
	mkdir -p tests/fixtures/docs_snapshot/docs tests/fixtures/docs_snapshot/questions
	cp README.md tests/fixtures/docs_snapshot/
	cp docs/*.md tests/fixtures/docs_snapshot/docs/
	rm tests/fixtures/docs_snapshot/docs/benchmarks.md
	cp bench/docs_questions*.jsonl bench/docs_conversations*.jsonl tests/fixtures/docs_snapshot/questions/

SOAK_SECONDS ?= 600
SOAK_RATE ?= 30
soak: setup ## Mixed load through nginx for SOAK_SECONDS (600) at SOAK_RATE/s (30); figures into docs/reliability.md
	SOAK_SECONDS=$(SOAK_SECONDS) SOAK_RATE=$(SOAK_RATE) SOAK_REPORT=docs/reliability.md \
		$(PY) -m pytest tests/e2e/faults/test_soak.py -s --timeout=$$(( $(SOAK_SECONDS) * 2 + 300 ))

FUZZ_EXAMPLES ?= 40
fuzz: setup ## Schemathesis through nginx with FUZZ_EXAMPLES (40) cases per operation (1,000+ requests)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest tests/e2e/gateway/test_schemathesis.py -s --timeout=1200

open-webui-check: setup ## Install Open WebUI (~7 GB, cached in .dev/frontends), run it offline against the stack, check chats through it (docs/frontends.md)
	$(PY) deploy/scripts/open_webui_check.py

fmt: ## Format the code and apply safe lint fixes
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

up: ## Run the stack in Docker (compose.yml), detached
	@deploy/scripts/compose.sh up -d --build

down: ## Stop the Docker stack
	@deploy/scripts/compose.sh down

logs: ## Follow the Docker stack's logs
	@deploy/scripts/compose.sh logs -f --tail=100

ps: ## Show the Docker stack's containers
	@deploy/scripts/compose.sh ps

clean: ## Remove .dev/ (native stack data and logs) and caches
	rm -rf .dev .pytest_cache .mypy_cache .ruff_cache
