#!/usr/bin/env bash
# Where the CPU goes at 2x capacity with and without client back-off (docs/load/README.md): the
# closed-loop capacity at concurrency 8, then 15 s at twice it with back-off and without;
# loadtest's own CPU (/usr/bin/time) and the server's CPU per thread name (/proc/PID/task; the
# engine's libgomp workers carry the engine thread's name). Usage: overload-cpu-split.sh [NAME]
# (results in runs/cpu-split/NAME). Needs target/release/{t3d,loadtest} and an idle machine.
set -u
cd "$(dirname "$0")/.."
out=runs/cpu-split/${1:-r1}; mkdir -p "$out"
./target/release/t3d serve --port 8046 --max-batch-size 8 --max-queue 16 > $out/serve.log 2>&1 &
server=$!
until curl -sf localhost:8046/ready >/dev/null; do sleep 0.2; done
# Engine view from /metrics: forwards, the mean batch they ran and the mean time of one.
engine() { curl -s localhost:8046/metrics | awk '/^t3d_batch_size_(sum|count) /{a[$1]=$2} /^t3d_engine_step_seconds_(sum|count) /{a[$1]=$2} END {printf "batch_sum=%s batch_count=%s step_sum=%s step_count=%s\n", a["t3d_batch_size_sum"], a["t3d_batch_size_count"], a["t3d_engine_step_seconds_sum"], a["t3d_engine_step_seconds_count"]}'; }
threads() { for t in /proc/$server/task/*; do echo "$(cat $t/comm) $(awk '{print $14+$15}' $t/stat)"; done | awk '{a[$1]+=$2} END {for (k in a) printf "%s=%d ", k, a[k]; print ""}'; }
lt() { local name=$1; shift
  local before engine_before; before=$(threads); engine_before=$(engine)
  /usr/bin/time -f "%U %S %e" -o $out/$name.time ./target/release/loadtest --url http://127.0.0.1:8046 \
    --max-tokens 32 --requests 1000000 --slo-ms 1000 --duration 15 --json $out/$name.json "$@" > /dev/null 2>&1
  echo "$name before: $before" >> $out/threads.txt; echo "$name after:  $(threads)" >> $out/threads.txt
  echo "$name before: $engine_before" >> $out/engine.txt; echo "$name after:  $(engine)" >> $out/engine.txt; }
lt cap --concurrency 8
cap=$(python3 -c "import json; print(round(json.load(open('$out/cap.json'))[0]['completed_in_window_rps']))")
lt bo --rates $((2*cap)) --backoff
lt nb --rates $((2*cap))
kill $server; wait $server 2>/dev/null
python3 - $out <<'PY'
import json,sys
o=sys.argv[1]
for f in ['cap','bo','nb']:
  l=json.load(open(f'{o}/{f}.json'))[0]
  u,s,e=map(float,open(f'{o}/{f}.time').read().split())
  print(f"{f}: done {l['completed_in_window_rps']:.1f}/s statuses {l['by_status']} loadtest cpu {(u+s)/e:.2f} cores (user {u:.1f} s sys {s:.1f} s over {e:.1f} s)")
PY
cat $out/threads.txt
python3 - $out <<'PY'
import sys, re
rows = [dict(re.findall(r'(\w+)=([\d.e+-]+)', l)) | {'name': l.split()[0]} for l in open(f'{sys.argv[1]}/engine.txt')]
for before, after in zip(rows[::2], rows[1::2]):
    d = {k: float(after[k]) - float(before[k]) for k in after if k != 'name'}
    print(f"{before['name']}: {d['step_count']:.0f} engine steps, mean batch {d['batch_sum'] / max(d['batch_count'], 1):.2f}, "
          f"mean step {1e3 * d['step_sum'] / max(d['step_count'], 1):.2f} ms")
PY
