//! Shared types of the docraft pipeline.
//!
//! Every stage of docraft meets here: `ingest` turns files into [`Document`]s and
//! [`Chunk`]s, and later stages (index, qa-gen, raft, train) read those chunks back from
//! JSONL. This crate holds:
//!
//! - the records: [`Document`] (extracted text with per-page byte ranges and section
//!   headings) and [`Chunk`] (a piece of a document that always maps back to its source:
//!   byte [`Span`], [`PageRange`], heading path);
//! - content-derived, stable ids ([`DocId`], [`ChunkId`]);
//! - append-only, resumable JSONL files ([`jsonl::JsonlWriter`], [`jsonl::JsonlReader`]) that
//!   survive a crash in the middle of a line;
//! - the error type shared by all of it ([`Error`]);
//! - question/answer records ([`QaPair`]) and RAFT records ([`RaftRecord`]);
//! - train/valid/test assignment by source document ([`split::assign_splits`]);
//! - the interfaces the stages meet through: [`Embedder`] (text to vectors) and
//!   [`Generator`] (chats to text, batched, one result per request), and [`Retriever`]
//!   (the chunks nearest a text, with their scores), [`VectorStore`] (chunk vectors: add,
//!   delete by document, search with a [`Filter`], count; the embedded HNSW index and
//!   pgvector implement it) and [`StoreRetriever`] (a store and its embedder as a retriever);
//! - what every stage shares for text and randomness: [`text`] (normalization, words,
//!   stopwords per language, grounding), [`prompt`] (the single-pass prompt renderer) and
//!   [`rng`] (the seeded generator behind every random choice);
//! - one progress idiom ([`Progress`], any `Fn(&U) + Sync` closure) and one cooperative
//!   cancellation token ([`CancelToken`]) that every stage's runner takes;
//! - the records of a training run ([`train::MetricRecord`], [`train::CheckpointState`],
//!   [`train::TrainEvent`]), written by the trainer and read by evaluation.
//!
//! ```
//! use docraft_core::{Document, DocFormat, Span};
//!
//! let doc = Document::new("notes.txt", DocFormat::Text, b"raw bytes", "Hola mundo.".to_string());
//! assert_eq!(doc.slice(Span::new(0, 4)), Some("Hola"));
//! assert_eq!(doc.id.as_str().len(), 32);
//! ```
//!
//! It depends on globset, serde, serde_json, sha2, thiserror, unicode-normalization and whatlang only, so every crate can use it.

mod cancel;
mod chunk;
mod document;
mod embed;
mod error;
pub mod filter;
mod generate;
mod id;
pub mod jsonl;
mod lang;
mod progress;
pub mod prompt;
mod qa;
mod raft;
pub mod redact;
mod retrieve;
pub mod rng;
pub mod split;
mod store;
pub mod text;
pub mod train;

pub use cancel::CancelToken;
pub use chunk::Chunk;
pub use document::{DocFormat, Document, Metadata, PageRange, Section, Span};
pub use embed::{EmbedError, Embedder};
pub use error::{Error, Result};
pub use filter::{Condition, Filter, FilterError};
pub use generate::{ChatMessage, FinishReason, GenError, GenRequest, GenResponse, Generator, Role, Sampling, Usage};
pub use id::{ChunkId, DocId, content_hash};
pub use lang::{guess_language, language_name};
pub use progress::{Count, NoProgress, Progress};
pub use qa::{ChunkRef, JudgeScores, QaPair};
pub use raft::{ContextDoc, DocRole, RaftContext, RaftEvalRecord, RaftMeta, RaftRecord};
pub use redact::{PiiKind, Redacted, Redactor};
pub use retrieve::{RetrieveError, Retriever, Scored};
pub use store::{StoreError, StoreRetriever, VectorStore};

/// Where models live, as `scripts/setup.sh` fills it: `$DOCRAFT_MODELS`, else
/// `$DOCRAFT_CACHE/models`, else `~/.cache/docraft/models`. Empty variables count as unset.
#[must_use]
pub fn models_dir() -> std::path::PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(std::path::PathBuf::from);
    var("DOCRAFT_MODELS")
        .or_else(|| var("DOCRAFT_CACHE").map(|cache| cache.join("models")))
        .unwrap_or_else(|| var("HOME").unwrap_or_default().join(".cache/docraft/models"))
}
