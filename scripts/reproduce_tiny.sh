#!/usr/bin/env bash
# blsp-emo-tiny, recipe v1: from nothing to a trained, evaluated model on a 2-core CPU.
#   assets -> synthetic corpus -> teacher targets (both stages) -> stage 1 -> stage 2 (+ 2 ablations) -> eval all
# Every step is resumable: rerun the script after an interruption and finished steps are skipped (each
# command also resumes inside a step). Wall time per step goes to $OUT/timings.tsv.
# Frozen: this file and configs/tiny-*.yaml are not edited after the release; a new recipe is a new file.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/reproduce-tiny}
BIN=${BIN:-.venv/bin/blsp-emo}
SEED=${SEED:-0}
UTTERANCES=${UTTERANCES:-1500}   # labelled emotional utterances (80/10/10 train/dev/test, disjoint voices+sentences)
GENERAL=${GENERAL:-500}          # unlabelled general sentences for stage 1
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

# step NAME DONE_FILE COMMAND...: skip when DONE_FILE exists, else run and record the wall time.
step() {
  local name=$1 done=$2; shift 2
  if [ -e "$done" ]; then echo "== $name: done ($done)"; return 0; fi
  echo "== $name: $*"
  local start=$(date +%s)
  "$@"
  local secs=$(( $(date +%s) - start ))
  printf '%s\t%s\n' "$name" "$secs" >> "$OUT/timings.tsv"
  echo "== $name: ${secs} s"
}

C="$OUT/corpus"
T="$OUT/targets"
mkdir -p "$T"
step assets "$HOME/.cache/blsp-emo/models/smollm2-135m-instruct/.complete" $BIN assets prepare
step synth "$C/prosody.txt" $BIN data synth -o "$C" --utterances "$UTTERANCES" --general "$GENERAL" \
  --seed "$SEED" --workers 2 --asr-sample 50
# Stage 1: ASR-style data = every training utterance with its transcript (general + emotional wording).
step targets-stage1-general "$T/.stage1-general.done" sh -c \
  "$BIN data targets --stage semantic '$C/general.jsonl' --split train -o '$T/stage1.jsonl' && touch '$T/.stage1-general.done'"
step targets-stage1-emotion "$T/.stage1-emotion.done" sh -c \
  "$BIN data targets --stage semantic '$C/emotion.jsonl' --split train -o '$T/stage1.jsonl' && touch '$T/.stage1-emotion.done'"
step targets-stage2 "$T/.stage2.done" sh -c \
  "$BIN data targets --stage emotion '$C/emotion.jsonl' --split train -o '$T/stage2.jsonl' && touch '$T/.stage2.done'"
# Evaluation: the five emotion-conditioned teacher continuations of every test transcript (empathy task).
step targets-test-all-emotions "$T/.test5.done" sh -c \
  "$BIN data targets --stage emotion --all-emotions '$C/emotion.jsonl' --split test -o '$T/test-all-emotions.jsonl' && touch '$T/.test5.done'"

step train-stage1 "$OUT/stage1/final/model.safetensors" $BIN train --config configs/tiny-stage1.yaml --resume \
  data.train="$T/stage1.jsonl" run.output_dir="$OUT/stage1"
step train-stage2 "$OUT/stage2/final/model.safetensors" $BIN train --config configs/tiny-stage2.yaml --resume \
  data.train="$T/stage2.jsonl" model.init_from="$OUT/stage1/final" run.output_dir="$OUT/stage2"
# Ablations (SPEC.md section 4): stage 2 without stage 1, and stage 2 without the emotion-head loss.
step train-ablation-no-stage1 "$OUT/ablation-no-stage1/final/model.safetensors" $BIN train \
  --config configs/tiny-stage2.yaml --resume data.train="$T/stage2.jsonl" model.init_from=tiny \
  run.output_dir="$OUT/ablation-no-stage1"
step train-ablation-no-emotion-loss "$OUT/ablation-no-emotion-loss/final/model.safetensors" $BIN train \
  --config configs/tiny-stage2.yaml --resume data.train="$T/stage2.jsonl" model.init_from="$OUT/stage1/final" \
  model.emotion_loss_weight=0 run.output_dir="$OUT/ablation-no-emotion-loss"

step eval-all "$OUT/eval/comparison.md" $BIN eval all \
  --model "$OUT/stage2/final" "$OUT/ablation-no-stage1/final" "$OUT/ablation-no-emotion-loss/final" \
  cascade-asr cascade-asr-ser cascade-text \
  --data "$C/emotion.jsonl" --split test --ser-train "$C/emotion.jsonl" \
  --teacher-targets "$T/test-all-emotions.jsonl" -o "$OUT/eval"
echo "== timings (s):"; cat "$OUT/timings.tsv"
