#!/usr/bin/env bash
# Set up, build, and run the main job on the bundled model (models/, no download): held-out
# questions of the bundled task answered with the model's served default decoding (each marked
# right or wrong), then the accuracy / tokens-per-forward table over static steps per block and
# confidence thresholds and entropy bounds on EVAL_N held-out problems.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release
./target/release/t3d eval --n "${EVAL_N:-200}" --show "${SHOW:-8}" --steps 1,2,4 --thresholds 0.7,0.9 --entropy-bounds 0.35,0.8,1.0
