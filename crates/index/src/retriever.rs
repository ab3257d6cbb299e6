//! [`IndexRetriever`]: an index and its embedder behind core's [`Retriever`] trait, so
//! stages that only need "the chunks nearest this text" (RAFT's hard distractors, `ask`,
//! evaluation) never depend on this crate.

use docraft_core::{Embedder, RetrieveError, Retriever, Scored};

use crate::{Filter, SearchOptions, VectorIndex};

/// Searches a [`VectorIndex`] with the embedder it was built with.
pub struct IndexRetriever<'a> {
    index: &'a VectorIndex,
    embedder: &'a dyn Embedder,
    filter: Filter,
}

impl<'a> IndexRetriever<'a> {
    /// Pairs `index` with `embedder` (which must be the index's model: a mismatch is
    /// reported by the first search).
    #[must_use]
    pub fn new(index: &'a VectorIndex, embedder: &'a dyn Embedder) -> Self {
        Self { index, embedder, filter: Filter::new() }
    }

    /// Only chunks matching `filter` are returned.
    #[must_use]
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }
}

impl Retriever for IndexRetriever<'_> {
    fn search(&self, query: &str, k: usize) -> Result<Vec<Scored>, RetrieveError> {
        let opts = SearchOptions::new(k).with_filter(self.filter.clone());
        let hits = self.index.search_text(self.embedder, query, &opts).map_err(|e| RetrieveError::new(query, e))?;
        Ok(hits.into_iter().map(|h| Scored { chunk: h.chunk.clone(), score: h.score }).collect())
    }
}
