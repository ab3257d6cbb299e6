#!/usr/bin/env bash
# Checks our adapters against Hugging Face peft both ways (scripts/peft_check.py), and that a
# merged model equals base + adapter. Sets up its own venv (torch, transformers, peft) under
# ~/.cache/docraft/venv-torch; several GB, so it is not part of scripts/test.sh.
# Usage: scripts/peft_check.sh [ADAPTER_DIR]   (default: trains a 4-step adapter on the fixtures)
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${DOCRAFT_CACHE:-$HOME/.cache/docraft}
source "$CACHE/env.sh"
VENV=$CACHE/venv-torch
if ! "$VENV/bin/python" -c "import torch, transformers, peft" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q torch transformers peft safetensors
fi
cargo build --release -q -p docraft-cli
cargo build --release -q -p docraft-train --example adapter_logits
BIN=$CARGO_TARGET_DIR/release
GGUF=$CACHE/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
WORK=${WORK:-$CACHE/peft-check}
mkdir -p "$WORK"
[ -f "$WORK/hf/model.safetensors" ] || "$BIN/docraft" convert "$GGUF" -o "$WORK/hf"
ADAPTER=${1:-}
if [ -z "$ADAPTER" ]; then
  rm -rf "$WORK/run"
  "$BIN/docraft" train --base "$GGUF" --data fixtures/train/chat.jsonl -o "$WORK/run" --max-steps 4 \
    --batch-size 2 --micro-batch-size 2 --learning-rate 1e-3 --lora-rank 8 --lora-alpha 16 --quiet
  ADAPTER=$WORK/run/adapter
fi
"$VENV/bin/python" scripts/peft_check.py "$WORK/hf" "$ADAPTER" "$BIN/examples/adapter_logits"
# Merge: the merged model's logits equal base + adapter's (our forward on both).
rm -rf "$WORK/merged"
"$BIN/docraft" merge --base "$GGUF" --adapter "$ADAPTER" -o "$WORK/merged" > /dev/null
TEXT='<|im_start|>user
Hola<|im_end|>
<|im_start|>assistant
'
"$VENV/bin/python" - "$BIN/examples/adapter_logits" "$GGUF" "$ADAPTER" "$WORK/merged" "$TEXT" <<'PY'
import json, subprocess, sys
b, gguf, adapter, merged, text = sys.argv[1:6]
run = lambda base, ad: json.loads(subprocess.run([b, base, ad, text], check=True, capture_output=True, text=True).stdout)["logits"]
x, y = run(gguf, adapter), run(merged, "-")
d = max(abs(p - q) for rx, ry in zip(x, y) for p, q in zip(rx, ry))
print(json.dumps({"merged_vs_base_plus_adapter_max_abs_diff": d}))
sys.exit(0 if d <= 1e-3 else 1)
PY
