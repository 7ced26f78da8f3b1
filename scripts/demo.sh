#!/usr/bin/env bash
# Set up, build, and run the main job on the default model. Until the bundled teacher/student
# exists, the default is a small random-init SDAR checkpoint that this script creates.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release
model=models/tiny-random
[ -f "$model/config.json" ] || ./target/release/t3d init --shape tiny --out "$model"
./target/release/t3d generate --model "$model" --prompt "${1:-What is 12 + 30?}" --chat --max-tokens 32
