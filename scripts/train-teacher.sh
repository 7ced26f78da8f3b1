#!/usr/bin/env bash
# Regenerates the committed teacher models/arith-teacher from scratch on CPU (2.6M parameters,
# configs/teacher.json: about 76 minutes on 2 cores), stores it in bf16 (5.2 MB), then evaluates
# it on 1000 held-out problems and writes the tables, JSON and plot next to the weights.
# (configs/teacher-small.json is the earlier 1.2M-parameter teacher, about 45 minutes.)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
bin=./target/release/t3d
out=models/arith-teacher
$bin train --task arith --config configs/teacher.json --out "$out" --run-dir runs/arith-teacher "$@"
cp runs/arith-teacher/train_log.jsonl "$out/train_log.jsonl"
cp configs/teacher.json "$out/train_config.json"
$bin convert --model "$out" --out "$out" --dtype bf16
$bin eval --model "$out" --task arith --n 1000 --block-size 4 --steps 1,2,4 \
  --json "$out/eval.json" --plot "$out/eval.png" | tee "$out/eval.md"
$bin eval --model "$out" --task arith --n 1000 --block-size 4 --steps 1,2,4 --remasking sequential \
  --json "$out/eval-sequential.json" | tee "$out/eval-sequential.md"
