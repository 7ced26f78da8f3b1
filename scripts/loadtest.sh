#!/usr/bin/env bash
# Serving figures on the bundled model, measured back to back on one machine:
#  1. engine-only `t3d bench` at batch 16 (32-token prompts, 64 tokens, EOS ignored, S = 4);
#  2. `t3d serve` + `loadtest` with the same shape of work at concurrency 16 (ratio = 2 / 1);
#  3. `loadtest` at concurrency 1, 8, 32 with chat arithmetic questions (normal EOS stops).
# Results: runs/load/*.json and the tables on stdout. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace
bin=./target/release/t3d
lt=./target/release/loadtest
out=runs/load
mkdir -p "$out"
port=${PORT:-8011}
$bin bench --model models/arith-teacher --batch-sizes 16 --steps 4 --prompt-len 32 \
  --gen-tokens 64 --repeats 5 --json "$out/bench-b16.json"
$bin serve --port "$port" --max-batch-size 32 --max-queue 512 > "$out/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$port/ready" > /dev/null; do sleep 0.2; done
$lt --url "http://127.0.0.1:$port" --concurrency 16 --requests 160 --prompt-len 32 \
  --max-tokens 64 --extra '{"ignore_eos": true, "steps_per_block": 4}' --json "$out/load-c16-bench-shape.json"
$lt --url "http://127.0.0.1:$port" --chat --concurrency 1,8,32 --requests 256 --duration 60 \
  --max-tokens 64 --json "$out/load-chat.json"
# 4. The same bench-shaped comparison with one libtorch thread for bench and server, so the
#    engine does not share its cores with the HTTP layer and the load generator.
kill $server; wait $server 2>/dev/null || true
$bin bench --model models/arith-teacher --batch-sizes 16 --steps 4 --prompt-len 32 \
  --gen-tokens 64 --repeats 5 --threads 1 --json "$out/bench-b16-t1.json"
$bin serve --port "$port" --max-batch-size 32 --max-queue 512 --threads 1 > "$out/serve-t1.log" 2>&1 &
server=$!
until curl -sf "http://127.0.0.1:$port/ready" > /dev/null; do sleep 0.2; done
$lt --url "http://127.0.0.1:$port" --concurrency 16 --requests 160 --prompt-len 32 \
  --max-tokens 64 --extra '{"ignore_eos": true, "steps_per_block": 4}' --json "$out/load-c16-bench-shape-t1.json"
