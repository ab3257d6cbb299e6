#!/usr/bin/env bash
# LoRA training throughput, docraft (candle) and PyTorch + peft side by side on the same text and
# weights (docs/BENCHMARKS.md, "LoRA training"). Sets up the torch venv like peft_check.sh.
# Usage: scripts/bench_train.sh [DROPOUT]   (default 0; each side prints one JSON line)
set -euo pipefail
cd "$(dirname "$0")/.."
DROPOUT=${1:-0}
CACHE=${DOCRAFT_CACHE:-$HOME/.cache/docraft}
source "$CACHE/env.sh"
VENV=$CACHE/venv-torch
if ! "$VENV/bin/python" -c "import torch, transformers, peft" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q torch transformers peft safetensors
fi
cargo build --release -q -p docraft-cli
cargo build --release -q -p docraft-train --example bench_train
BIN=$CARGO_TARGET_DIR/release
GGUF=$CACHE/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
WORK=$CACHE/bench-train
mkdir -p "$WORK"
[ -f "$WORK/hf/model.safetensors" ] || "$BIN/docraft" convert "$GGUF" -o "$WORK/hf" > /dev/null
# The text: this repository's README and docs, then the fixtures' extracted text (~44 KB).
{ cat README.md docs/*.md; for f in fixtures/docs/*.pdf fixtures/docs/*.md; do "$BIN/docraft" extract "$f" 2>/dev/null || true; done; } > "$WORK/text.txt"
RAYON_NUM_THREADS=2 "$BIN/examples/bench_train" "$GGUF" "$WORK/text.txt" "$DROPOUT"
MODEL_DIR=$WORK/hf TEXT=$WORK/text.txt DROPOUT=$DROPOUT THREADS=2 ADAPTER_OUT=$WORK/peft-adapter \
  "$VENV/bin/python" scripts/train_peft.py 2>/dev/null
