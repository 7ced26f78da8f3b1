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
GPU_CHECK_BENCH=0 OUT="$out" bash scripts/gpu-check.sh > "$out/check.txt" 2>&1
wait
for f in "$out"/*.txt; do echo "== $f"; cat "$f"; done
