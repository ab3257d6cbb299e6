#!/usr/bin/env bash
# LoRA training throughput, docraft (candle) and PyTorch + peft side by side on the same text and
# weights (docs/BENCHMARKS.md, "LoRA training"). Sets up the torch venv like peft_check.sh.
# Usage: scripts/bench_train.sh [DROPOUT]   (default 0; each side prints one JSON line)
set -euo pipefail
cd "$(dirname "$0")/.."
DROPOUT=${1:-0}
EXAMPLE=bench_train WORK=${WORK:-${DOCRAFT_CACHE:-$HOME/.cache/docraft}/bench-train}
# shellcheck source=scripts/torch-env.sh
source scripts/torch-env.sh
# The text: this repository's README and docs, then the fixtures' extracted text (~44 KB).
{ cat README.md docs/*.md; for f in fixtures/docs/*.pdf fixtures/docs/*.md; do "$BIN/docraft" extract "$f" 2>/dev/null || true; done; } > "$WORK/text.txt"
RAYON_NUM_THREADS=2 "$BIN/examples/bench_train" "$GGUF" "$WORK/text.txt" "$DROPOUT"
MODEL_DIR=$WORK/hf TEXT=$WORK/text.txt DROPOUT=$DROPOUT THREADS=2 ADAPTER_OUT=$WORK/peft-adapter \
  "$VENV/bin/python" scripts/train_peft.py 2>/dev/null
