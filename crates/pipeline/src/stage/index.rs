//! Index: embed the chunks and build (or update) the vector index; open an index with the
//! embedder it was built with.

use std::path::{Path, PathBuf};

use docraft_core::jsonl::JsonlReader;
use docraft_core::{Chunk, Count, Embedder, Retriever, Scored, VectorStore};
use docraft_index::{
    CandleEmbedder, EmbedOptions, Filter, HnswParams, HybridRetriever, IndexRetriever, KeywordIndex, KeywordSearch,
    OnnxEmbedder, PgVectorStore, Retrieval, SearchOptions, StoreLocation, Strategy, SyncOptions, SyncReport,
    UseM3Embedder, VectorIndex,
};

use super::Ctx;
use crate::error::{PipelineError, Result};
use crate::event::Stage;
use crate::settings::{EmbedBackend, IndexSettings, RetrievalSettings};

/// Loads the embedding model in `dir` with `backend`.
///
/// # Errors
/// The embedding error (missing files, no ONNX Runtime, a backend compiled out).
pub fn embedder(backend: EmbedBackend, dir: &Path, options: EmbedOptions) -> Result<Box<dyn Embedder>> {
    Ok(match backend {
        EmbedBackend::UseM3 => Box::new(UseM3Embedder::from_dir(dir, options)?),
        EmbedBackend::Onnx => Box::new(OnnxEmbedder::from_dir(dir, options)?),
        EmbedBackend::Candle => Box::new(CandleEmbedder::from_dir(dir, options)?),
    })
}

/// The backend that minted `model_id` (the index records the id of the model that built it).
#[must_use]
pub fn backend_of(model_id: &str) -> EmbedBackend {
    if model_id.starts_with(UseM3Embedder::ID_PREFIX) {
        EmbedBackend::UseM3
    } else if model_id.starts_with(CandleEmbedder::ID_PREFIX) {
        EmbedBackend::Candle
    } else {
        EmbedBackend::Onnx
    }
}

/// The backend that runs the model in `dir`: USE-m3 for the directory `scripts/setup.sh`
/// converts it into (its `config.json` names the model), else ONNX Runtime for a BERT-style
/// model.
#[must_use]
pub fn backend_for_dir(dir: &Path) -> EmbedBackend {
    if UseM3Embedder::holds_model(dir) { EmbedBackend::UseM3 } else { EmbedBackend::Onnx }
}

/// Whether the model directory an index recorded is one `backend` runs: it exists and holds
/// USE-m3 exactly when the backend is USE-m3. (Searching an index with another backend than
/// its own then loads that backend's model, and the index refuses it by its model id.)
fn runs(backend: EmbedBackend, dir: &Path) -> bool {
    dir.is_dir() && (backend == EmbedBackend::UseM3) == UseM3Embedder::holds_model(dir)
}

/// The embedder whose vectors a store holds: `backend` (else the one that minted `model_id`)
/// with `model` (else the directory the store recorded, when that backend runs it, else the
/// backend's own model). A mismatch with the store is then refused by its model id.
///
/// # Errors
/// The embedding error when the model cannot be loaded.
pub fn store_embedder(
    model_id: &str,
    recorded_dir: Option<&str>,
    model: Option<PathBuf>,
    backend: Option<EmbedBackend>,
) -> Result<Box<dyn Embedder>> {
    let backend = backend.unwrap_or_else(|| backend_of(model_id));
    let model_dir = model
        .or_else(|| recorded_dir.map(PathBuf::from).filter(|d| runs(backend, d)))
        .unwrap_or_else(|| backend.default_model_dir());
    embedder(backend, &model_dir, EmbedOptions::default())
}

/// Loads an index and the embedder it was built with (or the model directory and backend
/// named).
///
/// # Errors
/// The index error when the directory holds no index; the embedding error when its model
/// cannot be loaded.
pub fn open(
    dir: &Path,
    model: Option<PathBuf>,
    backend: Option<EmbedBackend>,
) -> Result<(VectorIndex, Box<dyn Embedder>)> {
    let index = VectorIndex::load(dir)?;
    let embedder = store_embedder(index.model_id(), index.model_dir(), model, backend)?;
    Ok((index, embedder))
}

/// A store opened for searching: the store, the embedder it was built with, and for an index
/// directory asked to search by keywords too, a BM25 index of its chunks.
pub struct OpenedStore {
    /// The store.
    pub store: Box<dyn VectorStore>,
    /// The embedder of its vectors.
    pub embedder: Box<dyn Embedder>,
    /// The keyword side of a store searched by `keyword` or `hybrid`: an in-memory index of a
    /// directory's chunks, or the collection's own BM25 tables in PostgreSQL.
    keyword: Option<Box<dyn KeywordSearch>>,
}

impl OpenedStore {
    /// The retrieval that runs when `search` is asked for: the one asked, or `vector` where
    /// the store was opened for vector search only.
    #[must_use]
    pub fn retrieval(&self, search: &RetrievalSettings) -> Retrieval {
        if self.keyword.is_some() { search.retrieval } else { Retrieval::Vector }
    }

    /// A retriever over the store that returns only chunks passing `filter`, searching as
    /// [`OpenedStore::retrieval`] says.
    ///
    /// # Errors
    /// Invalid fusion weights.
    pub fn retriever(&self, filter: Filter, search: &RetrievalSettings) -> Result<Box<dyn Retriever + '_>> {
        let vector = IndexRetriever::new(self.store.as_ref(), self.embedder.as_ref()).with_filter(filter.clone());
        let Some(keyword) = &self.keyword else { return Ok(Box::new(vector)) };
        let hybrid = HybridRetriever::new(vector, keyword.as_ref())
            .with_mode(search.retrieval)
            .with_filter(filter)
            .try_with_weights(search.vector_weight, search.keyword_weight)?;
        Ok(Box::new(hybrid))
    }
}

/// Opens a store, a directory or a `postgres://…?collection=NAME` URL, with the embedder it
/// was built with (or the model directory and backend named), ready to be searched as
/// `search` says (a directory searched by keywords too gets a keyword index of its chunks).
///
/// # Errors
/// The index error when there is no such index or collection; the embedding error when its
/// model cannot be loaded.
pub fn open_store(
    location: &Path,
    model: Option<PathBuf>,
    backend: Option<EmbedBackend>,
    search: &RetrievalSettings,
) -> Result<OpenedStore> {
    let text = location.to_string_lossy();
    if !docraft_index::is_store_url(&text) {
        let (index, embedder) = open(location, model, backend)?;
        let keyword = (search.retrieval != Retrieval::Vector)
            .then(|| Box::new(KeywordIndex::from_chunks(index.chunks().cloned())) as Box<dyn KeywordSearch>);
        return Ok(OpenedStore { store: Box::new(index), embedder, keyword });
    }
    let store = PgVectorStore::connect(&text)?;
    let embedder = store_embedder(store.model_id(), store.model_dir(), model, backend)?;
    let keyword = (search.retrieval != Retrieval::Vector).then(|| Box::new(store.clone()) as Box<dyn KeywordSearch>);
    Ok(OpenedStore { store: Box::new(store), embedder, keyword })
}

/// One search of a store: where, with which embedding model, what, and how.
#[derive(Debug, Clone)]
pub struct StoreQuery<'a> {
    /// A directory or a `postgres://…?collection=NAME` URL.
    pub location: &'a Path,
    /// The embedding model directory (unset: the one the store was built with).
    pub model: Option<PathBuf>,
    /// The embedding backend (unset: the one the store was built with).
    pub backend: Option<EmbedBackend>,
    /// The text searched for.
    pub query: &'a str,
    /// Chunks wanted (at least 1).
    pub k: usize,
    /// Only chunks passing it.
    pub filter: Filter,
    /// The graph's candidate list (vector retrieval).
    pub ef: Option<usize>,
    /// Score every chunk instead of walking the graph (vector retrieval).
    pub exact: bool,
    /// Vector, keyword or hybrid.
    pub search: RetrievalSettings,
}

/// The chunks of a store nearest `q.query`, best first: by vector with `ef` and `exact` as
/// asked, or (searched by keyword or hybrid) through the store's keyword search too.
///
/// # Errors
/// Opening the store or its model, a bad setting, the search.
pub fn search(q: StoreQuery<'_>) -> Result<Vec<Scored>> {
    let k = q.k.max(1);
    if q.search.retrieval != Retrieval::Vector {
        // Keywords too: the vector side walks the graph with its default candidate list.
        let opened = open_store(q.location, q.model, q.backend, &q.search)?;
        return Ok(opened.retriever(q.filter, &q.search)?.search(q.query, k)?);
    }
    let url = q.location.to_string_lossy();
    if docraft_index::is_store_url(&url) {
        let mut store = PgVectorStore::connect(&url)?;
        if let Some(ef) = q.ef {
            store = store.with_ef_search(ef);
        }
        let embedder = store_embedder(store.model_id(), store.model_dir(), q.model, q.backend)?;
        return Ok(store.search_text(embedder.as_ref(), q.query, k, &q.filter, q.exact)?);
    }
    let (index, embedder) = open(q.location, q.model, q.backend)?;
    let mut opts = SearchOptions::new(k).with_filter(q.filter);
    if let Some(ef) = q.ef {
        opts = opts.with_ef(ef);
    }
    if q.exact {
        opts = opts.with_strategy(Strategy::Exact);
    }
    let hits = index.search_text(embedder.as_ref(), q.query, &opts)?;
    Ok(hits.iter().map(|h| Scored { chunk: h.chunk.clone(), score: h.score }).collect())
}

/// Reads chunks, reporting (not failing on) malformed lines and a torn last line.
///
/// # Errors
/// When the file cannot be read.
pub fn read_chunks(path: &Path, ctx: &Ctx) -> Result<Vec<Chunk>> {
    Ok(read_counted(path, ctx)?.0)
}

/// The chunks and the number of malformed lines skipped.
fn read_counted(path: &Path, ctx: &Ctx) -> Result<(Vec<Chunk>, usize)> {
    let mut reader = JsonlReader::<Chunk>::open(path)?;
    let mut chunks = Vec::new();
    let mut bad = 0usize;
    for record in reader.by_ref() {
        match record {
            Ok(c) => chunks.push(c),
            Err(e) => {
                bad += 1;
                ctx.warn(format!("skipped: {e}"));
            }
        }
    }
    if let Some(t) = reader.torn() {
        ctx.warn(format!(
            "skipped: {}:{}: torn last line ({} bytes, an interrupted write); re-run ingest to complete it",
            t.path.display(),
            t.line,
            t.bytes
        ));
    }
    Ok((chunks, bad))
}

/// What an index build did.
#[derive(Debug, Clone)]
pub struct IndexOutcome {
    /// Added, removed, unchanged, embedded.
    pub report: SyncReport,
    /// Chunks in the index now.
    pub chunks: usize,
    /// How the build began (`updating ...`, `building a new index ...`).
    pub how: String,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Embeds the chunks of `chunks` into the index at `output`, updating it when it was built
/// with the same model and graph settings. The new index replaces the old one only when it
/// is complete.
///
/// # Errors
/// Reading the chunks, loading the model, embedding or saving.
///
/// `output` may also be a `postgres://…/db?collection=NAME` URL: the chunks then go to that
/// pgvector collection (created on first use, then synced: see `build_store`).
pub fn build(s: &IndexSettings, model_dir: &Path, chunks: &Path, output: &Path, ctx: &Ctx) -> Result<IndexOutcome> {
    let started = std::time::Instant::now();
    let (chunks, embedder, params) = build_inputs(s, model_dir, chunks, ctx)?;
    if let StoreLocation::Postgres { .. } = StoreLocation::parse(&output.to_string_lossy())? {
        return build_store(s, model_dir, chunks, embedder.as_ref(), params, &output.to_string_lossy(), ctx, started);
    }
    let model_id = embedder.model_id();
    let fresh = || -> Result<VectorIndex> {
        Ok(VectorIndex::new(model_id.clone(), params)?.with_model_dir(model_dir.display().to_string()))
    };
    let (mut index, how) = match VectorIndex::load(output) {
        Ok(old) if !s.rebuild && old.model_id() == model_id && old.params() == params => {
            let how = format!("updating {} ({} chunks)", output.display(), old.len());
            (old.with_model_dir(model_dir.display().to_string()), how)
        }
        Ok(old) => {
            let why = if s.rebuild { "rebuild asked" } else { "the model or graph settings changed" };
            (fresh()?, format!("{why}: building a new index (the one of {} chunks is replaced when done)", old.len()))
        }
        Err(e) if output.exists() => (fresh()?, format!("note: {e}; building a new index")),
        Err(_) => (fresh()?, format!("building {}", output.display())),
    };
    let report = super::with_threads(s.threads, ctx.stage(), || {
        let progress = |c: &Count| ctx.progress(c.done as u64, c.total as u64, "chunks embedded", String::new());
        let options = SyncOptions::new().with_progress(&progress).with_cancel(ctx.cancel().clone());
        match index.sync(embedder.as_ref(), chunks, &options) {
            Err(docraft_index::IndexError::Cancelled { .. }) => Err(PipelineError::Cancelled { stage: Stage::Index }),
            other => Ok(other?),
        }
    })?;
    if ctx.is_cancelled() {
        return Err(PipelineError::Cancelled { stage: Stage::Index });
    }
    index.save(output)?;
    Ok(IndexOutcome { report, chunks: index.len(), how, seconds: started.elapsed().as_secs_f64() })
}

/// The chunks of `path` (failing when there are none), the embedder and the graph settings.
fn build_inputs(
    s: &IndexSettings,
    model_dir: &Path,
    path: &Path,
    ctx: &Ctx,
) -> Result<(Vec<Chunk>, Box<dyn Embedder>, HnswParams)> {
    let (chunks, bad) = read_counted(path, ctx)?;
    if chunks.is_empty() {
        let bad = if bad > 0 { format!(" ({bad} malformed lines)") } else { String::new() };
        return Err(PipelineError::Needs {
            stage: ctx.stage(),
            reason: format!("{}: no chunks to index{bad}", path.display()),
        });
    }
    let options = EmbedOptions { batch_size: s.batch.max(1), threads: s.threads, max_tokens: s.max_tokens.max(1) };
    let embedder = embedder(s.backend, model_dir, options)?;
    let params =
        HnswParams::default().with_max_connections(s.max_connections)?.with_ef_construction(s.ef_construction)?;
    Ok((chunks, embedder, params))
}

/// Builds into a pgvector collection: created for the embedder's model when missing
/// (`--rebuild` starts it afresh), then synced: chunks no longer in the input deleted, new ones
/// embedded and loaded a few thousand at a time, so an interrupted build resumes where it
/// stopped.
#[allow(clippy::too_many_arguments)]
fn build_store(
    s: &IndexSettings,
    model_dir: &Path,
    chunks: Vec<Chunk>,
    embedder: &dyn Embedder,
    params: HnswParams,
    url: &str,
    ctx: &Ctx,
    started: std::time::Instant,
) -> Result<IndexOutcome> {
    let shown = StoreLocation::parse(url)?.to_string();
    let mut store =
        PgVectorStore::create(url, &embedder.model_id(), Some(&model_dir.display().to_string()), params, s.rebuild)?;
    let held = store.len()?;
    let how = if s.rebuild {
        format!("rebuild asked: building {shown} afresh")
    } else if held > 0 {
        format!("updating {shown} ({held} chunks)")
    } else {
        format!("building {shown}")
    };
    let report = super::with_threads(s.threads, ctx.stage(), || {
        let progress = |c: &Count| ctx.progress(c.done as u64, c.total as u64, "chunks embedded", String::new());
        let options = SyncOptions::new().with_progress(&progress).with_cancel(ctx.cancel().clone());
        match store.sync(embedder, chunks, &options) {
            Err(docraft_index::IndexError::Cancelled { .. }) => Err(PipelineError::Cancelled { stage: Stage::Index }),
            other => Ok(other?),
        }
    })?;
    Ok(IndexOutcome { report, chunks: store.len()?, how, seconds: started.elapsed().as_secs_f64() })
}

/// Copies an index directory's chunks and vectors into a pgvector collection (no embedding:
/// the vectors move as they are, so the collection answers as the directory did). The
/// collection is created for the index's model; `replace` empties an existing one first.
/// Returns the chunks copied (new to the collection) and the collection's size.
///
/// # Errors
/// Reading the index; [`docraft_index::IndexError::ModelMismatch`] for a collection of another
/// model; PostgreSQL errors.
pub fn import(dir: &Path, url: &str, replace: bool, ctx: &Ctx) -> Result<(usize, usize)> {
    let index = VectorIndex::load(dir)?;
    let mut store = PgVectorStore::create(url, index.model_id(), index.model_dir(), index.params(), replace)?;
    let total = index.len();
    let mut added = 0;
    let mut done = 0;
    let all: Vec<&Chunk> = index.chunks().collect();
    for batch in all.chunks(5000) {
        if ctx.is_cancelled() {
            return Err(PipelineError::Cancelled { stage: ctx.stage() });
        }
        let (chunks, vectors): (Vec<Chunk>, Vec<Vec<f32>>) =
            batch.iter().filter_map(|c| index.vector(&c.id).map(|v| ((*c).clone(), v.to_vec()))).unzip();
        added += store.insert(chunks, vectors)?;
        done += batch.len();
        ctx.progress(done as u64, total as u64, "chunks copied", String::new());
    }
    Ok((added, store.len()?))
}

/// The summary lines of an index build.
#[must_use]
pub fn summary(o: &IndexOutcome, output: &Path) -> Vec<String> {
    let r = &o.report;
    let rate = if r.embed_seconds > 0.0 { r.embedded as f64 / r.embed_seconds } else { 0.0 };
    vec![
        o.how.clone(),
        format!(
            "indexed {} chunks: {} added, {} removed, {} unchanged, {} duplicate ids ignored{}",
            o.chunks,
            r.added,
            r.removed,
            r.unchanged,
            r.duplicates,
            if r.compacted { "; graph compacted" } else { "" }
        ),
        format!(
            "embedded {} chunks in {:.2} s ({rate:.1} chunks/s), {} from cache; {:.2} s in all -> {}",
            r.embedded,
            r.embed_seconds,
            r.from_cache,
            o.seconds,
            output.display()
        ),
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_backend_follows_the_model_id_and_the_directory() {
        assert_eq!(backend_of("use-m3:use-m3:75fbef2232986c48-81b406aa"), EmbedBackend::UseM3);
        assert_eq!(backend_of("candle:all-minilm-l6-v2:53aa51172d142c89"), EmbedBackend::Candle);
        assert_eq!(backend_of("onnx:all-minilm-l6-v2:6fd5d72fe4589f18"), EmbedBackend::Onnx);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(backend_for_dir(dir.path()), EmbedBackend::Onnx, "no config.json");
        std::fs::write(dir.path().join("config.json"), r#"{"model_type": "bert", "hidden_size": 384}"#).unwrap();
        assert_eq!(backend_for_dir(dir.path()), EmbedBackend::Onnx, "a BERT config");
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"model": "universal-sentence-encoder-multilingual-v3", "dims": 512}"#,
        )
        .unwrap();
        assert_eq!(backend_for_dir(dir.path()), EmbedBackend::UseM3);
    }
}
