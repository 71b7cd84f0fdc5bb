#!/usr/bin/env bash
# Rebuilds what the detector benchmarks read (benchmarks/detector_lofo.py, detector_probe.py):
# the short generator runs whose fingerprints the detector learns, and the images of every
# family (500 each, watermark off). Nothing here is a shipped model: the runs are small on
# purpose (weak pictures, real fingerprints).
#
#   OMP_NUM_THREADS=1 bash benchmarks/detector_data.sh [DET_DIR] [RESTYLE_DIR]
#
# DET_DIR (default /tmp/det) receives the runs and data/; RESTYLE_DIR (default /tmp/restyle)
# holds the flat -> 3D pairs of `benchmarks/restyle_emoji.py --out RESTYLE_DIR --prepare-only`
# (made here if missing). About 60 min on one thread of the 2-core EPYC (2026-12-02):
# tokenizer 1 min, MaskGIT 7, StarGAN v2 5, CycleGAN 29, UNIT 14, the images of 9 families 4.
set -euo pipefail
DET=${1:-/tmp/det}
RESTYLE=${2:-/tmp/restyle}
EMOJI=${EMOJI:-/work/shared/data/emoji}
PY=${PY:-python}
GF="$PY -m ganforge.cli"
mkdir -p "$DET"
run() {  # run FOLDER FAMILY ARGS...: train into FOLDER (resumed after a stop) unless done
  local out=$1; shift
  if [ -f "$out/.done" ]; then echo "have $out"; return; fi
  if [ -d "$out" ]; then $GF train "$1" --resume "$out" --no-progress;
  else $GF train "$@" --out "$out" --no-progress; fi
  touch "$out/.done"
}
[ -d "$RESTYLE/train/a" ] || $PY benchmarks/restyle_emoji.py --out "$RESTYLE" --prepare-only
if [ ! -f "$DET/dfgan/model.safetensors" ]; then  # the former DF-GAN default (commit f213b57)
  mkdir -p "$DET/dfgan"
  for f in config.json model.safetensors; do
    git show "f213b57:ganforge/assets/text2image-emoji-64/$f" > "$DET/dfgan/$f"
  done
fi
run "$DET/tok" tokenizer --images "$EMOJI/twitter/64" --size 32 --channels 16 \
  --codebook-size 256 --adversarial-start 100000 --steps 400 --batch-size 16
run "$DET/mg" maskgit --tokenizer "$DET/tok" --captions "$EMOJI/metadata.jsonl" \
  --image-template 'twitter/64/{id}.png' --dim 128 --layers 3 --text-dim 128 --text-layers 2 \
  --steps 700 --batch-size 32
run "$DET/sg" stargan --domains "$EMOJI/google/64,$EMOJI/twitter/64,$EMOJI/fluent3d/256" \
  --size 32 --channels 16 --max-channels 128 --downsamplings 1 --bottleneck-blocks 1 \
  --steps 600 --batch-size 8
run "$DET/cyclegan" cyclegan --domain-a "$RESTYLE/train/a/twitter" \
  --domain-b "$RESTYLE/train/b/twitter" --size 64 --generator-channels 16 --generator-blocks 6 \
  --discriminator-channels 32 --steps 1500 --batch-size 4
run "$DET/unit" unit --domain-a "$RESTYLE/train/a/twitter" --domain-b "$RESTYLE/train/b/twitter" \
  --size 64 --channels 16 --blocks 4 --shared-blocks 1 --discriminator-channels 32 \
  --steps 600 --batch-size 4
# the images of every family (cached as PNG in $DET/data/<family>), then the table once
$PY benchmarks/detector_lofo.py --data "$(dirname "$EMOJI")" --cache "$DET/data" \
  --sources "$RESTYLE/train/a/twitter" --cyclegan "$DET/cyclegan" --unit "$DET/unit" \
  --maskgit "$DET/mg" --stargan "$DET/sg" --dfgan "$DET/dfgan" --holdout '' \
  --out "$DET/data.json"
# real high-resolution flat emoji (Twemoji SVGs rendered at 256 px, 64 px crops; ~15 s): a real
# source for detector_probe.py --extra-real, and the true pictures of the upscaler's crops
[ -d "$DET/real/twemoji-svg-crop" ] || $PY benchmarks/twemoji_svg_crops.py --out "$DET/real" \
  --emoji "$EMOJI/twitter/64" --sources "$RESTYLE/train/a/twitter"
