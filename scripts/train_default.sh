#!/usr/bin/env bash
# Reproduce the embedded default model (engine/weights/default) and its autoregressive twin (default-ar).
#
#   bash scripts/train_default.sh            # corpus, tokenizer, then both models side by side, two stages
#
# Same corpus, tokenizer, preset, batches and steps for both, so they have seen the same tokens. Two stages, as
# the shipped pair was trained (see engine/weights/MODEL_CARD.md): stage 1 from random weights, then stage 2
# from stage 1's weights with a fresh optimizer, a new learning-rate cycle and a new data seed. A stage whose
# model is already in $RUNS is skipped. On a GPU box, raise --steps and --batch-size together for both runs
# (--threads and OMP_NUM_THREADS are then irrelevant; precision auto is bf16 there).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs}
STAGE2_STEPS=${STAGE2_STEPS:-1650}
mkdir -p "$RUNS"
[ -f data/corpus/train.jsonl ] || diffill corpus --out data/corpus --benchmarks ../shared/benchmarks/humaneval-infilling
[ -f "$RUNS/tokenizer.json" ] || python -c "
from pathlib import Path
from engine.tokenizer import train_tokenizer
from engine.train import corpus_sample
train_tokenizer(corpus_sample(Path('data/corpus/train.jsonl'), 40_000_000), 12288).save('$RUNS/tokenizer.json')"
common=(--corpus data/corpus --batch-size 12 --context-tokens 384 --warmup 50 --eval-every 150 --eval-batches 8
        --context-lm-weight 0.5)

# Both objectives side by side, one CPU thread each (two threads per process on a 2-core machine stall in OpenMP).
side_by_side() {  # stage, the stage whose weights to start from ("" = random), then the shared arguments
  local stage=$1 from=$2
  shift 2
  local run objective
  for run in diffusion ar; do
    objective=()
    [ "$run" = ar ] && objective=(--autoregressive)
    [ -n "$from" ] && objective+=(--init-from "$RUNS/$from-$run/model")
    OMP_NUM_THREADS=1 diffill train "$@" "${objective[@]}" --out "$RUNS/$stage-$run" > "$RUNS/$stage-$run.log" 2>&1 &
  done
  wait
}

# Stage 1: 900 steps from random weights, fp32, lr 2e-3 (the shipped stage 1 stopped at step 804 of this
# schedule, by its 115-minute wall-clock guard on a busy CPU).
[ -f "$RUNS/stage1-diffusion/model/config.json" ] && [ -f "$RUNS/stage1-ar/model/config.json" ] ||
  side_by_side stage1 "" "${common[@]}" --preset cpu-8m --tokenizer "$RUNS/tokenizer.json" --steps 900 --lr 2e-3 \
    --save-every 100 --precision fp32

# Stage 2: continue each model from its stage-1 weights, bf16 autocast (2x the step rate on AVX512-BF16 CPUs).
# The shipped stage 2 ran 1,650 steps (restarted from its step-200 checkpoint, see the model card).
side_by_side stage2 stage1 "${common[@]}" --seed 1 --steps "$STAGE2_STEPS" --lr 1.5e-3 --save-every 100 \
  --precision bf16 --max-minutes 110

rm -rf engine/weights/default engine/weights/default-ar
cp -r "$RUNS/stage2-diffusion/model" engine/weights/default
cp -r "$RUNS/stage2-ar/model" engine/weights/default-ar
echo "shipped: engine/weights/default engine/weights/default-ar" >&2
