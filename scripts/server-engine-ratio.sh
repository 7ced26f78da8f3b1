#!/usr/bin/env bash
# The server / engine ratio with default flags, in ROUNDS (default 3) back-to-back pairs:
# `t3d bench` at batch 16 (32-token prompts, 64 tokens, EOS ignored, S = 4), then `t3d serve`
# with the same work from `loadtest` at concurrency 16. One line per round; JSON in runs/ratio/.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace -q
bin=./target/release/t3d
lt=./target/release/loadtest
out=runs/ratio
port=${PORT:-8013}
mkdir -p "$out"
for round in $(seq "${ROUNDS:-3}"); do
  $bin bench --model models/arith-teacher --batch-sizes 16 --steps 4 --prompt-len 32 \
    --gen-tokens 64 --repeats 5 --json "$out/bench-$round.json" > /dev/null 2>&1
  $bin serve --port "$port" --max-batch-size 32 --max-queue 512 > "$out/serve-$round.log" 2>&1 &
  server=$!
  until curl -sf "http://127.0.0.1:$port/ready" > /dev/null; do sleep 0.2; done
  $lt --url "http://127.0.0.1:$port" --concurrency 16 --requests 160 --prompt-len 32 \
    --max-tokens 64 --extra '{"ignore_eos": true, "steps_per_block": 4}' \
    --json "$out/load-$round.json" > /dev/null 2>&1
  kill "$server"
  wait "$server" 2> /dev/null || true
  python3 - "$out" "$round" <<'PY'
import json, sys
out, r = sys.argv[1:3]
bench = json.load(open(f"{out}/bench-{r}.json"))["rows"][0]["tokens_per_second"]
server = json.load(open(f"{out}/load-{r}.json"))[0]["tokens_per_second"]
print(f"round {r}: bench b16 {bench:.0f} tok/s, server c16 {server:.0f} tok/s, ratio {server / bench:.2f}")
PY
done
