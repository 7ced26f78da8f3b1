#!/usr/bin/env bash
# One prepared check for a GPU machine. Build here (`cargo build --release`), carry
# target/release/t3d, run this there (device tool: command `bash scripts/gpu-check.sh`,
# carry ["target/release/t3d"], timeout ~540 s). It finds that machine's PyTorch 2.11 libs,
# checks that the binary sees CUDA, compares CPU and CUDA greedy decoding on a tiny model, then
# benchmarks an SDAR-1.7B-shaped random model in bf16 (skipped with GPU_CHECK_BENCH=0). Results go to stdout and $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-check-out}
mkdir -p "$out"
torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
bin=./target/release/t3d
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"

echo "== CUDA decoding vs CPU decoding (tiny model, f32, greedy; fails if CUDA is not linked)"
tiny=$(mktemp -d)/tiny
$bin init --shape tiny --out "$tiny" --seed 1
for steps in 1 4; do
  args=(generate --model "$tiny" --prompt "Hello, block diffusion" --max-tokens 32 --steps-per-block "$steps" --json)
  cpu=$($bin "${args[@]}" --device cpu | python3 -c 'import json,sys; print(json.load(sys.stdin)["token_ids"])')
  gpu=$($bin "${args[@]}" --device cuda | python3 -c 'import json,sys; print(json.load(sys.stdin)["token_ids"])')
  [ "$cpu" == "$gpu" ] && echo "S=$steps: CPU and CUDA token ids identical" || echo "S=$steps: CPU and CUDA token ids DIFFER"
  $bin "${args[@]}" --device cuda --dtype bf16 > /dev/null && echo "S=$steps: bf16 on CUDA decodes"
done

[ "${GPU_CHECK_BENCH:-1}" = 0 ] && exit 0
echo "== t3d bench, SDAR-1.7B shape (random weights), bf16, CUDA"
timeout 420 $bin bench --shape sdar-1.7b --device cuda --dtype bf16 --batch-sizes 1,16,64 \
  --steps 1,2,4 --prompt-len 128 --gen-tokens 256 --repeats 3 --json "$out/bench-sdar-1.7b.json" \
  2> "$out/bench-sdar-1.7b.log" | tee "$out/bench-sdar-1.7b.txt"
