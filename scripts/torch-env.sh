# Sourced by peft_check.sh and bench_train.sh (from the repository root): the torch venv
# (torch, transformers, peft; several GB, under ~/.cache/docraft/venv-torch), a release build of
# docraft plus the example named in $EXAMPLE, and the SmolLM2 GGUF converted to Hugging Face
# layout in $WORK/hf. Sets CACHE, VENV, BIN, GGUF and WORK.
CACHE=${DOCRAFT_CACHE:-$HOME/.cache/docraft}
# shellcheck disable=SC1091
source "$CACHE/env.sh"
VENV=$CACHE/venv-torch
if ! "$VENV/bin/python" -c "import torch, transformers, peft" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q torch transformers peft safetensors
fi
cargo build --release -q -p docraft-cli
cargo build --release -q -p docraft-train --example "$EXAMPLE"
BIN=$CARGO_TARGET_DIR/release
GGUF=$CACHE/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
WORK=${WORK:-$CACHE/$EXAMPLE}
mkdir -p "$WORK"
[ -f "$WORK/hf/model.safetensors" ] || "$BIN/docraft" convert "$GGUF" -o "$WORK/hf" > /dev/null
