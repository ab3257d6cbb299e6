//! The retrieval interface: the chunks nearest a text, as later stages (RAFT's hard
//! distractors, `ask`, evaluation) need them without knowing how the index is built.

use std::sync::Arc;

use crate::Chunk;

/// Why a search failed.
#[derive(Debug, thiserror::Error)]
#[error("search for {query:?}: {reason}")]
pub struct RetrieveError {
    /// The query (shortened).
    pub query: String,
    /// What went wrong.
    pub reason: String,
}

impl RetrieveError {
    /// An error for `query` (kept to its first 80 characters).
    #[must_use]
    pub fn new(query: &str, reason: impl std::fmt::Display) -> Self {
        Self { query: query.chars().take(80).collect(), reason: reason.to_string() }
    }
}

/// A chunk found by a search and its similarity to the query (higher is closer).
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// The chunk (its text, source, pages and headings: everything a caller shows or checks).
    pub chunk: Chunk,
    /// Similarity to the query (cosine for the HNSW index).
    pub score: f32,
}

/// Finds the chunks closest in meaning to a text. One required method.
pub trait Retriever: Send + Sync {
    /// Up to `k` chunks with their scores, closest first.
    ///
    /// # Errors
    /// [`RetrieveError`] when embedding the query or searching fails.
    fn search(&self, query: &str, k: usize) -> Result<Vec<Scored>, RetrieveError>;
}

impl<T: Retriever + ?Sized> Retriever for &T {
    fn search(&self, query: &str, k: usize) -> Result<Vec<Scored>, RetrieveError> {
        (**self).search(query, k)
    }
}

impl<T: Retriever + ?Sized> Retriever for Box<T> {
    fn search(&self, query: &str, k: usize) -> Result<Vec<Scored>, RetrieveError> {
        (**self).search(query, k)
    }
}

impl<T: Retriever + ?Sized> Retriever for Arc<T> {
    fn search(&self, query: &str, k: usize) -> Result<Vec<Scored>, RetrieveError> {
        (**self).search(query, k)
    }
}
