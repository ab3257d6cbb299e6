#!/usr/bin/env bash
# Checks our adapters against Hugging Face peft both ways (scripts/peft_check.py), and that a
# merged model equals base + adapter. Sets up its own venv (torch, transformers, peft) under
# ~/.cache/docraft/venv-torch; several GB, so it is not part of scripts/test.sh.
# Usage: scripts/peft_check.sh [ADAPTER_DIR]   (default: trains a 4-step adapter on the fixtures)
set -euo pipefail
cd "$(dirname "$0")/.."
EXAMPLE=adapter_logits WORK=${WORK:-${DOCRAFT_CACHE:-$HOME/.cache/docraft}/peft-check}
# shellcheck source=scripts/torch-env.sh
source scripts/torch-env.sh
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
