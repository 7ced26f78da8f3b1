#!/usr/bin/env bash
# One prepared check for a GPU machine. Build here (`cargo build --release`), carry
# target/release/t3d, run this there. It finds that machine's PyTorch 2.11 libs, checks that the
# binary sees CUDA, compares CPU and CUDA greedy decoding on a tiny model, then benchmarks an
# SDAR-1.7B-shaped random model in bf16. Output: stdout and $OUT (or ./gpu-check-out).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-check-out}
mkdir -p "$out"
torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
bin=./target/release/t3d
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"

echo "== CUDA visible to the binary (fails if libtorch_cuda was not linked)"
$bin init --shape tiny --out "$out/tiny" --seed 1
cpu=$($bin generate --model "$out/tiny" --prompt "Hello" --max-tokens 32 --device cpu)
gpu=$($bin generate --model "$out/tiny" --prompt "Hello" --max-tokens 32 --device cuda)
if [ "$cpu" == "$gpu" ]; then echo "CPU and CUDA greedy outputs identical"; else echo "CPU and CUDA greedy outputs DIFFER"; fi

echo "== t3d bench, SDAR-1.7B shape, bf16"
timeout 420 $bin bench --shape sdar-1.7b --device cuda --dtype bf16 --batch-sizes 1,16,64 \
  --steps 1,2,4 --prompt-len 128 --gen-tokens 256 --repeats 2 --json "$out/bench-sdar-1.7b.json" \
  | tee "$out/bench-sdar-1.7b.txt"
