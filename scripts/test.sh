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
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked
