#!/usr/bin/env python3
"""Helpers of scripts/raft_quality.sh (measured RAFT quality on the Debian man pages).

Usage:
  raft_quality.py sample CHUNKS.jsonl OUT.jsonl [--per-doc N] [--docs D] [--seed S]
      Keep N chunks of each of D documents (seeded choices; a page's last chunk, mostly
      AUTHOR / SEE ALSO, only when it is the page's only one), in file order, so that the pages
      asked about are spread over the alphabet and the work stays bounded.
  raft_quality.py merge DIR [--langs "en es"] [--seed S]
      DIR/raft-LANG/raft.train.chat.jsonl -> DIR/train.chat.jsonl (seeded shuffle);
      DIR/raft-LANG/raft.test.eval.jsonl -> DIR/test.eval.jsonl (languages interleaved, so that
      `eval --limit N` asks both).
  raft_quality.py report DIR [--langs "en es"] [--seed S]
      Markdown: counts per language (chunks, questions, accepted, rejected by reason), stage
      times, the eval table, 10 random accepted and 10 random rejected records.

Python 3 standard library only.
"""

import argparse
import collections
import hashlib
import json
import os
import random
import sys


def read_jsonl(path):
    if not os.path.exists(path):
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out


def write_jsonl(path, rows):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def one_line(text, n):
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def short_source(path):
    """LANG/NAME.txt: the source path without the work directory."""
    return "/".join(str(path).split("/")[-2:])


def cell(text, n):
    return one_line(text, n).replace("|", "\\|")


# ---------------------------------------------------------------- sample


def cmd_sample(a):
    chunks = read_jsonl(a.chunks)
    by_doc = collections.OrderedDict()
    for i, c in enumerate(chunks):
        by_doc.setdefault(c["source"], []).append(i)
    # Documents by source file name (the same in both languages), seeded.
    docs = sorted(by_doc, key=lambda d: hashlib.sha256(f"{a.seed}:{os.path.basename(d)}".encode()).hexdigest())
    if a.docs:
        docs = docs[: a.docs]
    keep = set()
    for doc in docs:
        idx = by_doc[doc]
        # The last chunk of a page is mostly AUTHOR / SEE ALSO / COPYRIGHT: left out when the
        # page has others.
        if len(idx) > 1:
            idx = idx[:-1]
        seed = int(hashlib.sha256(f"{a.seed}:{os.path.basename(doc)}".encode()).hexdigest()[:16], 16)
        rng = random.Random(seed)
        keep.update(idx if len(idx) <= a.per_doc else rng.sample(idx, a.per_doc))
    kept = [c for i, c in enumerate(chunks) if i in keep]
    write_jsonl(a.out, kept)
    print(f"sample: {len(kept)} of {len(chunks)} chunks, {len(docs)} of {len(by_doc)} documents -> {a.out}")


# ---------------------------------------------------------------- merge


def cmd_merge(a):
    langs = a.langs.split()
    train = []
    tests = []
    for lang in langs:
        train += read_jsonl(os.path.join(a.dir, f"raft-{lang}", "raft.train.chat.jsonl"))
        tests.append(read_jsonl(os.path.join(a.dir, f"raft-{lang}", "raft.test.eval.jsonl")))
    random.Random(a.seed).shuffle(train)
    test = []
    for i in range(max((len(t) for t in tests), default=0)):
        for t in tests:
            if i < len(t):
                test.append(t[i])
    write_jsonl(os.path.join(a.dir, "train.chat.jsonl"), train)
    write_jsonl(os.path.join(a.dir, "test.eval.jsonl"), test)


# ---------------------------------------------------------------- report


def times(dir_):
    out = {}
    path = os.path.join(dir_, "times.tsv")
    if os.path.exists(path):
        for line in open(path, encoding="utf-8"):
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 2:
                out[parts[0]] = float(parts[1])
    return out


def fmt_secs(s):
    if s is None:
        return "-"
    m, sec = divmod(int(round(s)), 60)
    return f"{s:.0f} s ({m} min {sec:02d} s)" if m else f"{s:.0f} s"


def split_counts(dir_, lang):
    out = {}
    for split in ("train", "valid", "test"):
        p = os.path.join(dir_, f"raft-{lang}", f"raft.{split}.chat.jsonl")
        if os.path.exists(p):
            out[split] = len(read_jsonl(p))
    return out


def reason_of(r):
    reason = r.get("reason")
    if isinstance(reason, dict):
        return ", ".join(f"{k}" for k in reason)
    return str(reason)


def counts_section(dir_, langs, t):
    lines = ["## Counts", ""]
    lines.append(
        "| language | man pages | chunks ingested | chunks asked about | questions generated | questions kept | "
        "questions rejected | chains of thought rejected | records (train / test) |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    q_reasons = collections.Counter()
    c_reasons = collections.Counter()
    skipped = collections.Counter()
    for lang in langs:
        chunks = read_jsonl(os.path.join(dir_, f"{lang}.chunks.jsonl"))
        sample = read_jsonl(os.path.join(dir_, f"{lang}.sample.jsonl"))
        pages = len({c["doc_id"] for c in chunks})
        base = os.path.join(dir_, f"raft-{lang}", "raft")
        qs = read_jsonl(base + ".questions.jsonl")
        qrej = read_jsonl(base + ".questions.rejected.jsonl")
        crej = read_jsonl(base + ".rejected.jsonl")
        recs = read_jsonl(base + ".jsonl")
        # Chunks skipped before asking (tables of contents, licence text...) are in the
        # questions' rejected file too; count them apart from rejected questions.
        # Per chunk: questions accepted and rejected by reason (an unparseable output counts
        # as one); chunks skipped before asking (tables of contents, licence text...) too.
        progress = read_jsonl(base + ".questions.progress.jsonl")
        generated = sum(p.get("accepted", 0) + sum(p.get("rejected", {}).values()) for p in progress)
        for p in progress:
            for reason, n in p.get("rejected", {}).items():
                (skipped if reason in ("toc", "boilerplate", "navigation") else q_reasons)[f"{lang}: {reason}"] += n
        n_skipped = sum(n for k, n in skipped.items() if k.startswith(f"{lang}:"))
        generated -= n_skipped
        qrej_n = generated - len(qs)
        for r in crej:
            c_reasons[f"{lang}: {reason_of(r)}"] += 1
        sc = split_counts(dir_, lang)
        lines.append(
            f"| {lang} | {pages} | {len(chunks)} | {len(sample)} | {generated} | {len(qs)} | "
            f"{qrej_n} | {len(crej)} | {len(recs)} ({sc.get('train', 0)} / {sc.get('test', 0)}) |"
        )
    lines.append("")
    for title, c in (
        ("Chunks skipped before asking (no question generated)", skipped),
        ("Questions rejected, by reason", q_reasons),
        ("Chains of thought rejected (after every attempt), by reason", c_reasons),
    ):
        if c:
            lines.append(f"{title}: " + "; ".join(f"{k} {n}" for k, n in sorted(c.items())) + ".")
            lines.append("")
    return lines


def times_section(t):
    lines = ["## Wall times", "", "| stage | wall time |", "|---|---:|"]
    for k, v in t.items():
        lines.append(f"| {k} | {fmt_secs(v)} |")
    lines.append(f"| **all stages** | **{fmt_secs(sum(t.values()))}** |")
    lines.append("")
    return lines


def lang_of_question(dir_):
    out = {}
    for r in read_jsonl(os.path.join(dir_, "test.eval.jsonl")):
        out[r["question"]] = r.get("meta", {}).get("lang", "?")
    return out


def qa_rows(dir_, name):
    """The QA scores of eval-NAME: report.json's, else the answer files an interrupted eval
    left (qa.base.jsonl, qa.adapter.jsonl), the adapter's from eval-NAME-lora (the adapter
    merged into the base with `docraft merge`, evaluated as a base) when it is missing."""
    p = os.path.join(dir_, f"eval-{name}", "report.json")
    if os.path.exists(p):
        return json.load(open(p, encoding="utf-8")).get("qa", [])
    out = []
    base = read_jsonl(os.path.join(dir_, f"eval-{name}", "qa.base.jsonl"))
    if base:
        out.append({"rows": base})
    adapter = read_jsonl(os.path.join(dir_, f"eval-{name}", "qa.adapter.jsonl"))
    merged = os.path.join(dir_, f"eval-{name}-lora", "report.json")
    if not adapter and os.path.exists(merged):
        qa = json.load(open(merged, encoding="utf-8")).get("qa", [])
        adapter = qa[0]["rows"] if qa else []
    if adapter and out:
        out.append({"rows": adapter})
    return out


def score_cells(rows):
    n = len(rows)
    if not n:
        return ["-"] * 5
    em = sum(r["exact"] for r in rows) / n
    f1 = sum(r["f1"] for r in rows) / n
    cg = sum(r["contains"] for r in rows) / n
    q = sum(r["quotes"] for r in rows)
    qf = sum(r["quotes_found"] for r in rows)
    qv = f"{qf / q:.1%} of {q}" if q else "no quotes"
    return [str(n), f"{em:.3f}", f"{f1:.3f}", f"{cg:.3f}", qv]


def eval_section(dir_):
    lq = lang_of_question(dir_)
    models = []
    for name, labels in (
        ("smollm2", ["SmolLM2-135M base + RAG", "SmolLM2-135M + RAFT-LoRA"]),
        ("base2", ["Qwen2.5-Coder-0.5B base + RAG", "Qwen2.5-Coder-0.5B + RAFT-LoRA"]),
        ("generator", ["Qwen2.5-Coder-1.5B (the generator, ceiling) + RAG"]),
    ):
        for label, scores in zip(labels, qa_rows(dir_, name)):
            models.append((label, scores))
    lines = [
        "## Open-book QA on the held-out test split",
        "",
        "Each test record: the question with its oracle chunk among 3 distractors (hard: nearest "
        "neighbours in the language's index), greedy decoding; scores of the final answer against "
        "the generator's gold final answer.",
        "",
        "| model | lang | questions | exact match | token F1 | contains gold | quotes found in context |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for label, s in models:
        rows = s.get("rows", [])
        lines.append(f"| {label} | all | " + " | ".join(score_cells(rows)) + " |")
        for lang in sorted({lq.get(r["question"], "?") for r in rows}):
            sub = [r for r in rows if lq.get(r["question"], "?") == lang]
            lines.append(f"| | {lang} | " + " | ".join(score_cells(sub)) + " |")
        errs = s.get("errors", 0)
        if errs:
            lines.append(f"| | ({errs} generation errors) | | | | | |")
    lines.append("")
    return lines, models


def excerpt_cot(cot, n=220):
    text = cot
    for tag in ("<ANSWER>:", "<ANSWER>"):
        if tag in text:
            text = text[: text.rfind(tag)]
    return one_line(text, n)


def samples_section(dir_, langs, seed):
    rng = random.Random(seed)
    accepted = []
    rejected = []
    for lang in langs:
        base = os.path.join(dir_, f"raft-{lang}", "raft")
        accepted += read_jsonl(base + ".jsonl")
        for r in read_jsonl(base + ".questions.rejected.jsonl"):
            r["_stage"] = "question"
            rejected.append(r)
        for r in read_jsonl(base + ".rejected.jsonl"):
            r["_stage"] = "chain of thought"
            rejected.append(r)
    lines = [f"## 10 random accepted records (seed {seed})", ""]
    for i, r in enumerate(rng.sample(accepted, min(10, len(accepted))), 1):
        m = r.get("meta", {})
        lines.append(
            f"{i}. **Q ({m.get('lang', '?')}, {m.get('split', '?')}):** {one_line(r['question'], 300)}  \n"
            f"   **Final answer:** {one_line(r['final_answer'], 300)}  \n"
            f"   **Chain of thought (excerpt):** {excerpt_cot(r['cot_answer'])}  \n"
            f"   **Source:** `{short_source(m.get('source', '?'))}` (chunk {m.get('chunk_id', '?')[:8]}), "
            f"attempts {m.get('attempts', '?')}"
        )
    lines += ["", f"## 10 random rejected records (seed {seed})", ""]
    for i, r in enumerate(rng.sample(rejected, min(10, len(rejected))), 1):
        q = r.get("question") or "(none: the chunk was skipped or the output did not parse)"
        detail = r.get("detail") or ""
        extra = ""
        if r["_stage"] == "question" and r.get("answer"):
            extra = f"  \n   **Its answer:** {one_line(r['answer'], 200)}"
        if r["_stage"] == "chain of thought" and r.get("raw"):
            extra = f"  \n   **Last output (excerpt):** {one_line(r['raw'], 220)}"
        lines.append(
            f"{i}. **{r['_stage']} rejected — {reason_of(r)}**"
            + (f" ({one_line(detail, 160)})" if detail else "")
            + f"  \n   **Q:** {one_line(q, 300)}{extra}  \n"
            f"   **Source:** `{short_source(r.get('source', '?'))}`"
        )
    lines.append("")
    return lines


def cmd_report(a):
    langs = a.langs.split()
    t = times(a.dir)
    out = ["# RAFT quality: measured", ""]
    s = os.path.join(a.dir, "settings.txt")
    if os.path.exists(s):
        out += ["```", open(s, encoding="utf-8").read().rstrip(), "```", ""]
    ev, _ = eval_section(a.dir)
    out += ev
    out += counts_section(a.dir, langs, t)
    out += times_section(t)
    out += samples_section(a.dir, langs, a.seed)
    print("\n".join(out))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample")
    s.add_argument("chunks")
    s.add_argument("out")
    s.add_argument("--per-doc", type=int, default=1)
    s.add_argument("--docs", type=int, default=0, help="only this many documents (seeded; 0: all)")
    s.add_argument("--seed", type=int, default=1)
    m = sub.add_parser("merge")
    m.add_argument("dir")
    m.add_argument("--langs", default="en es")
    m.add_argument("--seed", type=int, default=1)
    r = sub.add_parser("report")
    r.add_argument("dir")
    r.add_argument("--langs", default="en es")
    r.add_argument("--seed", type=int, default=7)
    a = p.parse_args()
    {"sample": cmd_sample, "merge": cmd_merge, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
