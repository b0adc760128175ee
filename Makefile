# The user interface. `make help` lists the targets; CONFIG= picks the experiment YAML, ARGS= overrides keys.
#   make pretrain finetune evaluate                       # the quickstart, end to end on a CPU
#   make pretrain ARGS="pretrain.epochs=2 run.name=try1"  # dot-list overrides
#   make data CONFIG=configs/cifar10_shared.yaml          # another experiment
#   make export ARGS="run.from_run=runs/try1"             # reuse that run's resolved config (README)

CONFIG ?= configs/quickstart.yaml
ARGS ?=
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# the exact versions CI tests (pyproject.toml keeps the ranges, for library users); `make lock` refreshes it
LOCK := constraints.txt
LOCK_VENV ?= $(VENV)-lock
RUN := $(PY) -m

.DEFAULT_GOAL := help
.PHONY: help setup lock data index protocols pretrain finetune evaluate export test test-slow bench lint format experiment experiment-vit experiment-fare clean

help: ## list the targets
	@echo "usage: make <target> [CONFIG=configs/x.yaml] [ARGS=\"key=value ...\"]"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml $(LOCK)
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c $(LOCK) --build-constraint $(LOCK) -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install the project at the versions of constraints.txt (idempotent; other targets do it implicitly)

lock: ## re-resolve constraints.txt: the newest versions pyproject.toml allows, in a throwaway venv (then make test)
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install -q -e ".[dev]"
	{ echo "# The versions CI tests: what \`make lock\` resolved for pip install -e '.[dev]' in a fresh venv"; \
	  echo "# ($$($(LOCK_VENV)/bin/python -c 'import platform as p; print(p.python_implementation(), p.python_version(), p.system(), p.machine())'), $$(date -u +%Y-%m-%d))."; \
	  echo "# Used as constraints (pip install -c constraints.txt): packages a platform does not need (the CUDA"; \
	  echo "# wheels off Linux) are skipped. Refresh: make lock && make test, then commit this file."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --all --exclude pip --exclude-editable; } > $(LOCK)
	rm -rf $(LOCK_VENV)

data: $(STAMP) ## convert the dataset of CONFIG into webdataset shards
	$(RUN) stages data --config $(CONFIG) $(ARGS)

index: $(STAMP) ## write shards.index.json next to your shards (data.*_urls): fast start-up for big shard sets
	$(RUN) stages index --config $(CONFIG) $(ARGS)

pretrain: $(STAMP) ## self-supervised (adversarial) pretraining: SimCLR, ACL, DynACL(++), AIR, RCS; MIMIR (ViTs); FARE (from model.pretrained)
	$(RUN) stages pretrain --config $(CONFIG) $(ARGS)

finetune: $(STAMP) ## adversarial fine-tuning (SLF / ALF / AFF with TRADES, PGD-AT or CE)
	$(RUN) stages finetune --config $(CONFIG) $(ARGS)

evaluate: $(STAMP) ## clean, PGD, AutoAttack (+ sweep, calibration, smoothing); writes report.md/json
	$(RUN) stages evaluate --config $(CONFIG) $(ARGS)

protocols: $(STAMP) ## SLF, ALF and AFF from one pretrained backbone, each evaluated; prints RobustSSL's table
	$(RUN) stages protocols --config $(CONFIG) $(ARGS)

export: $(STAMP) ## robust backbone + classifier as timm folders with a model card
	$(RUN) stages export --config $(CONFIG) $(ARGS)

test: $(STAMP) ## the test suite (fast; slow tests excluded)
	$(PY) -m pytest -q

test-slow: $(STAMP) ## only the slow tests (real CIFAR-10 when ../shared/data/cifar10 exists)
	$(PY) -m pytest -q -m slow

bench: $(STAMP) ## CPU benchmarks, one after another; numbers go to BENCHMARKS.md
	$(PY) bench/run_all.py

EXP_ARGS ?= --pretrain-epochs 2 --finetune-epochs 3
experiment: $(STAMP) ## the CPU-scale CIFAR-10 comparison (ACL/DynACL/SimCLR → AFF vs TRADES scratch), ~80 min
	$(PY) bench/experiment_cifar10.py $(EXP_ARGS)

experiment-vit: $(STAMP) ## the CPU-scale ViT comparison (MIMIR → AFF, ACL → AFF, TRADES scratch), ~2-3 h
	$(PY) bench/experiment_vit_cifar10.py

experiment-fare: $(STAMP) ## FARE vs ACL from a SimCLR backbone (SLF, embedding drift under attack), ~90 min
	$(PY) bench/experiment_fare_cifar10.py

LINT_PATHS := pipeline stages data tests bench

lint: $(STAMP) ## ruff: lint rules and formatting (check only; `make format` rewrites)
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m ruff format --check $(LINT_PATHS)

format: $(STAMP) ## ruff format: rewrite the sources in the project's style
	$(PY) -m ruff format $(LINT_PATHS)

clean: ## delete runs/ (your results!) — asks first
	@read -p "delete runs/? [y/N] " a && [ "$$a" = y ] && rm -rf runs || true
