#!/usr/bin/env bash
# Stage 1 that conveys the words (README "Stage 1 that conveys the words"): from nothing to a stage-1
# adapter the LLM can read, on the embedded models and a 2-core CPU, with its held-out measure.
#   synthetic general corpus (4000 clips, splits disjoint by voice and sentence)
#   -> token-space pre-alignment (CTC on SmolLM2's token embeddings, configs/tiny-v3-align.yaml)
#      | stage-1 teacher targets for 1600 training clips            (two single-threaded lanes)
#   -> the pre-aligned adapter with the token-space bridge (an export, no training)
#   -> stage-1 KL from the pre-alignment | the paper's stage-1 KL from a fresh adapter (same steps)
#   -> eval semantic on 200 held-out test clips and on the five real LibriVox clips, beside the
#      shipped model, a fresh adapter and the ASR / transcript cascades
# Every step is resumable: rerun after an interruption and finished steps are skipped. Wall time per
# step goes to $OUT/timings.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/stage1-words}
BIN=${BIN:-.venv/bin/blsp-emo}
PY=${PY:-.venv/bin/python}
GENERAL=${GENERAL:-4000}       # general sentences, 80/10/10 train/dev/test
KL_ROWS=${KL_ROWS:-1600}       # training clips that get teacher targets (more than the KL steps use)
EVAL_LIMIT=${EVAL_LIMIT:-200}  # held-out test clips scored per system
KL_STEPS=${KL_STEPS:-60}       # stage-1 KL steps of 8 clips (about 2 s of CPU per clip on a busy 2-core box)
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export BLSP_EMO_NUM_THREADS=1 OMP_NUM_THREADS=1  # two one-thread lanes beat one two-thread process here

step() {  # step NAME DONE_FILE COMMAND...: skip when DONE_FILE exists, else run and record the wall time
  local name=$1 done=$2; shift 2
  if [ -e "$done" ]; then echo "== $name: done ($done)"; return 0; fi
  echo "== $name: $*"
  local start=$(date +%s)
  "$@"
  local secs=$(( $(date +%s) - start ))
  printf '%s\t%s\n' "$name" "$secs" >> "$OUT/timings.tsv"
  echo "== $name: ${secs} s"
}
lanes() {  # lanes F G: shell functions F and G side by side (one core each); fail when either fails
  local start=$(date +%s) a b rc=0
  "$1" > "$OUT/lane-$1.log" 2>&1 & a=$!
  "$2" > "$OUT/lane-$2.log" 2>&1 & b=$!
  wait $a || rc=$?
  wait $b || rc=$?
  grep -h '^== ' "$OUT/lane-$1.log" "$OUT/lane-$2.log" || true
  if [ $rc -ne 0 ]; then echo "== lanes $1 $2 failed: see $OUT/lane-$1.log and $OUT/lane-$2.log"; exit $rc; fi
  printf '%s\t%s\n' "$1+$2 (wall)" "$(( $(date +%s) - start ))" >> "$OUT/timings.tsv"
}

C="$OUT/corpus"
step assets "$HOME/.cache/blsp-emo/models/smollm2-135m-instruct/.complete" $BIN assets prepare
step synth "$C/prosody.txt" $BIN data synth -o "$C" --utterances 0 --general "$GENERAL" --seed 0 --workers 2
CACHE="data.cache_dir=$OUT/encoder-cache"

align() {
  step train-align "$OUT/align/final/model.safetensors" $BIN train --config configs/tiny-v3-align.yaml --resume \
    data.train="$C/general.jsonl" run.output_dir="$OUT/align" "$CACHE"
}
targets() {
  step kl-subset "$C/kl-train.jsonl" $PY -c "
import json, os
rows = [json.loads(l) for l in open('$C/general.jsonl')]
keep = [r for r in rows if r.get('split') == 'train'][:$KL_ROWS]
open('$C/kl-train.jsonl.tmp', 'w').write(''.join(json.dumps(r) + '\\n' for r in keep))
os.replace('$C/kl-train.jsonl.tmp', '$C/kl-train.jsonl')
"
  step targets-stage1 "$OUT/.targets.done" sh -c \
    "$BIN data targets --stage semantic '$C/kl-train.jsonl' -o '$OUT/stage1-targets.jsonl' && touch '$OUT/.targets.done'"
}
lanes align targets
# The token-space bridge (this project's option): the same pre-aligned adapter, but the LLM reads the
# embeddings of the tokens its alignment head hears (blank frames dropped) instead of the adapter output.
step export-bridge "$OUT/align-bridge/model.safetensors" $BIN export "$OUT/align/final" -o "$OUT/align-bridge" \
  --dtype float32 --speech-input token_bridge

stage1() {
  step train-stage1 "$OUT/stage1/final/model.safetensors" $BIN train --config configs/tiny-v3-stage1.yaml --resume \
    data.train="$OUT/stage1-targets.jsonl" model.init_from="$OUT/align/final" optim.max_steps="$KL_STEPS" \
    run.output_dir="$OUT/stage1" "$CACHE"
}
stage1_fresh() {  # the paper's stage 1 (KL from a fresh adapter), same data and steps, recipe v2's rate
  step train-stage1-fresh "$OUT/stage1-fresh/final/model.safetensors" $BIN train --config configs/tiny-v3-stage1.yaml \
    --resume data.train="$OUT/stage1-targets.jsonl" model.init_from=tiny optim.lr=1e-3 optim.max_steps="$KL_STEPS" \
    run.output_dir="$OUT/stage1-fresh" "$CACHE"
}
lanes stage1 stage1_fresh

# Held-out measure: test-split clips (voices and sentences never trained on), two lanes of systems.
EVAL=(--tasks semantic --data "$C/general.jsonl" --split test --limit "$EVAL_LIMIT" --llm tiny --batch-size 16)
eval_a() {
  step eval-a "$OUT/eval/.a.done" sh -c "$BIN eval all --model '$OUT/stage1/final' '$OUT/align/final' \
    '$OUT/align-bridge' tiny \
    ${EVAL[*]} -o '$OUT/eval' --cache-dir '$OUT/eval/cache-a' > '$OUT/eval-a.md' && touch '$OUT/eval/.a.done'"
}
eval_b() {
  step eval-b "$OUT/eval/.b.done" sh -c "$BIN eval all --model '$OUT/stage1-fresh/final' blsp-emo-tiny cascade-asr \
    cascade-text ${EVAL[*]} -o '$OUT/eval' --cache-dir '$OUT/eval/cache-b' > '$OUT/eval-b.md' && touch '$OUT/eval/.b.done'"
}
mkdir -p "$OUT/eval"
lanes eval_a eval_b
SYSTEMS=("$OUT/stage1/final" "$OUT/align/final" "$OUT/align-bridge" "$OUT/stage1-fresh/final" tiny blsp-emo-tiny
  cascade-asr cascade-text)
step eval-table "$OUT/eval/.table.done" sh -c "\"\$0\" \"\$@\" && touch '$OUT/eval/.table.done'" $BIN eval all \
  --model "${SYSTEMS[@]}" "${EVAL[@]}" -o "$OUT/eval"
# Real human speech, for evaluation only: the five LibriVox clips of pocketsphinx-testdata.
LIBRIVOX=/usr/share/pocketsphinx/test/data/librivox
step librivox-manifest "$OUT/librivox.jsonl" $BIN data import sphinx "$LIBRIVOX" -o "$OUT/librivox.jsonl" --split test
step eval-librivox "$OUT/eval-librivox/comparison.md" $BIN eval all --tasks semantic --data "$OUT/librivox.jsonl" \
  --split test --model "${SYSTEMS[@]}" --llm tiny --batch-size 5 -o "$OUT/eval-librivox"
echo "== timings (s):"; cat "$OUT/timings.tsv"
