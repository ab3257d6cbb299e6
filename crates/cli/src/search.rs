//! `docraft index build` and `docraft search`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use docraft_core::Chunk;
use docraft_core::Embedder;
use docraft_core::jsonl::JsonlReader;
use docraft_index::{
    CandleEmbedder, EmbedOptions, Filter, HnswParams, OnnxEmbedder, SearchOptions, Strategy, VectorIndex,
    default_model_dir,
};

#[derive(Args)]
pub struct IndexBuildArgs {
    /// The chunks file written by `docraft ingest`.
    chunks: PathBuf,
    /// The index directory to create or update.
    #[arg(short, long)]
    output: PathBuf,
    /// Embedding model directory (model.onnx + tokenizer files).
    /// [default: $DOCRAFT_MODELS/all-minilm-l6-v2, as scripts/setup.sh fetches it]
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// Embedding backend: ONNX Runtime, or candle (no ONNX Runtime needed; reads model.safetensors).
    #[arg(long, value_enum, default_value_t = Backend::Onnx)]
    backend: Backend,
    /// Texts per model call (texts are sorted by length first, so batches pad little).
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Threads for the model and the graph [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Longest input in tokens; longer chunks are truncated.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// HNSW links per node (M).
    #[arg(long, default_value_t = 16)]
    max_connections: usize,
    /// HNSW candidate list while inserting (ef_construction).
    #[arg(long, default_value_t = 200)]
    ef_construction: usize,
    /// Build a new index even if the output holds one (the old one is replaced at the end).
    #[arg(long)]
    rebuild: bool,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
pub struct SearchArgs {
    /// The index directory (from `docraft index build`).
    index: PathBuf,
    /// The question or text to search for.
    query: String,
    /// Hits to return.
    #[arg(short, default_value_t = 5)]
    k: usize,
    /// Only chunks matching KEY=VALUE: doc=ID, source=GLOB, page=N or A-B, or a metadata
    /// field such as language=es; repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    filter: Vec<String>,
    /// One JSON object per line: rank, chunk_id, doc_id, source, pages, headings, score, text.
    #[arg(long)]
    json: bool,
    /// Embedding model directory [default: the one the index was built with].
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// Embedding backend [default: the one the index was built with].
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    /// HNSW candidate list size (larger: slower, closer to exact).
    #[arg(long)]
    ef: Option<usize>,
    /// Score every chunk instead of walking the graph (exact; fine for small indexes).
    #[arg(long)]
    exact: bool,
}

/// Which embedder runs the model.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// ONNX Runtime (model.onnx), through fastembed.
    Onnx,
    /// candle (model.safetensors).
    Candle,
}

fn embedder(backend: Backend, dir: &Path, options: EmbedOptions) -> Result<Box<dyn Embedder>> {
    Ok(match backend {
        Backend::Onnx => Box::new(OnnxEmbedder::from_dir(dir, options)?),
        Backend::Candle => Box::new(CandleEmbedder::from_dir(dir, options)?),
    })
}

/// Reads chunks, reporting (not failing on) malformed lines and a torn last line.
fn read_chunks(path: &Path) -> Result<Vec<Chunk>> {
    let mut reader = JsonlReader::<Chunk>::open(path)?;
    let mut chunks = Vec::new();
    let mut bad = 0usize;
    for record in reader.by_ref() {
        match record {
            Ok(c) => chunks.push(c),
            Err(e) => {
                bad += 1;
                eprintln!("skipped: {e}");
            }
        }
    }
    if let Some(t) = reader.torn() {
        eprintln!(
            "skipped: {}:{}: torn last line ({} bytes, an interrupted write); re-run ingest to complete it",
            t.path.display(),
            t.line,
            t.bytes
        );
    }
    if chunks.is_empty() {
        bail!(
            "{}: no chunks to index{}",
            path.display(),
            if bad > 0 { format!(" ({bad} malformed lines)") } else { String::new() }
        );
    }
    Ok(chunks)
}

pub fn build(a: &IndexBuildArgs) -> Result<ExitCode> {
    if let Some(n) = a.threads {
        rayon::ThreadPoolBuilder::new().num_threads(n.max(1)).build_global().context("--threads")?;
    }
    let chunks = read_chunks(&a.chunks)?;
    let model_dir = a.model.clone().unwrap_or_else(default_model_dir);
    let options = EmbedOptions { batch_size: a.batch.max(1), threads: a.threads, max_tokens: a.max_tokens.max(1) };
    let embedder = embedder(a.backend, &model_dir, options)?;
    let params =
        HnswParams::default().with_max_connections(a.max_connections)?.with_ef_construction(a.ef_construction)?;
    let model_id = embedder.model_id();
    let fresh = || -> Result<VectorIndex> {
        Ok(VectorIndex::new(model_id.clone(), params)?.with_model_dir(model_dir.display().to_string()))
    };
    let mut index = match VectorIndex::load(&a.output) {
        Ok(old) if !a.rebuild && old.model_id() == model_id && old.params() == params => {
            eprintln!("updating {} ({} chunks)", a.output.display(), old.len());
            old.with_model_dir(model_dir.display().to_string())
        }
        Ok(old) => {
            let why = if a.rebuild { "--rebuild" } else { "the model or graph settings changed" };
            eprintln!("{why}: building a new index (the one of {} chunks is replaced when done)", old.len());
            fresh()?
        }
        Err(e) if a.output.exists() => {
            eprintln!("note: {e}; building a new index");
            fresh()?
        }
        Err(_) => fresh()?,
    };
    let bar = crate::progress_bar(a.quiet, 0, "chunks embedded");
    let started = std::time::Instant::now();
    let show = |c: &docraft_core::Count| {
        bar.set_length(c.total as u64);
        bar.set_position(c.done as u64);
    };
    let report = index.sync(embedder.as_ref(), chunks, &docraft_index::SyncOptions::new().with_progress(&show))?;
    bar.finish_and_clear();
    index.save(&a.output)?;
    let rate = if report.embed_seconds > 0.0 { report.embedded as f64 / report.embed_seconds } else { 0.0 };
    eprintln!(
        "indexed {} chunks: {} added, {} removed, {} unchanged, {} duplicate ids ignored{}",
        index.len(),
        report.added,
        report.removed,
        report.unchanged,
        report.duplicates,
        if report.compacted { "; graph compacted" } else { "" }
    );
    eprintln!(
        "embedded {} chunks in {:.2} s ({rate:.1} chunks/s), {} from cache; {:.2} s in all -> {}",
        report.embedded,
        report.embed_seconds,
        report.from_cache,
        started.elapsed().as_secs_f64(),
        a.output.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Loads an index and the embedder it was built with (or the one named).
pub fn open_index(
    dir: &Path,
    model: Option<PathBuf>,
    backend: Option<Backend>,
) -> Result<(VectorIndex, Box<dyn Embedder>)> {
    let index = VectorIndex::load(dir).with_context(|| format!("loading the index {}", dir.display()))?;
    let model_dir =
        model.or_else(|| index.model_dir().map(PathBuf::from).filter(|d| d.is_dir())).unwrap_or_else(default_model_dir);
    let backend =
        backend.unwrap_or(if index.model_id().starts_with("candle:") { Backend::Candle } else { Backend::Onnx });
    let embedder = embedder(backend, &model_dir, EmbedOptions::default())?;
    Ok((index, embedder))
}

pub fn search(a: &SearchArgs) -> Result<ExitCode> {
    let (index, embedder) = open_index(&a.index, a.model.clone(), a.backend)?;
    let filter = Filter::parse(&a.filter)?;
    let mut opts = SearchOptions::new(a.k.max(1)).with_filter(filter);
    if let Some(ef) = a.ef {
        opts = opts.with_ef(ef);
    }
    if a.exact {
        opts = opts.with_strategy(Strategy::Exact);
    }
    let hits = index.search_text(embedder.as_ref(), &a.query, &opts)?;
    let mut out = std::io::stdout().lock();
    for (rank, hit) in hits.iter().enumerate() {
        let c = hit.chunk;
        if a.json {
            let line = serde_json::json!({
                "rank": rank + 1,
                "chunk_id": c.id,
                "doc_id": c.doc_id,
                "source": c.source,
                "pages": c.pages,
                "headings": c.headings,
                "score": hit.score,
                "text": c.text,
            });
            writeln!(out, "{line}")?;
        } else {
            let pages = match c.pages {
                Some(p) if p.first == p.last => format!(" p. {}", p.first),
                Some(p) => format!(" pp. {}-{}", p.first, p.last),
                None => String::new(),
            };
            let heading = c.headings.last().map(|h| format!(" > {h}")).unwrap_or_default();
            let text: String = c.text.split_whitespace().collect::<Vec<_>>().join(" ");
            let preview: String = text.chars().take(240).collect();
            let more = if preview.len() < text.len() { "..." } else { "" };
            writeln!(out, "{}. {:.3}  {}{pages}{heading}\n    {preview}{more}", rank + 1, hit.score, c.source)?;
        }
    }
    out.flush()?;
    if hits.is_empty() {
        eprintln!("no chunk matches the filter");
    }
    Ok(ExitCode::SUCCESS)
}
