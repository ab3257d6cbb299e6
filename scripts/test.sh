#!/usr/bin/env bash
# The test command (README, .ci/run): sets up what is missing (idempotent), then runs every
# check: formatting, lints (also of the stub backends, with default features off), and all
# tests -- the model-backed ones included. Plain `cargo test` runs only the fast offline tier;
# the tests that need the models from setup (#[ignore = "needs scripts/setup.sh"]) or PyPI
# (#[ignore = "needs PyPI"]: the unmodified OpenAI Python SDK in a venv) run here through
# --include-ignored.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
source "${DOCRAFT_CACHE:-$HOME/.cache/docraft}/env.sh"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
for crate in docraft-index docraft-qa-gen docraft-llm docraft-ingest; do
  cargo clippy -p "$crate" --no-default-features --all-targets --locked -- -D warnings
done
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set -o pipefail
cargo test --workspace --all-targets --locked --no-fail-fast -- --include-ignored 2>&1 | tee "$log"
cargo test --workspace --doc --locked 2>&1 | tee -a "$log"
# One closing line for the whole run: the sum of every test binary's result line.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
