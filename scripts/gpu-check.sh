#!/usr/bin/env bash
# One prepared check for a GPU machine. Build here (`cargo build --release`), carry
# target/release/t3d, run this there (device tool: command `bash scripts/gpu-check.sh`,
# carry ["target/release/t3d"], timeout ~540 s). It finds that machine's PyTorch 2.11 libs,
# checks that the binary sees CUDA, compares CPU and CUDA greedy decoding (CUDA graphs on and off)
# on the embedded model, then
# benchmarks an SDAR-1.7B-shaped random model in bf16 (skipped with GPU_CHECK_BENCH=0). Results go to stdout and $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-check-out}
mkdir -p "$out"
torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
bin=./target/release/t3d
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"

echo "== greedy tokens: CPU vs CUDA, CUDA graphs on vs off (the embedded model; fails if CUDA is not linked)"
work=$(mktemp -d)
ids() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["token_ids"], r["cuda_graph_replays"])' "$1"; }
for steps in 1 2 4; do
  args=(generate --prompt "Hello, block diffusion" --max-tokens 64 --ignore-eos --steps-per-block "$steps" --json)
  $bin "${args[@]}" --device cpu --dtype f32 > "$work/cpu-$steps" 2>/dev/null &
  for dtype in f32 bf16; do
    for graphs in true false; do
      $bin "${args[@]}" --device cuda --dtype $dtype --cuda-graphs $graphs \
        > "$work/cuda-$dtype-$graphs-$steps" 2> "$work/cuda-$dtype-$graphs-$steps.log" &
    done
  done
  wait
  same() { [ "$(ids "$1" | cut -d' ' -f1)" == "$(ids "$2" | cut -d' ' -f1)" ] && echo identical || echo DIFFER; }
  replays=$(ids "$work/cuda-f32-true-$steps" | awk '{print $NF}')
  echo "S=$steps: CPU vs CUDA f32 token ids $(same "$work/cpu-$steps" "$work/cuda-f32-true-$steps")"
  echo "S=$steps: CUDA graphs on ($replays replays) vs off, f32: token ids $(same "$work/cuda-f32-true-$steps" "$work/cuda-f32-false-$steps")"
  echo "S=$steps: CUDA graphs on vs off, bf16: token ids $(same "$work/cuda-bf16-true-$steps" "$work/cuda-bf16-false-$steps")"
done
grep -h "CUDA graph failed" "$work"/*.log | head -2

[ "${GPU_CHECK_BENCH:-1}" = 0 ] && exit 0
echo "== t3d bench, SDAR-1.7B shape (random weights), bf16, CUDA"
timeout 420 $bin bench --shape sdar-1.7b --device cuda --dtype bf16 --batch-sizes 1,16,64 \
  --steps 1,2,4 --prompt-len 128 --gen-tokens 256 --repeats 3 --json "$out/bench-sdar-1.7b.json" \
  2> "$out/bench-sdar-1.7b.log" | tee "$out/bench-sdar-1.7b.txt"
