#!/usr/bin/env bash
# The main job on the fixtures: sets up what is missing (idempotent), builds docraft, and runs
# the pipeline stages that exist so far (ingest, index, search, generate, export, validate, raft,
# a short LoRA run and a chat with its adapter)
# over fixtures/ into OUT
# (default out/demo).
# Re-running resumes: documents already in the output are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out/demo}
bash scripts/setup.sh
# shellcheck disable=SC1091
source "${DOCRAFT_CACHE:-$HOME/.cache/docraft}/env.sh"
cargo build --release --locked -p docraft-cli
DOCRAFT="$CARGO_TARGET_DIR/release/docraft"
mkdir -p "$OUT"
# Ingest: every readable document becomes chunks; the bad fixtures are reported, not fatal.
"$DOCRAFT" ingest fixtures --exclude README.md -o "$OUT/chunks.jsonl" --report "$OUT/report.json"
echo
echo "chunks: $OUT/chunks.jsonl ($(wc -l < "$OUT/chunks.jsonl") lines), report: $OUT/report.json"
echo "first chunk:"
head -n 1 "$OUT/chunks.jsonl" | cut -c1-400
echo
# Index: embed the chunks (all-MiniLM-L6-v2, in process) into an HNSW index; re-running only
# embeds what changed.
"$DOCRAFT" index build "$OUT/chunks.jsonl" -o "$OUT/index"
echo
for q in "What torque should the flange bolts be tightened to?" "¿Dónde se guardan los documentos confidenciales?"; do
  echo "\$ docraft search $OUT/index \"$q\" -k 3"
  "$DOCRAFT" search "$OUT/index" "$q" -k 3
  echo
done
# Q&A: question/answer pairs from the local SmolLM2 GGUF (a 135M toy: expect most candidates
# to be rejected, each with its reason). Re-running continues; finished chunks are not redone.
# Passive OpenMP waiting (env.sh, for parallel tests) halves single-process decoding speed.
env -u OMP_WAIT_POLICY "$DOCRAFT" generate "$OUT/chunks.jsonl" -o "$OUT/qa.jsonl" --seed 1
echo
echo "first pair:"
head -n 1 "$OUT/qa.jsonl" | cut -c1-400
echo
"$DOCRAFT" export "$OUT/qa.jsonl" --format openai-chat -o "$OUT/train.jsonl" \
  --system-prompt "You answer questions about the company's documents." --valid-fraction 0.2
"$DOCRAFT" validate "$OUT/train.jsonl" --format openai-chat \
  || echo "(validate: see the report above; OpenAI needs at least 10 examples per file)"
echo
# RAFT: questions per chunk, each with its oracle among hard distractors from the index and a
# chain of thought whose quotes are checked against the oracle; files per split and format.
env -u OMP_WAIT_POLICY "$DOCRAFT" raft "$OUT/chunks.jsonl" --index "$OUT/index" -o "$OUT/raft.jsonl" \
  -n 3 --seed 1 --system-prompt "Answer the question from the documents, quoting them."
echo
echo "first RAFT record (chat):"
head -n 1 "$OUT/raft.train.chat.jsonl" | cut -c1-600
echo
"$DOCRAFT" validate "$OUT/raft.train.chat.jsonl" --format openai-chat \
  || echo "(validate: see the report above; OpenAI needs at least 10 examples per file)"
echo
# LoRA: a short run on the RAFT chat records, on the same GGUF llama.cpp used (dequantized by
# candle). Writes metrics, events, checkpoints and a peft-layout adapter; --resume continues a
# killed run on the same trajectory.
rm -rf "$OUT/train-run"
env -u OMP_WAIT_POLICY "$DOCRAFT" train --base "$DOCRAFT_MODELS/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf" --data "$OUT/raft.train.chat.jsonl" \
  --valid "$OUT/raft.valid.chat.jsonl" -o "$OUT/train-run" --max-steps 3 --batch-size 2 \
  --micro-batch-size 1 --max-seq-len 768 --learning-rate 2e-4 --lora-rank 8 --lora-alpha 16
echo "metrics: $OUT/train-run/metrics.jsonl"; tail -n 1 "$OUT/train-run/metrics.jsonl"
echo
echo "\$ docraft chat --base SmolLM2 --adapter $OUT/train-run/adapter \"¿Cada cuánto se hacen las copias de seguridad?\""
env -u OMP_WAIT_POLICY "$DOCRAFT" chat --base "$DOCRAFT_MODELS/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf" --adapter "$OUT/train-run/adapter" --max-tokens 60 \
  "¿Cada cuánto se hacen las copias de seguridad?"
