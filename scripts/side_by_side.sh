#!/usr/bin/env bash
# t3d's engine vs a straightforward Python loop over transformers' Qwen3 on the same checkpoint,
# same algorithm and settings, in interleaved rounds; with BASELINE=path/to/another/t3d, that
# binary runs in each round too (same checkpoint, same settings), for before/after comparisons.
# Prints the median over rounds of each per-round ratio (forwards asserted equal on all sides).
# usage: [ROUNDS=3] [BASELINE=/path/to/t3d] scripts/side_by_side.sh [SHAPE=small] [GEN_TOKENS=128]
set -euo pipefail
cd "$(dirname "$0")/.."
shape=${1:-small}; gen=${2:-128}; rounds=${ROUNDS:-3}
out=runs/side-by-side-$shape; mkdir -p "$out"; rm -f "$out"/*.json
cargo build --release -q
[ -f "runs/$shape/config.json" ] || ./target/release/t3d init --shape "$shape" --out "runs/$shape" --seed 0
common=(--batch-sizes 1,16 --steps 1,2,4 --gen-tokens "$gen" --repeats 7)
for round in $(seq "$rounds"); do
  if [ -n "${BASELINE:-}" ]; then
    "$BASELINE" bench --model "runs/$shape" "${common[@]}" --json "$out/baseline-$round.json" >/dev/null 2>&1
  fi
  ./target/release/t3d bench --model "runs/$shape" "${common[@]}" --json "$out/t3d-$round.json" >/dev/null 2>&1
  .venv/bin/python -W ignore scripts/hf_decode_bench.py "runs/$shape" "${common[@]}" \
    --json "$out/hf-$round.json" >/dev/null 2>&1
done
.venv/bin/python scripts/side_by_side.py "$out"
