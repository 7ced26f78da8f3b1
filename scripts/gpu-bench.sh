#!/usr/bin/env bash
# The prepared GPU measurement, built here and run there (device tool: command
#   `bash scripts/gpu-bench.sh`, carry ["target/release/t3d", "target/release/loadtest"],
#   timeout_s 450). Random-weight SDAR-1.7B and SDAR-4B shapes in bf16, b = 4, 256-token prompts,
# 256 generated tokens, EOS ignored:
#   1. greedy tokens: CPU == CUDA, CUDA graphs on == off (scripts/gpu-check.sh);
#   2. like for like, one run: the eager engine with cuDNN attention (`--cuda-graphs false`,
#      T3D_SDPA_CUDNN=1) against CUDA graphs with memory-efficient attention on both shapes at
#      S = 1 and 2, tokens compared by digest (GPU_BENCH_AB=0 skips it);
#   3. `t3d bench` at batch 1, 128, 32, 8 x S = 1, 2, 4: tokens/s, ms per forward, % of the HBM
#      bound (weights + attended KV read once per forward, over the device's bandwidth), GPU
#      memory, share of forwards replayed as graphs; the same on the SDAR-4B shape;
#   4. `t3d serve` (KV cache sized from free GPU memory; its plan is logged) + `loadtest` at
#      concurrency 1, 32, 128 on the SDAR-1.7B shape: server / engine;
#   5. the Python `transformers` loop (scripts/hf_decode_bench.py) at batch 1 and 32
#      (GPU_BENCH_HF=0 skips it);
# then $OUT/summary.md and $OUT/summary.json (scripts/gpu_bench_report.py). Meanwhile, on a
# machine of 16 cores or more, the CPU overload windows (scripts/overload-cpu-split.sh, 3 rounds,
# server on cores 0-1, load on 2-7; this script moves itself to 8-15) go to $OUT/overload.txt
# (GPU_BENCH_OVERLOAD=0 skips them). With GPU_BENCH_TAR=FILE everything ends up in one tarball
# (the device tool brings back at most 8 files). Phases run in that
# order, each within its own cap, while the budget (GPU_BENCH_BUDGET_S, default 450 s) lasts; every tool writes its
# JSON as it goes, so a phase cut short keeps what it measured.
# Dry run of the same path on this CPU, tiny shapes: GPU_BENCH_DRY=1 bash scripts/gpu-bench.sh
# (tests/gpu_bench_script.rs runs it with the test build's binaries: T3D_BIN, LOADTEST_BIN).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/gpu-bench}
work=${GPU_BENCH_WORK:-/tmp/t3d-gpu-bench}
mkdir -p "$out" "$work"
deadline=$(($(date +%s) + ${GPU_BENCH_BUDGET_S:-450}))
left() { echo $((deadline - $(date +%s))); }
# within MAX RESERVE CMD...: runs CMD for at most MAX seconds, and never into the last RESERVE.
within() {
  local max=$1 reserve=$2 limit
  shift 2
  limit=$(($(left) - reserve))
  [ "$limit" -gt "$max" ] && limit=$max
  if [ "$limit" -lt 10 ]; then echo "skipped (no time left): $1 ${2:-}"; return 0; fi
  timeout "$limit" "$@"
}
bin=${T3D_BIN:-./target/release/t3d}
loadtest=${LOADTEST_BIN:-./target/release/loadtest}

if [ "${GPU_BENCH_DRY:-0}" = 1 ]; then
  device=cpu dtype=f32 python=.venv/bin/python
  small=tiny big=small batches=1,4,2 conc=1,4 hf_batches=1,2 prompt=16 gen=16 requests=8
  bandwidth=${GPU_BENCH_BW:-20} # nominal: the dry run checks the arithmetic, not this CPU
else
  device=cuda dtype=bf16 python=python3
  small=sdar-1.7b big=sdar-4b batches=1,128,32,8 conc=1,32,128 hf_batches=1,32 prompt=256 gen=256
  requests=256
  # The binary's rpath names this machine's libtorch; there, that machine's own PyTorch 2.11.
  torch_lib=$($python -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
  export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
  # Peak memory bandwidth (GB/s) by product; GPU_BENCH_BW overrides.
  case "$gpu" in
    *H200*) bandwidth=4800 ;; *H100*SXM* | *H100*HBM3*) bandwidth=3350 ;; *H100*) bandwidth=2000 ;;
    *A100*80GB*) bandwidth=2039 ;; *A100*) bandwidth=1555 ;; *) bandwidth=1000 ;;
  esac
  bandwidth=${GPU_BENCH_BW:-$bandwidth}
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
fi
echo "{\"device\": \"$device\", \"dtype\": \"$dtype\", \"bandwidth_gbs\": $bandwidth}" > "$out/setup.json"
# The tables and the server run with CUDA graphs unless GPU_BENCH_GRAPHS=false.
graphs=${GPU_BENCH_GRAPHS:-true}
common=(--block-size 4 --prompt-len "$prompt" --gen-tokens "$gen" --device "$device" --dtype "$dtype")

phase() { echo "== [$(left) s left] $*"; }

overload=
if [ "$device" = cuda ] && [ "${GPU_BENCH_OVERLOAD:-1}" = 1 ] && [ "$(nproc)" -ge 16 ]; then
  taskset -cp 8-15 $$ > /dev/null
  (for round in 1 2 3; do
    SERVER_CPUS=0-1 CLIENT_CPUS=2-7 timeout 100 taskset -c 0-7 bash scripts/overload-cpu-split.sh "gpu-machine-r$round"
  done > "$out/overload.txt" 2>&1) &
  overload=$!
fi

if [ "$device" = cuda ] && [ "${GPU_BENCH_CHECK:-1}" = 1 ]; then
  phase "greedy tokens: CPU vs CUDA, graphs on vs off"
  GPU_CHECK_BENCH=0 OUT="$out" timeout 120 bash scripts/gpu-check.sh > "$out/check.txt" 2>&1
  grep -E "identical|DIFFER|failed" "$out/check.txt"
fi

phase "checkpoint of the $small shape ($dtype)"
[ -f "$work/$small/config.json" ] || $bin init --shape "$small" --dtype "$dtype" --out "$work/$small" --seed 1

# bench_into NAME CAP RESERVE MODEL_ARGS... -- BENCH_ARGS...: one `t3d bench` into bench-NAME.json.
bench_into() {
  local name=$1 cap=$2 reserve=$3
  shift 3
  within "$cap" "$reserve" $bin bench "$@" "${common[@]}" --warmup 1 --repeats 3 \
    --hbm-bandwidth-gbs "$bandwidth" --json "$out/bench-$name.json" 2> "$out/bench-$name.log"
  grep -v '^\[t3d\]' "$out/bench-$name.log" | grep -v "Warning"
}

if [ "${GPU_BENCH_AB:-1}" = 1 ]; then
  for shape in "$small" "$big"; do
    model=(--shape "$shape"); [ "$shape" = "$small" ] && model=(--model "$work/$small")
    ab_batches=$batches; [ "$shape" = "$big" ] && ab_batches=$(echo "$batches" | cut -d, -f1,2)
    phase "like for like, $shape: eager + cuDNN attention, then the default"
    T3D_SDPA_CUDNN=1 bench_into "eager-$shape" 90 260 "${model[@]}" --batch-sizes "$ab_batches" \
      --steps 1,2 --cuda-graphs false
    bench_into "graphs-$shape" 60 230 "${model[@]}" --batch-sizes "$ab_batches" --steps 1,2 \
      --cuda-graphs "$graphs"
  done
fi

phase "t3d bench, $small"
bench_into "$small" 100 160 --model "$work/$small" --batch-sizes "$batches" --steps 1,2,4 \
  --cuda-graphs "$graphs"

phase "t3d bench, $big (random weights made on the device)"
bench_into "$big" 100 110 --shape "$big" --batch-sizes "$batches" --steps 1,2,4 \
  --cuda-graphs "$graphs"

phase "t3d serve + loadtest, $small"
port=${GPU_BENCH_PORT:-8047}
$bin serve --model "$work/$small" --device "$device" --dtype "$dtype" --port "$port" \
  --cuda-graphs "$graphs" \
  --max-batch-size 128 --max-queue 1024 > "$out/serve-$small.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
$python - "$port" <<'PY' || echo "the server did not get ready in 120 s"
import sys, time, urllib.request
for _ in range(600):
    try:
        if urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/ready", timeout=2).status == 200:
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.2)
sys.exit(1)
PY
grep -o "KV cache: .*" "$out/serve-$small.log" | head -1 | tee "$out/kv-plan-$small.txt"
within 90 50 $loadtest --url "http://127.0.0.1:$port" --concurrency "$conc" \
  --requests "$requests" --duration 20 --prompt-len "$prompt" --max-tokens "$gen" \
  --extra '{"ignore_eos": true, "steps_per_block": 1}' --json "$out/load-$small.json" \
  > "$out/load-$small.txt" 2>&1
kill $server 2>/dev/null
wait $server 2>/dev/null

if [ "${GPU_BENCH_HF:-1}" = 1 ]; then
  phase "transformers loop, $small"
  within 90 5 $python -W ignore scripts/hf_decode_bench.py "$work/$small" --device "$device" \
    --dtype "$dtype" --batch-sizes "$hf_batches" --steps 1,4 --prompt-len "$prompt" \
    --gen-tokens "$gen" --repeats 1 --json "$out/hf-$small.json" 2> "$out/hf-$small.log"
fi

phase "summary"
$python scripts/gpu_bench_report.py "$out" "$small" "$big"
if [ -n "$overload" ]; then
  phase "CPU overload windows (waiting for them)"
  wait "$overload"
  cat "$out/overload.txt"
  mkdir -p "$out/overload" && cp -r runs/cpu-split/gpu-machine-r* "$out/overload/" 2>/dev/null
fi
if [ -n "${GPU_BENCH_TAR:-}" ]; then tar czf "$GPU_BENCH_TAR" -C "$out" .; fi
