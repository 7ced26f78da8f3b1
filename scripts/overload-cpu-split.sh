#!/usr/bin/env bash
# Where the CPU goes at 2x capacity with and without client back-off (docs/load/README.md): the
# closed-loop capacity at concurrency 8, then 15 s at twice it with back-off and without (ORDER,
# default "bo nb"); per window: loadtest's own CPU (bash's time), the server's CPU per thread
# name (/proc/PID/task; the engine's libgomp workers carry the engine thread's name), the
# server's /metrics before and after, and with TRACE=1 (perf, root) 6 s of scheduler switches
# from the middle of the window: who preempts the engine's threads, and each command's share of
# the two cores. SERVER_CPUS / CLIENT_CPUS (taskset lists) pin the server and the load generator
# apart; SERVER_FLAGS adds `t3d serve` flags (such as --threads 1). Usage: overload-cpu-split.sh
# [NAME] (results in runs/cpu-split/NAME); the summary comes from scripts/overload_cpu_split.py.
# Needs target/release/{t3d,loadtest} and an otherwise idle machine.
set -u
cd "$(dirname "$0")/.."
out=runs/cpu-split/${1:-r1}; mkdir -p "$out"
port=${PORT:-8046}
pin() { if [ -n "$1" ]; then echo "taskset -c $1"; fi; }
# GET URL to stdout, with curl where the machine has it and Python's urllib where it does not.
get() {
  if command -v curl >/dev/null; then curl -sf "$1"; else
    python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())' "$1" 2>/dev/null
  fi
}
# shellcheck disable=SC2086 # SERVER_FLAGS is a list of flags
$(pin "${SERVER_CPUS:-}") ./target/release/t3d serve --port "$port" --max-batch-size 8 --max-queue 16 \
  ${SERVER_FLAGS:-} > "$out/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null' EXIT
until get "http://127.0.0.1:$port/ready" >/dev/null; do sleep 0.2; done
# CPU ticks per thread name (utime + stime).
threads() {
  for t in /proc/$server/task/*; do echo "$(cat "$t/comm") $(awk '{print $14+$15}' "$t/stat")"; done |
    awk '{a[$1]+=$2} END {for (k in a) printf "%s=%d ", k, a[k]; print ""}'
}
# Scheduler switches on every CPU from 4 s to 10 s into the window.
trace() {
  trace_pid=
  if [ "${TRACE:-0}" = 1 ]; then
    (sleep 4; perf record -q -e sched:sched_switch -a -o "$out/$1.sched" -- sleep 6 >/dev/null 2>&1) &
    trace_pid=$!
  fi
}
# One 15 s loadtest window NAME (loadtest flags follow), with the server's view before and after.
lt() {
  local name=$1; shift
  echo "$name before: $(threads)" >> "$out/threads.txt"
  get "http://127.0.0.1:$port/metrics" > "$out/$name.metrics-before"
  trace "$name"
  # bash's own `time` (user, system, wall), as not every machine has /usr/bin/time.
  local TIMEFORMAT='%U %S %R'
  { time $(pin "${CLIENT_CPUS:-}") ./target/release/loadtest \
    --url "http://127.0.0.1:$port" --max-tokens 32 --requests 1000000 --slo-ms 1000 --duration 15 \
    --json "$out/$name.json" "$@" > /dev/null 2>&1; } 2> "$out/$name.time"
  [ -n "$trace_pid" ] && wait "$trace_pid"
  get "http://127.0.0.1:$port/metrics" > "$out/$name.metrics-after"
  echo "$name after:  $(threads)" >> "$out/threads.txt"
}
lt cap --concurrency 8
cap=$(python3 -c "import json; print(round(json.load(open('$out/cap.json'))[0]['completed_in_window_rps']))")
for mode in ${ORDER:-bo nb}; do
  case $mode in
    bo) lt bo --rates $((2 * cap)) --backoff ;;
    nb) lt nb --rates $((2 * cap)) ;;
  esac
done
kill $server; wait $server 2>/dev/null
for name in cap bo nb; do
  [ -f "$out/$name.sched" ] && perf script -i "$out/$name.sched" -F comm,tid,cpu,time,trace > "$out/$name.switches" 2>/dev/null
done
python3 scripts/overload_cpu_split.py "$out"
