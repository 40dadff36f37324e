#!/usr/bin/env bash
# The released coders' speed on a GPU (issue 17): random weights in the shapes of Open-dCoder-0.5B, CoDA-1.7B and
# Dream-Coder-7B, bf16, a 2,000-token context: ms per denoising step, canvas tokens/s and time to the first
# completion, exact and with the approximate (Fast-dLLM dual) cache, and how often the cache agrees.
#
#   scripts/bench_adapters_gpu.sh [OUT_DIR]          # writes OUT_DIR/bench.md (the table) and OUT_DIR/bench.json
#
# Overrides (the CPU test runs it tiny): DEVICE=cuda DTYPE=bfloat16 SIZES="..." CONTEXT=2000 CANVAS=32 STEPS=8
# REFRESH=4 REPEAT=3. Needs only this repository and its Python dependencies; nothing is downloaded.
set -euo pipefail
OUT=${1:-runs/bench-adapters-gpu}
mkdir -p "$OUT"
python -m eval.bench_adapters \
    --device "${DEVICE:-cuda}" --dtype "${DTYPE:-bfloat16}" \
    --sizes ${SIZES:-open-dcoder-0.5b coda-1.7b dream-coder-7b} \
    --context "${CONTEXT:-2000}" --canvas "${CANVAS:-32}" --steps "${STEPS:-8}" --refresh "${REFRESH:-4}" \
    --repeat "${REPEAT:-3}" --json "$OUT/bench.json" | tee "$OUT/bench.md"
