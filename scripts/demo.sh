#!/usr/bin/env bash
# Set up, build, and run the main job on the bundled model (models/, no download): answer one
# question with few-step decoding, then score the model on held-out problems at S = 1, 2, 4.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release
./target/release/t3d generate --chat --prompt "${1:-12+7+30+5}" --temperature 0
./target/release/t3d eval --n "${EVAL_N:-200}" --steps 1,2,4
