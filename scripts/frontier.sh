#!/usr/bin/env bash
# The accuracy / tokens-per-forward frontier of the committed teacher and student (and of any
# extra LABEL=eval.json given as arguments, e.g. other seeds or baselines): every static S,
# confidence threshold and seven entropy bounds on the 1000 held-out problems, then the table
# and plot of docs/results.md.
# Logs and JSON: runs/frontier/ (an evaluation is redone when the checkpoint is newer).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin t3d
bin=./target/release/t3d
out=runs/frontier
mkdir -p "$out" docs
sweep=(--steps 1,2,4 --thresholds 0.5,0.7,0.8,0.9,0.95,0.99 --entropy-bounds 0.1,0.35,0.5,0.7,0.8,0.9,1.0)
for model in arith-teacher arith-student; do
  [[ "$out/$model.json" -nt "models/$model/model.safetensors" ]] || $bin eval --model "models/$model" "${sweep[@]}" \
    --json "$out/$model.json" > "$out/$model.md" 2> "$out/$model.log"
done
evals=(--eval "teacher=$out/arith-teacher.json" --eval "t3d student=$out/arith-student.json")
for extra in "$@"; do evals+=(--eval "$extra"); done
$bin compare "${evals[@]}" --baseline teacher --frontier docs/frontier.png | tee "$out/table.md"
