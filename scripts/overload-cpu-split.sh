#!/usr/bin/env bash
# Where the CPU goes at 2x capacity with and without client back-off (docs/load/README.md): the
# closed-loop capacity at concurrency 8, then 15 s at twice it with back-off and without;
# loadtest's own CPU (/usr/bin/time) and the server's CPU per thread name (/proc/PID/task; the
# engine's libgomp workers carry the engine thread's name). Usage: overload-cpu-split.sh [NAME]
# (results in runs/cpu-split/NAME). Needs target/release/{t3d,loadtest} and an idle machine.
set -u
cd "$(dirname "$0")/.."
out=runs/cpu-split/${1:-r1}; mkdir -p "$out"
./target/release/t3d serve --port 8046 --max-batch-size 8 --max-queue 16 > "$out/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null' EXIT
until curl -sf localhost:8046/ready >/dev/null; do sleep 0.2; done
# Engine view from /metrics: the sums and counts of the batch-size and step-time histograms.
engine() {
  curl -s localhost:8046/metrics | awk '
    /^t3d_(batch_size|engine_step_seconds)_(sum|count) / { printf "%s=%s ", $1, $2 }
    END { print "" }'
}
# CPU ticks per thread name (utime + stime).
threads() {
  for t in /proc/$server/task/*; do echo "$(cat "$t/comm") $(awk '{print $14+$15}' "$t/stat")"; done |
    awk '{a[$1]+=$2} END {for (k in a) printf "%s=%d ", k, a[k]; print ""}'
}
# One 15 s loadtest window NAME (loadtest flags follow), with the server's view before and after.
lt() {
  local name=$1; shift
  echo "$name before: $(threads)" >> "$out/threads.txt"
  echo "$name before: $(engine)" >> "$out/engine.txt"
  /usr/bin/time -f "%U %S %e" -o "$out/$name.time" ./target/release/loadtest \
    --url http://127.0.0.1:8046 --max-tokens 32 --requests 1000000 --slo-ms 1000 --duration 15 \
    --json "$out/$name.json" "$@" > /dev/null 2>&1
  echo "$name after:  $(threads)" >> "$out/threads.txt"
  echo "$name after:  $(engine)" >> "$out/engine.txt"
}
lt cap --concurrency 8
cap=$(python3 -c "import json; print(round(json.load(open('$out/cap.json'))[0]['completed_in_window_rps']))")
lt bo --rates $((2*cap)) --backoff
lt nb --rates $((2*cap))
kill $server; wait $server 2>/dev/null
cat "$out/threads.txt"
python3 - "$out" <<'PY'
import json, re, sys
out = sys.argv[1]
for name in ['cap', 'bo', 'nb']:
    level = json.load(open(f'{out}/{name}.json'))[0]
    user, system, wall = map(float, open(f'{out}/{name}.time').read().split())
    print(f"{name}: done {level['completed_in_window_rps']:.1f}/s statuses {level['by_status']} "
          f"loadtest cpu {(user + system) / wall:.2f} cores (user {user:.1f} s sys {system:.1f} s over {wall:.1f} s)")
lines = open(f'{out}/engine.txt').read().splitlines()
for before, after in zip(lines[::2], lines[1::2]):
    b, a = (dict((k, float(v)) for k, v in re.findall(r'(\w+)=([\d.e+-]+)', l)) for l in (before, after))
    d = {k: a[k] - b.get(k, 0.0) for k in a}
    steps = max(d['t3d_engine_step_seconds_count'], 1)
    print(f"{before.split()[0]}: {d['t3d_engine_step_seconds_count']:.0f} engine steps, "
          f"mean batch {d['t3d_batch_size_sum'] / max(d['t3d_batch_size_count'], 1):.2f}, "
          f"mean step {1e3 * d['t3d_engine_step_seconds_sum'] / steps:.2f} ms")
PY
