"""Summary of one scripts/overload-cpu-split.sh run: per window, requests completed in the window
(and their share of the closed-loop capacity), requests the server answered (retries included),
loadtest's CPU, the server's CPU per thread name, the engine's forwards, mean batch and mean
forward time from /metrics, and, when traced, who preempted the engine's threads."""
import collections
import json
import re
import sys
from pathlib import Path

out = Path(sys.argv[1])


def metrics(path):
    """Histogram sums and counts and counters of a /metrics scrape."""
    values = {}
    for line in path.read_text().splitlines():
        m = re.match(r'(t3d_\w+(?:_sum|_count|_total)) ([\d.e+-]+)$', line)
        if m:
            values[m.group(1)] = float(m.group(2))
    return values


def engine_view(name):
    before, after = (metrics(out / f'{name}.metrics-{w}') for w in ('before', 'after'))
    d = {k: v - before.get(k, 0.0) for k, v in after.items()}
    steps = max(d.get('t3d_engine_step_seconds_count', 0.0), 1.0)
    return (f"{steps:.0f} forwards, mean batch {d['t3d_batch_size_sum'] / steps:.2f}, "
            f"mean forward {1e3 * d['t3d_engine_step_seconds_sum'] / steps:.2f} ms")


def thread_cpu(name, wall):
    lines = {l.split(':')[0]: l for l in (out / 'threads.txt').read_text().splitlines()}
    ticks = [dict((k, int(v)) for k, v in re.findall(r'(\S+)=(\d+)', lines[f'{name} {w}']))
             for w in ('before', 'after')]
    return ' '.join(f'{k} {(ticks[1][k] - ticks[0].get(k, 0)) / 100 / wall:.2f}'
                    for k in sorted(ticks[1]))


def switches(name):
    """Who took a CPU from a runnable engine thread, and each command's share of the 2 CPUs."""
    path = out / f'{name}.switches'
    if not path.exists():
        return None
    pattern = re.compile(r'\[(\d+)\]\s+([\d.]+):.*prev_comm=(.+?) prev_pid=\d+ prev_prio=\d+ '
                         r'prev_state=(\S+) ==> next_comm=(.+?) next_pid=\d+')
    preempted_by, running, since = collections.Counter(), collections.Counter(), {}
    first = last = None
    for line in path.read_text().splitlines():
        m = pattern.search(line)
        if not m:
            continue
        cpu, t, prev, state, nxt = m.group(1), float(m.group(2)), m.group(3), m.group(4), m.group(5)
        first, last = first or t, t
        if cpu in since:
            running[since[cpu][0]] += t - since[cpu][1]
        since[cpu] = (nxt, t)
        if prev.startswith('t3d-engine') and state.startswith('R'):
            preempted_by[nxt] += 1
    span = max(last - first, 1e-9)
    top = ', '.join(f'{k} {v / span:.0f}/s' for k, v in preempted_by.most_common(4))
    share = ', '.join(f'{k} {v / span:.2f}' for k, v in running.most_common(4))
    return f'engine threads preempted by: {top}; cores used: {share}'


cap = json.loads((out / 'cap.json').read_text())[0]['completed_in_window_rps']
for name in ('cap', 'bo', 'nb'):
    level = json.loads((out / f'{name}.json').read_text())[0]
    user, system, wall = map(float, (out / f'{name}.time').read_text().split())
    done = level['completed_in_window_rps']
    print(f"{name}: done in window {done:.1f}/s ({100 * done / cap:.0f}% of capacity), "
          f"statuses {level['by_status']}, server answered {level['server']['requests_answered']:.0f} "
          f"in {wall:.1f} s; loadtest {(user + system) / wall:.2f} cores "
          f"(its own count {level.get('generator_cpu_cores') or float('nan'):.2f}); server threads (cores): "
          f"{thread_cpu(name, wall)}; {engine_view(name)}")
    traced = switches(name)
    if traced:
        print(f'  {traced}')
