#!/usr/bin/env bash
# Regenerates the committed teacher models/arith-teacher from scratch on CPU (about 45 minutes
# on 2 cores), then evaluates it on 1000 held-out problems and writes the table, JSON and plot
# next to the weights.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
bin=./target/release/t3d
out=models/arith-teacher
$bin train --task arith --config configs/teacher.json --out "$out" --run-dir runs/arith-teacher "$@"
cp runs/arith-teacher/train_log.jsonl "$out/train_log.jsonl"
cp configs/teacher.json "$out/train_config.json"
$bin eval --model "$out" --task arith --n 1000 --block-size 4 --steps 1,2,4 \
  --json "$out/eval.json" --plot "$out/eval.png" | tee "$out/eval.md"
