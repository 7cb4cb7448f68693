# fisherlab: the two set-up commands of the README are `make main` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fisherlab-installed
RUNS ?= runs/main

.PHONY: setup data main reproduce figures finetune-demo test test-all lint format clean

# A virtual environment with torch 2.14.1 + torchvision 0.29.1 and fisherlab (editable).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[dev,ray]'
	touch $(STAMP)

setup: $(STAMP) data

data:
	@bash scripts/install-data.sh

# The main job on the embedded default data: the quick reproduction of the paper's
# experiments (tables in results/quick/, figures in results/quick/figures/).
main: setup
	$(BIN)/fisherlab reproduce --preset quick --out results/quick

# The README's results table: the default preset (about two hours on 2 cores), then the
# checks preset (second architecture, reference length) into results/checks and the
# defenses preset (the tuned defense comparison, C6) into results/defenses, each starting
# from hard links to the default's cached steps (every step is cached, so an interrupted
# run resumes). `make figures` then redraws figures/ from results/default.
reproduce: setup
	$(BIN)/fisherlab reproduce --preset default --out results/default
	mkdir -p results/checks && cp -al -n results/default/steps results/checks/
	$(BIN)/fisherlab reproduce --preset checks --out results/checks
	mkdir -p results/defenses && cp -al -n results/checks/steps results/defenses/
	$(BIN)/fisherlab reproduce --preset defenses --out results/defenses

figures: $(STAMP)
	$(BIN)/python scripts/run_notebooks.py --figures figures

# The old demo: pretrain, then one TL-DMI fine-tune with layers 0-3 frozen.
finetune-demo: setup
	$(BIN)/fisherlab train --arch target_cnn --data fashion --epochs 1 \
		--out $(RUNS)/pretrain.pt
	$(BIN)/fisherlab train --init $(RUNS)/pretrain.pt --data mnist5k:0-4 \
		--freeze-boundary 4 --epochs 5 --save-every 1 --out $(RUNS)/finetune.pt

# The default test suite (slow tests excluded); CI runs this.
test: setup
	$(BIN)/python -m pytest --durations=40

test-all: setup
	$(BIN)/python -m pytest -m ""

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) runs results/quick results/*/steps .pytest_cache .ruff_cache
