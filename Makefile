# Every job of kgqa runs from here; the README names the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INDEX ?= indexes/kgclue-sim
BENCH ?= bench
SYNTH_TRIPLES ?= 20559652

.PHONY: run setup test lint format bench-index bench-index-20m clean

# The main job on a fresh clone: create .venv, install, find the KgCLUE data, build the KB index.
run: setup
	$(BIN)/kgqa prepare --out $(INDEX)
	@echo "index ready at $(INDEX); try: $(BIN)/kgqa index triples $(INDEX) 守望星光"

setup: $(VENV)/.installed

# torch is pinned to 2.13.0: that release is the CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

test: setup lint
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Index benchmark on the KgCLUE-sim KB (2.4M triples), table on stdout, JSON in $(BENCH)/.
bench-index: setup
	$(BIN)/kgqa bench index --kb "$$($(BIN)/kgqa data locate --no-download)/knowledge_sim_dev.tsv.gz" \
		--work $(BENCH)/index-sim --json $(BENCH)/index-sim.json

# The same at KgCLUE's full scale, on a synthetic KB of 20.56M triples (~2.2 GB, written once).
bench-index-20m: setup
	test -f $(BENCH)/synth-20m.tsv || $(BIN)/kgqa bench synth-kb --triples $(SYNTH_TRIPLES) --seed 0 \
		--out $(BENCH)/synth-20m.tsv
	$(BIN)/kgqa bench index --kb $(BENCH)/synth-20m.tsv --work $(BENCH)/index-20m --json $(BENCH)/index-20m.json

clean:
	rm -rf $(VENV) indexes $(BENCH) .pytest_cache .ruff_cache .hypothesis
