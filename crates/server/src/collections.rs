//! Document collections: `/v1/collections`. An organization uploads PDF, Markdown and text
//! files into a collection; a worker ingests and indexes each one in the background (status
//! `queued`, `ingesting`, `indexed` or `failed` with the reason); search and chat read the
//! collection's vector index.
//!
//! Files live at `DATA/orgs/<org-id>/collections/<collection-id>/docs/<document-id>` (the
//! original), `<document-id>.json` (the extracted text with its pages, for citation
//! previews) and `index/` (the collection's HNSW index). Nothing is ever named after what a
//! caller sent. On PostgreSQL the vectors live in the same database instead, with pgvector
//! (one table per collection, keyed by organization and collection id: [`CollectionIndex`]),
//! and the collection has no `index/`.
//!
//! Uploads are hostile input: a per-file limit (413) and a per-organization quota (429), the
//! type sniffed from the bytes (archives and other binaries are refused, never unpacked),
//! and each document parsed under a time limit, so one crafted PDF cannot hold a worker.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::multipart::Field;
use axum::extract::{FromRequest, Multipart, Path as UrlPath, Request, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use docraft_core::{Chunk, ChunkId, DocId, Document, Embedder, RetrieveError, Retriever, Scored, VectorStore};
use docraft_index::{
    Filter, HybridRetriever, IndexRetriever, KeywordIndex, KeywordSearch, PgVectorStore, PgVectors, Retrieval,
    SyncOptions, VectorIndex,
};
use docraft_ingest::{Chunker, Loader};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::db::{Db, now};
use crate::ids::{is_id, new_id};
use crate::server::AppState;
use crate::{Result, ServerError};

/// The prefix of collection ids.
pub const COLLECTION_PREFIX: &str = "col-";
/// The prefix of document ids.
pub const DOCUMENT_PREFIX: &str = "doc-";
/// Most files one upload request may carry.
pub const MAX_FILES_PER_UPLOAD: usize = 100;
/// Most results a search returns.
pub const MAX_K: usize = 100;
/// Longest collection name.
pub const MAX_NAME_CHARS: usize = 128;
const DOC_COLUMNS: &str = "id, collection_id, organization_id, filename, content_hash, bytes, media_type, metadata, \
    status, error, pages, chunks, doc_key, created_at, updated_at";

/// A collection of documents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Collection {
    /// `col-…`
    pub id: String,
    /// Always `collection`.
    pub object: String,
    /// Unique within the organization.
    pub name: String,
    /// The caller's key-value pairs.
    pub metadata: Option<Value>,
    /// Unix seconds.
    pub created_at: i64,
    /// Documents by status.
    pub documents: BTreeMap<String, i64>,
}

/// A document of a collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DocumentObject {
    /// `doc-…`
    pub id: String,
    /// Always `collection.document`.
    pub object: String,
    /// The collection.
    pub collection_id: String,
    /// The name given at upload.
    pub filename: String,
    /// Size in bytes.
    pub bytes: i64,
    /// `application/pdf`, `text/markdown` or `text/plain` (sniffed from the bytes).
    pub media_type: String,
    /// sha256 of the bytes.
    pub content_hash: String,
    /// The caller's metadata (chat and search filter on it).
    pub metadata: Option<Value>,
    /// `queued`, `ingesting`, `indexed` or `failed`.
    pub status: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Pages (PDF).
    pub pages: Option<i64>,
    /// Chunks in the index.
    pub chunks: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
}

/// One row of the documents table.
#[derive(Debug, Clone)]
struct DocRow {
    obj: DocumentObject,
    organization_id: String,
    /// The content id its chunks carry (`doc_id`), once indexed.
    doc_key: Option<String>,
}

impl DocRow {
    fn from_row(row: &AnyRow) -> Result<Self> {
        let d = || ServerError::db("decode document");
        let metadata: Option<String> = row.try_get("metadata").map_err(d())?;
        Ok(Self {
            obj: DocumentObject {
                id: row.try_get("id").map_err(d())?,
                object: "collection.document".into(),
                collection_id: row.try_get("collection_id").map_err(d())?,
                filename: row.try_get("filename").map_err(d())?,
                bytes: row.try_get("bytes").map_err(d())?,
                media_type: row.try_get("media_type").map_err(d())?,
                content_hash: row.try_get("content_hash").map_err(d())?,
                metadata: metadata.and_then(|m| serde_json::from_str(&m).ok()),
                status: row.try_get("status").map_err(d())?,
                error: row.try_get("error").map_err(d())?,
                pages: row.try_get("pages").map_err(d())?,
                chunks: row.try_get("chunks").map_err(d())?,
                created_at: row.try_get("created_at").map_err(d())?,
            },
            organization_id: row.try_get("organization_id").map_err(d())?,
            doc_key: row.try_get("doc_key").map_err(d())?,
        })
    }
}

/// A list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct List<T> {
    /// Always `list`.
    pub object: String,
    /// The items.
    pub data: Vec<T>,
}

/// The body of `POST /v1/collections`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCollection {
    /// Unique within the organization.
    pub name: String,
    /// Key-value pairs.
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
}

/// The body of a search.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// The question or keywords.
    pub query: String,
    /// Results (default 5, at most 100).
    #[serde(default)]
    pub k: Option<usize>,
    /// Metadata conditions: `{"key": "value"}` or `{"key": ["a", "b"]}` (any of them); keys of
    /// one filter must all hold. `document_id` and `filename` are metadata of every chunk.
    #[serde(default)]
    pub filter: Option<Map<String, Value>>,
    /// `vector` (embeddings), `keyword` (BM25 over the collection's chunks) or `hybrid` (both,
    /// fused by reciprocal rank; the default), for collections on PostgreSQL too (BM25 in SQL).
    #[serde(default)]
    pub retrieval: Option<String>,
}

/// A search result: a chunk with where it comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Source {
    /// The document.
    pub document_id: String,
    /// Its file name.
    pub filename: String,
    /// First and last page (PDF).
    pub pages: Option<[u32; 2]>,
    /// Byte span of the chunk in the document's extracted text.
    pub span: [usize; 2],
    /// The chunk's text.
    pub text: String,
    /// Cosine similarity with the query (vector retrieval), BM25 score (keyword) or fused
    /// reciprocal-rank score (hybrid): higher is closer, comparable within one search only.
    pub score: f32,
    /// The chunk's metadata (the document's, plus language and title).
    pub metadata: Value,
}

/// A page's extracted text, with the chunks on it (for citation previews).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PageText {
    /// The document.
    pub document_id: String,
    /// 1-based.
    pub page: usize,
    /// Pages of the document.
    pub pages: usize,
    /// The page's text.
    pub text: String,
    /// Byte offset of the page's text in the document's text (a source's `span` minus this
    /// is its place in `text`).
    pub page_start: usize,
    /// Chunks overlapping the page: byte spans relative to `text`.
    pub chunks: Vec<Value>,
}

/// What the server keeps per process for collections: the embedder, loaded once, the open
/// indexes, and (on PostgreSQL) the connection to the collections' pgvector tables.
#[derive(Default)]
pub struct CollectionCache {
    embedder: tokio::sync::OnceCell<Arc<dyn Embedder>>,
    /// The embedders of collections built with another model than the configured one (before
    /// the default changed, say), by model id, each loaded once.
    other_embedders: tokio::sync::Mutex<HashMap<String, Arc<dyn Embedder>>>,
    indexes: std::sync::Mutex<HashMap<String, CachedIndex>>,
    /// `Some` when the server's database is PostgreSQL; connected on first use.
    pg: tokio::sync::OnceCell<Option<PgVectors>>,
}

/// Connections of the pgvector store (the server's own pool is separate).
const PG_VECTOR_CONNECTIONS: u32 = 4;

/// A collection's vectors, wherever they live: the embedded HNSW index under the data
/// directory (SQLite), or a pgvector table in the server's PostgreSQL database. The methods
/// block: call them inside `spawn_blocking`.
#[derive(Clone)]
pub enum CollectionIndex {
    /// The on-disk HNSW index, shared with other processes by its lock file and stamp.
    Hnsw(Arc<RwLock<VectorIndex>>),
    /// The collection's pgvector table; `None` before its first document is indexed.
    Pg(Option<PgVectorStore>),
}

impl std::fmt::Debug for CollectionIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Hnsw(_) => f.write_str("CollectionIndex::Hnsw"),
            Self::Pg(store) => f.debug_tuple("CollectionIndex::Pg").field(store).finish(),
        }
    }
}

impl CollectionIndex {
    /// The `k` chunks nearest `query` passing `filter` (the query embedded with `embedder`);
    /// none while the collection holds no vectors. Blocking: the HNSW index is read-locked
    /// for this search only, so the ingest worker can add documents meanwhile.
    ///
    /// # Errors
    /// The embedder's and the store's failures.
    pub fn search(
        &self,
        embedder: &dyn Embedder,
        query: &str,
        k: usize,
        filter: &Filter,
    ) -> std::result::Result<Vec<Scored>, RetrieveError> {
        match self {
            Self::Hnsw(ix) => {
                let index = ix.read().map_err(|_| RetrieveError::new(query, "the index lock was poisoned"))?;
                if index.is_empty() {
                    return Ok(Vec::new());
                }
                IndexRetriever::new(&*index, embedder).with_filter(filter.clone()).search(query, k)
            }
            // No vectors yet: no table (a search would fail with `Empty`), so no results.
            Self::Pg(None) => Ok(Vec::new()),
            Self::Pg(Some(store)) if store.dim() == 0 => Ok(Vec::new()),
            Self::Pg(Some(store)) => IndexRetriever::new(store, embedder).with_filter(filter.clone()).search(query, k),
        }
    }

    /// The model that made the collection's vectors (its id and the directory recorded with
    /// it); `None` while it holds none.
    fn recorded_model(&self) -> Option<(String, Option<String>)> {
        match self {
            Self::Hnsw(ix) => {
                let index = ix.read().ok()?;
                (!index.is_empty()).then(|| (index.model_id().to_string(), index.model_dir().map(str::to_string)))
            }
            Self::Pg(Some(store)) if store.dim() > 0 => {
                Some((store.model_id().to_string(), store.model_dir().map(str::to_string)))
            }
            Self::Pg(_) => None,
        }
    }
}

/// An open index and the stamp its directory had when it was read (or this process saved it),
/// with its keyword index once a search needed it (dropped whenever the index changes).
#[derive(Clone)]
struct CachedIndex {
    index: Arc<RwLock<VectorIndex>>,
    stamp: Option<String>,
    keyword: Option<Arc<KeywordIndex>>,
}

impl std::fmt::Debug for CollectionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectionCache").finish_non_exhaustive()
    }
}

fn lock_err<T>(_: T) -> ServerError {
    ServerError::Internal("a lock was poisoned".into())
}

/// The embedder new collections are indexed with ([`ServerConfig::embedder_dir`]: the
/// registry's multilingual USE-m3 unless configured), loaded on first use.
///
/// # Errors
/// [`ServerError::Unavailable`] when the model is not set up.
///
/// [`ServerConfig::embedder_dir`]: crate::ServerConfig::embedder_dir
pub async fn embedder(state: &AppState) -> Result<Arc<dyn Embedder>> {
    state
        .collections()
        .embedder
        .get_or_try_init(|| async {
            let dir = state.config().embedder_dir();
            tokio::task::spawn_blocking(move || {
                let backend = docraft_pipeline::stage::index::backend_for_dir(&dir);
                docraft_pipeline::stage::index::embedder(backend, &dir, docraft_index::EmbedOptions::default())
                    .map(Arc::from)
                    .map_err(|e| {
                        ServerError::Unavailable(format!(
                            "the embedding model is not available ({e}); run scripts/setup.sh"
                        ))
                    })
            })
            .await
            .map_err(|e| ServerError::Internal(e.to_string()))?
        })
        .await
        .cloned()
}

/// The embedder of a collection whose vectors `ix` holds: the configured one ([`embedder`])
/// for a new or empty collection or one it built; for a collection built with another model
/// (before the configured one changed), that model, loaded once per process from the
/// directory the collection recorded (else the registry's copy), so the collection keeps
/// answering and growing with the vectors it has.
///
/// # Errors
/// [`ServerError::Unavailable`] when that model is not there.
async fn embedder_of(state: &AppState, ix: &CollectionIndex) -> Result<Arc<dyn Embedder>> {
    let configured = embedder(state).await?;
    let recorded = {
        let ix = ix.clone();
        tokio::task::spawn_blocking(move || ix.recorded_model()).await.map_err(join_err)?
    };
    let Some((model_id, dir)) = recorded.filter(|(id, _)| *id != configured.model_id()) else {
        return Ok(configured);
    };
    let mut others = state.collections().other_embedders.lock().await;
    if let Some(e) = others.get(&model_id) {
        return Ok(e.clone());
    }
    let id = model_id.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        docraft_pipeline::stage::index::store_embedder(&id, dir.as_deref(), None, None).map_err(|e| {
            ServerError::Unavailable(format!(
                "the collection was indexed with the embedding model {id}, which is not available ({e}); run \
                 scripts/setup.sh"
            ))
        })
    })
    .await
    .map_err(join_err)??;
    let loaded: Arc<dyn Embedder> = Arc::from(loaded);
    // The model id says which vectors an embedder makes: a copy in another directory that is
    // not the same model is refused here rather than mixed into the collection.
    if loaded.model_id() != model_id {
        return Err(ServerError::Unavailable(format!(
            "the collection was indexed with the embedding model {model_id}; the model found is {}",
            loaded.model_id()
        )));
    }
    others.insert(model_id, loaded.clone());
    Ok(loaded)
}

fn join_err(e: tokio::task::JoinError) -> ServerError {
    ServerError::Internal(e.to_string())
}

/// Whether the server's state is on PostgreSQL (then so are the collections' vectors).
/// The pgvector store of the collections: `Some` when the server's database is PostgreSQL
/// (connected on first use, again after a failed try), `None` on SQLite.
///
/// # Errors
/// [`ServerError::Unavailable`] when PostgreSQL cannot be reached or pgvector set up (the
/// reason, naming the database without its password, is logged).
async fn pg_vectors(state: &AppState) -> Result<Option<PgVectors>> {
    state
        .collections()
        .pg
        .get_or_try_init(|| async {
            let url = state.config().database_url();
            if !docraft_index::is_store_url(&url) {
                return Ok(None);
            }
            let connected = tokio::task::spawn_blocking(move || PgVectors::connect(&url, PG_VECTOR_CONNECTIONS))
                .await
                .map_err(join_err)?;
            connected.map(Some).map_err(|e| {
                // The reason names the database (without its password): for the log, not the caller.
                tracing::error!(error = %e, "connecting the collections' pgvector store failed");
                ServerError::Unavailable(
                    "the collections' vector store (pgvector) is unavailable; the server's log has why".into(),
                )
            })
        })
        .await
        .cloned()
}

fn pg_err(collection_id: &str, what: &str, e: &dyn std::fmt::Display) -> ServerError {
    ServerError::Internal(format!("{what} the vectors of collection {collection_id}: {e}"))
}

/// The collection's vectors: its pgvector table on PostgreSQL (opened anew each time, so it
/// sees what other processes added), else its HNSW index. Blocking on PostgreSQL.
fn collection_index(
    state: &AppState,
    pg: Option<&PgVectors>,
    org_id: &str,
    collection_id: &str,
    embedder: &dyn Embedder,
) -> Result<CollectionIndex> {
    match pg {
        Some(pg) => {
            pg.open(org_id, collection_id).map(CollectionIndex::Pg).map_err(|e| pg_err(collection_id, "opening", &e))
        }
        None => open_index(state, org_id, collection_id, embedder).map(CollectionIndex::Hnsw),
    }
}

fn collection_dir(state: &AppState, org_id: &str, collection_id: &str) -> PathBuf {
    state.org_dir(org_id).join("collections").join(collection_id)
}

// Several processes may share a collection's index (`docraft worker` ingests, `docraft serve`
// searches, over one data directory): each keeps it open, and `COLLECTION/index.stamp`, a token
// written after every save, says when the copy on disk changed. Writers hold an exclusive lock
// on `COLLECTION/index.lock` from reading to saving (no update is lost); a process reading the
// index again holds it shared (no save swaps the directory meanwhile).

/// The lock that serializes the index's writers across processes (`exclusive`), or keeps them
/// off while it is read (shared); released when the file is dropped. `None` without the
/// collection's directory (nothing was ever saved).
fn index_lock(state: &AppState, org_id: &str, collection_id: &str, exclusive: bool) -> Result<Option<std::fs::File>> {
    use fs2::FileExt;
    let dir = collection_dir(state, org_id, collection_id);
    if exclusive {
        std::fs::create_dir_all(&dir).map_err(|e| ServerError::io(&dir, e))?;
    } else if !dir.is_dir() {
        return Ok(None);
    }
    let path = dir.join("index.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| ServerError::io(&path, e))?;
    // fs2's flock (std's own File::lock needs a newer Rust than this crate's MSRV).
    let locked = if exclusive { FileExt::lock_exclusive(&file) } else { FileExt::lock_shared(&file) };
    locked.map_err(|e| ServerError::io(&path, e))?;
    Ok(Some(file))
}

fn index_stamp(state: &AppState, org_id: &str, collection_id: &str) -> Option<String> {
    std::fs::read_to_string(collection_dir(state, org_id, collection_id).join("index.stamp")).ok()
}

/// The collection's index, opened once per process (a new one when it has none yet) and read
/// again when another process saved it since.
fn open_index(
    state: &AppState,
    org_id: &str,
    collection_id: &str,
    embedder: &dyn Embedder,
) -> Result<Arc<RwLock<VectorIndex>>> {
    open_index_as(state, org_id, collection_id, embedder, false)
}

/// [`open_index`]; `locked`: the caller holds the exclusive lock.
fn open_index_as(
    state: &AppState,
    org_id: &str,
    collection_id: &str,
    embedder: &dyn Embedder,
    locked: bool,
) -> Result<Arc<RwLock<VectorIndex>>> {
    let cached = |stamp: &Option<String>| -> Result<Option<Arc<RwLock<VectorIndex>>>> {
        let map = state.collections().indexes.lock().map_err(lock_err)?;
        Ok(map.get(collection_id).filter(|c| c.stamp == *stamp).map(|c| c.index.clone()))
    };
    if let Some(ix) = cached(&index_stamp(state, org_id, collection_id))? {
        return Ok(ix);
    }
    let _shared = if locked { None } else { index_lock(state, org_id, collection_id, false)? };
    let stamp = index_stamp(state, org_id, collection_id);
    if let Some(ix) = cached(&stamp)? {
        return Ok(ix);
    }
    let dir = collection_dir(state, org_id, collection_id).join("index");
    let index = if dir.join("index.json").exists() || dir.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        VectorIndex::load(&dir).map_err(|e| ServerError::Internal(format!("index of {collection_id}: {e}")))?
    } else {
        VectorIndex::new(embedder.model_id(), docraft_index::HnswParams::default())
            .map_err(|e| ServerError::Internal(e.to_string()))?
    };
    let ix = Arc::new(RwLock::new(index));
    let entry = CachedIndex { index: ix.clone(), stamp, keyword: None };
    state.collections().indexes.lock().map_err(lock_err)?.insert(collection_id.to_string(), entry);
    Ok(ix)
}

/// Changes the collection's index with `change` (which says whether it changed anything) and
/// saves it, in step with every other process on the data directory: under the exclusive
/// lock, from the latest copy on disk, with a new stamp after the save. Blocking.
fn update_index(
    state: &AppState,
    org_id: &str,
    collection_id: &str,
    embedder: &dyn Embedder,
    change: impl FnOnce(&mut VectorIndex) -> Result<bool>,
) -> Result<()> {
    let _exclusive = index_lock(state, org_id, collection_id, true)?;
    let ix = open_index_as(state, org_id, collection_id, embedder, true)?;
    let mut index = ix.write().map_err(lock_err)?;
    if !change(&mut index)? {
        return Ok(());
    }
    save_index(state, org_id, collection_id, &index)?;
    let stamp = new_id("")?;
    let dir = collection_dir(state, org_id, collection_id);
    let (tmp, path) = (dir.join(format!(".index.stamp.{stamp}")), dir.join("index.stamp"));
    std::fs::write(&tmp, &stamp).map_err(|e| ServerError::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| ServerError::io(&path, e))?;
    let mut map = state.collections().indexes.lock().map_err(lock_err)?;
    if let Some(c) = map.get_mut(collection_id).filter(|c| Arc::ptr_eq(&c.index, &ix)) {
        c.stamp = Some(stamp);
        c.keyword = None;
    }
    Ok(())
}

/// Where a pipeline stage finds the collection's vectors (RAFT's hard distractors): the index
/// directory on SQLite, a `postgres://…?collection=…&organization=…` URL on PostgreSQL; `None`
/// before anything was indexed.
///
/// # Errors
/// [`ServerError::Unavailable`] without PostgreSQL; [`ServerError::Internal`] for the catalog.
pub async fn index_location(state: &AppState, org_id: &str, collection_id: &str) -> Result<Option<PathBuf>> {
    let url = state.config().database_url();
    if docraft_index::is_store_url(&url) {
        let Some(pg) = pg_vectors(state).await? else { return Ok(None) };
        let (org, col) = (org_id.to_string(), collection_id.to_string());
        let store = tokio::task::spawn_blocking(move || pg.open(&org, &col)).await.map_err(join_err)?;
        let held = store.map_err(|e| ServerError::Internal(format!("the vectors of {collection_id}: {e}")))?;
        if held.is_none_or(|s| s.dim() == 0) {
            return Ok(None);
        }
        // Ids are the server's own (letters, digits, '-', '_'): nothing to escape.
        let sep = if url.contains('?') { '&' } else { '?' };
        return Ok(Some(PathBuf::from(format!("{url}{sep}collection={collection_id}&organization={org_id}"))));
    }
    let dir = collection_dir(state, org_id, collection_id).join("index");
    Ok(dir.is_dir().then_some(dir))
}

/// The collection's vectors and the embedder they are searched with, for a retriever
/// ([`CollectionIndex::search`] inside a blocking task). The collection must be the caller's:
/// check it with [`collection_exists`] first.
///
/// # Errors
/// [`ServerError::Unavailable`] without the embedding model or the vector store; index errors.
pub async fn index_of(
    state: &AppState,
    org_id: &str,
    collection_id: &str,
) -> Result<(CollectionIndex, Arc<dyn Embedder>)> {
    let emb = embedder(state).await?;
    let pg = pg_vectors(state).await?;
    let (st, org_id, cid, e) = (state.clone(), org_id.to_string(), collection_id.to_string(), emb.clone());
    let ix = tokio::task::spawn_blocking(move || collection_index(&st, pg.as_ref(), &org_id, &cid, e.as_ref()))
        .await
        .map_err(join_err)??;
    let emb = embedder_of(state, &ix).await?;
    Ok((ix, emb))
}

/// The keyword index (BM25) of the collection whose open index is `ix`: the cached one, else
/// built from the index's chunks and cached until the index changes. Blocking.
fn keyword_index(state: &AppState, collection_id: &str, ix: &Arc<RwLock<VectorIndex>>) -> Result<Arc<KeywordIndex>> {
    let stamp = {
        let map = state.collections().indexes.lock().map_err(lock_err)?;
        let entry = map.get(collection_id).filter(|c| Arc::ptr_eq(&c.index, ix));
        if let Some(k) = entry.and_then(|c| c.keyword.clone()) {
            return Ok(k);
        }
        entry.map(|c| c.stamp.clone())
    };
    let built = Arc::new(KeywordIndex::from_chunks(ix.read().map_err(lock_err)?.chunks().cloned()));
    // Kept only if the index did not change meanwhile (writers change the stamp while they
    // still hold the write lock, so a build that saw older chunks sees a new stamp here).
    let mut map = state.collections().indexes.lock().map_err(lock_err)?;
    if let Some(c) =
        map.get_mut(collection_id).filter(|c| Arc::ptr_eq(&c.index, ix) && Some(&c.stamp) == stamp.as_ref())
    {
        c.keyword = Some(built.clone());
    }
    Ok(built)
}

/// A collection searched for `/search` and chat: its vectors ([`CollectionIndex`]) and its
/// keyword index (in memory for a collection in the data directory, the collection's BM25
/// tables for one on PostgreSQL), in one [`Retrieval`] mode. Blocking: search inside
/// `spawn_blocking`.
#[derive(Clone)]
pub struct CollectionRetriever {
    index: CollectionIndex,
    embedder: Arc<dyn Embedder>,
    keyword: Arc<dyn KeywordSearch>,
    filter: Filter,
    mode: Retrieval,
}

impl std::fmt::Debug for CollectionRetriever {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectionRetriever")
            .field("index", &self.index)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl CollectionRetriever {
    /// The mode searches run in: the one asked for (`vector` for a collection that holds no
    /// chunk yet).
    #[must_use]
    pub fn retrieval(&self) -> Retrieval {
        self.mode
    }
}

/// The vector side of a [`CollectionRetriever`].
struct VectorSide<'a> {
    index: &'a CollectionIndex,
    embedder: &'a dyn Embedder,
    filter: &'a Filter,
}

impl Retriever for VectorSide<'_> {
    fn search(&self, query: &str, k: usize) -> std::result::Result<Vec<Scored>, RetrieveError> {
        self.index.search(self.embedder, query, k, self.filter)
    }
}

impl Retriever for CollectionRetriever {
    fn search(&self, query: &str, k: usize) -> std::result::Result<Vec<Scored>, RetrieveError> {
        let vector = VectorSide { index: &self.index, embedder: self.embedder.as_ref(), filter: &self.filter };
        HybridRetriever::new(vector, &self.keyword)
            .with_mode(self.mode)
            .with_filter(self.filter.clone())
            .search(query, k)
    }
}

/// The retrieval mode a request names (`vector`, `keyword`, `hybrid`); unset, the default.
///
/// # Errors
/// [`ServerError::BadRequest`] naming `field` for another value.
pub fn retrieval_of(value: Option<&str>, field: &str) -> Result<Retrieval> {
    value.map_or(Ok(Retrieval::default()), |v| {
        v.parse().map_err(|e: docraft_index::IndexError| {
            ServerError::bad_request(e.to_string(), Some(field), Some("invalid_value"))
        })
    })
}

/// The collection's retriever with `filter`, in `mode` (see [`CollectionRetriever::retrieval`]).
/// The collection must be the caller's: check it with [`collection_exists`] first.
///
/// # Errors
/// Those of [`index_of`].
pub async fn retriever_of(
    state: &AppState,
    org_id: &str,
    collection_id: &str,
    filter: Filter,
    mode: Retrieval,
) -> Result<CollectionRetriever> {
    let (index, embedder) = index_of(state, org_id, collection_id).await?;
    let (keyword, mode) = match &index {
        CollectionIndex::Hnsw(ix) if mode != Retrieval::Vector => {
            let (st, cid, ix) = (state.clone(), collection_id.to_string(), ix.clone());
            let keyword =
                tokio::task::spawn_blocking(move || keyword_index(&st, &cid, &ix)).await.map_err(join_err)??;
            (keyword as Arc<dyn KeywordSearch>, mode)
        }
        CollectionIndex::Pg(Some(store)) if mode != Retrieval::Vector => {
            (Arc::new(store.clone()) as Arc<dyn KeywordSearch>, mode)
        }
        _ => (Arc::new(KeywordIndex::new(Vec::new())) as Arc<dyn KeywordSearch>, Retrieval::Vector),
    };
    Ok(CollectionRetriever { index, embedder, keyword, filter, mode })
}

/// Whether `collection_id` is a collection of `org_id` ([`ServerError::NotFound`] if not).
///
/// # Errors
/// [`ServerError::NotFound`], [`ServerError::Database`].
pub async fn collection_exists(db: &Db, org_id: &str, collection_id: &str) -> Result<()> {
    load_collection(db, org_id, collection_id).await.map(|_| ())
}

fn save_index(state: &AppState, org_id: &str, collection_id: &str, index: &VectorIndex) -> Result<()> {
    let dir = collection_dir(state, org_id, collection_id).join("index");
    index.save(&dir).map_err(|e| ServerError::Internal(format!("saving the index of {collection_id}: {e}")))
}

fn check_collection_name(name: &str) -> Result<()> {
    let ok = !name.trim().is_empty() && name.chars().count() <= MAX_NAME_CHARS && !name.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(ServerError::bad_request(
            format!("collection name {name:?}: 1 to {MAX_NAME_CHARS} characters, no control characters"),
            Some("name"),
            Some("invalid_name"),
        ))
    }
}

async fn load_collection(db: &Db, org_id: &str, id: &str) -> Result<Collection> {
    let nf = || ServerError::NotFound { kind: "collection", id: id.to_string() };
    if !is_id(id, COLLECTION_PREFIX) {
        return Err(nf());
    }
    let row =
        sqlx::query("SELECT id, name, metadata, created_at FROM collections WHERE id = $1 AND organization_id = $2")
            .bind(id)
            .bind(org_id)
            .fetch_optional(db.pool())
            .await
            .map_err(ServerError::db("find collection"))?
            .ok_or_else(nf)?;
    collection_of(db, &row).await
}

async fn collection_of(db: &Db, row: &AnyRow) -> Result<Collection> {
    let d = || ServerError::db("decode collection");
    let id: String = row.try_get("id").map_err(d())?;
    let metadata: Option<String> = row.try_get("metadata").map_err(d())?;
    let counts = sqlx::query("SELECT status, COUNT(*) AS n FROM documents WHERE collection_id = $1 GROUP BY status")
        .bind(&id)
        .fetch_all(db.pool())
        .await
        .map_err(ServerError::db("count documents"))?;
    let mut documents = BTreeMap::new();
    for r in &counts {
        documents.insert(r.try_get::<String, _>("status").map_err(d())?, r.try_get::<i64, _>("n").map_err(d())?);
    }
    Ok(Collection {
        id,
        object: "collection".into(),
        name: row.try_get("name").map_err(d())?,
        metadata: metadata.and_then(|m| serde_json::from_str(&m).ok()),
        created_at: row.try_get("created_at").map_err(d())?,
        documents,
    })
}

/// Creates a collection.
#[utoipa::path(post, path = "/v1/collections", tag = "collections", security(("bearer" = [])),
    request_body = CreateCollection,
    responses((status = 200, description = "The collection", body = Collection),
              (status = 400, description = "Unusable request", body = crate::ErrorBody),
              (status = 409, description = "The name is taken", body = crate::ErrorBody)))]
pub async fn create_collection(
    State(state): State<AppState>,
    Caller(org): Caller,
    body: axum::body::Bytes,
) -> Result<Json<Collection>> {
    let req: CreateCollection = serde_json::from_slice(&body)
        .map_err(|e| ServerError::bad_request(format!("invalid request: {e}"), None, Some("invalid_json")))?;
    check_collection_name(&req.name)?;
    if let Some(m) = &req.metadata
        && (m.len() > 16 || m.values().any(|v| !(v.is_string() || v.is_number() || v.is_boolean())))
    {
        return Err(ServerError::bad_request(
            "metadata: at most 16 keys of strings, numbers or booleans",
            Some("metadata"),
            Some("invalid_value"),
        ));
    }
    let taken = sqlx::query("SELECT id FROM collections WHERE organization_id = $1 AND name = $2")
        .bind(&org.id)
        .bind(&req.name)
        .fetch_optional(state.db().pool())
        .await
        .map_err(ServerError::db("find collection"))?;
    if taken.is_some() {
        return Err(ServerError::Conflict(format!("a collection named {:?} exists", req.name)));
    }
    let id = new_id(COLLECTION_PREFIX)?;
    sqlx::query(
        "INSERT INTO collections (id, organization_id, name, metadata, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&id)
    .bind(&org.id)
    .bind(&req.name)
    .bind(req.metadata.as_ref().map(|m| Value::Object(m.clone()).to_string()))
    .bind(now())
    .execute(state.db().pool())
    .await
    .map_err(ServerError::db("insert collection"))?;
    Ok(Json(load_collection(state.db(), &org.id, &id).await?))
}

/// The organization's collections, newest first.
#[utoipa::path(get, path = "/v1/collections", tag = "collections", security(("bearer" = [])),
    responses((status = 200, description = "The collections", body = List<Collection>)))]
pub async fn list_collections(State(state): State<AppState>, Caller(org): Caller) -> Result<Json<List<Collection>>> {
    let rows = sqlx::query(
        "SELECT id, name, metadata, created_at FROM collections WHERE organization_id = $1 ORDER BY created_at DESC, id DESC",
    )
    .bind(&org.id)
    .fetch_all(state.db().pool())
    .await
    .map_err(ServerError::db("list collections"))?;
    let mut data = Vec::with_capacity(rows.len());
    for r in &rows {
        data.push(collection_of(state.db(), r).await?);
    }
    Ok(Json(List { object: "list".into(), data }))
}

/// One collection with its document counts.
#[utoipa::path(get, path = "/v1/collections/{id}", tag = "collections", security(("bearer" = [])),
    params(("id" = String, Path, description = "The collection's id")),
    responses((status = 200, description = "The collection", body = Collection),
              (status = 404, description = "No such collection", body = crate::ErrorBody)))]
pub async fn retrieve_collection(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Collection>> {
    Ok(Json(load_collection(state.db(), &org.id, &id).await?))
}

/// Deletes a collection, its documents and its index.
#[utoipa::path(delete, path = "/v1/collections/{id}", tag = "collections", security(("bearer" = [])),
    params(("id" = String, Path, description = "The collection's id")),
    responses((status = 200, description = "Deleted"),
              (status = 404, description = "No such collection", body = crate::ErrorBody)))]
pub async fn delete_collection(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Value>> {
    let c = load_collection(state.db(), &org.id, &id).await?;
    // On PostgreSQL the vectors go first: when that fails nothing is deleted, and the
    // request can be repeated.
    let pg = pg_vectors(&state).await?;
    if let Some(pg) = &pg {
        drop_vectors(pg.clone(), &org.id, &c.id).await?;
    }
    sqlx::query("DELETE FROM documents WHERE collection_id = $1 AND organization_id = $2")
        .bind(&c.id)
        .bind(&org.id)
        .execute(state.db().pool())
        .await
        .map_err(ServerError::db("delete documents"))?;
    sqlx::query("DELETE FROM collections WHERE id = $1 AND organization_id = $2")
        .bind(&c.id)
        .bind(&org.id)
        .execute(state.db().pool())
        .await
        .map_err(ServerError::db("delete collection"))?;
    state.collections().indexes.lock().map_err(lock_err)?.remove(&c.id);
    if let Some(pg) = pg
        && let Err(e) = drop_vectors(pg, &org.id, &c.id).await
    {
        // Again, for a document a worker finished indexing meanwhile.
        tracing::warn!(collection = %c.id, error = %e, "dropping the vectors of a deleted collection failed");
    }
    let _ = tokio::fs::remove_dir_all(collection_dir(&state, &org.id, &c.id)).await;
    Ok(Json(json!({"id": c.id, "object": "collection", "deleted": true})))
}

/// Drops the collection's pgvector table and catalog row (nothing if it has none).
async fn drop_vectors(pg: PgVectors, org_id: &str, collection_id: &str) -> Result<()> {
    let (org_id, cid) = (org_id.to_string(), collection_id.to_string());
    tokio::task::spawn_blocking(move || pg.drop_collection(&org_id, &cid).map_err(|e| pg_err(&cid, "dropping", &e)))
        .await
        .map_err(join_err)?
}

/// What the bytes are: `application/pdf`, `text/markdown`, `text/plain`, or why they are refused.
///
/// # Errors
/// A reason naming the kind of file refused (an archive, an executable, binary data).
pub fn sniff(filename: &str, head: &[u8]) -> std::result::Result<&'static str, String> {
    const REFUSED: [(&[u8], &str); 8] = [
        (b"PK\x03\x04", "a zip archive (also docx, xlsx, odt): archives are never unpacked"),
        (b"\x1f\x8b", "a gzip archive"),
        (b"7z\xbc\xaf\x27\x1c", "a 7z archive"),
        (b"Rar!", "a rar archive"),
        (b"\x7fELF", "an executable"),
        (b"MZ", "an executable"),
        (b"\x89PNG", "an image"),
        (b"\xff\xd8\xff", "an image"),
    ];
    if head.starts_with(b"%PDF-") {
        return Ok("application/pdf");
    }
    if let Some((_, what)) = REFUSED.iter().find(|(magic, _)| head.starts_with(magic)) {
        return Err(format!("{filename} is {what}; upload PDF, Markdown or text"));
    }
    // UTF-16 text has NUL bytes but starts with its byte-order mark: the text loader reads it.
    let utf16 = head.starts_with(b"\xff\xfe") || head.starts_with(b"\xfe\xff");
    if head.contains(&0) && !utf16 {
        return Err(format!("{filename} is binary data, not PDF, Markdown or text"));
    }
    let lower = filename.to_ascii_lowercase();
    Ok(if [".md", ".markdown", ".mdown", ".mkd"].iter().any(|e| lower.ends_with(e)) {
        "text/markdown"
    } else {
        "text/plain"
    })
}

/// The name the loader sees: the user's name with the extension of the sniffed type, so a
/// PDF named `.txt` is read as a PDF and a text named `.pdf` as text.
fn loader_name(filename: &str, media_type: &str) -> String {
    let stem = Path::new(filename).file_stem().and_then(|s| s.to_str()).unwrap_or("document");
    let ext = match media_type {
        "application/pdf" => "pdf",
        "text/markdown" => "md",
        _ => "txt",
    };
    format!("{stem}.{ext}")
}

async fn org_bytes(db: &Db, org_id: &str) -> Result<i64> {
    let docs: Option<i64> =
        sqlx::query("SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) AS n FROM documents WHERE organization_id = $1")
            .bind(org_id)
            .fetch_one(db.pool())
            .await
            .map_err(ServerError::db("quota"))?
            .try_get("n")
            .map_err(ServerError::db("quota"))?;
    Ok(docs.unwrap_or(0))
}

/// A file received to a temporary path, with its hash and first bytes.
struct Received {
    temp: tempfile::TempPath,
    bytes: u64,
    hash: String,
    head: Vec<u8>,
    filename: String,
}

async fn receive(field: Field<'_>, dir: &Path, limit: u64) -> Result<Received> {
    let mut hasher = Sha256::new();
    let mut head = Vec::new();
    let (temp, bytes, filename) = crate::files::stream_to_temp(field, dir, limit, "document", |chunk| {
        if head.len() < 8192 {
            head.extend_from_slice(&chunk[..chunk.len().min(8192 - head.len())]);
        }
        hasher.update(chunk);
    })
    .await?;
    let hash = format!("{:x}", hasher.finalize());
    Ok(Received { temp, bytes, hash, head, filename })
}

async fn find_by_hash(db: &Db, collection_id: &str, hash: &str) -> Result<Option<DocRow>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {DOC_COLUMNS} FROM documents WHERE collection_id = $1 AND content_hash = $2"
    )))
    .bind(collection_id)
    .bind(hash)
    .fetch_optional(db.pool())
    .await
    .map_err(ServerError::db("find document"))?;
    row.as_ref().map(DocRow::from_row).transpose()
}

/// Uploads documents (multipart: the field `file`, repeated; a `metadata` field, a JSON
/// object, applies to the files after it). Each file becomes a document: `queued` for the
/// ingest worker, `failed` with the reason when its type is refused, or, when the collection
/// already holds the same bytes, that document (nothing is stored or indexed twice).
#[utoipa::path(post, path = "/v1/collections/{id}/documents", tag = "collections", security(("bearer" = [])),
    params(("id" = String, Path, description = "The collection's id")),
    request_body(content_type = "multipart/form-data", description = "`file` (repeated) and optional `metadata` (a JSON object) fields"),
    responses((status = 200, description = "The documents", body = List<DocumentObject>),
              (status = 404, description = "No such collection", body = crate::ErrorBody),
              (status = 413, description = "A file over the limit", body = crate::ErrorBody),
              (status = 429, description = "Over the organization's quota", body = crate::ErrorBody)))]
pub async fn upload_documents(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(id): UrlPath<String>,
    request: Request,
) -> Result<Json<List<DocumentObject>>> {
    let c = load_collection(state.db(), &org.id, &id).await?;
    let mut multipart = Multipart::from_request(request, &state).await.map_err(|e| {
        ServerError::bad_request(
            format!("expected a multipart/form-data body: {}", e.body_text()),
            None,
            Some("invalid_multipart"),
        )
    })?;
    let dir = collection_dir(&state, &org.id, &c.id).join("docs");
    tokio::fs::create_dir_all(&dir).await.map_err(|e| ServerError::io(&dir, e))?;
    let limit = state.config().max_document_bytes;
    let quota = state.config().max_org_document_bytes;
    let mut used = org_bytes(state.db(), &org.id).await?;
    let mut metadata: Option<Map<String, Value>> = None;
    let mut out = Vec::new();
    let mut files = 0;
    while let Some(field) = multipart.next_field().await.map_err(|e| {
        ServerError::bad_request(
            format!("malformed multipart body: {}", e.body_text()),
            None,
            Some("invalid_multipart"),
        )
    })? {
        match field.name().unwrap_or_default() {
            "metadata" => {
                let text = field.text().await.map_err(|e| {
                    ServerError::bad_request(format!("metadata: {}", e.body_text()), Some("metadata"), None)
                })?;
                let v: Map<String, Value> = serde_json::from_str(&text).map_err(|e| {
                    ServerError::bad_request(
                        format!("metadata is not a JSON object: {e}"),
                        Some("metadata"),
                        Some("invalid_value"),
                    )
                })?;
                if v.len() > 32 || v.values().any(|x| !(x.is_string() || x.is_number() || x.is_boolean())) {
                    return Err(ServerError::bad_request(
                        "metadata: at most 32 keys of strings, numbers or booleans",
                        Some("metadata"),
                        Some("invalid_value"),
                    ));
                }
                metadata = Some(v);
            }
            "file" => {
                files += 1;
                if files > MAX_FILES_PER_UPLOAD {
                    return Err(ServerError::bad_request(
                        format!("at most {MAX_FILES_PER_UPLOAD} files per request"),
                        Some("file"),
                        Some("too_many_files"),
                    ));
                }
                let got = receive(field, &dir, limit).await?;
                if let Some(existing) = find_by_hash(state.db(), &c.id, &got.hash).await? {
                    out.push(existing.obj);
                    continue;
                }
                let size = i64::try_from(got.bytes).unwrap_or(i64::MAX);
                if used.saturating_add(size) > quota {
                    return Err(ServerError::RateLimited(format!(
                        "this organization's documents would take {} bytes, over its quota of {quota} bytes; \
                         delete documents or ask the administrator for more",
                        used.saturating_add(size)
                    )));
                }
                let (media_type, status, error) = match sniff(&got.filename, &got.head) {
                    Ok(m) => (m, "queued", None),
                    Err(why) => ("application/octet-stream", "failed", Some(why)),
                };
                let doc_id = new_id(DOCUMENT_PREFIX)?;
                if status == "queued" {
                    let path = dir.join(&doc_id);
                    got.temp.persist(&path).map_err(|e| ServerError::io(&path, e.error))?;
                    used = used.saturating_add(size);
                }
                let t = now();
                sqlx::query(
                    "INSERT INTO documents (id, collection_id, organization_id, filename, content_hash, bytes, media_type, \
                     metadata, status, error, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
                )
                .bind(&doc_id)
                .bind(&c.id)
                .bind(&org.id)
                .bind(&got.filename)
                .bind(&got.hash)
                .bind(if status == "queued" { size } else { 0 })
                .bind(media_type)
                .bind(metadata.as_ref().map(|m| Value::Object(m.clone()).to_string()))
                .bind(status)
                .bind(error)
                .bind(t)
                .execute(state.db().pool())
                .await
                .map_err(ServerError::db("insert document"))?;
                let obj = load_doc(state.db(), &org.id, &c.id, &doc_id).await?.obj;
                let msg = match &obj.error {
                    Some(why) => format!("{} failed: {why}", obj.filename),
                    None => format!("{} queued ({} bytes)", obj.filename, obj.bytes),
                };
                let level = if obj.error.is_some() { "error" } else { "info" };
                add_event(state.db(), &c.id, Some(&obj.id), level, &msg, Some(json!({"status": obj.status}))).await;
                out.push(obj);
            }
            other => {
                return Err(ServerError::bad_request(
                    format!("unknown field {other:?}: send `file` (repeated) and `metadata`"),
                    Some(other),
                    Some("invalid_multipart"),
                ));
            }
        }
    }
    if files == 0 {
        return Err(ServerError::bad_request("no `file` field in the form", Some("file"), Some("missing_file")));
    }
    state.wake_workers();
    Ok(Json(List { object: "list".into(), data: out }))
}

/// A SQL source of a collection (`POST /v1/collections/{id}/sql`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    /// The source.
    pub sql: SqlSpec,
}

/// Where the rows come from and which columns mean what.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlSpec {
    /// `postgres://USER:PASS@HOST/DB` (a host off this machine needs the organization's
    /// `allow-remote`) or `sqlite://PATH` (a file inside the server's `--sql-dir`).
    pub url: String,
    /// One `SELECT` (or `WITH … SELECT`), run in a read-only transaction.
    pub query: String,
    /// The column naming each row.
    #[serde(default)]
    pub id_column: Option<String>,
    /// The columns making each document's text (default: every text column not listed as
    /// metadata).
    #[serde(default)]
    pub text_columns: Vec<String>,
    /// The columns kept as metadata (default: every other column).
    #[serde(default)]
    pub metadata_columns: Vec<String>,
    /// Rows read at most (default and maximum: the server's row limit).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Checks that a SQL source is one the caller may read: a SQLite file inside the server's
/// SQL directory, or PostgreSQL on this machine (elsewhere with `allow-remote`).
fn check_sql_url(state: &AppState, url: &str, allow_remote: bool) -> Result<String> {
    let refuse = |why: String| ServerError::Forbidden(why);
    if let Some(rest) = url.strip_prefix("sqlite://") {
        let Some(dir) = state.config().sql_dir.clone() else {
            return Err(refuse("SQLite sources are off: the server was started without --sql-dir".into()));
        };
        let path = rest.split('?').next().unwrap_or_default();
        let canonical = std::fs::canonicalize(path).map_err(|_| {
            ServerError::bad_request(format!("{path}: no such database file"), Some("sql.url"), Some("invalid_value"))
        })?;
        let root = std::fs::canonicalize(&dir).map_err(|e| ServerError::io(&dir, e))?;
        if !canonical.starts_with(&root) || !canonical.is_file() {
            return Err(refuse(format!("{path} is not a database file inside the server's SQL directory")));
        }
        return Ok(format!("sqlite://{}", canonical.display()));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let host = url.split("://").nth(1).unwrap_or_default();
        let host = host.rsplit('@').next().unwrap_or_default().split(['/', '?']).next().unwrap_or_default();
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h).trim_matches(['[', ']']);
        let local = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if !local && !allow_remote {
            return Err(refuse(format!(
                "{host} is not this machine; an administrator can allow the organization to read it \
                 (`docraft admin org allow-remote`)"
            )));
        }
        return Ok(url.to_string());
    }
    Err(ServerError::bad_request("sql.url: sqlite://PATH or postgres://…", Some("sql.url"), Some("invalid_value")))
}

/// Fills the collection from a database: each row of the query becomes a document (its text
/// columns the text, its other columns metadata), ingested and indexed like an upload. An
/// unchanged row costs nothing the second time.
#[utoipa::path(post, path = "/v1/collections/{id}/sql", tag = "collections", security(("bearer" = [])),
    params(("id" = String, Path, description = "The collection's id")),
    request_body = SqlRequest,
    responses((status = 200, description = "The documents", body = List<DocumentObject>),
              (status = 400, description = "An unusable source or query", body = crate::ErrorBody),
              (status = 403, description = "A source the caller may not read", body = crate::ErrorBody),
              (status = 404, description = "No such collection", body = crate::ErrorBody)))]
pub async fn add_sql(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(id): UrlPath<String>,
    body: axum::body::Bytes,
) -> Result<Json<List<DocumentObject>>> {
    let c = load_collection(state.db(), &org.id, &id).await?;
    let req: SqlRequest = serde_json::from_slice(&body)
        .map_err(|e| ServerError::bad_request(format!("invalid request: {e}"), Some("sql"), Some("invalid_json")))?;
    let spec = req.sql;
    let url = check_sql_url(&state, &spec.url, org.allow_remote)?;
    let max = state.config().max_sql_rows;
    let limit = spec.limit.unwrap_or(max);
    if !(1..=max).contains(&limit) {
        return Err(ServerError::unprocessable(format!("sql.limit: 1 to {max}"), "sql.limit"));
    }
    let mut source = docraft_ingest::sql::SqlSource::new(url, spec.query)
        .map_err(|e| ServerError::bad_request(e.to_string(), Some("sql.query"), Some("invalid_value")))?
        .with_text_columns(spec.text_columns)
        .with_metadata_columns(spec.metadata_columns)
        .with_limit(limit);
    if let Some(col) = spec.id_column {
        source = source.with_id_column(col);
    }
    let docs = tokio::task::spawn_blocking(move || source.read())
        .await
        .map_err(|e| ServerError::Internal(e.to_string()))?
        .map_err(|e| ServerError::bad_request(e.to_string(), Some("sql"), Some("sql_failed")))?;
    let dir = collection_dir(&state, &org.id, &c.id).join("docs");
    tokio::fs::create_dir_all(&dir).await.map_err(|e| ServerError::io(&dir, e))?;
    let quota = state.config().max_org_document_bytes;
    let mut used = org_bytes(state.db(), &org.id).await?;
    let mut out = Vec::with_capacity(docs.len());
    for doc in docs {
        let bytes = doc.text.as_bytes();
        let hash = format!("{:x}", Sha256::digest(bytes));
        if let Some(existing) = find_by_hash(state.db(), &c.id, &hash).await? {
            out.push(existing.obj);
            continue;
        }
        let size = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
        if used.saturating_add(size) > quota {
            return Err(ServerError::RateLimited(format!(
                "this organization's documents would pass its quota of {quota} bytes"
            )));
        }
        used = used.saturating_add(size);
        let row_id = doc.metadata.fields.get("row_id").and_then(Value::as_str).unwrap_or("row").to_string();
        let filename: String = format!("row-{row_id}.txt")
            .chars()
            .filter(|ch| !ch.is_control() && !matches!(ch, '/' | '\\'))
            .take(200)
            .collect();
        let doc_id = new_id(DOCUMENT_PREFIX)?;
        let path = dir.join(&doc_id);
        tokio::fs::write(&path, bytes).await.map_err(|e| ServerError::io(&path, e))?;
        let metadata = Value::Object(doc.metadata.fields.clone().into_iter().collect());
        let t = now();
        sqlx::query(
            "INSERT INTO documents (id, collection_id, organization_id, filename, content_hash, bytes, media_type, \
             metadata, status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'text/plain', $7, 'queued', $8, $8)",
        )
        .bind(&doc_id)
        .bind(&c.id)
        .bind(&org.id)
        .bind(&filename)
        .bind(&hash)
        .bind(size)
        .bind(metadata.to_string())
        .bind(t)
        .execute(state.db().pool())
        .await
        .map_err(ServerError::db("insert document"))?;
        out.push(load_doc(state.db(), &org.id, &c.id, &doc_id).await?.obj);
    }
    state.wake_workers();
    Ok(Json(List { object: "list".into(), data: out }))
}

async fn load_doc(db: &Db, org_id: &str, collection_id: &str, doc_id: &str) -> Result<DocRow> {
    let nf = || ServerError::NotFound { kind: "document", id: doc_id.to_string() };
    if !is_id(doc_id, DOCUMENT_PREFIX) {
        return Err(nf());
    }
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {DOC_COLUMNS} FROM documents WHERE id = $1 AND collection_id = $2 AND organization_id = $3"
    )))
    .bind(doc_id)
    .bind(collection_id)
    .bind(org_id)
    .fetch_optional(db.pool())
    .await
    .map_err(ServerError::db("find document"))?
    .ok_or_else(nf)?;
    DocRow::from_row(&row)
}

/// The collection's documents with their status, newest first.
#[utoipa::path(get, path = "/v1/collections/{id}/documents", tag = "collections", security(("bearer" = [])),
    params(("id" = String, Path, description = "The collection's id")),
    responses((status = 200, description = "The documents", body = List<DocumentObject>),
              (status = 404, description = "No such collection", body = crate::ErrorBody)))]
pub async fn list_documents(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<List<DocumentObject>>> {
    let c = load_collection(state.db(), &org.id, &id).await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {DOC_COLUMNS} FROM documents WHERE collection_id = $1 AND organization_id = $2 ORDER BY created_at DESC, id DESC"
    )))
    .bind(&c.id)
    .bind(&org.id)
    .fetch_all(state.db().pool())
    .await
    .map_err(ServerError::db("list documents"))?;
    let data = rows.iter().map(|r| DocRow::from_row(r).map(|d| d.obj)).collect::<Result<_>>()?;
    Ok(Json(List { object: "list".into(), data }))
}

/// One document.
#[utoipa::path(get, path = "/v1/collections/{id}/documents/{doc}", tag = "collections", security(("bearer" = [])),
    params(("id" = String, Path, description = "The collection's id"), ("doc" = String, Path, description = "The document's id")),
    responses((status = 200, description = "The document", body = DocumentObject),
              (status = 404, description = "No such document", body = crate::ErrorBody)))]
pub async fn retrieve_document(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath((id, doc)): UrlPath<(String, String)>,
) -> Result<Json<DocumentObject>> {
    Ok(Json(load_doc(state.db(), &org.id, &id, &doc).await?.obj))
}

/// Deletes a document: its chunks leave the index before this answers.
#[utoipa::path(delete, path = "/v1/collections/{id}/documents/{doc}", tag = "collections", security(("bearer" = [])),
    params(("id" = String, Path, description = "The collection's id"), ("doc" = String, Path, description = "The document's id")),
    responses((status = 200, description = "Deleted"),
              (status = 404, description = "No such document", body = crate::ErrorBody)))]
pub async fn delete_document(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath((id, doc)): UrlPath<(String, String)>,
) -> Result<Json<Value>> {
    let d = load_doc(state.db(), &org.id, &id, &doc).await?;
    // On PostgreSQL the rows go before the document, so a failure leaves it to delete again.
    let pg = if d.obj.status == "indexed" { pg_vectors(&state).await? } else { None };
    let pg_done = pg.is_some();
    if let Some(pg) = pg {
        // Its rows by the content id its chunks carry: unique in the collection, since the
        // same bytes uploaded again are the same document (`find_by_hash`).
        let chunks_path = collection_dir(&state, &org.id, &id).join("docs").join(format!("{}.chunks.json", d.obj.id));
        let (org_id, cid, key) = (org.id.clone(), id.clone(), d.doc_key.clone());
        tokio::task::spawn_blocking(move || -> Result<()> {
            let Some(store) = pg.open(&org_id, &cid).map_err(|e| pg_err(&cid, "opening", &e))? else {
                return Ok(());
            };
            let removed = match key {
                Some(key) => store.remove_docs(&[DocId::from_string(key)]),
                // Indexed before the content id was recorded: the chunk ids the worker wrote.
                None => {
                    let chunks: Vec<Chunk> = std::fs::read_to_string(&chunks_path)
                        .ok()
                        .and_then(|t| serde_json::from_str(&t).ok())
                        .unwrap_or_default();
                    let ids: Vec<ChunkId> = chunks.into_iter().map(|c| c.id).collect();
                    store.remove_chunks(&ids)
                }
            };
            removed.map(|_| ()).map_err(|e| pg_err(&cid, "removing a document from", &e))
        })
        .await
        .map_err(join_err)??;
    }
    sqlx::query("DELETE FROM documents WHERE id = $1 AND organization_id = $2")
        .bind(&d.obj.id)
        .bind(&org.id)
        .execute(state.db().pool())
        .await
        .map_err(ServerError::db("delete document"))?;
    if d.obj.status == "indexed" && !pg_done {
        let emb = embedder(&state).await?;
        let (st, org_id, cid, doc_id) = (state.clone(), org.id.clone(), id.clone(), d.obj.id.clone());
        tokio::task::spawn_blocking(move || -> Result<()> {
            update_index(&st, &org_id, &cid, emb.as_ref(), |index| {
                let removed =
                    index.remove_where(|c| c.metadata.get("document_id").and_then(Value::as_str) == Some(&doc_id));
                Ok(removed > 0)
            })
        })
        .await
        .map_err(|e| ServerError::Internal(e.to_string()))??;
    }
    add_event(
        state.db(),
        &id,
        Some(&d.obj.id),
        "info",
        &format!("{} deleted", d.obj.filename),
        Some(json!({"status": "deleted"})),
    )
    .await;
    let dir = collection_dir(&state, &org.id, &id).join("docs");
    let _ = tokio::fs::remove_file(dir.join(&d.obj.id)).await;
    let _ = tokio::fs::remove_file(dir.join(format!("{}.json", d.obj.id))).await;
    Ok(Json(json!({"id": d.obj.id, "object": "collection.document", "deleted": true})))
}

/// The original file, as uploaded.
#[utoipa::path(get, path = "/v1/collections/{id}/documents/{doc}/content", tag = "collections", security(("bearer" = [])),
    params(("id" = String, Path, description = "The collection's id"), ("doc" = String, Path, description = "The document's id")),
    responses((status = 200, description = "The file's bytes"),
              (status = 404, description = "No such document", body = crate::ErrorBody)))]
pub async fn document_content(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath((id, doc)): UrlPath<(String, String)>,
) -> Result<Response> {
    let d = load_doc(state.db(), &org.id, &id, &doc).await?;
    let path = collection_dir(&state, &org.id, &id).join("docs").join(&d.obj.id);
    let file =
        tokio::fs::File::open(&path).await.map_err(|_| ServerError::NotFound { kind: "document content", id: doc })?;
    let stream = tokio_util::io::ReaderStream::new(file);
    let name: String = d.obj.filename.chars().filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\').collect();
    Ok((
        [(CONTENT_TYPE, d.obj.media_type.clone()), (CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\""))],
        Body::from_stream(stream),
    )
        .into_response())
}

async fn read_document(state: &AppState, org_id: &str, collection_id: &str, doc_id: &str) -> Result<Document> {
    let path = collection_dir(state, org_id, collection_id).join("docs").join(format!("{doc_id}.json"));
    let text = tokio::fs::read_to_string(&path)
        .await
        .map_err(|_| ServerError::NotFound { kind: "document text (not indexed yet)", id: doc_id.to_string() })?;
    serde_json::from_str(&text).map_err(|e| ServerError::Internal(format!("{}: {e}", path.display())))
}

/// A page's extracted text and the chunks on it: what a citation `[file, p. N]` points at.
/// Unpaged formats have one page.
#[utoipa::path(get, path = "/v1/collections/{id}/documents/{doc}/pages/{n}", tag = "collections", security(("bearer" = [])),
    params(("id" = String, Path, description = "The collection's id"), ("doc" = String, Path, description = "The document's id"),
           ("n" = usize, Path, description = "1-based page")),
    responses((status = 200, description = "The page", body = PageText),
              (status = 404, description = "No such document or page", body = crate::ErrorBody)))]
pub async fn document_page(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath((id, doc, n)): UrlPath<(String, String, usize)>,
) -> Result<Json<PageText>> {
    let d = load_doc(state.db(), &org.id, &id, &doc).await?;
    let document = read_document(&state, &org.id, &id, &d.obj.id).await?;
    let spans: Vec<(usize, usize)> = if document.pages.is_empty() {
        vec![(0, document.text.len())]
    } else {
        document.pages.iter().map(|p| (p.start, p.end)).collect()
    };
    let Some(&(start, end)) = n.checked_sub(1).and_then(|i| spans.get(i)) else {
        return Err(ServerError::NotFound { kind: "page", id: n.to_string() });
    };
    let text = document.text.get(start..end).unwrap_or_default().to_string();
    let chunks_path = collection_dir(&state, &org.id, &id).join("docs").join(format!("{}.chunks.json", d.obj.id));
    let chunks: Vec<Chunk> = tokio::fs::read_to_string(&chunks_path)
        .await
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let on_page = chunks
        .iter()
        .filter(|c| c.span.start < end && start < c.span.end)
        .map(|c| {
            json!({"chunk_id": c.id.as_str(), "start": c.span.start.max(start) - start,
                   "end": c.span.end.min(end) - start, "chunk_index": c.chunk_index})
        })
        .collect();
    Ok(Json(PageText { document_id: d.obj.id, page: n, pages: spans.len(), text, page_start: start, chunks: on_page }))
}

/// Records a progress event of a collection's document.
async fn add_event(
    db: &Db,
    collection_id: &str,
    document_id: Option<&str>,
    level: &str,
    message: &str,
    data: Option<Value>,
) {
    let id = match new_id("colevent-") {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "no random source for an event id");
            return;
        }
    };
    let stored = sqlx::query(
        "INSERT INTO collection_events (id, collection_id, document_id, created_at, level, message, data) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(collection_id)
    .bind(document_id)
    .bind(now())
    .bind(level)
    .bind(message)
    .bind(data.map(|d| d.to_string()))
    .execute(db.pool())
    .await;
    if let Err(e) = stored {
        // An event is a report: failing to store one must not fail the work it reports.
        tracing::warn!(collection = %collection_id, error = %e, "storing a collection event failed");
    }
}

/// Query of the events list.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// The id of the last event seen: only later ones are returned (oldest first then).
    pub after: Option<String>,
    /// Events (default 50, at most 1000).
    pub limit: Option<i64>,
}

/// The progress of a collection's documents: `queued`, `ingesting`, `indexed` (pages, chunks,
/// seconds), `failed` (the reason), `deleted`; newest first, or with `after` the events after
/// that one, oldest first (poll with the last id seen).
#[utoipa::path(get, path = "/v1/collections/{id}/events", tag = "collections", security(("bearer" = [])),
    params(("id" = String, Path, description = "The collection's id"), EventsQuery),
    responses((status = 200, description = "The events"),
              (status = 404, description = "No such collection", body = crate::ErrorBody)))]
pub async fn collection_events(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(id): UrlPath<String>,
    axum::extract::Query(q): axum::extract::Query<EventsQuery>,
) -> Result<Json<Value>> {
    let c = load_collection(state.db(), &org.id, &id).await?;
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let cols = "seq, id, document_id, created_at, level, message, data";
    let rows = match &q.after {
        Some(after) => {
            let seq: i64 = sqlx::query("SELECT seq FROM collection_events WHERE id = $1 AND collection_id = $2")
                .bind(after)
                .bind(&c.id)
                .fetch_optional(state.db().pool())
                .await
                .map_err(ServerError::db("find event"))?
                .ok_or_else(|| {
                    ServerError::bad_request(format!("after {after:?}: no such event"), Some("after"), None)
                })?
                .try_get("seq")
                .map_err(ServerError::db("decode event"))?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {cols} FROM collection_events WHERE collection_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            )))
            .bind(&c.id)
            .bind(seq)
            .bind(limit)
            .fetch_all(state.db().pool())
            .await
        }
        None => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {cols} FROM collection_events WHERE collection_id = $1 ORDER BY seq DESC LIMIT $2"
            )))
            .bind(&c.id)
            .bind(limit)
            .fetch_all(state.db().pool())
            .await
        }
    }
    .map_err(ServerError::db("list events"))?;
    let mut data = Vec::with_capacity(rows.len());
    for r in &rows {
        let d = || ServerError::db("decode event");
        let extra: Option<String> = r.try_get("data").map_err(d())?;
        data.push(json!({
            "id": r.try_get::<String, _>("id").map_err(d())?,
            "object": "collection.event",
            "document_id": r.try_get::<Option<String>, _>("document_id").map_err(d())?,
            "created_at": r.try_get::<i64, _>("created_at").map_err(d())?,
            "level": r.try_get::<String, _>("level").map_err(d())?,
            "message": r.try_get::<String, _>("message").map_err(d())?,
            "data": extra.and_then(|x| serde_json::from_str::<Value>(&x).ok()),
        }));
    }
    Ok(Json(json!({"object": "list", "data": data})))
}

/// The index filter of a request's `filter` object.
///
/// # Errors
/// [`ServerError::BadRequest`] for a value that is not a string, number, boolean or list of them.
pub fn filter_of(filter: Option<&Map<String, Value>>) -> Result<Filter> {
    let mut exprs = Vec::new();
    for (k, v) in filter.into_iter().flatten() {
        let values: Vec<&Value> = match v {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        for v in values {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(_) | Value::Bool(_) => v.to_string(),
                _ => {
                    return Err(ServerError::bad_request(
                        format!("filter.{k}: a string, number, boolean or a list of them"),
                        Some(&format!("filter.{k}")),
                        Some("invalid_value"),
                    ));
                }
            };
            exprs.push(format!("{k}={s}"));
        }
    }
    Filter::parse(&exprs).map_err(|e| ServerError::bad_request(e.to_string(), Some("filter"), Some("invalid_value")))
}

/// Searches a collection: its `k` chunks that best match the query (in `mode`) and pass the
/// filter.
///
/// # Errors
/// Those of the embedder and the index.
pub async fn search_collection(
    state: &AppState,
    org_id: &str,
    collection_id: &str,
    query: &str,
    k: usize,
    filter: Filter,
    mode: Retrieval,
) -> Result<Vec<Source>> {
    let retriever = retriever_of(state, org_id, collection_id, filter, mode).await?;
    let (pg, cid, query) =
        (matches!(retriever.index, CollectionIndex::Pg(_)), collection_id.to_string(), query.to_string());
    tokio::task::spawn_blocking(move || -> Result<Vec<Source>> {
        let hits = retriever.search(&query, k).map_err(|e| {
            if pg { pg_err(&cid, "searching", &e) } else { ServerError::Internal(format!("search: {e}")) }
        })?;
        Ok(hits.iter().map(|h| source_of(&h.chunk, h.score)).collect())
    })
    .await
    .map_err(join_err)?
}

/// A chunk as a search result.
#[must_use]
pub fn source_of(c: &Chunk, score: f32) -> Source {
    let str_meta = |k: &str| c.metadata.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    Source {
        document_id: str_meta("document_id"),
        filename: str_meta("filename"),
        pages: c.pages.map(|p| [p.first, p.last]),
        span: [c.span.start, c.span.end],
        text: c.text.clone(),
        score,
        metadata: serde_json::to_value(&c.metadata).unwrap_or(Value::Null),
    }
}

/// Searches the collection.
#[utoipa::path(post, path = "/v1/collections/{id}/search", tag = "collections", security(("bearer" = [])),
    params(("id" = String, Path, description = "The collection's id")),
    request_body = SearchRequest,
    responses((status = 200, description = "The nearest chunks", body = List<Source>),
              (status = 404, description = "No such collection", body = crate::ErrorBody)))]
pub async fn search(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(id): UrlPath<String>,
    body: axum::body::Bytes,
) -> Result<Json<List<Source>>> {
    let c = load_collection(state.db(), &org.id, &id).await?;
    let req: SearchRequest = serde_json::from_slice(&body)
        .map_err(|e| ServerError::bad_request(format!("invalid request: {e}"), None, Some("invalid_json")))?;
    if req.query.trim().is_empty() {
        return Err(ServerError::bad_request("query is empty", Some("query"), Some("invalid_value")));
    }
    let k = req.k.unwrap_or(5);
    if !(1..=MAX_K).contains(&k) {
        return Err(ServerError::unprocessable(format!("k: 1 to {MAX_K}"), "k"));
    }
    let filter = filter_of(req.filter.as_ref())?;
    let mode = retrieval_of(req.retrieval.as_deref(), "retrieval")?;
    let data = search_collection(&state, &org.id, &c.id, &req.query, k, filter, mode).await?;
    Ok(Json(List { object: "list".into(), data }))
}

// The ingest worker.

/// Takes the oldest queued document (or one whose worker's lease ran out).
async fn claim(db: &Db, owner: &str, lease: i64) -> Result<Option<DocRow>> {
    let t = now();
    let claimable = "status IN ('queued', 'ingesting') AND (lease_expires_at IS NULL OR lease_expires_at < $3)";
    let set = "lease_owner = $1, lease_expires_at = $2, status = 'ingesting', updated_at = $3";
    let n = sqlx::query(sqlx::AssertSqlSafe(db.claim_sql("documents", set, claimable, "created_at, id")))
        .bind(owner)
        .bind(t + lease)
        .bind(t)
        .execute(db.pool())
        .await
        .map_err(ServerError::db("claim document"))?
        .rows_affected();
    if n == 0 {
        return Ok(None);
    }
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {DOC_COLUMNS} FROM documents WHERE lease_owner = $1")))
        .bind(owner)
        .fetch_optional(db.pool())
        .await
        .map_err(ServerError::db("claimed document"))?;
    row.as_ref().map(DocRow::from_row).transpose()
}

async fn settle_doc(
    db: &Db,
    id: &str,
    owner: &str,
    result: std::result::Result<(i64, i64, String), String>,
) -> Result<()> {
    let t = now();
    let q = match &result {
        Ok((pages, chunks, key)) => sqlx::query(
            "UPDATE documents SET status = 'indexed', error = NULL, pages = $1, chunks = $2, doc_key = $3, \
             lease_owner = NULL, lease_expires_at = NULL, updated_at = $4 WHERE id = $5 AND lease_owner = $6",
        )
        .bind(*pages)
        .bind(*chunks)
        .bind(key.clone()),
        Err(why) => sqlx::query(
            "UPDATE documents SET status = 'failed', error = $1, pages = $2, chunks = $3, doc_key = $4, \
             lease_owner = NULL, lease_expires_at = NULL, updated_at = $5 WHERE id = $6 AND lease_owner = $7",
        )
        .bind(why.clone())
        .bind(None::<i64>)
        .bind(None::<i64>)
        .bind(None::<String>),
    };
    q.bind(t).bind(id).bind(owner).execute(db.pool()).await.map_err(ServerError::db("settle document"))?;
    Ok(())
}

/// Ingests and indexes one claimed document; the outcome is its status.
async fn process(state: &AppState, d: &DocRow) -> std::result::Result<(i64, i64, String), String> {
    let dir = collection_dir(state, &d.organization_id, &d.obj.collection_id).join("docs");
    let path = dir.join(&d.obj.id);
    let name = loader_name(&d.obj.filename, &d.obj.media_type);
    let timeout = state.config().document_timeout;
    let parse = tokio::task::spawn_blocking(move || -> std::result::Result<(Document, Vec<Chunk>), String> {
        let bytes = std::fs::read(&path).map_err(|e| format!("reading the upload: {e}"))?;
        let doc = docraft_ingest::AutoLoader::new().load(Path::new(&name), &bytes).map_err(|e| e.to_string())?;
        if doc.text.trim().is_empty() {
            return Err("no text could be extracted (a scanned PDF without a text layer?)".into());
        }
        let settings =
            docraft_pipeline::stage::ingest::chunk_settings(&docraft_pipeline::settings::IngestSettings::default())
                .map_err(|e| e.to_string())?;
        let chunks = docraft_ingest::TextChunker::new(settings).chunk(&doc).map_err(|e| e.to_string())?;
        Ok((doc, chunks))
    });
    let (mut doc, mut chunks) = match tokio::time::timeout(timeout, parse).await {
        Err(_) => return Err(format!("reading the file took longer than {} s; it was given up", timeout.as_secs())),
        Ok(Err(join)) => return Err(format!("the reader failed: {join}")),
        Ok(Ok(r)) => r?,
    };
    doc.source.clone_from(&d.obj.filename);
    let user_meta: Map<String, Value> = d.obj.metadata.as_ref().and_then(Value::as_object).cloned().unwrap_or_default();
    for c in &mut chunks {
        c.source.clone_from(&d.obj.filename);
        for (k, v) in &user_meta {
            c.metadata.insert(k.clone(), v.clone());
        }
        c.metadata.insert("document_id".into(), Value::String(d.obj.id.clone()));
        c.metadata.insert("filename".into(), Value::String(d.obj.filename.clone()));
    }
    let pages = i64::try_from(doc.pages.len()).unwrap_or(0);
    let n_chunks = i64::try_from(chunks.len()).unwrap_or(0);
    let key = doc.id.as_str().to_string();
    let json_path = dir.join(format!("{}.json", d.obj.id));
    let chunks_path = dir.join(format!("{}.chunks.json", d.obj.id));
    let doc_json = serde_json::to_vec(&doc).map_err(|e| e.to_string())?;
    let chunks_json = serde_json::to_vec(&chunks).map_err(|e| e.to_string())?;
    tokio::fs::write(&json_path, doc_json).await.map_err(|e| format!("writing the text: {e}"))?;
    tokio::fs::write(&chunks_path, chunks_json).await.map_err(|e| format!("writing the chunks: {e}"))?;
    // The collection's own model: the configured one, or the one its vectors were made with.
    let (_, emb) = index_of(state, &d.organization_id, &d.obj.collection_id).await.map_err(|e| e.to_string())?;
    let (st, org_id, cid) = (state.clone(), d.organization_id.clone(), d.obj.collection_id.clone());
    let pg = pg_vectors(state).await.map_err(|e| e.to_string())?;
    tokio::task::spawn_blocking(move || -> Result<()> {
        // Embed outside the locks: searches and other writers go on meanwhile.
        let mut staging = VectorIndex::new(emb.model_id(), docraft_index::HnswParams::default())
            .map_err(|e| ServerError::Internal(e.to_string()))?;
        staging
            .add_chunks(emb.as_ref(), chunks, &SyncOptions::new())
            .map_err(|e| ServerError::Internal(e.to_string()))?;
        let (rows, vectors): (Vec<Chunk>, Vec<Vec<f32>>) =
            staging.chunks().filter_map(|c| staging.vector(&c.id).map(|v| (c.clone(), v.to_vec()))).unzip();
        if let Some(pg) = pg {
            // PostgreSQL orders the writers: no index directory, lock file or stamp.
            let model_dir = st.config().embedder_dir();
            let params = docraft_index::HnswParams::default();
            let stored = pg
                .create(&org_id, &cid, &emb.model_id(), model_dir.to_str(), params, false)
                .and_then(|mut store| store.insert(rows, vectors));
            // The reason (naming the database) goes to the log; the document's error says where.
            return stored.map(|_| ()).map_err(|e| {
                tracing::error!(collection = %cid, error = %e, "storing a document's vectors failed");
                ServerError::Internal(format!(
                    "storing the vectors in collection {cid} (pgvector) failed; the server's log has why"
                ))
            });
        }
        update_index(&st, &org_id, &cid, emb.as_ref(), |index| {
            index.insert(rows, vectors).map_err(|e| ServerError::Internal(e.to_string()))?;
            Ok(true)
        })
    })
    .await
    .map_err(|e| format!("indexing failed: {e}"))?
    .map_err(|e| format!("indexing failed: {e}"))?;
    Ok((pages, n_chunks, key))
}

/// One ingest worker: claims queued documents and processes them until `stop` says so.
pub(crate) async fn document_worker(state: AppState, index: usize, mut stop: tokio::sync::watch::Receiver<bool>) {
    let lease = i64::try_from(state.config().document_timeout.as_secs().saturating_mul(2).max(30)).unwrap_or(300);
    loop {
        if *stop.borrow() {
            return;
        }
        let owner = match new_id("") {
            Ok(r) => format!("d{index}-{}-{r}", std::process::id()),
            Err(_) => return,
        };
        match claim(state.db(), &owner, lease).await {
            Ok(Some(d)) => {
                let cid = d.obj.collection_id.clone();
                add_event(
                    state.db(),
                    &cid,
                    Some(&d.obj.id),
                    "info",
                    &format!("{} ingesting", d.obj.filename),
                    Some(json!({"status": "ingesting"})),
                )
                .await;
                let started = std::time::Instant::now();
                let result = process(&state, &d).await;
                let secs = started.elapsed().as_secs_f64();
                match &result {
                    Ok((pages, chunks, _)) => {
                        let msg = format!("{} indexed: {pages} pages, {chunks} chunks in {secs:.1} s", d.obj.filename);
                        let data = json!({"status": "indexed", "pages": pages, "chunks": chunks, "seconds": secs});
                        add_event(state.db(), &cid, Some(&d.obj.id), "info", &msg, Some(data)).await;
                    }
                    Err(why) => {
                        let msg = format!("{} failed: {why}", d.obj.filename);
                        add_event(state.db(), &cid, Some(&d.obj.id), "error", &msg, Some(json!({"status": "failed"})))
                            .await;
                    }
                }
                if let Err(why) = &result {
                    tracing::warn!(document = %d.obj.id, reason = %why, "document failed");
                }
                if let Err(e) = settle_doc(state.db(), &d.obj.id, &owner, result).await {
                    tracing::error!(document = %d.obj.id, error = %e, "storing a document's status failed");
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "claiming a document failed"),
        }
        tokio::select! {
            () = state.workers_notified() => {}
            () = tokio::time::sleep(state.config().poll) => {}
            _ = stop.changed() => {}
        }
    }
}

/// How long the worker gives one document by default.
pub const DEFAULT_DOCUMENT_TIMEOUT: Duration = Duration::from_secs(120);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn types_are_sniffed_from_the_bytes() {
        assert_eq!(sniff("a.txt", b"%PDF-1.7\n").unwrap(), "application/pdf");
        assert_eq!(sniff("notes.md", "# Título\n".as_bytes()).unwrap(), "text/markdown");
        assert_eq!(sniff("notes.pdf", b"plain words").unwrap(), "text/plain");
        assert!(sniff("a.pdf", b"PK\x03\x04rest").unwrap_err().contains("archive"));
        assert!(sniff("a.txt", b"\x7fELF").unwrap_err().contains("executable"));
        assert!(sniff("a.txt", b"ab\0cd").unwrap_err().contains("binary"));
        assert_eq!(sniff("memo.txt", b"\xff\xfeH\0i\0").unwrap(), "text/plain");
        assert_eq!(loader_name("report.txt", "application/pdf"), "report.pdf");
    }

    #[test]
    fn filters_from_json() {
        let m: Map<String, Value> = serde_json::from_str(r#"{"team": ["legal", "hr"], "year": 2024}"#).unwrap();
        assert!(!filter_of(Some(&m)).unwrap().is_empty());
        let bad: Map<String, Value> = serde_json::from_str(r#"{"team": {"x": 1}}"#).unwrap();
        assert_eq!(filter_of(Some(&bad)).unwrap_err().body().error.param.as_deref(), Some("filter.team"));
    }
}
