#!/usr/bin/env bash
# The distillation runs on CPU (docs/results.md, "The frontier"): the committed recipe
# (configs/distill.json, distillation seed 10086: regenerates the committed student), then the
# same recipe at distillation seeds 1 and 2, and the strongest baseline (`sft`) at the same three
# seeds, all on the seed-10086 run's trajectories; then the second self-play round of each t3d
# seed (t3d-r2-sN: student t3d-sN rolls out fresh training prompts, prompt seed 2, and is
# distilled on its own correct trajectories) and the third (t3d-r3-sN: from t3d-r2-sN, prompt
# seed 3; t3d-r3-s10086 is the committed student). Each student lands in runs/students/NAME with
# its eval.json (static S = 1, 2, 4, five thresholds, seven entropy bounds); wall times in
# runs/NAME.wall, logs in runs/distill-NAME.log. RUNS picks a subset (and the order; a t3d-r2-sN
# run needs t3d-sN first, t3d-r3-sN needs t3d-r2-sN).
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
for name in ${RUNS:-t3d-s10086 t3d-s1 t3d-s2 t3d-r2-s10086 t3d-r2-s1 t3d-r2-s2 t3d-r3-s10086 t3d-r3-s1 t3d-r3-s2 sft-s10086 sft-s1 sft-s2}; do
  objective=${name%%-*}
  seed=${name##*-s}
  if [[ $name == t3d-s10086 ]]; then
    run "$name"
  elif [[ $name == t3d-r2-* ]]; then
    run "$name" --teacher "runs/students/t3d-s$seed" --prompt-seed 2 --set "seed=$seed"
  elif [[ $name == t3d-r3-* ]]; then
    run "$name" --teacher "runs/students/t3d-r2-s$seed" --prompt-seed 3 --set "seed=$seed"
  else
    run "$name" --objective "$objective" --trajectories "$trajectories" --set "seed=$seed"
  fi
done
