#!/usr/bin/env bash
# Train the embedded default model (engine/weights/default) and its autoregressive twin (default-ar) on one budget:
#
#   corpus -> tokenizer -> AR base -> { diffusion adapted from the base, AR twin continued from the base }
#     -> the diffusion twin fine-tuned on the AR twin's lines -> export
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
#   RUNS=runs/check EXPORT=runs/check/weights BASE_STEPS=40 ADAPT_STEPS=20 FINETUNE_STEPS=10 DISTILL_COUNT=20 \
#     bash scripts/train_default.sh  # quick check
#   one H200 (<= 9 min; NOT run yet -- sized by estimate: measure tok_s in the first lines of base.log and adjust):
#   THREADS=8 DATA_WORKERS=12 BATCH=64 CONTEXT=768 BASE_STEPS=2500 ADAPT_STEPS=800 SAVE_EVERY=250 MAX_MINUTES=3.5 \
#     bash scripts/train_default.sh
#   (one data process made ~92k tokens/s on the busy 2-core VM, so ~12 workers for ~1M tokens/s; PRESET=cpu-7m
#   suits that budget better than cpu-4m.)
#
# CONTINUE_STEPS=N adds a third stage: both twins trained N steps more on the same further batches (seed 2), with a
# fresh warm-up and cosine (CONTINUE_LR), and those are exported. CONTINUE_FROM=DIR continues the pair in DIR
# (default/ and default-ar/, e.g. engine/weights: all a bare machine has) instead of this run's twins, skipping
# stages 1-2; the round-7 pair of MODEL_CARD.md was made so:
#   CONTINUE_FROM=engine/weights CONTINUE_STEPS=2400 FINETUNE_STEPS=0 EXPORT=runs/weights bash scripts/train_default.sh
#
# FINETUNE_STEPS=N (default 1200; 0 skips it) is the last stage: the diffusion twin fine-tuned on its teacher's lines
# (sequence-level distillation, docs/speed.md round 10; how the shipped default was made): `diffill distill` asks the
# TEACHER (default: this run's AR twin) 2 x DISTILL_COUNT single-line examples through the editor's path, two
# processes side by side, then N steps from the diffusion twin with DISTILLED_RATE of the rows the teacher's lines.
# The AR twin is exported as it is.
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
PRECISION=${PRECISION:-bf16}        # fp32 on a CPU without bf16 units: bf16 is emulated there (40 s a step vs 2.2)
THREADS=${THREADS:-1}               # base threads (1 beat 2 on a busy 2-core VM); each twin gets half, min 1
DATA_WORKERS=${DATA_WORKERS:-0}   # processes cutting and tokenizing examples (a GPU needs ~12)
MAX_MINUTES=${MAX_MINUTES:-}
CONTINUE_STEPS=${CONTINUE_STEPS:-0}
CONTINUE_LR=${CONTINUE_LR:-1e-3}
CONTINUE_FROM=${CONTINUE_FROM:-}
FINETUNE_STEPS=${FINETUNE_STEPS:-1200}
FINETUNE_LR=${FINETUNE_LR:-3e-4}
DISTILL_COUNT=${DISTILL_COUNT:-3000}  # examples asked per distill process (two)
DISTILLED_RATE=${DISTILLED_RATE:-0.8}
TEACHER=${TEACHER:-}
mkdir -p "$RUNS"

if [ ! -f "$CORPUS/train.jsonl" ]; then
  BENCH=${BENCHMARKS:-}
  for candidate in shared/benchmarks/humaneval-infilling ../shared/benchmarks/humaneval-infilling; do
    [ -z "$BENCH" ] && [ -d "$candidate" ] && BENCH=$candidate
  done
  [ -n "$BENCH" ] || { echo "set BENCHMARKS to the HumanEval-Infilling directory (decontamination)" >&2; exit 2; }
  $PY -m engine.cli corpus --out "$CORPUS" --benchmarks "$BENCH"
fi
[ -n "$CONTINUE_FROM" ] || [ -f "$RUNS/tokenizer.json" ] || $PY -c "
from pathlib import Path
from engine.tokenizer import train_tokenizer
from engine.train import corpus_sample
tok = train_tokenizer(corpus_sample(Path('$CORPUS/train.jsonl'), $TOKENIZER_CHARS), $VOCAB, show_progress=False)
tok.save('$RUNS/tokenizer.json')"

common=(--corpus "$CORPUS" --batch-size "$BATCH" --context-tokens "$CONTEXT" --context-lm-weight 0.5
        --eval-every "$EVAL_EVERY" --eval-batches 8 --save-every "$SAVE_EVERY" --precision "$PRECISION"
        --data-workers "$DATA_WORKERS")
[ -n "$MAX_MINUTES" ] && common+=(--max-minutes "$MAX_MINUTES")
finished() {  # run directory, steps: has that run checkpointed its last step?
  [ -f "$1/train_state/step.json" ] && grep -q "\"step\": $2," "$1/train_state/step.json"
}

# Both twins side by side, same batches: train_twins DIR STEPS FROM_DIFFUSION FROM_AR [train args...]
train_twins() {
  local dir=$1 steps=$2 from_diffusion=$3 from_ar=$4
  shift 4
  local threads=$(( THREADS > 1 ? THREADS / 2 : 1 ))
  mkdir -p "$dir"
  finished "$dir/diffusion" "$steps" || OMP_NUM_THREADS=$threads $PY -m engine.cli train "${common[@]}" \
    --init-from "$from_diffusion" --steps "$steps" "$@" "${shift_flag[@]}" --out "$dir/diffusion" >> "$dir/diffusion.log" 2>&1 &
  finished "$dir/ar" "$steps" || OMP_NUM_THREADS=$threads $PY -m engine.cli train "${common[@]}" \
    --init-from "$from_ar" --steps "$steps" "$@" --autoregressive --out "$dir/ar" >> "$dir/ar.log" 2>&1 &
  wait
  for run in diffusion ar; do
    finished "$dir/$run" "$steps" || { echo "$dir/$run stopped before its last step; re-run to continue" >&2; exit 3; }
  done
}
shift_flag=(--no-shift-logits)
[ "$SHIFT" = 1 ] && shift_flag=(--shift-logits)

if [ -z "$CONTINUE_FROM" ]; then
# Stage 1: the AR base, float32 export (the twins start from it).
echo "AR base: $RUNS/base ($BASE_STEPS steps)" >&2
finished "$RUNS/base" "$BASE_STEPS" || OMP_NUM_THREADS=$THREADS $PY -m engine.cli train "${common[@]}" --out "$RUNS/base" --autoregressive \
  --preset "$PRESET" --tokenizer "$RUNS/tokenizer.json" --steps "$BASE_STEPS" --schedule constant \
  --lr "$BASE_LR" --warmup "$WARMUP" --save-dtype float32 >> "$RUNS/base.log" 2>&1
finished "$RUNS/base" "$BASE_STEPS" || { echo "AR base stopped before its last step; re-run to continue" >&2; exit 3; }

# Stage 2: both twins from the base, side by side, same batches (seed 1: data the base's stream did not start on).
# The twins live under a directory named after the base step they branch from: raising BASE_STEPS later continues
# the base (flat learning rate, so nothing is lost) and then adapts fresh twins from the longer base.
TWINS=$RUNS/twins-$BASE_STEPS
echo "twins: $TWINS/diffusion and $TWINS/ar ($ADAPT_STEPS steps each)" >&2
train_twins "$TWINS" "$ADAPT_STEPS" "$RUNS/base/model" "$RUNS/base/model" --seed 1 --lr "$ADAPT_LR" --warmup 20 \
  --cross-file-rate "$CROSS_FILE_RATE"
from_diffusion=$TWINS/diffusion/model
from_ar=$TWINS/ar/model
else
# The pair in CONTINUE_FROM, copied once: the export below may replace it (EXPORT=engine/weights), and a resumed
# run reads its starting weights again.
TWINS=$RUNS/from-$(basename "$CONTINUE_FROM")
if [ ! -d "$TWINS/start" ]; then
  rm -rf "$TWINS/start.tmp" && mkdir -p "$TWINS/start.tmp"
  cp -r "$CONTINUE_FROM/default" "$CONTINUE_FROM/default-ar" "$TWINS/start.tmp/"
  mv "$TWINS/start.tmp" "$TWINS/start"
fi
from_diffusion=$TWINS/start/default
from_ar=$TWINS/start/default-ar
fi
STAGE=$TWINS  # where the next stage's directory goes: the twins', or the continued twins' below

# Stage 3 (CONTINUE_STEPS > 0): both twins further, same batches (seed 2), fresh warm-up and cosine.
if [ "$CONTINUE_STEPS" -gt 0 ]; then
  echo "continued twins: $TWINS/continued-$CONTINUE_STEPS ($CONTINUE_STEPS steps each)" >&2
  train_twins "$TWINS/continued-$CONTINUE_STEPS" "$CONTINUE_STEPS" "$from_diffusion" "$from_ar" --seed 2 \
    --lr "$CONTINUE_LR" --warmup 50 --cross-file-rate "$CROSS_FILE_RATE"
  from_diffusion=$TWINS/continued-$CONTINUE_STEPS/diffusion/model
  from_ar=$TWINS/continued-$CONTINUE_STEPS/ar/model
  STAGE=$TWINS/continued-$CONTINUE_STEPS
fi

# Stage 4 (FINETUNE_STEPS > 0): the diffusion twin fine-tuned on the teacher's lines (seed 77 for the examples asked,
# seed 3 for the training stream, as the shipped run). Both steps resume: distill from its OUT.asked marker.
if [ "$FINETUNE_STEPS" -gt 0 ]; then
  FT=$STAGE/finetuned-$FINETUNE_STEPS
  teacher=${TEACHER:-$from_ar}
  mkdir -p "$FT"
  echo "fine-tune: $FT (the lines of $teacher, $FINETUNE_STEPS steps)" >&2
  pids=()
  for R in 0 1; do
    OMP_NUM_THREADS=1 $PY -m engine.cli distill --corpus "$CORPUS" --model "$teacher" --out "$FT/teacher$R.jsonl" \
      --count "$DISTILL_COUNT" --rank $R --world 2 --seed 77 >> "$FT/distill$R.log" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do
    wait "$pid" || { echo "distill failed: see $FT/distill*.log; re-run to continue" >&2; exit 3; }
  done
  finished "$FT/diffusion" "$FINETUNE_STEPS" || OMP_NUM_THREADS=$THREADS $PY -m engine.cli train "${common[@]}" \
    --init-from "$from_diffusion" --steps "$FINETUNE_STEPS" --lr "$FINETUNE_LR" --warmup 20 --seed 3 \
    --cross-file-rate "$CROSS_FILE_RATE" --distilled "$FT/teacher0.jsonl" "$FT/teacher1.jsonl" \
    --distilled-rate "$DISTILLED_RATE" "${shift_flag[@]}" --out "$FT/diffusion" >> "$FT/diffusion.log" 2>&1
  finished "$FT/diffusion" "$FINETUNE_STEPS" || { echo "the fine-tune stopped before its last step; re-run to continue" >&2; exit 3; }
  from_diffusion=$FT/diffusion/model
fi

mkdir -p "$EXPORT"
rm -rf "$EXPORT/default" "$EXPORT/default-ar"
cp -r "$from_diffusion" "$EXPORT/default"
cp -r "$from_ar" "$EXPORT/default-ar"
echo "exported: $EXPORT/default $EXPORT/default-ar" >&2
