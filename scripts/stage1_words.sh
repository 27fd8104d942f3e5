#!/usr/bin/env bash
# Stage 1 that conveys the words (README "Stage 1 that conveys the words"): from nothing to a stage-1
# adapter the LLM can read, on the embedded models and a 2-core CPU, with its held-out measure.
#   grammar corpus: 4000 clips of the sentence grammar (espeak-ng, Piper), splits disjoint by voice
#     and sentence | broad corpus: 4000 clips of WordNet's example sentences (all four TTS engines)
#   -> token-space pre-alignment on the grammar corpus (CTC on SmolLM2's token embeddings,
#      configs/tiny-v3-align.yaml) | stage-1 teacher targets for 1600 grammar training clips
#   -> pre-alignment continued on grammar + broad training clips (broad vocabulary)
#      | stage-1 KL from the first pre-alignment
#   -> the pre-aligned adapters with the token-space bridge (exports, no training)
#   -> the paper's stage-1 KL from a fresh adapter (same data and steps)
#   -> eval semantic on held-out test clips of both corpora and on the five real LibriVox clips,
#      beside the shipped model, a fresh adapter and the ASR / transcript cascades
# Every step is resumable: rerun after an interruption and finished steps are skipped. Wall time per
# step goes to $OUT/timings.tsv. STAGE1_ONLY=1 stops after the stage-1 KL on the grammar corpus (what
# recipe v3, scripts/reproduce_tiny_v3.sh, builds on).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/stage1-words}
BIN=${BIN:-.venv/bin/blsp-emo}
PY=${PY:-.venv/bin/python}
GENERAL=${GENERAL:-4000}       # general sentences, 80/10/10 train/dev/test
KL_ROWS=${KL_ROWS:-1600}       # training clips that get teacher targets (more than the KL steps use)
EVAL_LIMIT=${EVAL_LIMIT:-80}  # held-out test clips scored per system and corpus
KL_STEPS=${KL_STEPS:-60}       # stage-1 KL steps of 8 clips (about 2 s of CPU per clip on a busy 2-core box)
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export BLSP_EMO_NUM_THREADS=1 OMP_NUM_THREADS=1  # two one-thread lanes beat one two-thread process here

source scripts/recipe_lib.sh  # step NAME DONE_FILE CMD..., lanes F G, run_eval NAME DONE MD ARGS...

C="$OUT/corpus"
step assets "$HOME/.cache/blsp-emo/models/smollm2-135m-instruct/.complete" $BIN assets prepare
step synth "$C/prosody.txt" $BIN data synth -o "$C" --utterances 0 --general "$GENERAL" --seed 0 --workers 2
B="$OUT/broad"
if [ -z "${STAGE1_ONLY:-}" ] || [ -n "${WITH_BROAD:-}" ]; then  # WITH_BROAD: recipe v3's emotion pre-alignment
  step sentences "$OUT/wordnet.txt" $BIN data sentences wordnet -o "$OUT/wordnet.txt"
  step synth-broad "$B/prosody.txt" $BIN data synth -o "$B" --utterances 0 --general "$GENERAL" \
    --sentences "$OUT/wordnet.txt" --engines all --seed 0 --workers 2
fi
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
stage1() {
  step train-stage1 "$OUT/stage1/final/model.safetensors" $BIN train --config configs/tiny-v3-stage1.yaml --resume \
    data.train="$OUT/stage1-targets.jsonl" model.init_from="$OUT/align/final" optim.max_steps="$KL_STEPS" \
    run.output_dir="$OUT/stage1" "$CACHE"
}
if [ -z "${STAGE1_ONLY:-}" ] || [ -n "${WITH_BROAD:-}" ]; then
  step combined-manifest "$OUT/combined-train.jsonl" $PY -c "
import json, os
rows = []
for folder in ('$C', '$B'):
    for line in open(os.path.join(folder, 'general.jsonl')):
        row = json.loads(line)
        if row.get('split') == 'train':
            row['audio'] = os.path.abspath(os.path.join(folder, row['audio']))
            rows.append(row)
open('$OUT/combined-train.jsonl.tmp', 'w').write(''.join(json.dumps(r) + '\\n' for r in rows))
os.replace('$OUT/combined-train.jsonl.tmp', '$OUT/combined-train.jsonl')
"
fi
lanes align targets
if [ -n "${STAGE1_ONLY:-}" ]; then  # recipe v3 needs only the pre-aligned, KL-trained adapter
  stage1
  exit 0
fi
# The token-space bridge (this project's option): the same pre-aligned adapter, but the LLM reads the
# embeddings of the tokens its alignment head hears (blank frames dropped) instead of the adapter output.
step export-bridge "$OUT/align-bridge/model.safetensors" $BIN export "$OUT/align/final" -o "$OUT/align-bridge" \
  --dtype float32 --speech-input token_bridge

align_broad() {  # the pre-alignment goes on over both corpora: the broad one brings the vocabulary
  step train-align-broad "$OUT/align-broad/final/model.safetensors" $BIN train --config configs/tiny-v3-align.yaml \
    --resume data.train="$OUT/combined-train.jsonl" model.init_from="$OUT/align/final" optim.epochs=2 \
    optim.warmup_steps=20 optim.lr=1e-3 run.output_dir="$OUT/align-broad" "$CACHE"
}
stage1_fresh() {  # the paper's stage 1 (KL from a fresh adapter), same data and steps, recipe v2's rate
  step train-stage1-fresh "$OUT/stage1-fresh/final/model.safetensors" $BIN train --config configs/tiny-v3-stage1.yaml \
    --resume data.train="$OUT/stage1-targets.jsonl" model.init_from=tiny optim.lr=1e-3 optim.max_steps="$KL_STEPS" \
    run.output_dir="$OUT/stage1-fresh" "$CACHE"
}
lanes align_broad stage1
step export-bridge-broad "$OUT/align-broad-bridge/model.safetensors" $BIN export "$OUT/align-broad/final" \
  -o "$OUT/align-broad-bridge" --dtype float32 --speech-input token_bridge
stage1_fresh

# Held-out measure: test-split clips (voices and sentences never trained on) of each corpus, and the
# five real LibriVox clips of pocketsphinx-testdata (human speech, for evaluation only); two lanes.
SYSTEMS_A=("$OUT/align-broad-bridge" "$OUT/align-broad/final" "$OUT/align-bridge")
SYSTEMS_B=("$OUT/stage1/final" "$OUT/stage1-fresh/final" blsp-emo-tiny cascade-asr cascade-text)
LIBRIVOX=/usr/share/pocketsphinx/test/data/librivox
step librivox-manifest "$OUT/librivox.jsonl" $BIN data import sphinx "$LIBRIVOX" -o "$OUT/librivox.jsonl" --split test
COMMON=(--tasks semantic --split test --llm tiny --batch-size 16)
evaluate() {  # evaluate LANE SYSTEMS...: the systems on the three test sets, each set its own folder
  local lane=$1; shift
  for set in grammar broad librivox; do
    case $set in
      grammar) data="$C/general.jsonl"; limit=(--limit "$EVAL_LIMIT");;
      broad) data="$B/general.jsonl"; limit=(--limit "$EVAL_LIMIT");;
      librivox) data="$OUT/librivox.jsonl"; limit=();;
    esac
    run_eval "eval-$set-$lane" "$OUT/eval-$set/.$lane.done" "$OUT/eval-$set-$lane.md" --model "$@" --data "$data" \
      "${limit[@]}" "${COMMON[@]}" -o "$OUT/eval-$set" --cache-dir "$OUT/eval-$set/cache-$lane"
  done
}
eval_a() { evaluate a "${SYSTEMS_A[@]}"; }
eval_b() { evaluate b "${SYSTEMS_B[@]}"; }
mkdir -p "$OUT/eval-grammar" "$OUT/eval-broad" "$OUT/eval-librivox"
lanes eval_a eval_b
for set in grammar broad librivox; do  # one table per test set over all systems (finished results only)
  case $set in
    grammar) data="$C/general.jsonl"; limit=(--limit "$EVAL_LIMIT");;
    broad) data="$B/general.jsonl"; limit=(--limit "$EVAL_LIMIT");;
    librivox) data="$OUT/librivox.jsonl"; limit=();;
  esac
  run_eval "table-$set" "$OUT/eval-$set/.table.done" "$OUT/eval-$set-table.md" --model "${SYSTEMS_A[@]}" \
    "${SYSTEMS_B[@]}" --data "$data" "${limit[@]}" "${COMMON[@]}" -o "$OUT/eval-$set"
done
echo "== timings (s):"; cat "$OUT/timings.tsv"
