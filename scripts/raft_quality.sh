#!/usr/bin/env bash
# Measured RAFT quality on real documents (issue 19, item 7): the Debian man pages in English
# and Spanish (rendered by scripts/retrieval_bench.py, not fixtures/), per language: ingest, a
# seeded sample of chunks spread over every page, an index of that sample (hard distractors),
# RAFT records written by Qwen2.5-Coder-1.5B-Instruct (oracle + 3 distractors, split by
# document into train/test); then LoRA on the train split's chat records (SmolLM2-135M, and
# optionally Qwen2.5-Coder-0.5B), open-book eval on the held-out test records: base + RAG vs
# base + RAFT-LoRA, and the generator itself as a ceiling. Prints the table, 10 random accepted
# and 10 random rejected records (fixed seed); writes them to $DIR/quality.md.
#
# One raft run per language: the distractors of a record then come from its own language (hard
# distractors are its nearest neighbours in that language's index) and the sample fixes how
# many records each language gets; the train and test files of both runs are merged.
#
# Resumable: a stage whose output exists is skipped (raft itself continues where it stopped,
# train resumes from its newest checkpoint). Delete a stage's output to redo it.
#
# Usage: scripts/raft_quality.sh
#   DOCRAFT=...          the docraft binary [docraft]
#   DIR=...              work directory [~/.cache/docraft/bench/raft-quality]
#   LANGS="en es"        languages
#   DOCS=16              pages per language asked about (seeded choice, the same names in each
#                        language); DOCS_en, DOCS_es, ... override it for one language
#   PER_DOC=1            chunks sampled per page (seeded; a page's last chunk only when it has one)
#   QPC=2                questions per chunk (raft -n)
#   DISTRACTORS=3        distractor documents per record
#   SPLIT=train=0.6,test=0.4
#   SEED=1               raft seed (and sampling seed)
#   GEN=...              generator GGUF [$DOCRAFT_MODELS/qwen2.5-coder-1.5b-instruct/...q4_k_m.gguf]
#   BASE=...             base to fine-tune [$DOCRAFT_MODELS/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf]
#   BASE2=...            second base to fine-tune, or "none" [none; e.g. the Qwen2.5-Coder-0.5B GGUF]
#   EPOCHS=2 STEPS=      training passes / optimizer-step cap (empty: from the epochs)
#   BATCH=2 MICRO=1 SEQ=1024 LR=2e-4 RANK=8 ALPHA=16   training settings (docraft.toml's, SEQ raised)
#   EVAL_LIMIT=1000      test records asked of base and base + adapter (all by default)
#   CEIL_LIMIT=6         test records asked of the generator (candle on the 1.5B is slow)
#   MAX_TOKENS=256       most tokens per eval answer
#   THREADS=N            llama threads for raft [all]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${DOCRAFT_MODELS:-}" ] && [ -f "$HOME/.cache/docraft/env.sh" ]; then
  # shellcheck disable=SC1091
  source "$HOME/.cache/docraft/env.sh"
fi
# Passive OpenMP waiting (env.sh, for parallel tests) halves decoding speed.
unset OMP_WAIT_POLICY
DOCRAFT=${DOCRAFT:-docraft}
DIR=${DIR:-$HOME/.cache/docraft/bench/raft-quality}
LANGS=${LANGS:-en es}
DOCS=${DOCS:-16}
PER_DOC=${PER_DOC:-1}
QPC=${QPC:-2}
DISTRACTORS=${DISTRACTORS:-3}
SPLIT=${SPLIT:-train=0.6,test=0.4}
SEED=${SEED:-1}
M=${DOCRAFT_MODELS:-$HOME/.cache/docraft/models}
GEN=${GEN:-$M/qwen2.5-coder-1.5b-instruct/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf}
BASE=${BASE:-$M/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf}
BASE2=${BASE2:-none}
EPOCHS=${EPOCHS:-2}
STEPS=${STEPS:-}
BATCH=${BATCH:-2}
MICRO=${MICRO:-1}
SEQ=${SEQ:-1024}
LR=${LR:-2e-4}
RANK=${RANK:-8}
ALPHA=${ALPHA:-16}
EVAL_LIMIT=${EVAL_LIMIT:-1000}
CEIL_LIMIT=${CEIL_LIMIT:-6}
MAX_TOKENS=${MAX_TOKENS:-256}
SYSTEM="Answer the question from the documents, quoting them."
PY=scripts/raft_quality.py

if ! command -v "$DOCRAFT" >/dev/null; then
  echo "no docraft binary '$DOCRAFT': build it and set DOCRAFT, e.g." >&2
  echo "  source ~/.cache/docraft/env.sh && cargo build --release -p docraft-cli && DOCRAFT=\$CARGO_TARGET_DIR/release/docraft $0" >&2
  exit 1
fi
for f in "$GEN" "$BASE"; do
  [ -f "$f" ] || { echo "missing model $f (scripts/setup.sh fetches it)" >&2; exit 1; }
done
threads=()
[ -n "${THREADS:-}" ] && threads=(--threads "$THREADS")
steps=()
[ -n "$STEPS" ] && steps=(--max-steps "$STEPS")
mkdir -p "$DIR"
TIMES=$DIR/times.tsv
touch "$TIMES"

# stage NAME CMD...: runs CMD, appends "NAME<TAB>seconds" to times.tsv (the last line per name wins).
stage() {
  local name=$1 t0 t1
  shift
  echo "== $name: $*"
  t0=$(date +%s.%N)
  "$@"
  t1=$(date +%s.%N)
  printf '%s\t%.1f\n' "$name" "$(echo "$t1 - $t0" | bc)" >>"$TIMES"
}

cat >"$DIR/settings.txt" <<EOF
docraft: $("$DOCRAFT" --version)
machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GB, $(uname -m)
LANGS=$LANGS DOCS=$DOCS$(for L in $LANGS; do v=DOCS_$L; [ -n "${!v:-}" ] && printf ' %s=%s' "$v" "${!v}"; done) PER_DOC=$PER_DOC QPC=$QPC DISTRACTORS=$DISTRACTORS SPLIT=$SPLIT SEED=$SEED
GEN=$GEN
BASE=$BASE BASE2=$BASE2
EPOCHS=$EPOCHS STEPS=$STEPS BATCH=$BATCH MICRO=$MICRO SEQ=$SEQ LR=$LR RANK=$RANK ALPHA=$ALPHA
EVAL_LIMIT=$EVAL_LIMIT CEIL_LIMIT=$CEIL_LIMIT MAX_TOKENS=$MAX_TOKENS
EOF

# 1. Documents: the man pages in both languages (DIR/en, DIR/es).
if [ ! -d "$DIR/en" ] || [ ! -d "$DIR/es" ]; then
  stage render python3 scripts/retrieval_bench.py render "$DIR"
fi

# 2. Per language: ingest, sample, index, raft.
for L in $LANGS; do
  if [ ! -s "$DIR/$L.chunks.jsonl" ]; then
    stage "ingest-$L" "$DOCRAFT" ingest "$DIR/$L" -o "$DIR/$L.chunks.jsonl" --quiet
  fi
  docs_var=DOCS_$L
  docs=${!docs_var:-$DOCS}
  if [ ! -s "$DIR/$L.sample.jsonl" ]; then
    python3 "$PY" sample "$DIR/$L.chunks.jsonl" "$DIR/$L.sample.jsonl" --per-doc "$PER_DOC" --docs "$docs" --seed "$SEED"
  fi
  if [ ! -d "$DIR/$L.index" ]; then
    stage "index-$L" "$DOCRAFT" index build "$DIR/$L.sample.jsonl" -o "$DIR/$L.index" --rebuild --quiet
  fi
  mkdir -p "$DIR/raft-$L"
  if [ ! -s "$DIR/raft-$L/raft.test.eval.jsonl" ]; then
    # Killed, the same command continues where it stopped.
    stage "raft-$L" "$DOCRAFT" raft "$DIR/$L.sample.jsonl" --index "$DIR/$L.index" \
      -o "$DIR/raft-$L/raft.jsonl" --backend llama --model "$GEN" \
      --distractors "$DISTRACTORS" -n "$QPC" --split "$SPLIT" --seed "$SEED" \
      --system-prompt "$SYSTEM" --quiet "${threads[@]}" 2>&1 | tee "$DIR/raft-$L/summary.txt"
    # tee hides raft's status: stop when it failed.
    [ -s "$DIR/raft-$L/raft.test.eval.jsonl" ] || { echo "raft-$L wrote no test split" >&2; exit 1; }
  fi
done

# 3. The languages' splits merged (seeded shuffle): train chat records, test eval records.
python3 "$PY" merge "$DIR" --langs "$LANGS" --seed "$SEED"
echo "train: $(wc -l <"$DIR/train.chat.jsonl") chat records; test: $(wc -l <"$DIR/test.eval.jsonl") eval records"

# 4. LoRA fine-tuning and open-book eval of each base; the generator as a ceiling.
tune() { # tune NAME BASE_GGUF
  local name=$1 base=$2
  if [ ! -f "$DIR/train-$name/adapter/adapter_config.json" ]; then
    local resume=()
    [ -d "$DIR/train-$name/checkpoints" ] && resume=(--resume)
    stage "train-$name" "$DOCRAFT" train --base "$base" --data "$DIR/train.chat.jsonl" -o "$DIR/train-$name" \
      --epochs "$EPOCHS" "${steps[@]}" --batch-size "$BATCH" --micro-batch-size "$MICRO" \
      --max-seq-len "$SEQ" --learning-rate "$LR" --lora-rank "$RANK" --lora-alpha "$ALPHA" \
      --checkpoint-every 10 --eval-every 1000 --seed 42 --quiet "${resume[@]}"
  fi
  if [ ! -f "$DIR/eval-$name/report.json" ]; then
    rm -rf "$DIR/eval-$name"
    stage "eval-$name" "$DOCRAFT" eval -o "$DIR/eval-$name" --qa-set "$DIR/test.eval.jsonl" \
      --base "$base" --adapter "$DIR/train-$name/adapter" --system-prompt "$SYSTEM" \
      --limit "$EVAL_LIMIT" --max-tokens "$MAX_TOKENS" --train-run "$DIR/train-$name" --quiet \
      --note "RAFT quality: Debian man pages (en, es), test split, base + RAG vs base + RAFT-LoRA"
  fi
}
tune smollm2 "$BASE"
if [ "$CEIL_LIMIT" -gt 0 ] && [ ! -f "$DIR/eval-generator/report.json" ]; then
  rm -rf "$DIR/eval-generator"
  stage eval-generator "$DOCRAFT" eval -o "$DIR/eval-generator" --qa-set "$DIR/test.eval.jsonl" \
    --base "$GEN" --system-prompt "$SYSTEM" --limit "$CEIL_LIMIT" --max-tokens "$MAX_TOKENS" --quiet \
    --note "RAFT quality: the generator itself (no adapter) as a ceiling"
fi
if [ "$BASE2" != none ]; then
  tune base2 "$BASE2"
fi

# 5. The table and the samples.
echo
python3 "$PY" report "$DIR" --langs "$LANGS" --seed 7 | tee "$DIR/quality.md"
