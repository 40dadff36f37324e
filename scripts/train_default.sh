#!/usr/bin/env bash
# Reproduce the embedded default model (engine/weights/default) and its autoregressive twin (default-ar).
#
#   bash scripts/train_default.sh            # corpus, then both models side by side (1 CPU thread each)
#
# Same corpus, tokenizer, preset, batches and steps for both, so they have seen the same tokens. The shipped
# pair was trained this way on a 2-core CPU (see engine/weights/MODEL_CARD.md). On a GPU box, raise --steps and
# --batch-size together for both runs (and --threads is ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs}
mkdir -p "$RUNS"
[ -f data/corpus/train.jsonl ] || diffill corpus --out data/corpus --benchmarks ../shared/benchmarks/humaneval-infilling
[ -f "$RUNS/tokenizer.json" ] || python -c "
from pathlib import Path
from engine.tokenizer import train_tokenizer
from engine.train import corpus_sample
train_tokenizer(corpus_sample(Path('data/corpus/train.jsonl'), 40_000_000), 12288).save('$RUNS/tokenizer.json')"
common=(--corpus data/corpus --preset cpu-8m --tokenizer "$RUNS/tokenizer.json" --steps 900 --batch-size 12
        --context-tokens 384 --lr 2e-3 --warmup 50 --eval-every 150 --eval-batches 8 --save-every 100
        --context-lm-weight 0.5)
OMP_NUM_THREADS=1 diffill train "${common[@]}" --out "$RUNS/default-diffusion" > "$RUNS/default-diffusion.log" 2>&1 &
OMP_NUM_THREADS=1 diffill train "${common[@]}" --out "$RUNS/default-ar" --autoregressive > "$RUNS/default-ar.log" 2>&1 &
wait
rm -rf engine/weights/default engine/weights/default-ar
cp -r "$RUNS/default-diffusion/model" engine/weights/default
cp -r "$RUNS/default-ar/model" engine/weights/default-ar
echo "shipped: engine/weights/default engine/weights/default-ar" >&2
