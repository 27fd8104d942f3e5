# Shared by the recipes (sourced, not run): resumable steps with wall times, and two one-core lanes.
# Needs OUT (the recipe's output folder) and, for run_eval, BIN (the blsp-emo command). The frozen recipes v1 and v2 keep their own copies.

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

run_eval() {  # run_eval NAME DONE OUTPUT_MD eval-all-arguments...: `eval all` as a step, its table in OUTPUT_MD
  local name=$1 done=$2 md=$3; shift 3
  step "$name" "$done" sh -c "\"\$0\" \"\$@\" > '$md' && touch '$done'" $BIN eval all "$@"
}
