#!/usr/bin/env bash
# After v3.2 (README "After v3.2: on-policy semantic KL, and where the reply cosine is lost"): an
# experiment and a diagnosis, in two one-core lanes.
# 1. On-policy semantic KL: the shipped model trained 100 more stage-2 steps two ways, then both and the
#    shipped model on the recipe's dev choice (40 dev clips; SER from the answer, then reply cosine):
#      control:   stage 2 with stage 1's KL beside it on the teacher's continuations (v3.2's objective)
#      on-policy: the same with half of the semantic micro-batches on the model's own greedy continuation
#                 of the speech (model.semantic_on_policy=0.5)
# 2. How well the shipped model reads the words where: `eval semantic` (reply cosine, greedy-CTC WER) on
#    40 of the emotion corpus's training clips (the sentences stage 2 trained on), on 40 test clips of
#    the grammar corpus (unseen voices and sentences, the grammar's closed vocabulary) and on 40 test
#    clips of the broad corpus (unseen voices and WordNet's example sentences: open vocabulary).
# Needs recipe v3's outputs in $RECIPE: the corpus and targets (`OUT=runs/tiny-v3 UNTIL=corpus bash
# scripts/reproduce_tiny_v3.sh`) and, for 2, step 1's corpora (`UNTIL=targets`); the model in $START.
# Resumable step by step; wall times go to $OUT/timings.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
RECIPE=${RECIPE:-runs/tiny-v3}
OUT=${OUT:-$RECIPE/after-v3.2}
START=${START:-checkpoints/blsp-emo-tiny}
BIN=${BIN:-.venv/bin/blsp-emo}
STEPS=${STEPS:-100}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export BLSP_EMO_NUM_THREADS=1 OMP_NUM_THREADS=1

source scripts/recipe_lib.sh  # step NAME DONE_FILE CMD..., lanes F G, run_eval NAME DONE MD ARGS...

arm() {  # arm NAME [overrides...]: $STEPS steps of v3.2's stage 2 (with the semantic KL) from $START
  local name=$1; shift
  step "train-$name" "$OUT/$name/final/model.safetensors" $BIN train --config configs/tiny-v3-stage2.yaml --resume \
    data.train="$RECIPE/targets/stage2.jsonl" model.init_from="$START" run.output_dir="$OUT/$name" \
    data.cache_dir="$RECIPE/encoder-cache" optim.max_steps="$STEPS" optim.lr=2.5e-4 model.emotion_token=true \
    data.semantic_train="$RECIPE/stage1-emotion-targets.jsonl" data.semantic_batch_seconds=16 \
    model.semantic_loss_weight=1 "$@"
}
dev() {  # dev NAME MODEL...: the recipe's dev choice for these models
  local name=$1; shift
  run_eval "dev-$name" "$OUT/.dev-$name.done" "$OUT/dev-$name.md" --tasks ser semantic --model "$@" \
    --data "$RECIPE/corpus/emotion.jsonl" --split dev --limit 40 --llm tiny --batch-size 16 -o "$OUT/dev-$name"
}
reading() {  # reading NAME MANIFEST SPLIT: eval semantic of the shipped model on 40 clips of SPLIT
  run_eval "reading-$1" "$OUT/.reading-$1.done" "$OUT/reading-$1.md" --tasks semantic --model "$START" \
    --data "$2" --split "$3" --limit 40 --llm tiny --batch-size 16 -o "$OUT/reading-$1"
}
lane_a() {
  arm control
  dev control "$START" "$OUT/control/final"
  reading emotion-train "$RECIPE/corpus/emotion.jsonl" train
}
lane_b() {
  arm on-policy model.semantic_on_policy=0.5
  dev on-policy "$OUT/on-policy/final"
  reading grammar-test "$RECIPE/words/corpus/general.jsonl" test
  reading broad-test "$RECIPE/words/broad/general.jsonl" test
}
lanes lane_a lane_b
