//! Ingest: files in, documents and chunks out.
//!
//! ```text
//! paths ──walk (globs)──> files ──Loader──> Document ──Chunker──> Chunk ──> chunks.jsonl
//!                          │ PDF (lopdf + our content-stream walk), Markdown (pulldown-cmark),
//!                          │ text (UTF-8/16 with BOM, Windows-1252 fallback)
//!                          └ in parallel (rayon), identical files once, resumable
//! ```
//!
//! - [`AutoLoader`] reads a file into a [`docraft_core::Document`]: extracted text, per-page
//!   byte ranges (PDF), heading sections (Markdown), metadata and a language guess. Bad
//!   files give a typed [`Error`] naming the file: empty, not a PDF, encrypted, damaged,
//!   no text layer, binary content, not a regular file.
//! - [`TextChunker`] splits a document with text-splitter by characters or tokens
//!   ([`Sizer`]), Markdown-aware for Markdown, and every [`docraft_core::Chunk`] keeps its
//!   span, pages and heading path.
//! - [`Ingest`] runs the whole thing over files and directories into an append-only JSONL
//!   file and returns a [`Report`] per file; [`discover`] lists the paths inside walked
//!   directories that it could not take (FIFOs, link loops, no permission) with the reason.
//!
//! ```
//! # fn main() -> Result<(), docraft_ingest::Error> {
//! use std::path::Path;
//! use docraft_ingest::{AutoLoader, ChunkSettings, Chunker, Loader, TextChunker};
//!
//! let doc = AutoLoader::new().load(Path::new("notas.md"), "# Notas\n\nEl equipo se reúne los lunes.".as_bytes())?;
//! let chunker = TextChunker::new(ChunkSettings::new(200..=400)?.with_overlap(20)?);
//! let chunks = chunker.chunk(&doc)?;
//! assert_eq!(chunks[0].headings, ["Notas"]);
//! assert_eq!(&doc.text[chunks[0].span.range()], chunks[0].text);
//! # Ok(()) }
//! ```

mod chunk;
mod error;
mod load;
pub mod markdown;
pub mod pdf;
mod pipeline;
#[cfg(feature = "sql")]
pub mod sql;
pub mod text;
mod walk;

pub use chunk::{Capacity, ChunkSettings, Chunker, Sizer, SplitWork, TextChunker, chunks_from_spans};
pub use docraft_core::guess_language;
pub use error::Error;
pub use load::{AutoLoader, Loader, format_of, read_file};
pub use pipeline::{FileReport, FileStatus, Ingest, IngestUpdate, Report, Totals};
pub use walk::{Discovery, FileFilter, SkipReason, SkippedPath, discover};

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
