# The README's two commands are `make demo` (main job on the embedded default) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup assets demo test lint unit integration bench reproduce-tiny reproduce-tiny-v2 reproduce-tiny-v1 clean

setup:
	bash scripts/setup.sh

assets: setup
	$(PY) -m blsp_emo.cli assets prepare

demo: assets
	$(PY) -m blsp_emo.cli demo

lint: setup
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench
	$(PY) -m mypy

unit: setup
	$(PY) -m pytest -q -m "not integration"

integration: assets
	$(PY) -m pytest -q -m integration

test: assets
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench
	$(PY) -m mypy
	$(PY) -m pytest -q

# The blsp-emo-tiny recipes: corpus -> teacher targets -> stage 1 -> stage 2 + ablations -> eval all.
# reproduce-tiny is the current recipe (v3, the shipped model); v2 and v1 stay frozen under their own targets.
reproduce-tiny: assets
	bash scripts/reproduce_tiny_v3.sh

reproduce-tiny-v2: assets
	bash scripts/reproduce_tiny_v2.sh

reproduce-tiny-v1: assets
	bash scripts/reproduce_tiny.sh

bench: assets
	$(PY) bench/encoder_length.py

clean:
	rm -rf .pytest_cache .ruff_cache build dist src/*.egg-info
