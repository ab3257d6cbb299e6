//! [`PgVectorStore`]: chunk vectors in PostgreSQL with pgvector, for collections that outgrow
//! one machine's memory and for several processes sharing one store.
//!
//! Layout: a catalog table `docraft_vector_collections` (organization, collection, model,
//! dimension, graph settings) and one table per collection, named by a hash of organization
//! and collection (no user text ever reaches an identifier):
//!
//! ```sql
//! CREATE TABLE docraft_vec_<hash> (chunk_id text PRIMARY KEY, doc_id text, source text,
//!     page_first int, page_last int, metadata jsonb, chunk jsonb, embedding vector(DIM),
//!     terms_len int);
//! CREATE INDEX ... USING hnsw (embedding vector_cosine_ops) WITH (m = .., ef_construction = ..);
//! CREATE TABLE docraft_vec_<hash>_terms (term text, chunk_id text, tf int, len int,
//!     PRIMARY KEY (term, chunk_id));
//! ```
//!
//! The `_terms` table is the collection's keyword index: each chunk's BM25 terms with their
//! frequencies and the chunk's length in terms (the catalog keeps the collection's chunk count
//! and total length, updated by the same statements), written in the same transaction as its vector, with
//! the terms of the in-memory [`crate::KeywordIndex`]; [`PgVectorStore::search_keywords`] scores
//! them in SQL with the same BM25, so a collection searches by keywords and hybrid in
//! PostgreSQL as a directory does in memory. A collection made before the keyword index
//! existed gets it on first open.
//!
//! Filters become SQL in the same `WHERE` as the index scan, and searches run with
//! `hnsw.iterative_scan = relaxed_order` (results re-sorted), so a selective filter still
//! returns `k` chunks. Rows arrive by `COPY` into a temporary table and one `INSERT … ON
//! CONFLICT DO NOTHING`; the HNSW index is built after the first load, or after a sync's last
//! batch (faster than growing it row by row), and kept up to date by PostgreSQL after that. Deleting a document deletes its
//! rows: no tombstones.
//!
//! The store is synchronous like the embedded index: it owns a small Tokio runtime for the
//! driver and waits on it, so call it from a blocking context (a thread, or
//! `spawn_blocking` inside an async server), as with the HNSW index.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use docraft_core::{
    Chunk, ChunkId, Condition, DocId, Embedder, Filter, RetrieveError, Scored, StoreError, VectorStore,
};
use serde_json::Value;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Row};

use crate::error::{IndexError, Result};
use crate::keyword::{BM25_B, BM25_K1, KeywordSearch, query_terms, term_counts};
use crate::store::{embed_in_groups, new_chunks, normalized};
use crate::url::redact;
use crate::{HnswParams, StoreLocation, SyncOptions, SyncReport};

const CATALOG: &str = "docraft_vector_collections";
/// Rows per `COPY` while syncing: what a crash can cost, and the granularity of resuming.
const LOAD_BATCH: usize = 2048;
/// pgvector's limits on the graph settings.
const MAX_M: usize = 100;
const MAX_EF: usize = 1000;

/// A connection pool to one PostgreSQL database with its own driver runtime; cheap to clone.
/// Opens, creates and drops collections ([`PgVectorStore`]s) in it.
#[derive(Clone)]
pub struct PgVectors {
    inner: Arc<Conn>,
}

struct Conn {
    runtime: Option<tokio::runtime::Runtime>,
    pool: PgPool,
    shown: String,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            // Close the connections on a thread of our own (never inside the caller's async
            // context, where blocking would panic), then stop the runtime without waiting.
            let pool = self.pool.clone();
            std::thread::scope(|s| {
                s.spawn(|| rt.block_on(pool.close()));
            });
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for PgVectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgVectors").field("database", &self.inner.shown).finish_non_exhaustive()
    }
}

impl PgVectors {
    /// Connects to the database at `url` (a `postgres://` URL; `collection=` and
    /// `organization=` parameters are ignored here) with up to `max_connections`, and makes
    /// sure pgvector and the catalog table exist.
    ///
    /// # Errors
    /// [`IndexError::Postgres`] naming the URL (without its password): unreachable, refused,
    /// or pgvector not installable (`CREATE EXTENSION vector` needs the right privileges).
    pub fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let url = match StoreLocation::parse(url) {
            Ok(StoreLocation::Postgres { url, .. }) => url,
            _ => strip_docraft_params(url),
        };
        let shown = redact(&url);
        let fail = |e: &dyn std::fmt::Display| IndexError::Postgres { store: shown.clone(), reason: e.to_string() };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("docraft-pgvector")
            .enable_all()
            .build()
            .map_err(|e| fail(&e))?;
        let opts = PgPoolOptions::new().max_connections(max_connections.max(1));
        let pool = runtime.block_on(opts.connect(&url)).map_err(|e| fail(&e))?;
        let this = Self { inner: Arc::new(Conn { runtime: Some(runtime), pool, shown: shown.clone() }) };
        this.run(|pool| async move {
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock(7262746374706731)").execute(&mut *tx).await?;
            sqlx::query("CREATE EXTENSION IF NOT EXISTS vector").execute(&mut *tx).await?;
            sqlx::query(AssertSqlSafe(format!(
                "CREATE TABLE IF NOT EXISTS {CATALOG} (organization text NOT NULL, collection text NOT NULL, \
                 table_name text NOT NULL UNIQUE, model_id text NOT NULL, model_dir text, dim integer, \
                 m integer NOT NULL, ef_construction integer NOT NULL, created_at bigint NOT NULL, \
                 PRIMARY KEY (organization, collection))"
            )))
            .execute(&mut *tx)
            .await?;
            // Whether the collection's table has its keyword index (collections made before it
            // existed get it on first open).
            sqlx::query(AssertSqlSafe(format!(
                "ALTER TABLE {CATALOG} ADD COLUMN IF NOT EXISTS keyword_terms boolean NOT NULL DEFAULT false, \
                 ADD COLUMN IF NOT EXISTS keyword_chunks bigint NOT NULL DEFAULT 0, \
                 ADD COLUMN IF NOT EXISTS keyword_length bigint NOT NULL DEFAULT 0"
            )))
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        })
        .map_err(|e| fail(&format!("setting up pgvector: {e}")))?;
        Ok(this)
    }

    /// The database URL without its password.
    #[must_use]
    pub fn shown(&self) -> &str {
        &self.inner.shown
    }

    /// Runs `f(pool)` on the driver's runtime and waits for it (from any thread: the work is
    /// spawned there, this thread only blocks on a channel).
    fn run<T, F, Fut>(&self, f: F) -> std::result::Result<T, sqlx::Error>
    where
        T: Send + 'static,
        F: FnOnce(PgPool) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, sqlx::Error>> + Send + 'static,
    {
        let Some(rt) = self.inner.runtime.as_ref() else {
            return Err(sqlx::Error::PoolClosed);
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let fut = f(self.inner.pool.clone());
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().unwrap_or(Err(sqlx::Error::WorkerCrashed))
    }

    /// The collection `collection` of `organization`, or `None` if it was never created.
    ///
    /// # Errors
    /// [`IndexError::Postgres`].
    pub fn open(&self, organization: &str, collection: &str) -> Result<Option<PgVectorStore>> {
        let (org, col) = (organization.to_string(), collection.to_string());
        let row = self
            .run(|pool| async move {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT table_name, model_id, model_dir, dim, m, ef_construction, keyword_terms \
                     FROM {CATALOG} WHERE organization = $1 AND collection = $2"
                )))
                .bind(org)
                .bind(col)
                .fetch_optional(&pool)
                .await
            })
            .map_err(|e| self.err(collection, &e))?;
        let Some(row) = row else { return Ok(None) };
        let get = |e: sqlx::Error| self.err(collection, &e);
        let table: String = row.try_get(0).map_err(get)?;
        if !valid_table(&table) {
            return Err(self.err(collection, &format!("the catalog names an unexpected table {table:?}")));
        }
        let dim: Option<i32> = row.try_get(3).map_err(get)?;
        let m: i32 = row.try_get(4).map_err(get)?;
        let efc: i32 = row.try_get(5).map_err(get)?;
        let keyword_terms: bool = row.try_get(6).map_err(get)?;
        let params = HnswParams {
            max_connections: usize::try_from(m).unwrap_or(16),
            ef_construction: usize::try_from(efc).unwrap_or(200),
            ..HnswParams::default()
        };
        let store = PgVectorStore {
            db: self.clone(),
            organization: organization.to_string(),
            collection: collection.to_string(),
            table,
            model_id: row.try_get(1).map_err(get)?,
            model_dir: row.try_get(2).map_err(get)?,
            dim: dim.and_then(|d| usize::try_from(d).ok()).unwrap_or(0),
            ef_search: params.ef_search.min(MAX_EF),
            params,
        };
        if store.dim != 0 && !keyword_terms {
            store.add_keyword_index()?;
        }
        Ok(Some(store))
    }

    /// Opens the collection, creating it for `model_id` when it does not exist. An existing
    /// collection of another model is an error unless `replace`, which drops it and starts
    /// empty (as does `replace` on a collection of the same model).
    ///
    /// # Errors
    /// [`IndexError::ModelMismatch`]; [`IndexError::Postgres`].
    pub fn create(
        &self,
        organization: &str,
        collection: &str,
        model_id: &str,
        model_dir: Option<&str>,
        params: HnswParams,
        replace: bool,
    ) -> Result<PgVectorStore> {
        if let Some(old) = self.open(organization, collection)? {
            if !replace && old.model_id != model_id {
                return Err(IndexError::ModelMismatch {
                    index_model: old.model_id,
                    embedder_model: model_id.to_string(),
                });
            }
            if !replace {
                return Ok(old);
            }
            old.drop_collection()?;
        }
        let table = table_name(organization, collection);
        let (org, col, model, dir, t) = (
            organization.to_string(),
            collection.to_string(),
            model_id.to_string(),
            model_dir.map(str::to_string),
            table.clone(),
        );
        let m = i32::try_from(params.max_connections.clamp(2, MAX_M)).unwrap_or(16);
        let efc = i32::try_from(params.ef_construction.clamp(4, MAX_EF)).unwrap_or(200);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        self.run(|pool| async move {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {CATALOG} (organization, collection, table_name, model_id, model_dir, dim, m, \
                 ef_construction, created_at) VALUES ($1, $2, $3, $4, $5, NULL, $6, $7, $8) \
                 ON CONFLICT (organization, collection) DO NOTHING"
            )))
            .bind(org)
            .bind(col)
            .bind(t)
            .bind(model)
            .bind(dir)
            .bind(m)
            .bind(efc)
            .bind(now)
            .execute(&pool)
            .await
        })
        .map_err(|e| self.err(collection, &e))?;
        // Another process may have created it first: what the catalog says now is the store.
        let store = self
            .open(organization, collection)?
            .ok_or_else(|| self.err(collection, &"the collection vanished while it was created"))?;
        if store.model_id != model_id {
            return Err(IndexError::ModelMismatch {
                index_model: store.model_id,
                embedder_model: model_id.to_string(),
            });
        }
        Ok(store)
    }

    /// Drops the collection (its table and catalog row); nothing if it does not exist.
    ///
    /// # Errors
    /// [`IndexError::Postgres`].
    pub fn drop_collection(&self, organization: &str, collection: &str) -> Result<()> {
        match self.open(organization, collection)? {
            Some(store) => store.drop_collection(),
            None => Ok(()),
        }
    }

    fn err(&self, collection: &str, e: &dyn std::fmt::Display) -> IndexError {
        IndexError::Postgres { store: format!("{} collection {collection:?}", self.inner.shown), reason: e.to_string() }
    }
}

/// One collection's chunk vectors in PostgreSQL with pgvector: a table of its own with an HNSW
/// index over the vectors, named by a hash of organization and collection and recorded in the
/// catalog with its model. Implements [`VectorStore`].
#[derive(Clone)]
pub struct PgVectorStore {
    db: PgVectors,
    organization: String,
    collection: String,
    table: String,
    model_id: String,
    model_dir: Option<String>,
    dim: usize,
    params: HnswParams,
    ef_search: usize,
}

impl std::fmt::Debug for PgVectorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgVectorStore")
            .field("database", &self.db.inner.shown)
            .field("collection", &self.collection)
            .field("model_id", &self.model_id)
            .field("dim", &self.dim)
            .finish_non_exhaustive()
    }
}

/// One parameter of a generated query.
enum Param {
    Text(String),
    Int(i32),
    Texts(Vec<String>),
}

type PgQueryAs<'q, O> = sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>;

/// `q` with `params` bound in order.
fn bind_params<O>(mut q: PgQueryAs<'_, O>, params: Vec<Param>) -> PgQueryAs<'_, O> {
    for p in params {
        q = match p {
            Param::Text(s) => q.bind(s),
            Param::Int(i) => q.bind(i),
            Param::Texts(v) => q.bind(v),
        };
    }
    q
}

impl PgVectorStore {
    /// Opens the collection a `postgres://…?collection=NAME[&organization=ORG]` URL names.
    ///
    /// # Errors
    /// [`IndexError::Postgres`] for a URL without a collection, an unreachable database, or a
    /// collection that does not exist (build it with `docraft index build --store URL`).
    pub fn connect(url: &str) -> Result<Self> {
        let StoreLocation::Postgres { url: db_url, collection, organization } = StoreLocation::parse(url)? else {
            return Err(IndexError::Postgres { store: url.to_string(), reason: "not a postgres:// URL".into() });
        };
        let db = PgVectors::connect(&db_url, 4)?;
        db.open(&organization, &collection)?.ok_or_else(|| {
            db.err(&collection, &"no such collection: build it first (`docraft index build CHUNKS --store URL`)")
        })
    }

    /// Opens the collection a URL names, creating it for `model_id` (see [`PgVectors::create`]).
    ///
    /// # Errors
    /// As [`PgVectors::create`].
    pub fn create(
        url: &str,
        model_id: &str,
        model_dir: Option<&str>,
        params: HnswParams,
        replace: bool,
    ) -> Result<Self> {
        let StoreLocation::Postgres { url: db_url, collection, organization } = StoreLocation::parse(url)? else {
            return Err(IndexError::Postgres { store: url.to_string(), reason: "not a postgres:// URL".into() });
        };
        PgVectors::connect(&db_url, 4)?.create(&organization, &collection, model_id, model_dir, params, replace)
    }

    /// Search width (`hnsw.ef_search`, 1..=1000; default the graph settings' 100): higher is
    /// slower and finds more of the true nearest chunks.
    #[must_use]
    pub fn with_ef_search(mut self, ef: usize) -> Self {
        self.ef_search = ef.clamp(1, MAX_EF);
        self
    }

    /// The embedding model directory recorded at creation, if any.
    #[must_use]
    pub fn model_dir(&self) -> Option<&str> {
        self.model_dir.as_deref()
    }

    /// The vectors' dimension (0 before the first chunk arrives).
    #[must_use]
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The graph settings the collection was created with.
    #[must_use]
    pub fn params(&self) -> HnswParams {
        self.params
    }

    /// The collection's name.
    #[must_use]
    pub fn collection(&self) -> &str {
        &self.collection
    }

    fn err(&self, e: &dyn std::fmt::Display) -> IndexError {
        self.db.err(&self.collection, e)
    }

    fn store_err(&self, e: &dyn std::fmt::Display) -> StoreError {
        StoreError::new(format!("{} collection {:?}", self.db.inner.shown, self.collection), e)
    }

    /// Creates the collection's table for vectors of `dim` dimensions (the first add does
    /// this), recording the dimension in the catalog.
    fn ensure_table(&mut self, dim: usize) -> Result<()> {
        if self.dim != 0 {
            return Ok(());
        }
        let table = self.table.clone();
        let (org, col) = (self.organization.clone(), self.collection.clone());
        let dim_i = i32::try_from(dim).map_err(|_| self.err(&format!("{dim} dimensions is too many")))?;
        let recorded = self
            .db
            .run(|pool| async move {
                let mut tx = pool.begin().await?;
                lock_table(&mut tx, &table).await?;
                let current: Option<i32> = sqlx::query_scalar(AssertSqlSafe(format!(
                    "SELECT dim FROM {CATALOG} WHERE organization = $1 AND collection = $2"
                )))
                .bind(&org)
                .bind(&col)
                .fetch_one(&mut *tx)
                .await?;
                if let Some(d) = current {
                    tx.commit().await?;
                    return Ok(d);
                }
                sqlx::query(AssertSqlSafe(format!(
                    "CREATE TABLE IF NOT EXISTS {table} (chunk_id text PRIMARY KEY, doc_id text NOT NULL, \
                     source text NOT NULL, page_first integer, page_last integer, metadata jsonb NOT NULL, \
                     chunk jsonb NOT NULL, embedding vector({dim_i}) NOT NULL, terms_len integer)"
                )))
                .execute(&mut *tx)
                .await?;
                sqlx::query(AssertSqlSafe(format!("CREATE INDEX IF NOT EXISTS {table}_doc ON {table} (doc_id)")))
                    .execute(&mut *tx)
                    .await?;
                create_terms_table(&mut tx, &table).await?;
                sqlx::query(AssertSqlSafe(format!(
                    "UPDATE {CATALOG} SET dim = $3, keyword_terms = true WHERE organization = $1 AND collection = $2"
                )))
                .bind(&org)
                .bind(&col)
                .bind(dim_i)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(dim_i)
            })
            .map_err(|e| self.err(&e))?;
        self.dim = usize::try_from(recorded).unwrap_or(0);
        Ok(())
    }

    /// Adds chunks and vectors (see [`VectorStore::add`]); the HNSW index is built after the
    /// first load. Returns how many rows were new.
    ///
    /// # Errors
    /// [`IndexError::BadVector`] naming the chunk, before anything is written;
    /// [`IndexError::Postgres`].
    pub fn insert(&mut self, chunks: Vec<Chunk>, vectors: Vec<Vec<f32>>) -> Result<usize> {
        self.load(chunks, vectors, true)
    }

    /// [`Self::insert`]; `build_graph`: build the HNSW index if the collection has none yet (a sync
    /// loading batch after batch builds it once, after its last batch: growing it row by row
    /// while loading is several times slower).
    fn load(&mut self, chunks: Vec<Chunk>, vectors: Vec<Vec<f32>>, build_graph: bool) -> Result<usize> {
        if chunks.len() != vectors.len() {
            return Err(IndexError::BadVector {
                what: "insert".into(),
                reason: format!("{} chunks but {} vectors", chunks.len(), vectors.len()),
            });
        }
        let Some(first) = vectors.first() else { return Ok(0) };
        self.ensure_table(first.len())?;
        let mut csv = String::new();
        let mut terms_csv = String::new();
        for (chunk, v) in chunks.iter().zip(&vectors) {
            let v = normalized(|| format!("chunk {}", chunk.id.as_str()), v, self.dim)?;
            let terms_len = push_terms(&mut terms_csv, chunk.id.as_str(), &chunk.text);
            let meta = serde_json::to_string(&chunk.metadata).map_err(|e| self.err(&e))?;
            let whole = serde_json::to_string(chunk).map_err(|e| self.err(&e))?;
            csv_field(&mut csv, chunk.id.as_str());
            csv.push(',');
            csv_field(&mut csv, chunk.doc_id.as_str());
            csv.push(',');
            csv_field(&mut csv, &chunk.source);
            let (a, b) =
                chunk.pages.map_or((String::new(), String::new()), |p| (p.first.to_string(), p.last.to_string()));
            let _ = write!(csv, ",{a},{b},");
            csv_field(&mut csv, &meta);
            csv.push(',');
            csv_field(&mut csv, &whole);
            csv.push(',');
            csv_field(&mut csv, &vector_text(&v));
            let _ = writeln!(csv, ",{terms_len}");
        }
        let table = self.table.clone();
        let (m, efc) = (self.params.max_connections.clamp(2, MAX_M), self.params.ef_construction.clamp(4, MAX_EF));
        self.db
            .run(|pool| async move {
                let mut tx = pool.begin().await?;
                let graph = format!("{table}_hnsw");
                let has_graph = "SELECT to_regclass($1) IS NOT NULL";
                // Before the graph exists, writers take turns (the one that builds it holds a
                // lock on the table no other insert may hold meanwhile, or they deadlock).
                let mut exists: bool = sqlx::query_scalar(has_graph).bind(&graph).fetch_one(&mut *tx).await?;
                if !exists {
                    lock_table(&mut tx, &table).await?;
                    exists = sqlx::query_scalar(has_graph).bind(&graph).fetch_one(&mut *tx).await?;
                }
                sqlx::query(AssertSqlSafe(format!(
                    "CREATE TEMP TABLE docraft_load (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP"
                )))
                .execute(&mut *tx)
                .await?;
                let mut copy = tx
                    .copy_in_raw(
                        "COPY docraft_load (chunk_id, doc_id, source, page_first, page_last, metadata, chunk, \
                         embedding, terms_len) FROM STDIN WITH (FORMAT csv)",
                    )
                    .await?;
                copy.send(csv.into_bytes()).await?;
                copy.finish().await?;
                // Writers of one collection take turns from here (each updates the collection's
                // BM25 statistics in the catalog; two interleaved would deadlock on its row and
                // the keys they both insert).
                lock_table(&mut tx, &table).await?;
                // The rows that were new, counted into the collection's BM25 statistics.
                let added: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
                    "WITH ins AS (INSERT INTO {table} (chunk_id, doc_id, source, page_first, page_last, metadata, \
                     chunk, embedding, terms_len) SELECT chunk_id, doc_id, source, page_first, page_last, metadata, \
                     chunk, embedding, terms_len FROM docraft_load ORDER BY chunk_id ON CONFLICT (chunk_id) DO NOTHING \
                     RETURNING terms_len), \
                     upd AS (UPDATE {CATALOG} SET keyword_chunks = keyword_chunks + (SELECT count(*) FROM ins), \
                     keyword_length = keyword_length + (SELECT coalesce(sum(terms_len), 0) FROM ins) \
                     WHERE table_name = $1 RETURNING 1) \
                     SELECT count(*) FROM ins"
                )))
                .bind(&table)
                .fetch_one(&mut *tx)
                .await?;
                load_terms(&mut tx, &table, terms_csv).await?;
                // The graph: built once after the first load, then maintained by PostgreSQL.
                if !exists && build_graph {
                    create_graph(&mut tx, &table, m, efc).await?;
                }
                tx.commit().await?;
                Ok(usize::try_from(added).unwrap_or(0))
            })
            .map_err(|e| self.err(&e))
    }

    /// Builds the HNSW index if the collection has rows and no index yet (after a sync's load).
    fn ensure_graph(&self) -> Result<()> {
        if self.dim == 0 {
            return Ok(());
        }
        let table = self.table.clone();
        let (m, efc) = (self.params.max_connections.clamp(2, MAX_M), self.params.ef_construction.clamp(4, MAX_EF));
        self.db
            .run(|pool| async move {
                let mut tx = pool.begin().await?;
                lock_table(&mut tx, &table).await?;
                create_graph(&mut tx, &table, m, efc).await?;
                tx.commit().await
            })
            .map_err(|e| self.err(&e))
    }

    /// Removes every chunk of these documents; returns how many.
    ///
    /// # Errors
    /// [`IndexError::Postgres`].
    pub fn remove_docs(&self, docs: &[DocId]) -> Result<usize> {
        if self.dim == 0 || docs.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = docs.iter().map(|d| d.as_str().to_string()).collect();
        self.delete_where("doc_id", ids)
    }

    /// Removes these chunks; returns how many were there.
    ///
    /// # Errors
    /// [`IndexError::Postgres`].
    pub fn remove_chunks(&self, ids: &[ChunkId]) -> Result<usize> {
        if self.dim == 0 || ids.is_empty() {
            return Ok(0);
        }
        self.delete_where("chunk_id", ids.iter().map(|c| c.as_str().to_string()).collect())
    }

    fn delete_where(&self, column: &'static str, values: Vec<String>) -> Result<usize> {
        let table = self.table.clone();
        self.db
            .run(|pool| async move {
                let mut tx = pool.begin().await?;
                lock_table(&mut tx, &table).await?;
                sqlx::query(AssertSqlSafe(format!(
                    "DELETE FROM {table}_terms WHERE chunk_id IN (SELECT chunk_id FROM {table} WHERE {column} = ANY($1))"
                )))
                .bind(&values)
                .execute(&mut *tx)
                .await?;
                let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
                    "WITH del AS (DELETE FROM {table} WHERE {column} = ANY($1) RETURNING terms_len), \
                     upd AS (UPDATE {CATALOG} SET keyword_chunks = keyword_chunks - (SELECT count(*) FROM del), \
                     keyword_length = keyword_length - (SELECT coalesce(sum(terms_len), 0) FROM del) \
                     WHERE table_name = $2 RETURNING 1) \
                     SELECT count(*) FROM del"
                )))
                .bind(values)
                .bind(&table)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(usize::try_from(n).unwrap_or(0))
            })
            .map_err(|e| self.err(&e))
    }

    /// How many chunks the collection holds.
    ///
    /// # Errors
    /// [`IndexError::Postgres`].
    pub fn len(&self) -> Result<usize> {
        if self.dim == 0 {
            return Ok(0);
        }
        let table = self.table.clone();
        let n: i64 = self
            .db
            .run(|pool| async move {
                sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}"))).fetch_one(&pool).await
            })
            .map_err(|e| self.err(&e))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Whether the collection holds no chunks.
    ///
    /// # Errors
    /// [`IndexError::Postgres`].
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Bytes on disk: the table (with its TOAST data) and the HNSW index.
    ///
    /// # Errors
    /// [`IndexError::Postgres`].
    pub fn sizes(&self) -> Result<(u64, u64)> {
        if self.dim == 0 {
            return Ok((0, 0));
        }
        let table = self.table.clone();
        let (t, i): (i64, Option<i64>) = self
            .db
            .run(|pool| async move {
                sqlx::query_as(
                    "SELECT pg_table_size($1::regclass), \
                     (SELECT pg_relation_size(to_regclass($2)))",
                )
                .bind(table.clone())
                .bind(format!("{table}_hnsw"))
                .fetch_one(&pool)
                .await
            })
            .map_err(|e| self.err(&e))?;
        Ok((u64::try_from(t).unwrap_or(0), i.and_then(|i| u64::try_from(i).ok()).unwrap_or(0)))
    }

    /// The ids of every chunk held, with their documents.
    ///
    /// # Errors
    /// [`IndexError::Postgres`].
    pub fn chunk_ids(&self) -> Result<Vec<ChunkId>> {
        if self.dim == 0 {
            return Ok(Vec::new());
        }
        let table = self.table.clone();
        let ids: Vec<String> = self
            .db
            .run(|pool| async move {
                sqlx::query_scalar(AssertSqlSafe(format!("SELECT chunk_id FROM {table}"))).fetch_all(&pool).await
            })
            .map_err(|e| self.err(&e))?;
        Ok(ids.into_iter().map(ChunkId::from_string).collect())
    }

    /// The `k` nearest chunks passing `filter`, through the HNSW index (`exact = false`) or
    /// by scoring every row (`exact = true`: a sequential scan, for checking the graph).
    ///
    /// # Errors
    /// [`IndexError::Empty`] before the first chunk; [`IndexError::BadVector`] for a query
    /// of the wrong dimension; [`IndexError::Postgres`].
    pub fn search_with(&self, query: &[f32], k: usize, filter: &Filter, exact: bool) -> Result<Vec<Scored>> {
        if self.dim == 0 {
            return Err(IndexError::Empty);
        }
        let q = vector_text(&normalized(|| "query".to_string(), query, self.dim)?);
        let mut params = vec![Param::Text(q)];
        let condition = where_clause(filter, &mut params)?;
        let table = self.table.clone();
        let ef_n = self.ef_search.max(k.min(MAX_EF));
        let ef = ef_n.to_string();
        let limit = i64::try_from(k).unwrap_or(i64::MAX);
        // The scan yields ids and distances only; the chunks are read for the `k` kept. Without
        // a filter it takes `ef` candidates (measured on 100k chunks: 1.2-1.4x the queries/s of
        // a LIMIT k, same recall). With one it takes `k`: a larger LIMIT made the planner pick an
        // exact sequential scan (recall 1.0 at a sixth of the speed) and, with the index forced,
        // did not lift the graph's filtered recall (0.98).
        let fetch = if exact || !filter.is_empty() { limit } else { i64::try_from(ef_n.max(k)).unwrap_or(i64::MAX) };
        let rows: Vec<(String, f64)> = self
            .db
            .run(|pool| async move {
                let mut tx = pool.begin().await?;
                let settings = if exact {
                    "SELECT set_config('enable_indexscan', 'off', true), set_config('enable_bitmapscan', 'off', true)"
                } else {
                    "SELECT set_config('hnsw.ef_search', $1, true), \
                     set_config('hnsw.iterative_scan', 'relaxed_order', true)"
                };
                let mut s = sqlx::query(settings);
                if !exact {
                    s = s.bind(ef);
                }
                s.execute(&mut *tx).await?;
                // Equal distances are ordered by chunk id, as the HNSW index does; an exact scan can
                // sort by both, the graph scan only by distance (ties at the k-th place may differ).
                let tie = if exact { ", chunk_id" } else { "" };
                let sql = format!(
                    "WITH r AS MATERIALIZED (SELECT chunk_id, embedding <=> $1::vector AS d FROM {table} \
                     WHERE {condition} ORDER BY embedding <=> $1::vector{tie} LIMIT {fetch}) \
                     SELECT t.chunk::text, r.d::float8 FROM r JOIN {table} t USING (chunk_id) \
                     ORDER BY r.d, r.chunk_id LIMIT {limit}"
                );
                let q = bind_params(sqlx::query_as::<_, (String, f64)>(AssertSqlSafe(sql)), params);
                let rows = q.fetch_all(&mut *tx).await?;
                tx.commit().await?;
                Ok(rows)
            })
            .map_err(|e| self.err(&e))?;
        rows.into_iter()
            .map(|(json, d)| {
                let chunk: Chunk =
                    serde_json::from_str(&json).map_err(|e| self.err(&format!("a stored chunk: {e}")))?;
                #[allow(clippy::cast_possible_truncation)]
                let score = (1.0 - d) as f32;
                Ok(Scored { chunk, score })
            })
            .collect()
    }

    /// Up to `k` chunks passing `filter` that hold a term of `query`, by BM25 score, best first,
    /// ties by chunk id: the search of the in-memory [`crate::KeywordIndex`] over the same
    /// chunks (same terms, same `k1`, `b` and idf, over every chunk of the collection), computed
    /// in SQL from the collection's `_terms` table. A query without a known term returns
    /// nothing, as does an empty collection.
    ///
    /// # Errors
    /// [`IndexError::Postgres`].
    pub fn search_keywords(&self, query: &str, k: usize, filter: &Filter) -> Result<Vec<Scored>> {
        let terms = query_terms(query);
        if self.dim == 0 || k == 0 || terms.is_empty() {
            return Ok(Vec::new());
        }
        let mut params = vec![Param::Texts(terms), Param::Text(self.table.clone())];
        let condition = where_clause(filter, &mut params)?;
        let table = self.table.clone();
        let limit = i64::try_from(k).unwrap_or(i64::MAX);
        let (k1, b) = (BM25_K1, BM25_B);
        // Scores from the postings alone (each carries its chunk's length; N and the total length
        // come from the catalog): the chunk table is read for the chunks kept, or, with a
        // filter, for the chunks that hold a query term.
        let scores = format!(
            "WITH q AS (SELECT DISTINCT unnest($1::text[]) AS term), \
             st AS (SELECT keyword_chunks::float8 AS n, \
                    CASE WHEN keyword_chunks > 0 THEN keyword_length::float8 / keyword_chunks ELSE 0 END AS avg_len \
                    FROM {CATALOG} WHERE table_name = $2), \
             df AS (SELECT t.term, count(*)::float8 AS df FROM {table}_terms t JOIN q USING (term) GROUP BY t.term), \
             s AS (SELECT t.chunk_id, sum(ln(1 + (st.n - df.df + 0.5) / (df.df + 0.5)) * t.tf * ({k1}::float8 + 1) \
                   / (t.tf + {k1}::float8 * (1 - {b}::float8 + {b}::float8 * t.len / st.avg_len))) AS score \
                   FROM {table}_terms t JOIN df USING (term) CROSS JOIN st WHERE st.avg_len > 0 GROUP BY t.chunk_id)"
        );
        let sql = if filter.is_empty() {
            format!(
                "{scores}, top AS (SELECT chunk_id, score FROM s WHERE score > 0 ORDER BY score DESC, chunk_id \
                 LIMIT {limit}) \
                 SELECT c.chunk::text, top.score FROM top JOIN {table} c USING (chunk_id) \
                 ORDER BY top.score DESC, top.chunk_id"
            )
        } else {
            format!(
                "{scores} SELECT c.chunk::text, s.score FROM s JOIN {table} c USING (chunk_id) \
                 WHERE s.score > 0 AND {condition} ORDER BY s.score DESC, s.chunk_id LIMIT {limit}"
            )
        };
        let rows: Vec<(String, f64)> = self
            .db
            .run(|pool| async move {
                bind_params(sqlx::query_as::<_, (String, f64)>(AssertSqlSafe(sql)), params).fetch_all(&pool).await
            })
            .map_err(|e| self.err(&e))?;
        let mut hits = rows
            .into_iter()
            .map(|(json, score)| {
                let chunk: Chunk =
                    serde_json::from_str(&json).map_err(|e| self.err(&format!("a stored chunk: {e}")))?;
                #[allow(clippy::cast_possible_truncation)]
                let score = score as f32;
                Ok(Scored { chunk, score })
            })
            .collect::<Result<Vec<_>>>()?;
        // As the in-memory index orders them: by the f32 score, then the id.
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.chunk.id.cmp(&b.chunk.id)));
        Ok(hits)
    }

    /// Gives a collection made before keyword search its keyword index: the `terms_len` column
    /// and the `_terms` table, filled from the stored chunks batch by batch, in one transaction
    /// under the collection's lock (another process opening it meanwhile waits, then finds it
    /// done).
    fn add_keyword_index(&self) -> Result<()> {
        let (table, org, col) = (self.table.clone(), self.organization.clone(), self.collection.clone());
        self.db
            .run(|pool| async move {
                let mut tx = pool.begin().await?;
                lock_table(&mut tx, &table).await?;
                let done: Option<bool> = sqlx::query_scalar(AssertSqlSafe(format!(
                    "SELECT keyword_terms FROM {CATALOG} WHERE organization = $1 AND collection = $2"
                )))
                .bind(&org)
                .bind(&col)
                .fetch_optional(&mut *tx)
                .await?;
                if done != Some(false) {
                    return tx.commit().await;
                }
                sqlx::query(AssertSqlSafe(format!("ALTER TABLE {table} ADD COLUMN IF NOT EXISTS terms_len integer")))
                    .execute(&mut *tx)
                    .await?;
                create_terms_table(&mut tx, &table).await?;
                sqlx::query(
                    "CREATE TEMP TABLE IF NOT EXISTS docraft_lengths (chunk_id text, terms_len integer) ON COMMIT DROP",
                )
                .execute(&mut *tx)
                .await?;
                let mut after = String::new();
                loop {
                    let rows: Vec<(String, String)> = sqlx::query_as(AssertSqlSafe(format!(
                        "SELECT chunk_id, chunk ->> 'text' FROM {table} WHERE chunk_id > $1 ORDER BY chunk_id \
                         LIMIT {LOAD_BATCH}"
                    )))
                    .bind(&after)
                    .fetch_all(&mut *tx)
                    .await?;
                    let Some((last, _)) = rows.last() else { break };
                    after.clone_from(last);
                    let (mut terms_csv, mut lengths_csv) = (String::new(), String::new());
                    for (id, text) in &rows {
                        let n = push_terms(&mut terms_csv, id, text);
                        csv_field(&mut lengths_csv, id);
                        let _ = writeln!(lengths_csv, ",{n}");
                    }
                    load_terms(&mut tx, &table, terms_csv).await?;
                    sqlx::query("TRUNCATE docraft_lengths").execute(&mut *tx).await?;
                    let mut copy =
                        tx.copy_in_raw("COPY docraft_lengths (chunk_id, terms_len) FROM STDIN WITH (FORMAT csv)").await?;
                    copy.send(lengths_csv.into_bytes()).await?;
                    copy.finish().await?;
                    sqlx::query(AssertSqlSafe(format!(
                        "UPDATE {table} t SET terms_len = l.terms_len FROM docraft_lengths l WHERE t.chunk_id = l.chunk_id"
                    )))
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(AssertSqlSafe(format!(
                    "UPDATE {CATALOG} SET keyword_terms = true, \
                     keyword_chunks = (SELECT count(*) FROM {table}), \
                     keyword_length = (SELECT coalesce(sum(terms_len), 0) FROM {table}) \
                     WHERE organization = $1 AND collection = $2"
                )))
                .bind(&org)
                .bind(&col)
                .execute(&mut *tx)
                .await?;
                tx.commit().await
            })
            .map_err(|e| self.err(&format!("adding the keyword index: {e}")))
    }

    /// Embeds `query` with `embedder` (which must be the collection's model) and searches, as
    /// [`Self::search_with`].
    ///
    /// # Errors
    /// [`IndexError::ModelMismatch`], embedder errors, and those of [`Self::search_with`].
    pub fn search_text(
        &self,
        embedder: &dyn Embedder,
        query: &str,
        k: usize,
        filter: &Filter,
        exact: bool,
    ) -> Result<Vec<Scored>> {
        self.check_model(embedder)?;
        let v = embedder.embed(&[query])?.into_iter().next().unwrap_or_default();
        self.search_with(&v, k, filter, exact)
    }

    fn check_model(&self, embedder: &dyn Embedder) -> Result<()> {
        let model = embedder.model_id();
        if model == self.model_id {
            Ok(())
        } else {
            Err(IndexError::ModelMismatch { index_model: self.model_id.clone(), embedder_model: model })
        }
    }

    /// Makes the collection hold exactly `chunks`, as [`crate::VectorIndex::sync`] does for a
    /// directory: chunks no longer present are deleted, new ones embedded and added. Unlike
    /// the directory index it commits as it goes (every few thousand chunks), so a cancelled,
    /// failed or killed build keeps what it loaded and the next sync only embeds the rest.
    ///
    /// # Errors
    /// [`IndexError::ModelMismatch`] for another embedder; embedder errors;
    /// [`IndexError::Cancelled`]; [`IndexError::Postgres`].
    pub fn sync(
        &mut self,
        embedder: &dyn Embedder,
        chunks: Vec<Chunk>,
        options: &SyncOptions<'_>,
    ) -> Result<SyncReport> {
        self.check_model(embedder)?;
        let mut report = SyncReport::default();
        let held: HashSet<ChunkId> = self.chunk_ids()?.into_iter().collect();
        let (mut todo, seen) = new_chunks(chunks, |id| held.contains(id), &mut report);
        let gone: Vec<ChunkId> = held.into_iter().filter(|id| !seen.contains(id)).collect();
        report.removed = self.remove_chunks(&gone)?;
        todo.sort_by_key(|c| c.text.len());
        let total = todo.len();
        let started = Instant::now();
        let texts: Vec<&str> = todo.iter().map(|c| c.text.as_str()).collect();
        let (mut rows, mut vectors) = (Vec::new(), Vec::new());
        let embedded = embed_in_groups(embedder, &texts, options, |first, out| {
            rows.extend(todo.iter().skip(first).take(out.len()).cloned());
            vectors.extend(out);
            if rows.len() >= LOAD_BATCH {
                report.added += self.load(std::mem::take(&mut rows), std::mem::take(&mut vectors), false)?;
            }
            Ok(())
        });
        if let Err(e) = embedded {
            // What was embedded is kept: the next sync goes on from there.
            if matches!(e, IndexError::Cancelled { .. }) {
                self.load(rows, vectors, false)?;
                self.ensure_graph()?;
            }
            return Err(e);
        }
        report.added += self.load(rows, vectors, false)?;
        self.ensure_graph()?;
        report.embedded = total;
        report.embed_seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Drops the collection: its table and its catalog row.
    ///
    /// # Errors
    /// [`IndexError::Postgres`].
    pub fn drop_collection(self) -> Result<()> {
        let (table, org, col) = (self.table.clone(), self.organization.clone(), self.collection.clone());
        self.db
            .run(|pool| async move {
                let mut tx = pool.begin().await?;
                sqlx::query(AssertSqlSafe(format!("DROP TABLE IF EXISTS {table}, {table}_terms")))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(AssertSqlSafe(format!(
                    "DELETE FROM {CATALOG} WHERE organization = $1 AND collection = $2"
                )))
                .bind(org)
                .bind(col)
                .execute(&mut *tx)
                .await?;
                tx.commit().await
            })
            .map_err(|e| self.err(&e))
    }
}

impl VectorStore for PgVectorStore {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn add(&mut self, chunks: Vec<Chunk>, vectors: Vec<Vec<f32>>) -> Result<usize, StoreError> {
        self.insert(chunks, vectors).map_err(|e| self.store_err(&e))
    }

    fn delete_documents(&mut self, docs: &[DocId]) -> Result<usize, StoreError> {
        self.remove_docs(docs).map_err(|e| self.store_err(&e))
    }

    fn search(&self, query: &[f32], k: usize, filter: &Filter) -> Result<Vec<Scored>, StoreError> {
        self.search_with(query, k, filter, false).map_err(|e| self.store_err(&e))
    }

    fn count(&self) -> Result<usize, StoreError> {
        self.len().map_err(|e| self.store_err(&e))
    }
}

impl KeywordSearch for PgVectorStore {
    fn keyword_search(&self, query: &str, k: usize, filter: &Filter) -> Result<Vec<Scored>, RetrieveError> {
        self.search_keywords(query, k, filter).map_err(|e| RetrieveError::new(query, e))
    }
}

/// Creates the collection's keyword table unless it exists (inside the caller's transaction).
async fn create_terms_table(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, table: &str) -> Result<(), sqlx::Error> {
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {table}_terms (term text NOT NULL, chunk_id text NOT NULL, tf integer NOT NULL, \
         len integer NOT NULL, \
         PRIMARY KEY (term, chunk_id))"
    )))
    .execute(&mut **tx)
    .await?;
    sqlx::query(AssertSqlSafe(format!("CREATE INDEX IF NOT EXISTS {table}_terms_chunk ON {table}_terms (chunk_id)")))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Appends the CSV rows `term,chunk_id,tf,len` of a chunk's BM25 terms (sorted; `len` is the
/// chunk's length in terms) to `out`; returns that length.
fn push_terms(out: &mut String, chunk_id: &str, text: &str) -> u32 {
    let (counts, length) = term_counts(text);
    let mut counts: Vec<(String, u32)> = counts.into_iter().collect();
    counts.sort_unstable();
    for (term, tf) in counts {
        csv_field(out, &term);
        out.push(',');
        csv_field(out, chunk_id);
        let _ = writeln!(out, ",{tf},{length}");
    }
    length
}

/// Adds CSV rows of [`push_terms`] to the collection's keyword table (rows it holds already
/// are kept), inside the caller's transaction.
async fn load_terms(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    table: &str,
    csv: String,
) -> Result<(), sqlx::Error> {
    if csv.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "CREATE TEMP TABLE IF NOT EXISTS docraft_terms_load (term text, chunk_id text, tf integer, len integer) \
         ON COMMIT DROP",
    )
    .execute(&mut **tx)
    .await?;
    sqlx::query("TRUNCATE docraft_terms_load").execute(&mut **tx).await?;
    let mut copy =
        tx.copy_in_raw("COPY docraft_terms_load (term, chunk_id, tf, len) FROM STDIN WITH (FORMAT csv)").await?;
    copy.send(csv.into_bytes()).await?;
    copy.finish().await?;
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {table}_terms (term, chunk_id, tf, len) SELECT term, chunk_id, tf, len FROM docraft_terms_load \
         ORDER BY term, chunk_id ON CONFLICT (term, chunk_id) DO NOTHING"
    )))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Takes the collection's advisory lock until the caller's transaction ends (writers that
/// change its schema or build its graph take turns).
async fn lock_table(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, table: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))").bind(table).execute(&mut **tx).await?;
    Ok(())
}

/// Creates the collection's HNSW index unless it exists (inside the caller's transaction, with
/// the memory a bulk build wants).
async fn create_graph(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    table: &str,
    m: usize,
    efc: usize,
) -> std::result::Result<(), sqlx::Error> {
    sqlx::query("SELECT set_config('maintenance_work_mem', '1GB', true)").execute(&mut **tx).await?;
    sqlx::query(AssertSqlSafe(format!(
        "CREATE INDEX IF NOT EXISTS {table}_hnsw ON {table} USING hnsw (embedding vector_cosine_ops) \
         WITH (m = {m}, ef_construction = {efc})"
    )))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// `docraft_vec_` and 16 hex digits of a hash of organization and collection.
fn table_name(organization: &str, collection: &str) -> String {
    let hash = docraft_core::content_hash(format!("{organization}\u{0}{collection}").as_bytes());
    format!("docraft_vec_{}", hash.get(..16).unwrap_or(&hash))
}

fn valid_table(name: &str) -> bool {
    name.strip_prefix("docraft_vec_").is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn strip_docraft_params(url: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let rest: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("collection=") && !p.starts_with("organization="))
        .collect();
    if rest.is_empty() { base.to_string() } else { format!("{base}?{}", rest.join("&")) }
}

/// pgvector's text form: `[x,y,…]` (Rust prints the shortest exact decimal of each f32).
fn vector_text(v: &[f32]) -> String {
    let mut s = String::with_capacity(v.len() * 12 + 2);
    s.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{x}");
    }
    s.push(']');
    s
}

/// One quoted CSV field (quotes doubled; an empty string stays an empty string, not NULL).
fn csv_field(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        if ch == '"' {
            out.push('"');
        }
        out.push(ch);
    }
    out.push('"');
}

/// The filter as SQL over the table's columns: groups ANDed, conditions of a group ORed.
/// Values are parameters; only column names and operators are written into the text.
fn where_clause(filter: &Filter, params: &mut Vec<Param>) -> Result<String> {
    let mut param = |p: Param| {
        params.push(p);
        format!("${}", params.len())
    };
    let mut groups = Vec::new();
    for group in filter.groups() {
        let mut alternatives = Vec::new();
        for c in group {
            alternatives.push(match c {
                Condition::Doc(id) => format!("doc_id = {}", param(Param::Text(id.clone()))),
                Condition::Source(glob) => {
                    let re = param(Param::Text(glob_regex(glob.glob().glob())));
                    format!("(source ~ {re} OR regexp_replace(source, '^.*/', '') ~ {re})")
                }
                Condition::Pages(first, last) => {
                    let first = i32::try_from(*first).unwrap_or(i32::MAX);
                    let last = i32::try_from(*last).unwrap_or(i32::MAX);
                    format!("(page_first <= {} AND {} <= page_last)", param(Param::Int(last)), param(Param::Int(first)))
                }
                Condition::Meta(key, value) => {
                    let key = param(Param::Text(key.clone()));
                    let mut candidates = vec![Value::String(value.clone())];
                    if let Ok(v) = serde_json::from_str::<Value>(value)
                        && !matches!(v, Value::String(_) | Value::Null)
                    {
                        candidates.push(v);
                    }
                    let ors: Vec<String> = candidates
                        .into_iter()
                        .map(|c| {
                            let c = param(Param::Text(c.to_string()));
                            format!(
                                "metadata -> {key} = {c}::jsonb OR (jsonb_typeof(metadata -> {key}) = 'array' \
                                 AND metadata -> {key} @> jsonb_build_array({c}::jsonb))"
                            )
                        })
                        .collect();
                    format!("({})", ors.join(" OR "))
                }
                other => {
                    return Err(IndexError::Postgres {
                        store: "pgvector".into(),
                        reason: format!("the filter condition {other:?} has no SQL form"),
                    });
                }
            });
        }
        groups.push(format!("({})", alternatives.join(" OR ")));
    }
    Ok(if groups.is_empty() { "TRUE".to_string() } else { groups.join(" AND ") })
}

/// A glob (globset's default syntax: `*` and `?` also match `/`, `**`, `[...]`, `[!...]`,
/// `{a,b}`, `\` escapes) as an anchored POSIX regular expression.
fn glob_regex(glob: &str) -> String {
    let mut re = String::from("^");
    let mut chars = glob.chars().peekable();
    let mut braces = 0usize;
    while let Some(ch) = chars.next() {
        match ch {
            '*' => {
                while chars.peek() == Some(&'*') {
                    chars.next();
                }
                re.push_str(".*");
            }
            '?' => re.push('.'),
            '[' => {
                re.push('[');
                if matches!(chars.peek(), Some('!' | '^')) {
                    chars.next();
                    re.push('^');
                }
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    if c == '\\' || c == '[' {
                        re.push('\\');
                    }
                    re.push(c);
                }
                re.push(']');
            }
            '{' => {
                braces += 1;
                re.push_str("(?:");
            }
            '}' if braces > 0 => {
                braces -= 1;
                re.push(')');
            }
            ',' if braces > 0 => re.push('|'),
            '\\' => {
                if let Some(c) = chars.next() {
                    push_literal(&mut re, c);
                }
            }
            c => push_literal(&mut re, c),
        }
    }
    re.push('$');
    re
}

fn push_literal(re: &mut String, c: char) {
    if "\\.^$|()[]{}*+?".contains(c) {
        re.push('\\');
    }
    re.push(c);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_become_anchored_regexes() {
        assert_eq!(glob_regex("*.pdf"), "^.*\\.pdf$");
        assert_eq!(glob_regex("docs/**/a?.{md,txt}"), "^docs/.*/a.\\.(?:md|txt)$");
        assert_eq!(glob_regex("[!a-c]x(1)"), "^[^a-c]x\\(1\\)$");
        assert!(valid_table(&table_name("org", "manuals")));
        assert!(!valid_table("docraft_vec_x; DROP TABLE y"));
        assert_ne!(table_name("a", "bc"), table_name("ab", "c"));
    }

    #[test]
    fn filters_become_parameterized_sql() {
        let f = Filter::parse(&["source=*.pdf", "source=*.md", "language=es", "page=2-3"]).unwrap();
        let mut params = vec![Param::Text("q".into())];
        let sql = where_clause(&f, &mut params).unwrap();
        assert!(sql.starts_with("((source ~ $2") && sql.contains(" OR (source ~ $3"), "{sql}");
        assert!(sql.contains("metadata -> $4 = $5::jsonb"), "{sql}");
        assert!(sql.contains("(page_first <= $6 AND $7 <= page_last)"), "{sql}");
        assert!(!sql.contains("language") && !sql.contains("pdf"), "values stay parameters: {sql}");
        let mut params = Vec::new();
        assert_eq!(where_clause(&Filter::new(), &mut params).unwrap(), "TRUE");
        let mut params = Vec::new();
        let sql = where_clause(&Filter::parse(&["year=2020"]).unwrap(), &mut params).unwrap();
        assert_eq!(params.len(), 3, "the key and two candidates (\"2020\" and 2020): {sql}");
        let csv = {
            let mut s = String::new();
            csv_field(&mut s, "a \"b\"\n,c");
            s
        };
        assert_eq!(csv, "\"a \"\"b\"\"\n,c\"");
        assert_eq!(vector_text(&[0.5, -1.0, 1e-7]), "[0.5,-1,0.0000001]");
    }
}
