#!/usr/bin/env bash
# The main job on the fixtures: sets up what is missing (idempotent), builds docraft, and runs
# the whole pipeline over fixtures/docs into OUT (default out/demo) with the settings of
# docraft.toml: ingest, index, RAFT records from the local Qwen2.5-Coder-0.5B GGUF, a short LoRA run of SmolLM2-135M,
# evaluation of base vs base + adapter with a report; then two questions with `docraft ask`.
# Re-running skips the stages that are done and resumes an interrupted one.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out/demo}
bash scripts/setup.sh
# shellcheck disable=SC1091
source "${DOCRAFT_CACHE:-$HOME/.cache/docraft}/env.sh"
cargo build --release --locked -p docraft-cli
DOCRAFT="$CARGO_TARGET_DIR/release/docraft"
# Passive OpenMP waiting (env.sh, for parallel tests) halves single-process decoding speed.
unset OMP_WAIT_POLICY
start=$(date +%s)
"$DOCRAFT" run fixtures/docs -o "$OUT" --config docraft.toml
echo
for q in "What torque should the flange bolts be tightened to?" "¿Dónde se guardan los documentos en papel confidenciales?"; do
  echo "\$ docraft ask $OUT/index \"$q\" --adapter $OUT/train/adapter"
  "$DOCRAFT" ask "$OUT/index" "$q" --adapter "$OUT/train/adapter" --max-tokens 80
done
echo "pipeline + questions: $(( $(date +%s) - start )) s"
echo
echo "run directory: $OUT (lineage: $OUT/manifest.json)"
echo "report: $OUT/report/report.md"
