//! Without the `pgvector` feature: the same types, and every way to get one is a typed
//! [`IndexError::NotCompiled`].

use docraft_core::{Chunk, ChunkId, DocId, Embedder, Filter, RetrieveError, Scored, StoreError, VectorStore};

use crate::error::{IndexError, Result};
use crate::{HnswParams, SyncOptions, SyncReport};

#[derive(Debug, Clone, Copy)]
enum Never {}

fn off() -> IndexError {
    IndexError::NotCompiled { what: "the pgvector store", feature: "pgvector" }
}

/// A PostgreSQL database of vector collections (compiled out: see the `pgvector` feature).
#[derive(Debug, Clone)]
pub struct PgVectors {
    never: Never,
}

impl PgVectors {
    /// Always [`IndexError::NotCompiled`].
    ///
    /// # Errors
    /// Always.
    pub fn connect(_url: &str, _max_connections: u32) -> Result<Self> {
        Err(off())
    }
    /// Unreachable: no value of this type exists in this build.
    #[must_use]
    pub fn shown(&self) -> &str {
        match self.never {}
    }
    /// Unreachable.
    ///
    /// # Errors
    /// Never returns.
    pub fn open(&self, _organization: &str, _collection: &str) -> Result<Option<PgVectorStore>> {
        match self.never {}
    }
    /// Unreachable.
    ///
    /// # Errors
    /// Never returns.
    pub fn create(
        &self,
        _organization: &str,
        _collection: &str,
        _model_id: &str,
        _model_dir: Option<&str>,
        _params: HnswParams,
        _replace: bool,
    ) -> Result<PgVectorStore> {
        match self.never {}
    }
    /// Unreachable.
    ///
    /// # Errors
    /// Never returns.
    pub fn drop_collection(&self, _organization: &str, _collection: &str) -> Result<()> {
        match self.never {}
    }
}

/// A pgvector collection (compiled out: see the `pgvector` feature).
#[derive(Debug, Clone)]
pub struct PgVectorStore {
    never: Never,
}

#[allow(clippy::unused_self, clippy::needless_pass_by_value, missing_docs)]
impl PgVectorStore {
    /// Always [`IndexError::NotCompiled`].
    ///
    /// # Errors
    /// Always.
    pub fn connect(_url: &str) -> Result<Self> {
        Err(off())
    }
    /// Always [`IndexError::NotCompiled`].
    ///
    /// # Errors
    /// Always.
    pub fn create(
        _url: &str,
        _model_id: &str,
        _model_dir: Option<&str>,
        _params: HnswParams,
        _replace: bool,
    ) -> Result<Self> {
        Err(off())
    }
    #[must_use]
    pub fn with_ef_search(self, _ef: usize) -> Self {
        match self.never {}
    }
    #[must_use]
    pub fn model_dir(&self) -> Option<&str> {
        match self.never {}
    }
    #[must_use]
    pub fn dim(&self) -> usize {
        match self.never {}
    }
    #[must_use]
    pub fn params(&self) -> HnswParams {
        match self.never {}
    }
    #[must_use]
    pub fn collection(&self) -> &str {
        match self.never {}
    }
    /// # Errors
    /// Never returns.
    pub fn insert(&mut self, _chunks: Vec<Chunk>, _vectors: Vec<Vec<f32>>) -> Result<usize> {
        match self.never {}
    }
    /// # Errors
    /// Never returns.
    pub fn remove_docs(&self, _docs: &[DocId]) -> Result<usize> {
        match self.never {}
    }
    /// # Errors
    /// Never returns.
    pub fn remove_chunks(&self, _ids: &[ChunkId]) -> Result<usize> {
        match self.never {}
    }
    /// # Errors
    /// Never returns.
    pub fn len(&self) -> Result<usize> {
        match self.never {}
    }
    /// # Errors
    /// Never returns.
    pub fn is_empty(&self) -> Result<bool> {
        match self.never {}
    }
    /// # Errors
    /// Never returns.
    pub fn sizes(&self) -> Result<(u64, u64)> {
        match self.never {}
    }
    /// # Errors
    /// Never returns.
    pub fn chunk_ids(&self) -> Result<Vec<ChunkId>> {
        match self.never {}
    }
    /// # Errors
    /// Never returns.
    pub fn search_with(&self, _query: &[f32], _k: usize, _filter: &Filter, _exact: bool) -> Result<Vec<Scored>> {
        match self.never {}
    }
    /// # Errors
    /// Never returns.
    pub fn search_keywords(&self, _query: &str, _k: usize, _filter: &Filter) -> Result<Vec<Scored>> {
        match self.never {}
    }
    /// # Errors
    /// Never returns.
    pub fn search_text(
        &self,
        _embedder: &dyn Embedder,
        _query: &str,
        _k: usize,
        _filter: &Filter,
        _exact: bool,
    ) -> Result<Vec<Scored>> {
        match self.never {}
    }
    /// # Errors
    /// Never returns.
    pub fn sync(
        &mut self,
        _embedder: &dyn Embedder,
        _chunks: Vec<Chunk>,
        _options: &SyncOptions<'_>,
    ) -> Result<SyncReport> {
        match self.never {}
    }
    /// # Errors
    /// Never returns.
    pub fn drop_collection(self) -> Result<()> {
        match self.never {}
    }
}

impl crate::KeywordSearch for PgVectorStore {
    fn keyword_search(&self, _query: &str, _k: usize, _filter: &Filter) -> Result<Vec<Scored>, RetrieveError> {
        match self.never {}
    }
}

impl VectorStore for PgVectorStore {
    fn model_id(&self) -> &str {
        match self.never {}
    }
    fn add(&mut self, _chunks: Vec<Chunk>, _vectors: Vec<Vec<f32>>) -> Result<usize, StoreError> {
        match self.never {}
    }
    fn delete_documents(&mut self, _docs: &[DocId]) -> Result<usize, StoreError> {
        match self.never {}
    }
    fn search(&self, _query: &[f32], _k: usize, _filter: &Filter) -> Result<Vec<Scored>, StoreError> {
        match self.never {}
    }
    fn count(&self) -> Result<usize, StoreError> {
        match self.never {}
    }
}
