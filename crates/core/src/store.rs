//! The vector-store seam: where chunk vectors live and how they are searched, so the stages
//! that add, delete and search chunks (indexing, `ask`, evaluation, RAFT's hard distractors,
//! the server's collections) work the same on the embedded HNSW index and on PostgreSQL with
//! pgvector.

use crate::{Chunk, DocId, Embedder, Filter, RetrieveError, Retriever, Scored};

/// Why a vector store failed: the store (a directory, or a `postgres://` URL without its
/// password) and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("{store}: {reason}")]
pub struct StoreError {
    /// The store.
    pub store: String,
    /// What went wrong.
    pub reason: String,
}

impl StoreError {
    /// An error of `store`.
    #[must_use]
    pub fn new(store: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self { store: store.into(), reason: reason.to_string() }
    }
}

/// Chunks and their vectors (one embedding model per store), searched by similarity with
/// [`Filter`]s applied inside the search. Implemented by `docraft_index::VectorIndex` (the
/// embedded default) and `docraft_index::PgVectorStore` (PostgreSQL with pgvector).
///
/// Vectors are normalized by the store; scores are cosine similarities (higher is closer).
pub trait VectorStore: Send + Sync {
    /// The id of the embedding model whose vectors the store holds (queries must come from
    /// the same model).
    fn model_id(&self) -> &str;

    /// Adds chunks with their vectors (same length, in order). A chunk whose id the store
    /// already holds is kept as it is. Returns how many were added.
    ///
    /// # Errors
    /// A vector of the wrong dimension or with NaN/infinite/zero values (naming the chunk),
    /// before anything is added; the store's own failures.
    fn add(&mut self, chunks: Vec<Chunk>, vectors: Vec<Vec<f32>>) -> Result<usize, StoreError>;

    /// Removes every chunk of these documents; returns how many chunks.
    ///
    /// # Errors
    /// The store's failures.
    fn delete_documents(&mut self, docs: &[DocId]) -> Result<usize, StoreError>;

    /// Up to `k` chunks nearest `query` that pass `filter`, closest first. The filter is
    /// applied inside the search, so a selective filter still finds `k` chunks when the store
    /// holds that many passing it.
    ///
    /// # Errors
    /// A query of the wrong dimension; an empty store; the store's failures.
    fn search(&self, query: &[f32], k: usize, filter: &Filter) -> Result<Vec<Scored>, StoreError>;

    /// How many chunks the store holds.
    ///
    /// # Errors
    /// The store's failures.
    fn count(&self) -> Result<usize, StoreError>;
}

impl<T: VectorStore + ?Sized> VectorStore for Box<T> {
    fn model_id(&self) -> &str {
        (**self).model_id()
    }
    fn add(&mut self, chunks: Vec<Chunk>, vectors: Vec<Vec<f32>>) -> Result<usize, StoreError> {
        (**self).add(chunks, vectors)
    }
    fn delete_documents(&mut self, docs: &[DocId]) -> Result<usize, StoreError> {
        (**self).delete_documents(docs)
    }
    fn search(&self, query: &[f32], k: usize, filter: &Filter) -> Result<Vec<Scored>, StoreError> {
        (**self).search(query, k, filter)
    }
    fn count(&self) -> Result<usize, StoreError> {
        (**self).count()
    }
}

/// A [`Retriever`] over any [`VectorStore`]: embeds the query with the store's model and
/// searches with a fixed filter.
pub struct StoreRetriever<'a> {
    store: &'a dyn VectorStore,
    embedder: &'a dyn Embedder,
    filter: Filter,
}

impl<'a> StoreRetriever<'a> {
    /// Pairs `store` with `embedder` (which must be the store's model: a mismatch is reported
    /// by the first search).
    #[must_use]
    pub fn new(store: &'a dyn VectorStore, embedder: &'a dyn Embedder) -> Self {
        Self { store, embedder, filter: Filter::new() }
    }

    /// Only chunks matching `filter` are returned.
    #[must_use]
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }
}

impl Retriever for StoreRetriever<'_> {
    fn search(&self, query: &str, k: usize) -> Result<Vec<Scored>, RetrieveError> {
        let model = self.embedder.model_id();
        if model != self.store.model_id() {
            return Err(RetrieveError::new(
                query,
                format!(
                    "the index was built with embedding model {}, the query embedder is {model}: use the same \
                     model (--model) or rebuild the index",
                    self.store.model_id()
                ),
            ));
        }
        let v = self.embedder.embed(&[query]).map_err(|e| RetrieveError::new(query, e))?;
        let v = v.into_iter().next().ok_or_else(|| RetrieveError::new(query, "the embedder returned no vector"))?;
        self.store.search(&v, k, &self.filter).map_err(|e| RetrieveError::new(query, e))
    }
}
