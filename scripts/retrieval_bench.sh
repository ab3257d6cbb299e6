#!/usr/bin/env bash
# Retrieval benchmark on real documents in English and Spanish: the Debian man pages that exist
# in both languages (apt, dpkg, dpkg-dev, man-db, debianutils, fakeroot), rendered to text,
# ingested and indexed per language, then `docraft eval` with hand-written questions
# (bench/retrieval/questions-{en,es}.jsonl) for each retrieval mode; prints a table
# language x mode -> recall@1/5/10, MRR.
#
# Usage: scripts/retrieval_bench.sh
#   DIR=...        work directory [~/.cache/docraft/bench/retrieval]
#   DOCRAFT=...    the docraft binary [docraft; e.g. "$CARGO_TARGET_DIR/debug/docraft" after
#                  `source ~/.cache/docraft/env.sh`]
#   EMBED=onnx     embedding backend for `index build --backend` (onnx: all-MiniLM-L6-v2) [the default: use-m3]
#   MODES="vector keyword hybrid"   LANGS="en es"   THREADS=N (ingest and index threads)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${DIR:-$HOME/.cache/docraft/bench/retrieval}
DOCRAFT=${DOCRAFT:-docraft}
EMBED=${EMBED:-}
MODES=${MODES:-vector keyword hybrid}
LANGS=${LANGS:-en es}
BENCH=scripts/retrieval_bench.py
QUESTIONS=bench/retrieval

if ! command -v "$DOCRAFT" >/dev/null; then
  echo "no docraft binary '$DOCRAFT': build it and set DOCRAFT, e.g." >&2
  echo "  source ~/.cache/docraft/env.sh && cargo build -p docraft-cli && DOCRAFT=\$CARGO_TARGET_DIR/debug/docraft $0" >&2
  exit 1
fi
eval_help=$("$DOCRAFT" eval --help)
if [[ $eval_help != *--retrieval* ]]; then
  echo "$DOCRAFT eval has no --retrieval flag yet (vector|keyword|hybrid): rebuild it" >&2
  exit 1
fi
threads=()
[ -n "${THREADS:-}" ] && threads=(--threads "$THREADS")
backend=()
[ -n "$EMBED" ] && backend=(--backend "$EMBED")

mkdir -p "$DIR"
echo "== render the man pages into $DIR/{en,es}"
python3 "$BENCH" render "$DIR"
echo "== check the questions' phrases against this rendering"
python3 "$BENCH" check "$DIR"

for L in $LANGS; do
  echo "== $L: ingest, index${EMBED:+ ($EMBED)}, resolve the questions to chunks"
  # ingest appends and skips documents already in the file: start from an empty one.
  rm -f "$DIR/$L.chunks.jsonl"
  "$DOCRAFT" ingest "$DIR/$L" -o "$DIR/$L.chunks.jsonl" --report "$DIR/$L.ingest-report.json" \
    --strict --quiet "${threads[@]}"
  "$DOCRAFT" index build "$DIR/$L.chunks.jsonl" -o "$DIR/$L.index" --rebuild --quiet \
    "${backend[@]}" "${threads[@]}"
  python3 "$BENCH" resolve "$DIR/$L.chunks.jsonl" "$QUESTIONS/questions-$L.jsonl" "$DIR/$L.resolved.jsonl"
  for mode in $MODES; do
    echo "== $L: eval --retrieval $mode"
    rm -rf "$DIR/report-$L-$mode"
    "$DOCRAFT" eval -o "$DIR/report-$L-$mode" --index "$DIR/$L.index" \
      --questions "$DIR/$L.resolved.jsonl" --k 1,5,10 --retrieval "$mode" --quiet \
      --note "retrieval benchmark: Debian man pages ($L), retrieval $mode, embedding ${EMBED:-default}"
  done
done

echo
echo "== results (embedding: ${EMBED:-default}; $DIR/table.md)"
python3 "$BENCH" table "$DIR" | tee "$DIR/table.md"
