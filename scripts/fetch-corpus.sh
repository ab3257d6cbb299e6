#!/usr/bin/env bash
# Builds a corpus of real third-party PDFs for the extraction benchmark (not for tests):
# the sample and test PDFs shipped in the source distributions of pypdf (BSD-3-Clause) and
# pdfminer.six (MIT) from PyPI -- many producers (Word, LibreOffice, LaTeX, Ghostscript,
# ReportLab, scanners with OCR, Acrobat), several scripts, encrypted and damaged files --
# plus the PDFs that Debian packages installed on this machine put under /usr/share.
# Usage: scripts/fetch-corpus.sh [DIR]   (default ~/.cache/docraft/corpus). Idempotent.
set -euo pipefail
DIR=${1:-${DOCRAFT_CACHE:-$HOME/.cache/docraft}/corpus}
mkdir -p "$DIR/pdf" "$DIR/sdist"
fetch() { # name==version
  local f; f=$(ls "$DIR/sdist" | grep -i "^${1%%==*}" | grep -i "${1##*==}" | head -n1 || true)
  if [ -z "$f" ]; then python3 -m pip download -q --no-deps --no-binary :all: --no-build-isolation "$1" -d "$DIR/sdist" >/dev/null 2>&1 || \
     python3 -m pip download -q --no-deps --no-binary :all: "$1" -d "$DIR/sdist" 2>/dev/null || true; fi
}
fetch pypdf==5.4.0
fetch pdfminer.six==20260107
for t in "$DIR"/sdist/*.tar.gz; do
  [ -e "$t" ] || continue
  tag=$(basename "$t" .tar.gz | cut -d- -f1)
  tar -xzf "$t" -C "$DIR/sdist" --wildcards '*.pdf' 2>/dev/null || true
  find "$DIR/sdist" -path "*${tag}*" -name '*.pdf' -type f | while read -r f; do
    cp -n "$f" "$DIR/pdf/${tag}_$(echo "$f" | sed "s|.*/sdist/[^/]*/||; s|/|_|g")" 2>/dev/null || true
  done
done
find /usr/share -name '*.pdf' -type f 2>/dev/null | while read -r f; do
  cp -n "$f" "$DIR/pdf/debian_$(basename "$(dirname "$f")")_$(basename "$f")" 2>/dev/null || true
done
echo "$(ls "$DIR/pdf" | wc -l) PDFs in $DIR/pdf"
