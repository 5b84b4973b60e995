# aforo-notify: `make up` starts the local stack and all five services; `make test` runs the suite.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BOOTSTRAP ?= python3
UV_VERSION := 0.13.8
UV := $(PYTHON_BOOTSTRAP) -m uv
VENV := .venv
PY := $(VENV)/bin/python
STACK := deploy/local/stack.sh
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)

PROJECT_FILES := uv.lock pyproject.toml shared/pyproject.toml $(wildcard services/*/pyproject.toml) \
  clients/python/pyproject.toml tools/harness/pyproject.toml

.PHONY: help install up down status harness node-test-deps test test-unit test-integration chaos lint format bench clean test-deploy-offline image test-deploy

help:
	@echo "make up      install, start Kafka + SecantusDB + the five services, print their URLs"
	@echo "make down    stop everything make up started"
	@echo "make harness the integrator harness alone on http://127.0.0.1:3001 (API: AFORO_HARNESS_API_URL)"
	@echo "make test    install and run the whole suite (starts its own Kafka + SecantusDB)"
	@echo "make chaos   the whole fault suite (tests/chaos) on its own local stack; make test runs its short form"
	@echo "make lint    ruff + mypy --strict on shared and services"
	@echo "make bench   benchmarks, each next to a baseline measured in the same run"
	@echo "make clean   stop and remove .local/ (broker data, database, logs) and the venv"
	@echo "make image   build the OCI image (debootstrap + buildah, no registry) to build/aforo-notify.oci.tar"
	@echo "make test-deploy  the offline deploy checks, then make image and its smoke test"

$(VENV)/.installed: $(PROJECT_FILES)
	@$(PYTHON_BOOTSTRAP) -m uv --version >/dev/null 2>&1 || $(PYTHON_BOOTSTRAP) -m pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"
	$(UV) sync --frozen --python python3.11 --all-packages
	@touch $@

install: $(VENV)/.installed

up: install
	@$(STACK) up

down:
	@$(STACK) down

status:
	@$(STACK) status

# The integrator harness in the foreground, against the API at AFORO_HARNESS_API_URL (default the local one).
harness: install
	@$(STACK) harness

# The receiving guide's Express sample runs against express from npm, pinned by tests/integrator/node/package-lock.json.
NODE_TEST_DIR := tests/integrator/node
$(NODE_TEST_DIR)/node_modules/.installed: $(NODE_TEST_DIR)/package.json $(NODE_TEST_DIR)/package-lock.json
	cd $(NODE_TEST_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

node-test-deps: $(NODE_TEST_DIR)/node_modules/.installed

# pytest exits 5 when it collected no tests: a suite that runs nothing is broken, not green.
TEST_DEBIAN_PACKAGES := prometheus:prometheus promtool:prometheus chromium:chromium

test: install node-test-deps
	@$(STACK) fetch-kafka
	@deploy/local/ensure-debian-packages.sh $(TEST_DEBIAN_PACKAGES)
	@$(PY) -m pytest; status=$$?; \
	  if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$status

test-unit: install
	$(PY) -m pytest tests/unit

test-integration: install node-test-deps
	@$(STACK) fetch-kafka
	@deploy/local/ensure-debian-packages.sh $(TEST_DEBIAN_PACKAGES)
	$(PY) -m pytest tests/integration tests/browser

# Every fault scenario on a stack.sh stack of its own (other ports, .local/chaos-stack-*); prints the
# ledger table (also in .local/chaos/table.md). `make test` runs only the short form.
chaos: install
	@$(STACK) fetch-kafka
	AFORO_CHAOS=full $(PY) -m pytest tests/chaos -p no:cacheprovider

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check shared services clients tools tests bench
	$(VENV)/bin/mypy shared/src services/bridge/src services/trigger/src services/dispatcher/src services/api/src services/sse-gateway/src \
	  clients/python/src tools/harness/src

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format shared services clients tools tests bench

bench: install
	@$(STACK) fetch-kafka
	$(PY) -m bench.run

# The offline deploy checks alone (they also run in `make test`): kustomize, kubernetes-validate,
# CRD schemas, pod security, yamllint, hadolint, promtool, generated YAML.
test-deploy-offline: install
	@deploy/local/ensure-debian-packages.sh promtool:prometheus
	$(PY) -m pytest tests/deploy -q

IMAGE_ARCHIVE := build/aforo-notify.oci.tar

# One image for the five processes, built without a registry (needs root: debootstrap, chroot, buildah).
image: install
	deploy/image/build.sh $(IMAGE_ARCHIVE)

# What CI runs besides `make test`: the image is built and each of its five entrypoints runs in it.
test-deploy: test-deploy-offline image
	deploy/image/smoke-test.sh $(IMAGE_ARCHIVE)

clean: down
	rm -rf .local build $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
