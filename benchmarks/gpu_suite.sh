#!/usr/bin/env bash
# The GPU suite in one call (device run, carry [".whl", ".gpu_data"]): carried wheels, if any, go to /tmp/site; ganforge runs from this tree; results go to $OUT.
cd "$(dirname "$0")/.." && site="" && if compgen -G ".whl/*.whl" >/dev/null; then python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && site=":/tmp/site" || exit; fi && PYTHONUNBUFFERED=1 PYTHONPATH="$PWD$site" exec "${PYTHON:-python3}" benchmarks/gpu_suite.py --out "${OUT:?OUT is not set}" "$@"
