#!/usr/bin/env python3
"""Real-document retrieval benchmark in English and Spanish: Debian man pages shipped in both.

Usage:
  retrieval_bench.py [render] DIR [--source auto|system|debs]
      Render every man page of apt, dpkg, dpkg-dev, man-db, debianutils and fakeroot that
      exists in Spanish and in English to plain UTF-8 text: DIR/en/NAME.SECTION.txt and
      DIR/es/NAME.SECTION.txt. Pages come from /usr/share/man when the packages are installed
      with their man pages, else from the packages' .deb files (apt-get download + dpkg-deb -x).
  retrieval_bench.py check DIR [--questions-dir bench/retrieval]
      Check that every question's phrase occurs in its source file (whitespace collapsed);
      exit 1 naming each bad line.
  retrieval_bench.py resolve CHUNKS.jsonl QUESTIONS.jsonl OUT.jsonl
      Map each question to the chunk holding its phrase and write {"question", "chunk_id"}
      lines for `docraft eval --questions`.
  retrieval_bench.py table DIR
      Markdown table of DIR/report-LANG-MODE/report.json: recall@1/5/10, MRR, questions.

Python 3 standard library only.
"""

import glob
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

PACKAGES = ["apt", "dpkg", "dpkg-dev", "man-db", "debianutils", "fakeroot"]
SECTIONS = ["1", "5", "8"]
LANGS = ["en", "es"]
MODES = ["vector", "keyword", "hybrid"]
# Debian installs these under alternatives' names (fakeroot, faked, which); the -tcp variants
# of fakeroot's pages are identical to the -sysv ones and are dropped as duplicates.
ALIASES = {"fakeroot-sysv": "fakeroot", "faked-sysv": "faked", "which.debianutils": "which"}
HERE = os.path.dirname(os.path.abspath(__file__))
QUESTIONS_DIR = os.path.join(HERE, "..", "bench", "retrieval")


def die(msg):
    print(f"retrieval_bench: {msg}", file=sys.stderr)
    sys.exit(1)


def collapse(text):
    return " ".join(text.split())


# ---------------------------------------------------------------- render


def package_es_pages(pkg):
    """Spanish man pages dpkg says `pkg` installed, or None when it is not installed."""
    r = subprocess.run(["dpkg-query", "-L", pkg], capture_output=True, text=True)
    if r.returncode != 0:
        return None
    return [
        p
        for p in r.stdout.splitlines()
        if re.fullmatch(r"/usr/share/man/es/man[158]/[^/]+\.gz", p)
    ]


def system_root():
    """/usr/share/man when every package is installed with its Spanish pages present."""
    if not shutil.which("dpkg-query"):
        return None, "no dpkg-query"
    pages = []
    for pkg in PACKAGES:
        listed = package_es_pages(pkg)
        if listed is None:
            return None, f"package {pkg} is not installed"
        present = [p for p in listed if os.path.isfile(p)]
        if not present:
            return None, f"the man pages of {pkg} are not on disk (excluded from the image?)"
        pages += present
    return ("/usr/share/man", sorted(set(pages))), ""


def debs_root(tmp):
    """Download the packages' .deb files and extract them; the man pages of the extraction."""
    debs = os.path.join(tmp, "debs")
    root = os.path.join(tmp, "root")
    os.makedirs(debs)
    os.makedirs(root)
    r = subprocess.run(["apt-get", "download", *PACKAGES], cwd=debs)
    if r.returncode != 0:
        die("apt-get download failed (run `apt-get update` first?)")
    for deb in sorted(glob.glob(os.path.join(debs, "*.deb"))):
        subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
    man = os.path.join(root, "usr", "share", "man")
    pages = sorted(glob.glob(os.path.join(man, "es", "man[158]", "*.gz")))
    return man, pages


def undo_double_utf8(src):
    """The source with its doubly UTF-8 encoded characters ("Ã³" for "ó", as in parts of
    fakeroot's Spanish pages) decoded once more, or None when it has none."""
    try:
        text = src.decode("utf-8")
    except UnicodeDecodeError:
        return None

    def once(m):
        try:
            return m.group(0).encode("latin-1").decode("utf-8")
        except UnicodeDecodeError:
            return m.group(0)

    pattern = "[\u00c2-\u00df][\u0080-\u00bf]|[\u00e0-\u00ef][\u0080-\u00bf]{2}"
    fixed = re.sub(pattern, once, text)
    return None if fixed == text else fixed.encode("utf-8")


def renderer():
    if shutil.which("man") and shutil.which("col"):
        return "man"
    if shutil.which("groff"):
        return "groff"
    die("neither man (man-db) with col (bsdextrautils) nor groff is installed")


def render_page(path, how):
    env = dict(os.environ, MANWIDTH="100", MAN_KEEP_FORMATTING="0", LC_ALL="C.UTF-8")
    env.pop("MANPAGER", None)
    env.pop("PAGER", None)
    with gzip.open(path, "rb") as f:
        src = f.read()
    fixed = undo_double_utf8(src)
    if fixed is not None:
        print(f"  {path}: source is UTF-8 encoded twice (a packaging bug); decoded once more")
        src = fixed
    if how == "man":
        with tempfile.TemporaryDirectory(prefix="retrieval-bench-page-") as tmp:
            page = os.path.join(tmp, os.path.basename(path)[: -len(".gz")])
            with open(page, "wb") as f:
                f.write(src)
            # --nh --nj: no hyphenation (a word split across lines would not match a phrase).
            p1 = subprocess.Popen(
                ["man", "--nh", "--nj", "-l", "-E", "UTF-8", page],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
            )
            out = subprocess.run(["col", "-bx"], stdin=p1.stdout, capture_output=True, env=env).stdout
            p1.wait()
    else:
        pre = subprocess.run(["preconv"], input=src, capture_output=True, env=env).stdout
        out = subprocess.run(
            ["groff", "-man", "-Tutf8", "-P-c", "-rLL=100n", "-rHY=0"],
            input=pre, capture_output=True, env=env,
        ).stdout
    text = out.decode("utf-8", errors="replace")
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)  # SGR escapes, if any
    while "\b" in text:  # overstrikes: x\bx (bold), _\bx (underline)
        new = re.sub(r"[^\b]\x08", "", text)
        if new == text:
            text = text.replace("\b", "")
            break
        text = new
    text = "\n".join(line.rstrip() for line in text.splitlines()).strip("\n") + "\n"
    return text


def render(out_dir, source="auto"):
    tmp = None
    root, es_pages, why = None, None, ""
    if source in ("auto", "system"):
        found, why = system_root()
        if found:
            root, es_pages = found
        elif source == "system":
            die(f"cannot use /usr/share/man: {why}")
    else:
        why = "--source debs"
    if root is None:
        tmp = tempfile.mkdtemp(prefix="retrieval-bench-")
        print(f"source: .deb files of {' '.join(PACKAGES)} (apt-get download; {why})")
        root, es_pages = debs_root(tmp)
    else:
        print(f"source: {root} (installed packages {' '.join(PACKAGES)})")
    how = renderer()
    print(f"renderer: {'man -l + col -bx' if how == 'man' else 'groff -man -Tutf8 -P-c'}")
    for lang in LANGS:
        os.makedirs(os.path.join(out_dir, lang), exist_ok=True)
        for old in glob.glob(os.path.join(out_dir, lang, "*.txt")):
            os.remove(old)
    seen = {}
    done, skipped = [], []
    for es in es_pages:
        if os.path.islink(es):  # alternatives' links; the real page is listed too
            continue
        section_dir = os.path.basename(os.path.dirname(es))  # manN
        base = os.path.basename(es)[: -len(".gz")]  # NAME.N
        name, section = base.rsplit(".", 1)
        if section not in SECTIONS:
            continue
        en = os.path.join(root, section_dir, os.path.basename(es))
        if not os.path.exists(en):
            skipped.append(f"{base} (no English page)")
            continue
        en = os.path.realpath(en)
        with open(es, "rb") as f1, open(en, "rb") as f2:
            key = hashlib.sha256(gzip.decompress(f1.read()) + b"\0" + gzip.decompress(f2.read())).hexdigest()
        if key in seen:
            skipped.append(f"{base} (same as {seen[key]})")
            continue
        out_name = f"{ALIASES.get(name, name)}.{section}"
        seen[key] = out_name
        for lang, page in (("es", es), ("en", en)):
            text = render_page(page, how)
            if len(text.split()) < 20:
                die(f"rendering {page} gave almost nothing")
            with open(os.path.join(out_dir, lang, out_name + ".txt"), "w", encoding="utf-8") as f:
                f.write(text)
        done.append(out_name)
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"pages: {' '.join(sorted(done))}")
    for s in skipped:
        print(f"skipped: {s}")
    for lang in LANGS:
        n = len(glob.glob(os.path.join(out_dir, lang, "*.txt")))
        print(f"{lang}: {n} pages in {os.path.join(out_dir, lang)}")
    if not done:
        die("no page exists in both languages")


# ---------------------------------------------------------------- check


def read_jsonl(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append((i, json.loads(line)))
                except json.JSONDecodeError as e:
                    rows.append((i, e))
    return rows


def check(doc_dir, questions_dir):
    bad = 0
    for lang in LANGS:
        qpath = os.path.join(questions_dir, f"questions-{lang}.jsonl")
        if not os.path.isfile(qpath):
            print(f"{qpath}: no such file")
            bad += 1
            continue
        texts = {}
        pages = set()
        n = 0
        for line, q in read_jsonl(qpath):
            where = f"{qpath}:{line}"
            if isinstance(q, Exception):
                print(f"{where}: not JSON: {q}")
                bad += 1
                continue
            missing = [k for k in ("question", "source", "phrase") if not isinstance(q.get(k), str) or not q[k].strip()]
            if missing:
                print(f"{where}: missing {', '.join(missing)}")
                bad += 1
                continue
            n += 1
            src = os.path.join(doc_dir, lang, q["source"])
            if src not in texts:
                try:
                    with open(src, encoding="utf-8") as f:
                        texts[src] = collapse(f.read())
                except OSError:
                    texts[src] = None
            if texts[src] is None:
                print(f"{where}: no such file {src}")
                bad += 1
                continue
            phrase = collapse(q["phrase"])
            count = texts[src].count(phrase)
            if count == 0:
                print(f"{where}: phrase not in {q['source']}: {phrase!r}")
                bad += 1
                continue
            words = len(phrase.split())
            if not 5 <= words <= 12:
                print(f"{where}: warning: phrase has {words} words (5-12 wanted)")
            pages.add(q["source"])
        print(f"{lang}: {n} questions over {len(pages)} pages")
    if bad:
        print(f"{bad} bad line(s)")
        sys.exit(1)
    print("all phrases found")


# ---------------------------------------------------------------- resolve


def resolve(chunks_path, questions_path, out_path):
    by_source = {}
    for line, c in read_jsonl(chunks_path):
        if isinstance(c, Exception):
            die(f"{chunks_path}:{line}: not JSON")
        name = os.path.basename(c.get("source", ""))
        by_source.setdefault(name, []).append(c)
    for cs in by_source.values():
        cs.sort(key=lambda c: (c.get("chunk_index", 0), c.get("span", [0])[0]))
    collapsed = {}
    out, partial, multiple, failed = [], [], 0, []
    for line, q in read_jsonl(questions_path):
        if isinstance(q, Exception):
            failed.append(f"line {line}: not JSON")
            continue
        chunks = by_source.get(q["source"], [])
        if not chunks:
            failed.append(f"line {line}: no chunk of {q['source']}")
            continue
        texts = [collapsed.setdefault(c["id"], collapse(c["text"])) for c in chunks]
        phrase = collapse(q["phrase"])
        hits = [i for i, t in enumerate(texts) if phrase in t]
        if hits:
            multiple += len(hits) > 1
            chosen = chunks[hits[0]]
        else:
            # The phrase straddles a chunk boundary: the chunk ending with the longest prefix of
            # it (preferring one whose next chunk holds the rest), else the chunk holding the
            # longest prefix of its words anywhere.
            best, best_score, how = None, None, ""
            for i, t in enumerate(texts):
                k = next((k for k in range(min(len(t), len(phrase) - 1), 0, -1) if t.endswith(phrase[:k])), 0)
                if k:
                    rest = phrase[k:].strip()
                    score = (i + 1 < len(texts) and rest in texts[i + 1], k)
                    if best_score is None or score > best_score:
                        best, best_score = i, score
                        how = f"ends with {phrase[:k]!r}" + (", the next chunk has the rest" if score[0] else "")
            if best is None:
                words = phrase.split()
                best_len = 0
                for i, t in enumerate(texts):
                    for n in range(len(words) - 1, best_len, -1):
                        if " ".join(words[:n]) in t:
                            best, best_len = i, n
                            break
                how = f"holds {best_len}/{len(words)} words of it"
            if best is None:
                failed.append(f"line {line}: phrase not in any chunk of {q['source']}: {phrase!r}")
                continue
            chosen = chunks[best]
            partial.append(f"line {line}: {phrase!r} is in no single chunk; chose {chosen['id']}, which {how}")
        out.append({"question": q["question"], "chunk_id": chosen["id"]})
    with open(out_path, "w", encoding="utf-8") as f:
        for o in out:
            f.write(json.dumps(o, ensure_ascii=False) + "\n")
    print(f"{questions_path}: {len(out)} questions resolved into {out_path}"
          f" ({multiple} phrase(s) in more than one chunk: the first is the answer)")
    for p in partial:
        print(f"  across a chunk boundary: {p}")
    for fl in failed:
        print(f"  UNRESOLVED {fl}", file=sys.stderr)
    if failed:
        sys.exit(2)


# ---------------------------------------------------------------- table


def table(doc_dir):
    rows = []
    for lang in LANGS:
        for mode in MODES:
            path = os.path.join(doc_dir, f"report-{lang}-{mode}", "report.json")
            try:
                with open(path, encoding="utf-8") as f:
                    report = json.load(f)
            except (OSError, json.JSONDecodeError):
                rows.append(f"| {lang} | {mode} | – | – | – | – | (no {path}) |")
                continue
            retrieval = report.get("retrieval")
            if not retrieval:
                rows.append(f"| {lang} | {mode} | – | – | – | – | (no retrieval in report) |")
                continue
            r = retrieval[1]  # ["questions file", {questions, recall_at, mrr, ranks}]
            rec = r.get("recall_at", {})

            def pct(k):
                v = rec.get(str(k))
                return "–" if v is None else f"{100 * v:.1f}%"

            rows.append(f"| {lang} | {mode} | {pct(1)} | {pct(5)} | {pct(10)} | {r.get('mrr', 0):.3f} | {r.get('questions', 0)} |")
    print("| language | retrieval | recall@1 | recall@5 | recall@10 | MRR | questions |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


# ---------------------------------------------------------------- main


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return
    cmd = argv[0]
    if cmd == "check":
        args = argv[1:]
        qdir = QUESTIONS_DIR
        if "--questions-dir" in args:
            i = args.index("--questions-dir")
            qdir = args[i + 1]
            del args[i : i + 2]
        if len(args) != 1:
            die("usage: retrieval_bench.py check DIR [--questions-dir DIR]")
        check(args[0], os.path.normpath(qdir))
    elif cmd == "resolve":
        if len(argv) != 4:
            die("usage: retrieval_bench.py resolve CHUNKS.jsonl QUESTIONS.jsonl OUT.jsonl")
        resolve(*argv[1:])
    elif cmd == "table":
        if len(argv) != 2:
            die("usage: retrieval_bench.py table DIR")
        table(argv[1])
    else:
        args = argv[1:] if cmd == "render" else argv
        source = "auto"
        if "--source" in args:
            i = args.index("--source")
            source = args[i + 1]
            del args[i : i + 2]
            if source not in ("auto", "system", "debs"):
                die("--source is auto, system or debs")
        if len(args) != 1:
            die("usage: retrieval_bench.py [render] DIR [--source auto|system|debs]")
        render(args[0], source)


if __name__ == "__main__":
    main(sys.argv[1:])
