#!/usr/bin/env bash
# The overload report in docs/load/: the bundled student served with --max-batch-size 8
# --max-queue 16 (so a 2-core machine can offer it 5x its capacity), then
#  1. capacity: closed loop at concurrency 8, streaming, 32 tokens;
#  2. an open-loop Poisson rate sweep from near idle to 5x that capacity, without client
#     back-off (a 429 is a rejection) and with it (Retry-After honoured, up to 5 tries);
#  3. a flood: 64 connections back to back, non-streaming, ignoring Retry-After, against the
#     same server at capacity (concurrency 8);
#  4. a soak: SOAK_MINUTES (default 10) at 2x capacity, open loop, with the server's memory and
#     KV slots before and after and the requests sent, answered and lost.
# The load generator is single-threaded and shares the two cores (at CLIENT_NICE, default 0: a
# client starved of CPU would report its own delays as latency). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace -q
out=${OUT:-docs/load}
mkdir -p "$out"
port=${PORT:-8021}
bin=./target/release/t3d
lt() { nice -n "${CLIENT_NICE:-0}" ./target/release/loadtest --url "http://127.0.0.1:$port" "$@"; }
$bin serve --port "$port" --max-batch-size 8 --max-queue 16 > "$out/serve.log" 2>&1 &
server=$!
trap 'kill $server 2> /dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$port/ready" > /dev/null; do sleep 0.2; done
common=(--max-tokens 32 --requests 1000000 --slo-ms 1000)
lt --concurrency 8 --duration 20 "${common[@]}" --json "$out/capacity.json" | tail -1
capacity=$(python3 -c "import json; print(json.load(open('$out/capacity.json'))[0]['completed_rps'])")
rates=$(python3 -c "c=$capacity; print(','.join(str(round(c*f)) for f in (0.05,0.25,0.5,0.75,1,1.25,1.5,2,3,4,5)))")
echo "capacity $capacity requests/s; rates $rates"
lt --rates "$rates" --duration 15 "${common[@]}" --report "$out/sweep-no-backoff" | tail -12
lt --rates "$rates" --duration 15 --backoff "${common[@]}" --report "$out/sweep-backoff" | tail -12
lt --concurrency 8,64 --no-stream --duration 15 "${common[@]}" --report "$out/flood" | tail -3
soak_rate=$(python3 -c "print(round(2*$capacity))")
lt --rates "$soak_rate" --soak "${SOAK_MINUTES:-10}" "${common[@]}" --report "$out/soak" | tail -3
