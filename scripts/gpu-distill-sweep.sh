#!/usr/bin/env bash
# Distillation sweep for one GPU call (device tool: `SWEEP=configs/distill-sweep-2.txt bash
# scripts/gpu-distill-sweep.sh`, carry ["target/release/t3d", "runs/trajectories.jsonl"]; sweep 1
# ran without the per-run limit in 450 s, sweep 2 with RUN_LIMIT=300 in 287 s). Trains every line
# of the sweep file (`name --set k=v ...`) on CUDA in parallel from the same CPU-made
# teacher trajectories, evaluates each on 1000 held-out problems at S = 1, 2, 4, and prints one
# summary line per run. Used to choose the settings the committed student is trained with on CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-distill-out}
mkdir -p "$out" /tmp/dsweep
torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
bin=./target/release/t3d
traj=${TRAJECTORIES:-runs/trajectories.jsonl}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
while read -r name sets; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  # shellcheck disable=SC2086
  ( start=$(date +%s)
    timeout "${RUN_LIMIT:-300}" $bin distill --trajectories "$traj" --out "/tmp/dsweep/$name" --run-dir "/tmp/dsweep/run-$name" \
      --device cuda --threads 1 $sets --report "/tmp/dsweep/$name.json" > "/tmp/dsweep/$name.log" 2>&1
    echo "seconds $(( $(date +%s) - start ))" >> "/tmp/dsweep/$name.json" ) &
done < "${SWEEP:-configs/distill-sweep-2.txt}"
wait
python3 - /tmp/dsweep <<'EOF'
import json, glob, os, sys
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    text = open(path).read().rsplit("seconds", 1)
    try:
        rep = json.loads(text[0])
    except Exception:
        print(os.path.basename(path), "FAILED", open(path[:-5] + ".log").read()[-300:]); continue
    accs = " ".join(f"S{r['steps_per_block']}={100*r['answer_accuracy']:.1f}/{100*r['trace_validity']:.1f}" for r in rep["eval"])
    print(f"{os.path.basename(path)[:-5]:24s} {accs}  train {rep['train']['seconds']:.0f}s loss {rep['train']['final_loss']:.3f}")
EOF
cp /tmp/dsweep/*.json "$out/" 2>/dev/null
