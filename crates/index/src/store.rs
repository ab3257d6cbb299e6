//! The vector index: the chunk table, one normalized vector per chunk, and the HNSW graph
//! over those vectors.
//!
//! Rows are numbered in insertion order; the row number is the graph's data id. Removing a
//! chunk marks its row dead (a tombstone): the graph keeps the point, but every search skips
//! it inside the graph walk. [`VectorIndex::compact`] rebuilds the graph from the live rows
//! when tombstones pile up ([`VectorIndex::sync`] does it past [`COMPACT_DEAD_FRACTION`]).

use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::Instant;

use docraft_core::jsonl::{JsonlReader, JsonlWriter};
use docraft_core::{CancelToken, Chunk, ChunkId, Count, DocId, Embedder, NoProgress, Progress, content_hash};
use hnsw_rs::api::AnnT;
use hnsw_rs::hnsw::Hnsw;
use hnsw_rs::hnswio::HnswIo;
use hnsw_rs::prelude::DistDot;
use serde::{Deserialize, Serialize};

use docraft_core::{Filter, Scored, StoreError, VectorStore};

use crate::error::{IndexError, Result, panic_message};

/// Version of the on-disk format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// [`VectorIndex::sync`] compacts when more than this share of the rows are dead.
pub const COMPACT_DEAD_FRACTION: f64 = 0.2;
/// With [`Strategy::Auto`], a search whose filter leaves at most this many chunks scans them
/// exactly instead of walking the graph.
pub const EXACT_SCAN_MAX: usize = 4096;

const FORMAT_NAME: &str = "docraft-index";
const META_FILE: &str = "index.json";
const CHUNKS_FILE: &str = "chunks.jsonl";
const GRAPH_BASENAME: &str = "graph";
const MAX_LAYERS: usize = 16;
/// Texts handed to the embedder per call: small enough for a live progress bar, large enough
/// for the embedder to form batches of similar length.
const EMBED_GROUP: usize = 256;

/// Settings of the HNSW graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HnswParams {
    /// Links per node and layer (`M`; 4..=256, default 16).
    pub max_connections: usize,
    /// Candidate list size while inserting (`ef_construction`; 8..=4096, default 200).
    pub ef_construction: usize,
    /// Default candidate list size while searching (`ef`; 1..=100000, default 100).
    pub ef_search: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        Self { max_connections: 16, ef_construction: 200, ef_search: 100 }
    }
}

fn check_range(setting: &'static str, v: usize, lo: usize, hi: usize) -> Result<usize> {
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(IndexError::Setting { setting, reason: format!("{v} is outside {lo}..={hi}") })
    }
}

impl HnswParams {
    /// Sets `M`, links per node and layer.
    ///
    /// # Errors
    /// [`IndexError::Setting`] outside 4..=256.
    pub fn with_max_connections(mut self, m: usize) -> Result<Self> {
        self.max_connections = check_range("max_connections", m, 4, 256)?;
        Ok(self)
    }

    /// Sets `ef_construction`.
    ///
    /// # Errors
    /// [`IndexError::Setting`] outside 8..=4096.
    pub fn with_ef_construction(mut self, ef: usize) -> Result<Self> {
        self.ef_construction = check_range("ef_construction", ef, 8, 4096)?;
        Ok(self)
    }

    /// Sets the default search `ef`.
    ///
    /// # Errors
    /// [`IndexError::Setting`] outside 1..=100000.
    pub fn with_ef_search(mut self, ef: usize) -> Result<Self> {
        self.ef_search = check_range("ef_search", ef, 1, 100_000)?;
        Ok(self)
    }

    fn validate(self) -> Result<Self> {
        Self::default()
            .with_max_connections(self.max_connections)?
            .with_ef_construction(self.ef_construction)?
            .with_ef_search(self.ef_search)
    }
}

/// How a search finds its hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// The graph, unless the filter leaves few chunks ([`EXACT_SCAN_MAX`], or under 5% of
    /// the live ones): those are scanned exactly, which is then both faster and exact.
    #[default]
    Auto,
    /// Always the HNSW graph (approximate).
    Graph,
    /// Always a scan of every candidate (exact).
    Exact,
}

/// What to search for besides the query vector.
#[derive(Debug, Clone)]
pub struct SearchOptions {
    /// Hits wanted.
    pub k: usize,
    /// Candidate list size of the graph walk (default: the index's `ef_search`); raised to `k`.
    pub ef: Option<usize>,
    /// Which chunks may be returned.
    pub filter: Filter,
    /// Graph, exact or automatic.
    pub strategy: Strategy,
}

impl SearchOptions {
    /// The `k` best hits, no filter, automatic strategy.
    #[must_use]
    pub fn new(k: usize) -> Self {
        Self { k, ef: None, filter: Filter::new(), strategy: Strategy::Auto }
    }

    /// Only chunks passing `filter`.
    #[must_use]
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// Graph candidate list size.
    #[must_use]
    pub fn with_ef(mut self, ef: usize) -> Self {
        self.ef = Some(ef);
        self
    }

    /// Search strategy.
    #[must_use]
    pub fn with_strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }
}

/// One search result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit<'a> {
    /// The chunk.
    pub chunk: &'a Chunk,
    /// Cosine similarity with the query (higher is closer; at most 1).
    pub score: f32,
}

/// How [`VectorIndex::sync`] and [`VectorIndex::add_chunks`] report progress and learn that
/// they should stop.
///
/// ```
/// use docraft_core::{CancelToken, Count};
/// use docraft_index::SyncOptions;
///
/// let show = |c: &Count| eprint!("\rembedded {}/{}", c.done, c.total);
/// let options = SyncOptions::new().with_progress(&show).with_cancel(CancelToken::new());
/// # let _ = options;
/// ```
#[derive(Clone)]
pub struct SyncOptions<'a> {
    pub(crate) progress: &'a dyn Progress<Count>,
    pub(crate) cancel: CancelToken,
}

impl std::fmt::Debug for SyncOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncOptions").field("cancel", &self.cancel).finish_non_exhaustive()
    }
}

impl Default for SyncOptions<'_> {
    fn default() -> Self {
        Self { progress: &NoProgress, cancel: CancelToken::new() }
    }
}

impl<'a> SyncOptions<'a> {
    /// No progress display, never cancelled.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Tells `progress` the texts embedded so far after each embedding batch.
    #[must_use]
    pub fn with_progress(mut self, progress: &'a dyn Progress<Count>) -> Self {
        self.progress = progress;
        self
    }

    /// Stops before the next embedding batch once `cancel` is cancelled.
    #[must_use]
    pub fn with_cancel(mut self, cancel: CancelToken) -> Self {
        self.cancel = cancel;
        self
    }
}

/// What [`VectorIndex::sync`] or [`VectorIndex::add_chunks`] did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SyncReport {
    /// Chunks added to the index.
    pub added: usize,
    /// Chunks no longer in the input, removed (their documents changed or went away).
    pub removed: usize,
    /// Chunks already indexed, left as they were.
    pub unchanged: usize,
    /// Input chunks whose id appeared earlier in the same input, ignored.
    pub duplicates: usize,
    /// Added chunks that went through the embedder.
    pub embedded: usize,
    /// Added chunks whose vector came from the cache (same model, same text).
    pub from_cache: usize,
    /// Seconds spent in the embedder.
    pub embed_seconds: f64,
    /// Whether the graph was rebuilt without the dead rows.
    pub compacted: bool,
}

/// On disk: `index.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    format: String,
    version: u32,
    model_id: String,
    #[serde(default)]
    model_dir: Option<String>,
    dim: usize,
    rows: usize,
    live: usize,
    params: HnswParams,
    graph: Option<String>,
    docraft_version: String,
}

/// On disk: one line of `chunks.jsonl`.
#[derive(Debug, Serialize, Deserialize)]
struct Row {
    row: usize,
    live: bool,
    chunk: Chunk,
}

type Graph = Hnsw<'static, f32, DistDot>;

/// Chunks, their vectors and an HNSW graph over them; saved to and loaded from a directory.
///
/// All vectors come from one embedding model, whose id the index records: searching with
/// another model, or adding its vectors, is an error. Vectors are L2-normalized on the way
/// in, so the graph's dot-product distance is cosine distance and scores are cosine
/// similarities.
pub struct VectorIndex {
    model_id: String,
    model_dir: Option<String>,
    dim: usize,
    params: HnswParams,
    chunks: Vec<Chunk>,
    live: Vec<bool>,
    text_hash: Vec<String>,
    vectors: Vec<f32>,
    by_chunk: HashMap<ChunkId, usize>,
    by_text: HashMap<String, usize>,
    graph: Graph,
}

impl std::fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorIndex")
            .field("model_id", &self.model_id)
            .field("dim", &self.dim)
            .field("live", &self.len())
            .field("rows", &self.chunks.len())
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

fn new_graph(params: &HnswParams, capacity: usize) -> Graph {
    Hnsw::new(params.max_connections, capacity.max(1024), MAX_LAYERS, params.ef_construction, DistDot)
}

/// `v` scaled to unit length, checked for length and finite, non-zero values.
pub(crate) fn normalized(what: impl Fn() -> String, v: &[f32], dim: usize) -> Result<Vec<f32>> {
    if v.len() != dim {
        return Err(IndexError::BadVector {
            what: what(),
            reason: format!("{} dimensions, the index has {dim}", v.len()),
        });
    }
    let norm = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
    if !norm.is_finite() || norm == 0.0 {
        return Err(IndexError::BadVector { what: what(), reason: "NaN, infinite or all-zero values".into() });
    }
    Ok(v.iter().map(|&x| (f64::from(x) / norm) as f32).collect())
}

/// Splits `chunks` into those a store does not hold yet (`held` says which ids it has), in
/// input order, and the set of every id in the input; counts repeated ids and held chunks in
/// `report`.
pub(crate) fn new_chunks(
    chunks: Vec<Chunk>,
    held: impl Fn(&ChunkId) -> bool,
    report: &mut SyncReport,
) -> (Vec<Chunk>, HashSet<ChunkId>) {
    let mut seen = HashSet::new();
    let mut todo = Vec::new();
    for c in chunks {
        if !seen.insert(c.id.clone()) {
            report.duplicates += 1;
        } else if held(&c.id) {
            report.unchanged += 1;
        } else {
            todo.push(c);
        }
    }
    (todo, seen)
}

/// Embeds `texts` in groups of [`EMBED_GROUP`], checking `options`' cancellation before each
/// group and telling its progress after each; `each(first, vectors)` receives every group's
/// vectors with the index of its first text.
///
/// # Errors
/// [`IndexError::Cancelled`] (with the texts embedded so far), embedder errors, an embedder
/// that returns another number of vectors than texts, and `each`'s errors.
pub(crate) fn embed_in_groups(
    embedder: &dyn Embedder,
    texts: &[&str],
    options: &SyncOptions<'_>,
    mut each: impl FnMut(usize, Vec<Vec<f32>>) -> Result<()>,
) -> Result<()> {
    let total = texts.len();
    options.progress.update(&Count::new(0, total));
    for (n, group) in texts.chunks(EMBED_GROUP).enumerate() {
        let first = n * EMBED_GROUP;
        if options.cancel.is_cancelled() {
            return Err(IndexError::Cancelled { embedded: first, total });
        }
        let out = embedder.embed(group)?;
        if out.len() != group.len() {
            return Err(IndexError::BadVector {
                what: "embedder".into(),
                reason: format!("{} vectors for {} texts", out.len(), group.len()),
            });
        }
        each(first, out)?;
        options.progress.update(&Count::new(first + group.len(), total));
    }
    Ok(())
}

/// Dot product with eight independent sums, which the compiler turns into SIMD (a single
/// running sum cannot be reordered, so it stays scalar).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

impl VectorIndex {
    /// An empty index for vectors of the model `model_id` (see [`Embedder::model_id`]); the
    /// dimension is taken from the first vector added.
    ///
    /// # Errors
    /// [`IndexError::Setting`] when a graph setting is out of range.
    pub fn new(model_id: impl Into<String>, params: HnswParams) -> Result<Self> {
        let params = params.validate()?;
        Ok(Self {
            model_id: model_id.into(),
            model_dir: None,
            dim: 0,
            params,
            chunks: Vec::new(),
            live: Vec::new(),
            text_hash: Vec::new(),
            vectors: Vec::new(),
            by_chunk: HashMap::new(),
            by_text: HashMap::new(),
            graph: new_graph(&params, 0),
        })
    }

    /// Records where the model lives, so that a later search can find it without being told.
    #[must_use]
    pub fn with_model_dir(mut self, dir: impl Into<String>) -> Self {
        self.model_dir = Some(dir.into());
        self
    }

    /// The embedding model the vectors come from.
    #[must_use]
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// The model directory recorded at build time, if any.
    #[must_use]
    pub fn model_dir(&self) -> Option<&str> {
        self.model_dir.as_deref()
    }

    /// Vector dimension (0 while empty).
    #[must_use]
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Graph settings.
    #[must_use]
    pub fn params(&self) -> HnswParams {
        self.params
    }

    /// Live chunks.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_chunk.len()
    }

    /// Whether there are no live chunks.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_chunk.is_empty()
    }

    /// Dead rows (tombstones) still in the graph.
    #[must_use]
    pub fn dead(&self) -> usize {
        self.chunks.len() - self.len()
    }

    /// The live chunks, in insertion order.
    pub fn chunks(&self) -> impl Iterator<Item = &Chunk> {
        self.chunks.iter().zip(&self.live).filter(|(_, l)| **l).map(|(c, _)| c)
    }

    /// A live chunk by id.
    #[must_use]
    pub fn get(&self, id: &ChunkId) -> Option<&Chunk> {
        self.by_chunk.get(id).and_then(|&r| self.chunks.get(r))
    }

    /// The (normalized) vector of a live chunk.
    #[must_use]
    pub fn vector(&self, id: &ChunkId) -> Option<&[f32]> {
        self.by_chunk.get(id).and_then(|&r| self.row_vector(r))
    }

    fn row_vector(&self, row: usize) -> Option<&[f32]> {
        self.vectors.get(row * self.dim..(row + 1) * self.dim)
    }

    /// A cached vector for this text (same model, same text), if any row, live or dead, has it.
    #[must_use]
    pub fn cached_vector(&self, text: &str) -> Option<&[f32]> {
        self.by_text.get(&content_hash(text.as_bytes())).and_then(|&r| self.row_vector(r))
    }

    fn check_model(&self, embedder_model: &str) -> Result<()> {
        if self.model_id == embedder_model {
            Ok(())
        } else {
            Err(IndexError::ModelMismatch {
                index_model: self.model_id.clone(),
                embedder_model: embedder_model.to_string(),
            })
        }
    }

    /// Adds chunks with their vectors (from this index's model). A chunk whose id is already
    /// live is left as it is. Returns how many were added.
    ///
    /// # Errors
    /// [`IndexError::BadVector`] (naming the chunk) for a vector of the wrong length or with
    /// NaN/infinite/zero values, before anything is added; [`IndexError::Graph`] if the graph
    /// library fails.
    pub fn insert(&mut self, chunks: Vec<Chunk>, vectors: Vec<Vec<f32>>) -> Result<usize> {
        if chunks.len() != vectors.len() {
            return Err(IndexError::BadVector {
                what: "insert".into(),
                reason: format!("{} chunks but {} vectors", chunks.len(), vectors.len()),
            });
        }
        if self.dim == 0 {
            self.dim = vectors.first().map_or(0, Vec::len);
        }
        let mut seen = HashSet::new();
        let mut fresh = Vec::with_capacity(chunks.len());
        for (chunk, v) in chunks.into_iter().zip(vectors) {
            if self.by_chunk.contains_key(&chunk.id) || !seen.insert(chunk.id.clone()) {
                continue;
            }
            let v = normalized(|| format!("chunk {}", chunk.id.as_str()), &v, self.dim)?;
            fresh.push((chunk, v));
        }
        let first = self.chunks.len();
        for (chunk, v) in fresh {
            let hash = content_hash(chunk.text.as_bytes());
            self.push_row(chunk, hash, true);
            self.vectors.extend_from_slice(&v);
        }
        let added = self.chunks.len() - first;
        self.insert_rows(first..self.chunks.len())?;
        Ok(added)
    }

    /// Appends a row to the chunk table and its lookups (the vector is the caller's).
    fn push_row(&mut self, chunk: Chunk, text_hash: String, live: bool) {
        let row = self.chunks.len();
        self.by_text.insert(text_hash.clone(), row);
        if live {
            self.by_chunk.insert(chunk.id.clone(), row);
        }
        self.text_hash.push(text_hash);
        self.chunks.push(chunk);
        self.live.push(live);
    }

    fn insert_rows(&self, rows: std::ops::Range<usize>) -> Result<()> {
        let dim = self.dim;
        let batch: Vec<(&[f32], usize)> =
            rows.filter_map(|r| self.vectors.get(r * dim..(r + 1) * dim).map(|v| (v, r))).collect();
        if batch.is_empty() {
            return Ok(());
        }
        catch_unwind(AssertUnwindSafe(|| self.graph.parallel_insert_slice(&batch)))
            .map_err(|p| IndexError::Graph { path: "memory".into(), reason: panic_message(p.as_ref()) })
    }

    /// Embeds and adds chunks not yet in the index. Vectors of texts the index already holds
    /// (any row, live or dead: the embedding cache) are reused instead of recomputed.
    /// `options`' progress is told [`Count`]`{done, total}` of the texts to embed after every
    /// embedding batch; its cancellation token is checked before each batch.
    ///
    /// # Errors
    /// [`IndexError::ModelMismatch`] if `embedder` is not the index's model; embedder and
    /// vector errors; [`IndexError::Cancelled`] when the token was cancelled. Nothing is added
    /// when embedding fails or is cancelled.
    pub fn add_chunks(
        &mut self,
        embedder: &dyn Embedder,
        chunks: Vec<Chunk>,
        options: &SyncOptions<'_>,
    ) -> Result<SyncReport> {
        self.check_model(&embedder.model_id())?;
        let (mut report, todo, vectors) = self.embed_new(embedder, chunks, options)?;
        report.added = self.insert(todo, vectors)?;
        Ok(report)
    }

    /// The chunks of `chunks` not in the index yet, with their vectors (from the cache or the
    /// embedder). Changes nothing.
    fn embed_new(
        &self,
        embedder: &dyn Embedder,
        chunks: Vec<Chunk>,
        options: &SyncOptions<'_>,
    ) -> Result<(SyncReport, Vec<Chunk>, Vec<Vec<f32>>)> {
        let mut report = SyncReport::default();
        let (todo, _) = new_chunks(chunks, |id| self.by_chunk.contains_key(id), &mut report);
        let mut vectors: Vec<Option<Vec<f32>>> =
            todo.iter().map(|c| self.cached_vector(&c.text).map(<[f32]>::to_vec)).collect();
        report.from_cache = vectors.iter().filter(|v| v.is_some()).count();
        // Texts to embed, longest first within groups of similar length.
        let mut pending: Vec<usize> = (0..todo.len()).filter(|&i| vectors[i].is_none()).collect();
        pending.sort_by_key(|&i| todo[i].text.len());
        let total = pending.len();
        let started = Instant::now();
        let texts: Vec<&str> = pending.iter().map(|&i| todo[i].text.as_str()).collect();
        embed_in_groups(embedder, &texts, options, |first, out| {
            for (&i, v) in pending[first..].iter().zip(out) {
                vectors[i] = Some(v);
            }
            Ok(())
        })?;
        report.embed_seconds = started.elapsed().as_secs_f64();
        report.embedded = total;
        let vectors: Vec<Vec<f32>> = vectors.into_iter().map(Option::unwrap_or_default).collect();
        Ok((report, todo, vectors))
    }

    /// Makes the index hold exactly `chunks`: chunks no longer present (their document
    /// changed or went away; a chunk id is derived from the document's bytes) are removed,
    /// new ones embedded (through the cache) and added. Compacts when more than
    /// [`COMPACT_DEAD_FRACTION`] of the rows are dead. Everything is embedded before the
    /// index changes, so a failed or cancelled sync leaves the index as it was.
    ///
    /// # Errors
    /// As [`Self::add_chunks`].
    pub fn sync(
        &mut self,
        embedder: &dyn Embedder,
        chunks: Vec<Chunk>,
        options: &SyncOptions<'_>,
    ) -> Result<SyncReport> {
        self.check_model(&embedder.model_id())?;
        let wanted: HashSet<&ChunkId> = chunks.iter().map(|c| &c.id).collect();
        let gone: HashSet<ChunkId> = self.by_chunk.keys().filter(|id| !wanted.contains(id)).cloned().collect();
        let (mut report, todo, vectors) = self.embed_new(embedder, chunks, options)?;
        report.removed = self.remove_where(|c| gone.contains(&c.id));
        report.added = self.insert(todo, vectors)?;
        if self.dead() as f64 > COMPACT_DEAD_FRACTION * self.chunks.len() as f64 {
            self.compact()?;
            report.compacted = true;
        }
        Ok(report)
    }

    /// Removes (tombstones) the live chunks for which `pred` is true; returns how many.
    pub fn remove_where(&mut self, pred: impl Fn(&Chunk) -> bool) -> usize {
        let rows: Vec<usize> =
            self.by_chunk.values().copied().filter(|&r| self.chunks.get(r).is_some_and(&pred)).collect();
        for &r in &rows {
            if let (Some(c), Some(l)) = (self.chunks.get(r), self.live.get_mut(r)) {
                *l = false;
                self.by_chunk.remove(&c.id);
            }
        }
        rows.len()
    }

    /// Removes every chunk of these documents; returns how many chunks.
    pub fn remove_docs(&mut self, docs: &[DocId]) -> usize {
        let docs: HashSet<&DocId> = docs.iter().collect();
        self.remove_where(|c| docs.contains(&c.doc_id))
    }

    /// Rebuilds the graph from the live rows only, dropping the dead ones (and their cached
    /// vectors).
    ///
    /// # Errors
    /// [`IndexError::Graph`] if the graph library fails.
    pub fn compact(&mut self) -> Result<()> {
        let dim = self.dim;
        let mut fresh = Self::new(self.model_id.clone(), self.params)?;
        fresh.model_dir = self.model_dir.clone();
        fresh.dim = dim;
        fresh.graph = new_graph(&self.params, self.len());
        for (row, chunk) in self.chunks.iter().enumerate() {
            if !self.live.get(row).copied().unwrap_or(false) {
                continue;
            }
            fresh.push_row(chunk.clone(), self.text_hash.get(row).cloned().unwrap_or_default(), true);
            fresh.vectors.extend_from_slice(self.row_vector(row).unwrap_or_default());
        }
        fresh.insert_rows(0..fresh.chunks.len())?;
        *self = fresh;
        Ok(())
    }

    /// Rows a search may return: live and passing the filter. `None` when that is every row.
    fn candidates(&self, filter: &Filter) -> Option<Vec<bool>> {
        if filter.is_empty() && self.dead() == 0 {
            return None;
        }
        Some(self.chunks.iter().zip(&self.live).map(|(c, &l)| l && filter.matches(c)).collect())
    }

    fn query_vector(&self, query: &[f32]) -> Result<Vec<f32>> {
        if self.is_empty() {
            return Err(IndexError::Empty);
        }
        normalized(|| "query".to_string(), query, self.dim)
    }

    /// The `k` nearest live chunks to `query` that pass the filter, best first. The filter is
    /// applied inside the graph walk (hnsw_rs `search_filter`), not by over-fetching.
    ///
    /// # Errors
    /// [`IndexError::Empty`] on an index without live chunks, [`IndexError::BadVector`] for a
    /// query of the wrong dimension or with NaN values.
    pub fn search(&self, query: &[f32], opts: &SearchOptions) -> Result<Vec<Hit<'_>>> {
        let q = self.query_vector(query)?;
        let mask = self.candidates(&opts.filter);
        let allowed = mask.as_ref().map_or(self.len(), |m| m.iter().filter(|&&b| b).count());
        let exact = match opts.strategy {
            Strategy::Exact => true,
            Strategy::Graph => false,
            Strategy::Auto => allowed <= EXACT_SCAN_MAX || allowed * 20 < self.len(),
        };
        if exact {
            return Ok(self.scan(&q, opts.k, mask.as_deref()));
        }
        let ef = opts.ef.unwrap_or(self.params.ef_search).max(opts.k);
        let found = catch_unwind(AssertUnwindSafe(|| match &mask {
            Some(m) => {
                let pass = |id: &usize| m.get(*id).copied().unwrap_or(false);
                self.graph.search_filter(&q, opts.k, ef, Some(&pass))
            }
            None => self.graph.search(&q, opts.k, ef),
        }))
        .map_err(|p| IndexError::Graph { path: "memory".into(), reason: panic_message(p.as_ref()) })?;
        let mut hits: Vec<(usize, f32)> = found.iter().map(|n| (n.d_id, 1.0 - n.distance)).collect();
        hits.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| self.tie(a.0, b.0)));
        Ok(hits.into_iter().filter_map(|(r, score)| self.chunks.get(r).map(|chunk| Hit { chunk, score })).collect())
    }

    /// Exact search: every live chunk passing the filter is scored. For evaluation, small
    /// corpora and reproducible results.
    ///
    /// # Errors
    /// As [`Self::search`].
    pub fn search_exact(&self, query: &[f32], opts: &SearchOptions) -> Result<Vec<Hit<'_>>> {
        let q = self.query_vector(query)?;
        Ok(self.scan(&q, opts.k, self.candidates(&opts.filter).as_deref()))
    }

    fn scan(&self, q: &[f32], k: usize, mask: Option<&[bool]>) -> Vec<Hit<'_>> {
        let mut scored: Vec<(usize, f32)> = (0..self.chunks.len())
            .filter(|&r| mask.is_none_or(|m| m.get(r).copied().unwrap_or(false)))
            .filter_map(|r| self.row_vector(r).map(|v| (r, dot(q, v))))
            .collect();
        let by_score = |a: &(usize, f32), b: &(usize, f32)| b.1.total_cmp(&a.1).then_with(|| self.tie(a.0, b.0));
        if k < scored.len() {
            scored.select_nth_unstable_by(k, by_score);
            scored.truncate(k);
        }
        scored.sort_by(by_score);
        scored.into_iter().filter_map(|(r, score)| self.chunks.get(r).map(|chunk| Hit { chunk, score })).collect()
    }

    /// Equal scores are ordered by chunk id (as the pgvector store orders them), so both stores
    /// rank identical texts the same way.
    fn tie(&self, a: usize, b: usize) -> std::cmp::Ordering {
        match (self.chunks.get(a), self.chunks.get(b)) {
            (Some(x), Some(y)) => x.id.as_str().cmp(y.id.as_str()),
            _ => a.cmp(&b),
        }
    }

    /// Embeds `query` with `embedder` (which must be the index's model) and searches.
    ///
    /// # Errors
    /// [`IndexError::ModelMismatch`], embedder errors, and those of [`Self::search`].
    pub fn search_text(&self, embedder: &dyn Embedder, query: &str, opts: &SearchOptions) -> Result<Vec<Hit<'_>>> {
        self.check_model(&embedder.model_id())?;
        if self.is_empty() {
            return Err(IndexError::Empty);
        }
        let v = embedder.embed(&[query])?.into_iter().next().unwrap_or_default();
        self.search(&v, opts)
    }

    /// Mean recall@k of graph search against exact search over `queries`, at search width
    /// `ef`: the share of the exact top-k that the graph also returns.
    ///
    /// # Errors
    /// As [`Self::search`].
    pub fn recall_at_k(&self, queries: &[Vec<f32>], k: usize, ef: usize) -> Result<f64> {
        let opts = SearchOptions::new(k).with_ef(ef).with_strategy(Strategy::Graph);
        let mut sum = 0.0;
        for q in queries {
            let truth: HashSet<&ChunkId> = self.search_exact(q, &opts)?.iter().map(|h| &h.chunk.id).collect();
            let got = self.search(q, &opts)?;
            let found = got.iter().filter(|h| truth.contains(&h.chunk.id)).count();
            sum += if truth.is_empty() { 1.0 } else { found as f64 / truth.len() as f64 };
        }
        Ok(if queries.is_empty() { 1.0 } else { sum / queries.len() as f64 })
    }

    /// Writes the index to `dir`: `index.json` (format version, model, dimension, graph
    /// settings), `chunks.jsonl` (the chunk table) and the graph's `graph.hnsw.*` files.
    /// Everything goes to a temporary sibling directory first, which then replaces `dir`:
    /// a failed save leaves any previous index in `dir` as it was. A `dir` that holds anything
    /// but an index is never replaced.
    ///
    /// # Errors
    /// [`IndexError::Corrupt`] when `dir` is a file or a non-empty directory without an index,
    /// [`IndexError::Io`] naming the path that could not be written, [`IndexError::Graph`].
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        let name = dir.file_name().map_or_else(|| "index".into(), |n| n.to_string_lossy().into_owned());
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let foreign = dir.is_file()
            || (dir.is_dir()
                && !dir.join(META_FILE).is_file()
                && std::fs::read_dir(dir).map_err(|e| IndexError::io(dir, e))?.next().is_some());
        if foreign {
            return Err(IndexError::corrupt(
                dir,
                "exists and is not a docraft index: it is not replaced; choose another path",
            ));
        }
        std::fs::create_dir_all(parent).map_err(|e| IndexError::io(parent, e))?;
        let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| IndexError::io(&tmp, e))?;
        }
        std::fs::create_dir(&tmp).map_err(|e| IndexError::io(&tmp, e))?;
        let written = self.write_files(&tmp);
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let old = parent.join(format!(".{name}.old-{}", std::process::id()));
        let had_old = dir.exists();
        if had_old {
            std::fs::rename(dir, &old).map_err(|e| IndexError::io(dir, e))?;
        }
        if let Err(e) = std::fs::rename(&tmp, dir) {
            if had_old {
                let _ = std::fs::rename(&old, dir);
            }
            return Err(IndexError::io(dir, e));
        }
        if had_old {
            std::fs::remove_dir_all(&old).map_err(|e| IndexError::io(&old, e))?;
        }
        Ok(())
    }

    fn write_files(&self, dir: &Path) -> Result<()> {
        let mut w = JsonlWriter::<Row>::create(dir.join(CHUNKS_FILE))?;
        for (row, (chunk, &live)) in self.chunks.iter().zip(&self.live).enumerate() {
            w.write(&Row { row, live, chunk: chunk.clone() })?;
        }
        w.sync()?;
        let graph = if self.chunks.is_empty() {
            None
        } else {
            let dumped = catch_unwind(AssertUnwindSafe(|| self.graph.file_dump(dir, GRAPH_BASENAME)))
                .map_err(|p| panic_message(p.as_ref()))
                .and_then(|r| r.map_err(|e| format!("{e:#}")));
            Some(dumped.map_err(|reason| IndexError::Graph { path: dir.to_path_buf(), reason })?)
        };
        let meta = Meta {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            model_id: self.model_id.clone(),
            model_dir: self.model_dir.clone(),
            dim: self.dim,
            rows: self.chunks.len(),
            live: self.len(),
            params: self.params,
            graph,
            docraft_version: env!("CARGO_PKG_VERSION").into(),
        };
        let path = dir.join(META_FILE);
        let text = serde_json::to_string_pretty(&meta).map_err(|e| IndexError::corrupt(&path, e.to_string()))?;
        std::fs::write(&path, text).map_err(|e| IndexError::io(&path, e))
    }

    /// Loads an index saved by [`Self::save`].
    ///
    /// # Errors
    /// [`IndexError::Corrupt`] for a directory that is not an index or whose files disagree,
    /// [`IndexError::Version`] for another format version, [`IndexError::Io`].
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let meta_path = dir.join(META_FILE);
        if !meta_path.is_file() {
            let what = if dir.is_dir() { "no index.json in it" } else { "no such directory" };
            return Err(IndexError::corrupt(dir, format!("{what} (build one with `docraft index build`)")));
        }
        let text = std::fs::read_to_string(&meta_path).map_err(|e| IndexError::io(&meta_path, e))?;
        let meta: Meta = serde_json::from_str(&text).map_err(|e| IndexError::corrupt(&meta_path, e.to_string()))?;
        if meta.format != FORMAT_NAME {
            return Err(IndexError::corrupt(&meta_path, format!("format {:?}, expected {FORMAT_NAME:?}", meta.format)));
        }
        if meta.version != FORMAT_VERSION {
            return Err(IndexError::Version { path: dir.to_path_buf(), found: meta.version, expected: FORMAT_VERSION });
        }
        let params = meta.params.validate()?;
        let mut index = Self::new(meta.model_id, params)?;
        index.model_dir = meta.model_dir;
        index.dim = meta.dim;
        let chunks_path = dir.join(CHUNKS_FILE);
        let mut reader = JsonlReader::<Row>::open(&chunks_path)?;
        for row in reader.by_ref() {
            let row = row?;
            if row.row != index.chunks.len() {
                return Err(IndexError::corrupt(&chunks_path, format!("row {} out of order", row.row)));
            }
            let hash = content_hash(row.chunk.text.as_bytes());
            index.push_row(row.chunk, hash, row.live);
        }
        if reader.torn().is_some() || index.chunks.len() != meta.rows || index.len() != meta.live {
            return Err(IndexError::corrupt(
                &chunks_path,
                format!(
                    "{} rows ({} live) but index.json says {} ({})",
                    index.chunks.len(),
                    index.len(),
                    meta.rows,
                    meta.live
                ),
            ));
        }
        if let Some(base) = meta.graph.as_deref() {
            index.graph = load_graph(dir, base, meta.rows)?;
            index.vectors =
                graph_vectors(&index.graph, meta.rows, meta.dim).map_err(|r| IndexError::corrupt(dir, r))?;
        } else if meta.rows > 0 {
            return Err(IndexError::corrupt(&meta_path, "rows but no graph"));
        }
        Ok(index)
    }
}

/// Reloads the graph files. hnsw_rs ties a reloaded graph's lifetime to its loader, because it
/// can map the data file into memory; we read the data into memory (no mmap), so the graph
/// owns its points and only the loader's few bytes (a path and options) are kept alive, for
/// the life of the program.
fn load_graph(dir: &Path, base: &str, rows: usize) -> Result<Graph> {
    for ext in ["hnsw.graph", "hnsw.data"] {
        let f = dir.join(format!("{base}.{ext}"));
        if !f.is_file() {
            return Err(IndexError::corrupt(f, "missing"));
        }
    }
    let loader: &'static HnswIo = Box::leak(Box::new(HnswIo::new(dir, base)));
    let graph = catch_unwind(AssertUnwindSafe(|| loader.load_hnsw_with_dist::<f32, DistDot>(DistDot)))
        .map_err(|p| panic_message(p.as_ref()))
        .and_then(|r| r.map_err(|e| format!("{e:#}")))
        .map_err(|reason| IndexError::Graph { path: dir.to_path_buf(), reason })?;
    if graph.get_nb_point() != rows {
        return Err(IndexError::corrupt(
            dir,
            format!("graph has {} points, chunk table {rows} rows", graph.get_nb_point()),
        ));
    }
    Ok(graph)
}

/// The vectors of the graph's points, by row (data id).
fn graph_vectors(graph: &Graph, rows: usize, dim: usize) -> Result<Vec<f32>, String> {
    let mut vectors = vec![0.0f32; rows * dim];
    let mut seen = vec![false; rows];
    for point in graph.get_point_indexation() {
        let row = point.get_origin_id();
        let v = point.get_v();
        let slot =
            vectors.get_mut(row * dim..(row + 1) * dim).ok_or_else(|| format!("point id {row} >= {rows} rows"))?;
        if v.len() != dim || seen.get(row).copied().unwrap_or(true) {
            return Err(format!("point {row}: {} dimensions (expected {dim}) or seen twice", v.len()));
        }
        slot.copy_from_slice(v);
        if let Some(s) = seen.get_mut(row) {
            *s = true;
        }
    }
    if seen.iter().any(|s| !s) {
        return Err("some rows have no point in the graph".into());
    }
    Ok(vectors)
}

/// The embedded store: the same operations as the inherent methods, errors named by the
/// index's model (an in-memory index has no path of its own).
impl VectorStore for VectorIndex {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn add(&mut self, chunks: Vec<Chunk>, vectors: Vec<Vec<f32>>) -> Result<usize, StoreError> {
        self.insert(chunks, vectors).map_err(|e| StoreError::new("HNSW index", e))
    }

    fn delete_documents(&mut self, docs: &[DocId]) -> Result<usize, StoreError> {
        Ok(self.remove_docs(docs))
    }

    fn search(&self, query: &[f32], k: usize, filter: &Filter) -> Result<Vec<Scored>, StoreError> {
        let opts = SearchOptions::new(k).with_filter(filter.clone());
        let hits = VectorIndex::search(self, query, &opts).map_err(|e| StoreError::new("HNSW index", e))?;
        Ok(hits.into_iter().map(|h| Scored { chunk: h.chunk.clone(), score: h.score }).collect())
    }

    fn count(&self) -> Result<usize, StoreError> {
        Ok(self.len())
    }
}
