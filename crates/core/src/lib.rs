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
//! - the interfaces the stages meet through: [`Embedder`] (text to vectors).
//!
//! ```
//! use docraft_core::{Document, DocFormat, Span};
//!
//! let doc = Document::new("notes.txt", DocFormat::Text, b"raw bytes", "Hola mundo.".to_string());
//! assert_eq!(doc.slice(Span::new(0, 4)), Some("Hola"));
//! assert_eq!(doc.id.as_str().len(), 32);
//! ```
//!
//! It depends on serde, serde_json, sha2 and thiserror only, so every crate can use it.

mod chunk;
mod document;
mod embed;
mod error;
mod id;
pub mod jsonl;

pub use chunk::Chunk;
pub use document::{DocFormat, Document, Metadata, PageRange, Section, Span};
pub use embed::{EmbedError, Embedder};
pub use error::{Error, Result};
pub use id::{ChunkId, DocId, content_hash};
