#!/usr/bin/env bash
# t3d's engine vs a straightforward Python loop over transformers' Qwen3, one after the other on
# the same checkpoint, same algorithm and settings; prints both tables and our/their ratio.
# usage: scripts/side_by_side.sh [SHAPE=small] [GEN_TOKENS=128]
set -euo pipefail
cd "$(dirname "$0")/.."
shape=${1:-small}; gen=${2:-128}
out=runs/side-by-side-$shape; mkdir -p "$out"
cargo build --release -q
[ -f "runs/$shape/config.json" ] || ./target/release/t3d init --shape "$shape" --out "runs/$shape" --seed 0
common=(--batch-sizes 1,16 --steps 1,2,4 --gen-tokens "$gen" --repeats 7)
./target/release/t3d bench --model "runs/$shape" "${common[@]}" --json "$out/t3d.json" 2>/dev/null
.venv/bin/python -W ignore scripts/hf_decode_bench.py "runs/$shape" "${common[@]}" --json "$out/hf.json" 2>/dev/null
.venv/bin/python - "$out" <<'PY'
import json, sys
d = sys.argv[1]
ours = {(r["batch"], r["steps_per_block"]): r["tokens_per_second"] for r in json.load(open(f"{d}/t3d.json"))["rows"]}
hf = {(r["batch"], r["steps_per_block"]): r["tokens_per_second"] for r in json.load(open(f"{d}/hf.json"))["rows"]}
print(f"{'batch':>5} {'S':>3} {'t3d tok/s':>10} {'hf tok/s':>10} {'ratio':>6}")
for key in sorted(ours):
    print(f"{key[0]:>5} {key[1]:>3} {ours[key]:>10.1f} {hf[key]:>10.1f} {ours[key] / hf[key]:>6.2f}")
b1 = {s: v for (b, s), v in ours.items() if b == 1}
print(f"t3d S=1 over S=4 at batch 1: {b1[1] / b1[4]:.2f}x")
PY
