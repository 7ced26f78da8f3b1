#!/usr/bin/env bash
# The admin flow on the bundled models, end to end, with its transcript and the serving latency
# while a job trains (loopback only):
#  1. `t3d serve` on copies of the bundled models, with the admin API on its own port;
#  2. `loadtest` at concurrency 8 with no job (chat arithmetic, 64 tokens);
#  3. a T3D job from the bundled teacher, and the same `loadtest` while it runs;
#  4. the job to `succeeded`, its student hot-swapped in (gated), `/v1/models`, a completion
#     reporting the new version, rollback.
# Output: runs/admin-demo/{transcript.txt, load-idle.json, load-during-job.json, serve.log}.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --workspace
bin=$PWD/target/release/t3d
lt=$PWD/target/release/loadtest
out=runs/admin-demo
rm -rf "$out" && mkdir -p "$out/models" "$out/data"
cp -r models/arith-teacher models/arith-student "$out/models/"
port=${PORT:-8021}
admin_port=${ADMIN_PORT:-8022}
token=demo-token
$bin serve --model "$out/models/arith-student" --port "$port" --admin-port "$admin_port" \
  --admin-token "$token" --jobs-dir "$out/jobs" --data-dir "$out/data" > "$out/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$port/ready" > /dev/null; do sleep 0.2; done

A="http://127.0.0.1:$admin_port/admin/v1"
H="Authorization: Bearer $token"
log() { echo "$*" | tee -a "$out/transcript.txt"; }
run() { log "\$ $*"; "$@" 2>&1 | tee -a "$out/transcript.txt"; echo | tee -a "$out/transcript.txt"; }
load() {
  $lt --url "http://127.0.0.1:$port" --chat --concurrency 8 --requests 100000 --duration "$1" \
    --max-tokens 64 --json "$2"
}

load 30 "$out/load-idle.json"
run curl -s -H "$H" "$A/jobs" -d '{"teacher": "arith-teacher", "objective": "t3d",
  "prompts": {"count": 512}, "settings": {"steps": 200, "batch_size": 32, "lr": 1e-3,
  "eval_n": 200, "save_every": 50}}'
state_of() { curl -s -H "$H" "$A/jobs/$job" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])'; }
job=$(curl -s -H "$H" "$A/jobs" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][-1]["id"])')
sleep 5
run curl -s -H "$H" "$A/jobs/$job"
log "job state before the loaded window: $(state_of)"
load 30 "$out/load-during-job.json"
log "job state after the loaded window: $(state_of)"
until [ "$(state_of)" != rollout ] && [ "$(state_of)" != training ] && [ "$(state_of)" != evaluating ]; do
  sleep 2
done
run curl -s -H "$H" "$A/jobs/$job"
run curl -s "http://127.0.0.1:$port/v1/models"
run curl -s -H "$H" "$A/model" -d "{\"job\": \"$job\", \"min_accuracy\": 0.95, \"eval_problems\": 200}"
run curl -s -H "$H" "$A/model" -d "{\"job\": \"$job\", \"min_accuracy\": 0.3, \"eval_problems\": 200}"
run curl -s "http://127.0.0.1:$port/v1/models"
run curl -s "http://127.0.0.1:$port/v1/chat/completions" -d '{"messages": [{"role": "user",
  "content": "17+4+12+9"}], "temperature": 0, "max_tokens": 64}'
run curl -s -H "$H" -X POST "$A/model/rollback"
run curl -s "http://127.0.0.1:$port/metrics" -o "$out/metrics.txt"
grep -E '^t3d_(model_info|model_swaps_total|admin_jobs)' "$out/metrics.txt" | tee -a "$out/transcript.txt"
python3 - "$out" <<'EOF'
import json, sys
out = sys.argv[1]
print("| run | requests | tokens/s | TTFB p50 ms | TTFB p99 ms | latency p99 ms |")
print("|---|---|---|---|---|---|")
for name in ["load-idle", "load-during-job"]:
    r = json.load(open(f"{out}/{name}.json"))
    r = r[0] if isinstance(r, list) else r
    rows = r.get("rows", [r]) if isinstance(r, dict) else r
    row = rows[0]
    t, l = row["time_to_first_block_ms"], row["latency_ms"]
    print(f"| {name} | {row['requests']} | {row['tokens_per_second']:.0f} | {t['p50']:.1f} | {t['p99']:.1f} | {l['p99']:.1f} |")
EOF
