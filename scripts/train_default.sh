#!/usr/bin/env bash
# Train the embedded default model (engine/weights/default) and its autoregressive twin (default-ar) on one budget:
#
#   corpus -> tokenizer -> AR base -> { diffusion adapted from the base, AR twin continued from the base } -> export
#
# The base trains next-token prediction with a flat learning rate after warm-up (the "stable" phase of a
# warmup-stable-decay schedule). Both twins then start from its weights, with the same batches, steps and a
# cosine decay: the diffusion one with a bidirectional canvas and the masked-diffusion loss (the one-position
# logit shift of Dream / DiffuCoder when SHIFT=1), the AR one with more next-token training. Same tokens for both;
# a CROSS_FILE_RATE share of their rows carries chunks of related files under path comments, as the editors send.
#
# Resumable: every stage checkpoints every SAVE_EVERY steps and re-running this script continues where it stopped
# (a finished stage is a no-op), so a CPU run can span several sittings. Sized by environment variables:
#
#   bash scripts/train_default.sh                       # the CPU recipe (~100M tokens: many sittings on 2 cores)
#   RUNS=runs/check EXPORT=runs/check/weights BASE_STEPS=40 ADAPT_STEPS=20 bash scripts/train_default.sh  # quick check
#   one H200 (<= 9 min; NOT run yet -- sized by estimate: measure tok_s in the first lines of base.log and adjust):
#   THREADS=8 DATA_WORKERS=12 BATCH=64 CONTEXT=768 BASE_STEPS=2500 ADAPT_STEPS=800 SAVE_EVERY=250 MAX_MINUTES=3.5 \
#     bash scripts/train_default.sh
#   (one data process made ~92k tokens/s on the busy 2-core VM, so ~12 workers for ~1M tokens/s; PRESET=cpu-7m
#   suits that budget better than cpu-4m.)
#
# MAX_MINUTES caps each stage's wall time (it stops with a checkpoint; re-run to continue). Weights are exported
# (bf16, shards < 16 MiB) to $EXPORT/default and $EXPORT/default-ar once both twins have finished.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
CORPUS=${CORPUS:-data/corpus}
RUNS=${RUNS:-runs/default}
EXPORT=${EXPORT:-engine/weights}
PRESET=${PRESET:-cpu-4m}
VOCAB=${VOCAB:-8192}
TOKENIZER_CHARS=${TOKENIZER_CHARS:-40000000}
BATCH=${BATCH:-12}
CONTEXT=${CONTEXT:-384}
BASE_STEPS=${BASE_STEPS:-14000}     # 12 rows x ~430 tokens a step: ~71M tokens
ADAPT_STEPS=${ADAPT_STEPS:-3000}    # ~15M more tokens for each twin
BASE_LR=${BASE_LR:-2e-3}
ADAPT_LR=${ADAPT_LR:-1e-3}
WARMUP=${WARMUP:-100}
SHIFT=${SHIFT:-1}
CROSS_FILE_RATE=${CROSS_FILE_RATE:-0.2}  # twins: share of rows that carry chunks of related files (docs/context.md)
SAVE_EVERY=${SAVE_EVERY:-50}
EVAL_EVERY=${EVAL_EVERY:-250}
THREADS=${THREADS:-1}               # base threads (1 beat 2 on a busy 2-core VM); each twin gets half, min 1
DATA_WORKERS=${DATA_WORKERS:-0}   # processes cutting and tokenizing examples (a GPU needs ~12)
MAX_MINUTES=${MAX_MINUTES:-}
mkdir -p "$RUNS"

if [ ! -f "$CORPUS/train.jsonl" ]; then
  BENCH=${BENCHMARKS:-}
  for candidate in shared/benchmarks/humaneval-infilling ../shared/benchmarks/humaneval-infilling; do
    [ -z "$BENCH" ] && [ -d "$candidate" ] && BENCH=$candidate
  done
  [ -n "$BENCH" ] || { echo "set BENCHMARKS to the HumanEval-Infilling directory (decontamination)" >&2; exit 2; }
  $PY -m engine.cli corpus --out "$CORPUS" --benchmarks "$BENCH"
fi
[ -f "$RUNS/tokenizer.json" ] || $PY -c "
from pathlib import Path
from engine.tokenizer import train_tokenizer
from engine.train import corpus_sample
tok = train_tokenizer(corpus_sample(Path('$CORPUS/train.jsonl'), $TOKENIZER_CHARS), $VOCAB, show_progress=False)
tok.save('$RUNS/tokenizer.json')"

common=(--corpus "$CORPUS" --batch-size "$BATCH" --context-tokens "$CONTEXT" --context-lm-weight 0.5
        --eval-every "$EVAL_EVERY" --eval-batches 8 --save-every "$SAVE_EVERY" --precision bf16
        --data-workers "$DATA_WORKERS")
[ -n "$MAX_MINUTES" ] && common+=(--max-minutes "$MAX_MINUTES")
finished() {  # run directory, steps: has that run checkpointed its last step?
  [ -f "$1/train_state/step.json" ] && grep -q "\"step\": $2," "$1/train_state/step.json"
}

# Stage 1: the AR base, float32 export (the twins start from it).
echo "AR base: $RUNS/base ($BASE_STEPS steps)" >&2
finished "$RUNS/base" "$BASE_STEPS" || OMP_NUM_THREADS=$THREADS $PY -m engine.cli train "${common[@]}" --out "$RUNS/base" --autoregressive \
  --preset "$PRESET" --tokenizer "$RUNS/tokenizer.json" --steps "$BASE_STEPS" --schedule constant \
  --lr "$BASE_LR" --warmup "$WARMUP" --save-dtype float32 >> "$RUNS/base.log" 2>&1
finished "$RUNS/base" "$BASE_STEPS" || { echo "AR base stopped before its last step; re-run to continue" >&2; exit 3; }

# Stage 2: both twins from the base, side by side, same batches (seed 1: data the base's stream did not start on).
twin_threads=$(( THREADS > 1 ? THREADS / 2 : 1 ))
shift_flag=(--no-shift-logits)
[ "$SHIFT" = 1 ] && shift_flag=(--shift-logits)
# The twins live under a directory named after the base step they branch from: raising BASE_STEPS later continues
# the base (flat learning rate, so nothing is lost) and then adapts fresh twins from the longer base.
TWINS=$RUNS/twins-$BASE_STEPS
mkdir -p "$TWINS"
stage2=(--init-from "$RUNS/base/model" --seed 1 --steps "$ADAPT_STEPS" --lr "$ADAPT_LR" --warmup 20
        --cross-file-rate "$CROSS_FILE_RATE")
echo "twins: $TWINS/diffusion and $TWINS/ar ($ADAPT_STEPS steps each)" >&2
finished "$TWINS/diffusion" "$ADAPT_STEPS" || OMP_NUM_THREADS=$twin_threads $PY -m engine.cli train "${common[@]}" \
  "${stage2[@]}" "${shift_flag[@]}" --out "$TWINS/diffusion" >> "$TWINS/diffusion.log" 2>&1 &
finished "$TWINS/ar" "$ADAPT_STEPS" || OMP_NUM_THREADS=$twin_threads $PY -m engine.cli train "${common[@]}" \
  "${stage2[@]}" --autoregressive --out "$TWINS/ar" >> "$TWINS/ar.log" 2>&1 &
wait
for run in diffusion ar; do
  finished "$TWINS/$run" "$ADAPT_STEPS" || { echo "$run stopped before its last step; re-run to continue" >&2; exit 3; }
done

mkdir -p "$EXPORT"
rm -rf "$EXPORT/default" "$EXPORT/default-ar"
cp -r "$TWINS/diffusion/model" "$EXPORT/default"
cp -r "$TWINS/ar/model" "$EXPORT/default-ar"
echo "exported: $EXPORT/default $EXPORT/default-ar" >&2
