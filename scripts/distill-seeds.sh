#!/usr/bin/env bash
# Issue 16's distillation runs on CPU (docs/results.md, "The frontier"): the committed recipe
# (configs/distill.json, distillation seed 10086: regenerates the committed student), the same
# recipe at another distillation seed on the same trajectories, and a variant whose teacher
# rollouts use confidence-threshold decoding (what the student is served with). Each student
# lands in runs/students/NAME with its eval.json (static S = 1, 2, 4 and five thresholds);
# wall times in runs/NAME.wall, logs in runs/distill-NAME.log. RUNS picks a subset.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin t3d
bin=./target/release/t3d
mkdir -p runs/students
run() {
  local name=$1; shift
  [[ " ${RUNS:-t3d-s10086 t3d-s1 t3d-dyn} " == *" $name "* ]] || return 0
  /usr/bin/time -f "%e" -o "runs/$name.wall" $bin distill --config configs/distill.json \
    --out "runs/students/$name" --run-dir "runs/distill-$name" "$@" > "runs/distill-$name.log" 2>&1
}
run t3d-s10086
run t3d-s1 --trajectories runs/distill-t3d-s10086/trajectories.jsonl --set seed=1
run t3d-dyn --set rollout.remasking=low_confidence_dynamic
