#!/usr/bin/env bash
# Issue 16's distillation runs on CPU (docs/results.md, "The frontier"): the committed recipe
# (configs/distill.json, distillation seed 10086: regenerates the committed student), then the
# same recipe at distillation seeds 1 and 2, and the strongest baseline (`sft`) at the same three
# seeds, all on the seed-10086 run's trajectories. Each student lands in runs/students/NAME with
# its eval.json (static S = 1, 2, 4, five thresholds, seven entropy bounds); wall times in
# runs/NAME.wall, logs in runs/distill-NAME.log. RUNS picks a subset (and the order).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin t3d
bin=./target/release/t3d
mkdir -p runs/students
run() {
  local name=$1; shift
  /usr/bin/time -f "%e" -o "runs/$name.wall" $bin distill --config configs/distill.json \
    --out "runs/students/$name" --run-dir "runs/distill-$name" "$@" > "runs/distill-$name.log" 2>&1
}
trajectories=runs/distill-t3d-s10086/trajectories.jsonl
for name in ${RUNS:-t3d-s10086 t3d-s1 sft-s10086 t3d-s2 sft-s1 sft-s2}; do
  objective=${name%-s*}
  seed=${name##*-s}
  if [[ $name == t3d-s10086 ]]; then
    run "$name"
  else
    run "$name" --objective "$objective" --trajectories "$trajectories" --set "seed=$seed"
  fi
done
