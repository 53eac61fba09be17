# gendetect: the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?= ../shared/data

.PHONY: setup demo test lint bench bench-quality bench-serving bench-features bench-training clean

setup: $(VENV)/.installed

# torch is pinned to the CPU wheel first, so that resolving the project's
# dependencies never pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	touch $@

demo: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

test: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/test.sh

lint: setup
	$(BIN)/ruff check .

bench: bench-quality bench-serving bench-features bench-training

bench-quality: setup
	$(BIN)/python benchmarks/quality.py --data $(DATA)

bench-serving: setup
	$(BIN)/python benchmarks/serving_latency.py

bench-features: setup
	$(BIN)/python benchmarks/window_features.py --data $(DATA)

bench-training: setup
	$(BIN)/python benchmarks/training_speed.py --data $(DATA)

clean:
	rm -rf .gendetect .pytest_cache
