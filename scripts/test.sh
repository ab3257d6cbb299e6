#!/usr/bin/env bash
# The test command (README, .ci/run): sets up what is missing (idempotent), then runs every
# check: formatting, lints, and all tests -- the model-backed ones included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
source "${DOCRAFT_CACHE:-$HOME/.cache/docraft}/env.sh"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set -o pipefail
cargo test --workspace --all-targets --locked 2>&1 | tee "$log"
cargo test --workspace --doc --locked 2>&1 | tee -a "$log"
# Tests that need PyPI (the unmodified OpenAI Python SDK in a venv): ignored by default.
cargo test -p docraft-server --test openai_python --locked -- --include-ignored 2>&1 | tee -a "$log"
# One closing line for the whole run: the sum of every test binary's result line.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
