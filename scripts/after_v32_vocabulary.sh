#!/usr/bin/env bash
# After v3.2, the vocabulary test (README "More open-vocabulary data in step 2b"): does open-vocabulary
# data teach the adapter to read? Step 2b's pre-alignment again with the broad corpus's training clips added,
# then both 2b adapters read emotion-corpus dev clips and broad-corpus test clips; then v3.2's recipe (the
# 60 KL steps of 2b, v3.2's stage 2) from the new 2b adapter and the dev choice beside v3.2. Needs recipe v3's
# outputs in $RECIPE (step 1 and step 2b: `OUT=runs/tiny-v3 UNTIL=2b bash scripts/reproduce_tiny_v3.sh`).
# Resumable step by step; wall times go to $OUT/timings.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
RECIPE=${RECIPE:-runs/tiny-v3}
OUT=${OUT:-$RECIPE/after-v3.2}
BIN=${BIN:-.venv/bin/blsp-emo}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
THREADS=${THREADS:-1}  # the last steps run alone: THREADS=2 gives them both cores
export BLSP_EMO_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS

source scripts/recipe_lib.sh  # step NAME DONE_FILE CMD..., lanes F G, run_eval NAME DONE MD ARGS...

# 3. Reading with an open vocabulary: step 2b of the recipe (pre-alignment from step 1 over the emotion
# corpus's training clips and as many grammar clips) again, with all 3200 broad-corpus training clips
# (WordNet's example sentences, four engines) added, 4 epochs; then the greedy-CTC WER and reply cosine of
# both 2b adapters (no LoRA, no stage 2) on 40 emotion-corpus dev clips and 40 broad-corpus test clips.
W="$RECIPE/words"
step broad-2b-manifest "$OUT/align-broad-train.jsonl" $PY -c "
import json, os, random
rows = [json.loads(line) for line in open('$RECIPE/align-emotion-train.jsonl')]  # step 2b's own rows
broad = os.path.abspath('$W/broad')
have = {os.path.realpath(r['audio']) for r in rows}
for line in open(os.path.join(broad, 'general.jsonl')):
    row = json.loads(line)
    if row['split'] == 'train' and os.path.realpath(os.path.join(broad, row['audio'])) not in have:
        row['audio'] = os.path.join(broad, row['audio'])
        rows.append(row)
random.Random(2).shuffle(rows)
open('$OUT/align-broad-train.jsonl.tmp', 'w').write(''.join(json.dumps(r) + '\\n' for r in rows))
os.replace('$OUT/align-broad-train.jsonl.tmp', '$OUT/align-broad-train.jsonl')
"
step train-align-broad "$OUT/align-broad/final/model.safetensors" $BIN train --config configs/tiny-v3-align.yaml \
  --resume data.train="$OUT/align-broad-train.jsonl" model.init_from="$W/stage1/final" optim.epochs=4 \
  optim.warmup_steps=20 optim.lr=1e-3 run.output_dir="$OUT/align-broad" data.cache_dir="$RECIPE/encoder-cache-align"
read2b() {  # read2b NAME MANIFEST SPLIT: both 2b adapters on 40 clips
  run_eval "reading-2b-$1" "$OUT/.reading-2b-$1.done" "$OUT/reading-2b-$1.md" --tasks semantic \
    --model "$RECIPE/align-emotion/final" "$OUT/align-broad/final" --data "$2" --split "$3" --limit 40 --llm tiny \
    --batch-size 16 -o "$OUT/reading-2b-$1"
}
read_dev() { read2b emotion-dev "$RECIPE/corpus/emotion.jsonl" dev; }
read_broad() { read2b broad-test "$W/broad/general.jsonl" test; }
lanes read_dev read_broad

# v3.2's recipe from this 2b: the 60 stage-1 KL steps of step 2b, then v3.2's stage 2 (300 steps, emotion
# token, head prefit, stage 1's KL beside it), then the recipe's dev choice beside v3.2.
S1B="$OUT/stage1-broad"
step train-stage1-broad "$S1B/final/model.safetensors" $BIN train --config configs/tiny-v3-stage1.yaml --resume \
  data.train="$RECIPE/stage1-emotion-targets.jsonl" model.init_from="$OUT/align-broad/final" optim.max_steps=60 \
  run.output_dir="$S1B" data.cache_dir="$RECIPE/encoder-cache"
step train-stage2-broad "$OUT/stage2-broad/final/model.safetensors" $BIN train --config configs/tiny-v3-stage2.yaml \
  --resume data.train="$RECIPE/targets/stage2.jsonl" model.init_from="$S1B/final" run.output_dir="$OUT/stage2-broad" \
  data.cache_dir="$RECIPE/encoder-cache" optim.max_steps=300 model.emotion_token=true model.emotion_head_prefit_steps=400 \
  data.semantic_train="$RECIPE/stage1-emotion-targets.jsonl" data.semantic_batch_seconds=16 model.semantic_loss_weight=1
run_eval dev-broad "$OUT/.dev-broad.done" "$OUT/dev-broad.md" --tasks ser semantic --model checkpoints/blsp-emo-tiny \
  "$OUT/stage2-broad/final" --data "$RECIPE/corpus/emotion.jsonl" --split dev --limit 40 --llm tiny --batch-size 16 \
  -o "$OUT/dev-broad"
