#!/usr/bin/env bash
# Device check + teacher-config sweep for one GPU call (device tool: `bash scripts/gpu-sweep.sh`,
# carry ["target/release/t3d"], timeout ~480 s). Trains every configs/sweep/*.json on CUDA in
# parallel and evaluates each on 1000 held-out problems at S = 1, 2, 4, to pick the config the
# committed teacher is then trained with on CPU. Also runs the CPU-vs-CUDA decoding check.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-sweep-out}
mkdir -p "$out" /tmp/sweep
torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
bin=./target/release/t3d
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
for cfg in configs/sweep/*.json; do
  name=$(basename "$cfg" .json)
  ( start=$(date +%s)
    $bin train --config "$cfg" --out "/tmp/sweep/$name" --run-dir "/tmp/sweep/run-$name" --device cuda --threads 2 > "/tmp/sweep/$name.train.log" 2>&1
    echo "train_seconds $(( $(date +%s) - start ))" > "$out/$name.txt"
    $bin eval --model "/tmp/sweep/$name" --n 1000 --steps 1,2,4 --device cuda --threads 2 >> "$out/$name.txt" 2>/dev/null
    tail -1 "/tmp/sweep/run-$name/train_log.jsonl" >> "$out/$name.txt" ) &
done
echo "== CUDA decoding vs CPU decoding (tiny model, f32, greedy)" | tee "$out/check.txt"
tiny=$(mktemp -d)/tiny
$bin init --shape tiny --out "$tiny" --seed 1
for steps in 1 4; do
  args=(generate --model "$tiny" --prompt "Hello, block diffusion" --max-tokens 32 --steps-per-block "$steps" --json)
  cpu=$($bin "${args[@]}" --device cpu | python3 -c 'import json,sys; print(json.load(sys.stdin)["token_ids"])')
  gpu=$($bin "${args[@]}" --device cuda | python3 -c 'import json,sys; print(json.load(sys.stdin)["token_ids"])')
  [ "$cpu" == "$gpu" ] && echo "S=$steps: CPU and CUDA token ids identical" || echo "S=$steps: DIFFER cpu=$cpu gpu=$gpu"
done | tee -a "$out/check.txt"
wait
for f in "$out"/*.txt; do echo "== $f"; cat "$f"; done
