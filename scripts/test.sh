#!/usr/bin/env bash
# The whole test suite: set-up (idempotent), then every unit, integration and doc test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --workspace --all-targets
cargo test --workspace --doc
