#!/usr/bin/env bash
# The overload goal (docs/load/README.md) re-measured in rounds, so one noisy level cannot decide it: the server
# of scripts/load-report.sh (bundled student, --max-batch-size 8 --max-queue 16); each round
# measures the closed-loop capacity (concurrency 8, streaming, 32 tokens) and then offers 2x and
# 3x that rate open loop, first with client back-off (Retry-After honoured), then without.
# JSON per run in $OUT (default runs/overload-repeat); one summary line per round on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace -q
out=${OUT:-runs/overload-repeat}
mkdir -p "$out"
port=${PORT:-8031}
./target/release/t3d serve --port "$port" --max-batch-size 8 --max-queue 16 > "$out/serve.log" 2>&1 &
server=$!
trap 'kill $server 2> /dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$port/ready" > /dev/null; do sleep 0.2; done
lt() {
  ./target/release/loadtest --url "http://127.0.0.1:$port" --max-tokens 32 --requests 1000000 \
    --slo-ms 1000 --duration 15 "$@" > /dev/null 2>&1
}
for round in $(seq "${ROUNDS:-3}"); do
  lt --concurrency 8 --json "$out/cap-$round.json"
  rates=$(python3 -c "import json; c = json.load(open('$out/cap-$round.json'))[0]['completed_rps']
print(f'{round(2 * c)},{round(3 * c)}')")
  lt --rates "$rates" --backoff --json "$out/backoff-$round.json"
  lt --rates "$rates" --json "$out/nobackoff-$round.json"
  python3 - "$out" "$round" <<'PY'
import json, sys
out, r = sys.argv[1], sys.argv[2]
cap = json.load(open(f"{out}/cap-{r}.json"))[0]["completed_rps"]
cells = []
for mode in ("backoff", "nobackoff"):
    for level in json.load(open(f"{out}/{mode}-{r}.json")):
        share = 100 * level["completed_in_window_rps"] / cap
        cells.append(f"{mode} {level['offered_rps']:.0f}/s {share:.0f}% lost {level['lost']}")
print(f"round {r}: capacity {cap:.1f}/s; in window, share of capacity: " + "; ".join(cells))
PY
done
