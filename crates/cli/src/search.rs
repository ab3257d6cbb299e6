//! `docraft index build` and `docraft search`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use docraft_index::{Filter, Retrieval};
use docraft_pipeline::settings::{EmbedBackend, IndexSettings, RetrievalSettings};
use docraft_pipeline::stage::{self, Ctx};
use docraft_pipeline::{Event, Stage};

fn d() -> IndexSettings {
    IndexSettings::default()
}

#[derive(Args)]
pub struct IndexBuildArgs {
    /// The chunks file written by `docraft ingest`.
    chunks: PathBuf,
    /// The index directory to create or update.
    #[arg(short, long, required_unless_present = "store", conflicts_with = "store")]
    output: Option<PathBuf>,
    /// Build into a PostgreSQL + pgvector collection instead of a directory:
    /// `postgres://USER:PASS@HOST:PORT/DB?collection=NAME` (created on first use; chunks no
    /// longer in the input are deleted, new ones embedded and loaded as they come, so an
    /// interrupted build resumes).
    #[arg(long, value_name = "postgres://…?collection=NAME")]
    store: Option<String>,
    /// Embedding model directory.
    /// [default: the backend's model as scripts/setup.sh puts it: $DOCRAFT_MODELS/use-m3 for
    /// use-m3, $DOCRAFT_MODELS/all-minilm-l6-v2 for onnx and candle]
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// Embedding backend: USE-m3 (multilingual, on ONNX Runtime), or a BERT-style model on ONNX
    /// Runtime or on candle (no ONNX Runtime needed; reads model.safetensors).
    #[arg(long, value_enum, default_value_t = d().backend.into())]
    backend: Backend,
    /// Texts per model call (texts are sorted by length first, so batches pad little).
    #[arg(long, default_value_t = d().batch)]
    batch: usize,
    /// Threads for the model and the graph [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Longest input in tokens; longer chunks are truncated.
    #[arg(long, default_value_t = d().max_tokens)]
    max_tokens: usize,
    /// HNSW links per node (M).
    #[arg(long, default_value_t = d().max_connections)]
    max_connections: usize,
    /// HNSW candidate list while inserting (ef_construction).
    #[arg(long, default_value_t = d().ef_construction)]
    ef_construction: usize,
    /// Build a new index even if the output holds one (a directory is replaced at the end; a
    /// pgvector collection is emptied first).
    #[arg(long)]
    rebuild: bool,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

impl IndexBuildArgs {
    fn settings(&self) -> IndexSettings {
        IndexSettings {
            model: self.model.clone(),
            backend: self.backend.into(),
            batch: self.batch,
            threads: self.threads,
            max_tokens: self.max_tokens,
            max_connections: self.max_connections,
            ef_construction: self.ef_construction,
            rebuild: self.rebuild,
            search: RetrievalSettings::default(),
        }
    }
}

#[derive(Args)]
pub struct IndexImportArgs {
    /// The index directory (from `docraft index build -o DIR` or a run's RUN_DIR/index).
    index: PathBuf,
    /// The pgvector collection to copy it into: `postgres://…/DB?collection=NAME`.
    #[arg(long, value_name = "postgres://…?collection=NAME")]
    store: String,
    /// Empty the collection first (else chunks it already holds are kept).
    #[arg(long)]
    replace: bool,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
pub struct SearchArgs {
    /// The index: a directory (from `docraft index build -o DIR`) or a pgvector collection
    /// (`postgres://…/DB?collection=NAME`).
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
    #[command(flatten)]
    search: RetrievalArgs,
}

fn r() -> RetrievalSettings {
    RetrievalSettings::default()
}

/// How an index is searched: the flags `search`, `ask`, `eval` and `raft` share.
#[derive(Args, Debug, Clone)]
pub struct RetrievalArgs {
    /// vector (embeddings), keyword (BM25 over the same chunks) or hybrid (both, fused by
    /// reciprocal rank). A pgvector collection runs BM25 in PostgreSQL.
    #[arg(long, default_value_t = r().retrieval)]
    retrieval: Retrieval,
    /// Weight of the vector list in hybrid retrieval.
    #[arg(long, default_value_t = r().vector_weight)]
    vector_weight: f32,
    /// Weight of the keyword list in hybrid retrieval.
    #[arg(long, default_value_t = r().keyword_weight)]
    keyword_weight: f32,
}

impl RetrievalArgs {
    /// The settings these flags give.
    #[must_use]
    pub fn settings(&self) -> RetrievalSettings {
        RetrievalSettings {
            retrieval: self.retrieval,
            vector_weight: self.vector_weight,
            keyword_weight: self.keyword_weight,
        }
    }
}

/// Which embedder runs the model.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// A BERT-style model (model.onnx; all-MiniLM-L6-v2), on ONNX Runtime through fastembed.
    Onnx,
    /// A BERT-style model (model.safetensors; all-MiniLM-L6-v2), on candle.
    Candle,
    /// USE-m3, multilingual (Spanish, English and 14 more languages), on ONNX Runtime.
    #[value(name = "use-m3")]
    UseM3,
}

impl From<EmbedBackend> for Backend {
    fn from(b: EmbedBackend) -> Self {
        match b {
            EmbedBackend::Onnx => Self::Onnx,
            EmbedBackend::Candle => Self::Candle,
            EmbedBackend::UseM3 => Self::UseM3,
        }
    }
}

impl From<Backend> for EmbedBackend {
    fn from(b: Backend) -> Self {
        match b {
            Backend::Onnx => Self::Onnx,
            Backend::Candle => Self::Candle,
            Backend::UseM3 => Self::UseM3,
        }
    }
}

pub fn build(a: &IndexBuildArgs) -> Result<ExitCode> {
    let settings = a.settings();
    let model_dir = a.model.clone().unwrap_or_else(|| settings.backend.default_model_dir());
    let term = crate::render::Terminal::new(a.quiet);
    let sink = |e: &Event| term.event(e);
    let ctx = Ctx::new(Stage::Index, &sink, crate::render::cancel_on_interrupt());
    let output = a.store.as_ref().map_or_else(|| a.output.clone().unwrap_or_default(), PathBuf::from);
    let o = stage::index::build(&settings, &model_dir, &a.chunks, &output, &ctx)?;
    let shown = match &a.store {
        Some(url) => PathBuf::from(docraft_index::StoreLocation::parse(url)?.to_string()),
        None => output,
    };
    term.summary(Stage::Index, &stage::index::summary(&o, &shown));
    Ok(ExitCode::SUCCESS)
}

pub fn import(a: &IndexImportArgs) -> Result<ExitCode> {
    let term = crate::render::Terminal::new(a.quiet);
    let sink = |e: &Event| term.event(e);
    let ctx = Ctx::new(Stage::Index, &sink, crate::render::cancel_on_interrupt());
    let started = std::time::Instant::now();
    let (added, total) = stage::index::import(&a.index, &a.store, a.replace, &ctx)?;
    let shown = docraft_index::StoreLocation::parse(&a.store)?;
    term.summary(
        Stage::Index,
        &[format!(
            "copied {added} chunks with their vectors from {} to {shown}: it holds {total} ({:.1} s)",
            a.index.display(),
            started.elapsed().as_secs_f64()
        )],
    );
    Ok(ExitCode::SUCCESS)
}

pub fn search(a: &SearchArgs) -> Result<ExitCode> {
    let filter = Filter::parse(&a.filter)?;
    let hits = stage::index::search(stage::index::StoreQuery {
        location: &a.index,
        model: a.model.clone(),
        backend: a.backend.map(Into::into),
        query: &a.query,
        k: a.k,
        filter,
        ef: a.ef,
        exact: a.exact,
        search: a.search.settings(),
    })?;
    let mut out = std::io::stdout().lock();
    for (rank, hit) in hits.iter().enumerate() {
        let c = &hit.chunk;
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
