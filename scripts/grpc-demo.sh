#!/usr/bin/env bash
# The gRPC API on the bundled model: a grpcurl-style transcript through reflection, then the
# same bench-shaped load (32-token prompts, 64 tokens, EOS ignored, S = 4) at concurrency 16
# over HTTP and over gRPC against one server, back to back. Loopback only.
# Output: runs/grpc-demo/{transcript.txt, load-http.json, load-grpc.json} and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --workspace
out=runs/grpc-demo
mkdir -p "$out"
port=${PORT:-8031}
grpc_port=${GRPC_PORT:-8032}
./target/release/t3d serve --port "$port" --grpc-port "$grpc_port" --max-batch-size 32 \
  --max-queue 512 > "$out/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$port/ready" > /dev/null; do sleep 0.2; done
.venv/bin/python scripts/grpc_transcript.py "127.0.0.1:$grpc_port" | tee "$out/transcript.txt"
shape=(--concurrency 16 --requests 320 --duration 60 --prompt-len 32 --max-tokens 64
  --extra '{"ignore_eos": true, "steps_per_block": 4}')
lt=./target/release/loadtest
$lt --url "http://127.0.0.1:$port" "${shape[@]}" --json "$out/load-http.json"
$lt --url "http://127.0.0.1:$port" --grpc "http://127.0.0.1:$grpc_port" "${shape[@]}" \
  --json "$out/load-grpc.json"
$lt --url "http://127.0.0.1:$port" "${shape[@]}" --json "$out/load-http-2.json"
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
r = {n: json.load(open(f"{out}/load-{n}.json"))[0] for n in ["http", "grpc", "http-2"]}
for n, x in r.items():
    print(f"{n}: {x['tokens_per_second']:.0f} tok/s, TTFB p50 {x['time_to_first_block_ms']['p50']:.1f} ms, errors {x['errors']}")
http = (r["http"]["tokens_per_second"] + r["http-2"]["tokens_per_second"]) / 2
print(f"gRPC / HTTP throughput at concurrency 16: {r['grpc']['tokens_per_second'] / http:.3f}")
PY
