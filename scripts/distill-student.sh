#!/usr/bin/env bash
# The reproduction of docs/results.md on CPU: T3D-distils the committed teacher in three self-play
# rounds into models/arith-student. Round 1: the teacher rolls out 16384 training prompts and is
# distilled on its correct trajectories (2000 steps); rounds 2 and 3: the previous round's student
# rolls out 16384 fresh training prompts (prompt seeds 2, 3) and is distilled again on its own
# correct trajectories. Then the sft, td and ddo baselines are trained on round 1's trajectories
# with the same config and budget, and the comparison table and plot are written. Logs:
# runs/distill-*.log.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
bin=./target/release/t3d
mkdir -p runs/students docs
timed() { local name=$1; shift; /usr/bin/time -f "%e" -o "runs/$name.wall" "$@" > "runs/distill-$name.log" 2>&1; }
timed t3d-round1 $bin distill --config configs/distill.json --objective t3d \
  --out runs/students/t3d-round1 --run-dir runs/arith-student-round1 --report runs/t3d-round1.report.json
timed t3d-round2 $bin distill --config configs/distill.json --objective t3d \
  --teacher runs/students/t3d-round1 --prompt-seed 2 \
  --out runs/students/t3d-round2 --run-dir runs/arith-student-round2 --report runs/t3d-round2.report.json
timed t3d $bin distill --config configs/distill.json --objective t3d \
  --teacher runs/students/t3d-round2 --prompt-seed 3 \
  --out models/arith-student --run-dir runs/arith-student --report runs/t3d.report.json
cp runs/arith-student/distill_log.jsonl models/arith-student/distill_log.jsonl
# The committed copy is stored in bf16 (5.2 MB); its evaluation and recommended decoding are
# re-derived from the stored weights.
$bin convert --model models/arith-student --out models/arith-student --dtype bf16
$bin eval --model models/arith-student --steps 1,2,4 --thresholds 0.5,0.7,0.8,0.9,0.95,0.99 \
  --entropy-bounds 0.1,0.35,0.5,0.7,0.8,0.9,1.0 --recommend --json models/arith-student/eval.json \
  | tee models/arith-student/eval.md
for objective in ${BASELINES:-sft td ddo}; do
  timed "$objective" $bin distill --config configs/distill.json --objective "$objective" \
    --trajectories runs/arith-student-round1/trajectories.jsonl \
    --out "runs/students/$objective" --run-dir "runs/distill-$objective" --report "runs/$objective.report.json"
done
evals=(--eval "teacher=models/arith-teacher/eval.json")
for objective in sft td ddo; do
  [[ -f "runs/students/$objective/eval.json" ]] && evals+=(--eval "$objective=runs/students/$objective/eval.json")
done
evals+=(--eval "t3d=models/arith-student/eval.json")
$bin compare "${evals[@]}" --plot docs/results.png | tee runs/results-table.md
for name in t3d-round1 t3d-round2 t3d sft td ddo; do [[ -f "runs/$name.wall" ]] && echo "$name: $(cat "runs/$name.wall") s wall"; done
