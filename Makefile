# Two commands on a fresh Debian machine with Python 3.11: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# Split origins even in development: pages on localhost, API on 127.0.0.1 (same server, other origin),
# so CORS and the WebSocket origin check are exercised every day.
RUN_ENV := SITE_ORIGIN=http://localhost:$(PORT) API_ORIGIN=http://127.0.0.1:$(PORT) \
	FRONTEND_ORIGINS=http://localhost:$(PORT),http://127.0.0.1:$(PORT)

.PHONY: run test lint fmt migrate vendor deps deps-dev node system-test clean bench bench-quick bench-compare bench-system e2e e2e-system soak screenshots
.DEFAULT_GOAL := run

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

deps: $(VENV)/.runtime
deps-dev: $(VENV)/.dev

# JavaScript clients (browser copies and the Node clients of the tests), from package-lock.json.
node_modules/.installed: package.json package-lock.json
	scripts/ensure-system-packages.sh npm:"nodejs npm"
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

node: node_modules/.installed

# The browser's copies of the client libraries, served locally from /static/vendor/ (not committed).
# The source map too: collectstatic's hashed storage (DEBUG=0) follows sockjs.min.js's sourceMappingURL.
vendor: node
	mkdir -p static/vendor
	cp node_modules/sockjs-client/dist/sockjs.min.js static/vendor/sockjs.min.js
	cp node_modules/sockjs-client/dist/sockjs.min.js.map static/vendor/sockjs.min.js.map
	cp node_modules/@stomp/stompjs/bundles/stomp.umd.min.js static/vendor/stomp.umd.min.js

migrate: deps
	mkdir -p var
	$(PY) manage.py migrate --noinput -v0

run: deps vendor migrate
	@$(PY) scripts/port_free.py $(HOST) $(PORT)
	$(PY) manage.py seed_demo --if-empty
	@echo "Open http://localhost:$(PORT)/ and log in as alice / chat-demo-pass (admin: admin / admin-demo-pass at /admin/)"
	$(RUN_ENV) $(PY) manage.py runserver $(HOST):$(PORT)

# PostgreSQL: Debian keeps initdb off PATH (scripts/postgres.py starts throwaway clusters from there).
system-test:
	scripts/ensure-system-packages.sh redis-server:redis-server chromium:chromium \
		'/usr/lib/postgresql/*/bin/initdb:postgresql' prometheus:prometheus promtool:prometheus

# The whole suite. Fixtures start (and stop, by PID) the redis-server and daphne processes they need.
test: deps-dev vendor system-test
	mkdir -p var test-output
	$(PY) -m pytest $(PYTEST_ARGS)

# The production path on loopback, end to end (slower; not part of `make test`): nginx terminating TLS for two
# origins (https://localhost:8443 pages, https://127.0.0.1:9443 API), PostgreSQL, Redis, two daphne workers;
# the browser tests, `manage.py doctor` and a worker killed mid-chat; everything stopped by PID at the end.
E2E_FRONTEND_PORT ?= 8443
E2E_API_PORT ?= 9443
e2e-system:
	scripts/ensure-system-packages.sh redis-server:redis-server chromium:chromium nginx:nginx \
		'/usr/lib/postgresql/*/bin/initdb:postgresql' certutil:libnss3-tools openssl:openssl

e2e: deps-dev vendor e2e-system
	mkdir -p test-output
	E2E_FRONTEND_PORT=$(E2E_FRONTEND_PORT) E2E_API_PORT=$(E2E_API_PORT) $(PY) -m tests.e2e.run

# The side-by-side benchmark (bench/run.py; results in bench/results/): the project on daphne and on uvicorn,
# a plain Channels group_send consumer, and RabbitMQ Web-STOMP when its Debian package can be installed.
# `make bench-quick` (or BENCH_ARGS=--quick) is a one-minute smoke run with small counts.
bench-system:
	-scripts/ensure-system-packages.sh rabbitmq-server:rabbitmq-server epmd:erlang-base
	scripts/ensure-system-packages.sh redis-server:redis-server '/usr/lib/postgresql/*/bin/initdb:postgresql'

bench: deps-dev node bench-system
	mkdir -p var
	$(PY) bench/run.py $(BENCH_ARGS)

bench-quick:
	$(MAKE) bench BENCH_ARGS="--quick $(BENCH_ARGS)"

# Before/after (issue 18's "no scenario slower"): every scenario on this tree and on REV, alternated round by
# round; results.md's "This tree vs REV" flags SLOWER beyond the round-to-round spread.
bench-compare: deps-dev node bench-system
	@test -n "$(REV)" || { echo "usage: make bench-compare REV=<git revision> [BENCH_ARGS=--rounds 3]"; exit 2; }
	mkdir -p var
	$(PY) bench/run.py --compare $(REV) --compare-only $(BENCH_ARGS)

# The soak (scripts/soak.py, not part of `make test`): 2,000 connections with churn for 10 minutes across two
# daphne workers + Redis + SQLite, after a 3-minute warm-up cycle; prints a JSON report, exits 1 on any loss,
# server error or leak. SOAK_ARGS="--connections 500 --duration 120" for a shorter run.
soak: deps-dev system-test
	mkdir -p test-output
	$(PY) scripts/soak.py --report test-output/soak.json $(SOAK_ARGS)

# The README's screenshots, docs/screenshots/room-desktop.png and room-phone.png: a busy room seeded through the
# API on a server of the script's own (fresh SQLite database, daphne on a free port, stopped by PID), photographed
# by Debian's Chromium. SCREENSHOTS_ARGS="--url http://localhost:8000" photographs a running `make run` instead.
# Reactions are emoji: Debian's colour emoji font draws them (without it Chromium shows empty boxes).
screenshots: deps-dev vendor
	scripts/ensure-system-packages.sh chromium:chromium \
		'/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf:fonts-noto-color-emoji'
	$(PY) scripts/screenshots.py $(SCREENSHOTS_ARGS)

# mypy: the project with pyproject's defaults, the installable engine (stompengine/) with --strict's flags
# (pyproject's [[tool.mypy.overrides]]; tests/engine/test_engine_types.py runs the same check).
lint: deps-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

fmt: deps-dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf var test-output static/vendor
