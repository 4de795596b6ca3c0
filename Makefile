# PerLLM testbed. `make help` lists the targets. Run as root (or with sudo): Mininet needs it.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.stamps
APT_PACKAGES := mininet iperf3 bridge-utils iputils-ping iproute2 ethtool python3-venv
PROTOS := $(wildcard proto/perllm/v1/*.proto)
STUBS  := perllm/v1/scheduler_pb2.py
MODELS := models/tiny.build.json

NAME     ?= fluctuating
PYTEST_ARGS ?=
export PYTHONPATH := $(CURDIR)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: help setup stubs models test test-unit test-integration scenario campaign simulate bench clean-net clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 20

setup: $(STAMP)/apt $(STAMP)/pip $(STUBS) $(MODELS) ## Install what the testbed needs (idempotent)

$(STAMP)/apt:
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
	  if [ "$$(id -u)" != 0 ]; then echo "make setup: installing Debian packages needs root: run 'sudo make setup'" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi
	@mkdir -p $(STAMP) && touch $@

# Debian's Mininet lives in the system site packages, so the venv must see them.
$(VENV)/bin/python:
	/usr/bin/python3 -m venv --system-site-packages $(VENV)

$(STAMP)/pip: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install -q -r requirements.txt
	@mkdir -p $(STAMP) && touch $@

stubs: $(STUBS) ## Generate the gRPC stubs from proto/ into perllm/

$(STUBS): $(PROTOS) $(STAMP)/pip
	@rm -rf perllm && mkdir -p perllm/v1
	$(PY) -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. $(PROTOS)
	@touch perllm/__init__.py perllm/v1/__init__.py

models: $(MODELS) ## Build the tiny offline models into models/

# The builder's own stamp lives beside the models, so deleting models/ rebuilds them.
$(MODELS): $(STUBS) $(wildcard nodes/tiny/*.py nodes/tiny/*.txt)
	$(PY) -m nodes build-tiny --out models/
	@touch $@

test: setup ## Run every test (integration tests need root)
	@$(PY) -m pytest tests $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

test-unit: setup ## Run the unit tests only (no root)
	@$(PY) -m pytest tests/unit $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && exit 0; exit $$rc

test-integration: setup ## Run the integration tests (root, real Mininet)
	@$(PY) -m pytest tests/integration $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && exit 0; exit $$rc

scenario: setup ## Run an emulated scenario: NAME=fluctuating [POLICIES= SEED= SEEDS= REQUESTS= BACKEND= MODEL= MODE=]
	$(PY) -m scenarios run $(NAME) $(if $(POLICIES),--policies $(POLICIES)) $(if $(SEED),--seed $(SEED)) \
	  $(if $(REQUESTS),--requests $(REQUESTS)) $(if $(BACKEND),--backend $(BACKEND)) \
	  $(if $(MODEL),--model $(MODEL)) $(if $(MODE),--mode $(MODE)) $(if $(SEEDS),--seeds $(SEEDS))

campaign: setup ## Emulated runs, policies x seeds, on an executor: NAME= SEEDS=5 [POLICIES= SEED= REQUESTS= EXECUTOR=local|ray|ray:auto|ray://HOST:PORT RESUME=DIR]
	$(PY) -m scenarios campaign $(NAME) --seeds $(or $(SEEDS),5) $(if $(POLICIES),--policies $(POLICIES)) \
	  $(if $(SEED),--seed $(SEED)) $(if $(REQUESTS),--requests $(REQUESTS)) \
	  $(if $(BACKEND),--backend $(BACKEND)) $(if $(MODEL),--model $(MODEL)) $(if $(MODE),--mode $(MODE)) \
	  $(if $(EXECUTOR),--executor $(EXECUTOR)) $(if $(RESUME),--resume $(RESUME))

simulate: setup ## Run the discrete-event simulation: NAME=paper [REQUESTS= SEED= SEEDS= POLICIES=]; NAME=cloud-device: the cloud-device paper's split
ifeq ($(NAME),cloud-device)
	$(PY) -m clouddevice run
else
	$(PY) -m simulator run $(NAME) $(if $(POLICIES),--policies $(POLICIES)) $(if $(SEED),--seed $(SEED)) \
	  $(if $(REQUESTS),--requests $(REQUESTS)) $(if $(SEEDS),--seeds $(SEEDS))
endif

bench: setup ## Print every benchmark's JSON figures
	$(PY) -m scheduler.bench
	$(PY) -m nodes.bench
	$(PY) -m simulator.bench
	$(PY) -m simulator.bench --trace azure-conv
	$(PY) -m simulator.bench --campaign
	$(PY) -m testbed verify --json

clean-net: ## Remove namespaces, links, bridges and processes a crashed run left (ours only)
	$(PY) -m testbed clean

clean: ## Remove generated stubs and the venv (models and results are kept)
	rm -rf perllm $(VENV)
