#!/usr/bin/env bash
# Embedding throughput, docraft against Python onnxruntime, interleaved (A B A B ...) so both
# see the same machine conditions; docs/BENCHMARKS.md reports the median of the rounds.
# Usage: scripts/bench_embed_ab.sh CHUNKS.jsonl [N_CHUNKS=512] [THREADS=2] [ROUNDS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source "${DOCRAFT_CACHE:-$HOME/.cache/docraft}/env.sh"
CHUNKS=$1; N=${2:-512}; T=${3:-2}; ROUNDS=${4:-3}
cargo build --release --locked -q -p docraft-index --example bench_embed
for r in $(seq "$ROUNDS"); do
  echo "# round $r"
  "$CARGO_TARGET_DIR/release/examples/bench_embed" "$CHUNKS" "$N" "$T" 1,8,32 onnx | tail -n 3
  python3 scripts/bench_embed.py "$DOCRAFT_MODELS/all-minilm-l6-v2" "$CHUNKS" "$N" "$T" 1,8,32 input,sorted | tail -n 6
done
