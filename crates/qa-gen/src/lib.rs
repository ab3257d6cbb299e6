//! Question/answer generation: chunks in, a fine-tuning dataset out, with nothing lost and
//! nothing leaked.
//!
//! Data flow:
//!
//! 1. A [`Generator`](docraft_core::Generator) backend writes the next assistant turn of
//!    chats in batches. This crate runs any of them; the real ones (llama.cpp in process, any
//!    OpenAI-compatible endpoint) live in `docraft-llm`.
//! 2. [`QaPrompt`] renders the prompt files under `prompts/` for a chunk, in the chunk's
//!    language.
//! 3. Before that, chunks not worth asking about (tables of contents, indexes, copyright and
//!    license boilerplate, navigation) are skipped ([`skip`]), each recorded with its reason.
//! 4. [`parse_pairs`] turns output into pairs, repairing what small models break;
//!    [`Filters`] check length, question form, references to the passage, non-answers,
//!    grounding in the chunk, language ([`quality`]) and near-duplicates across the run; an
//!    optional [`judge`] model scores what is left.
//! 5. [`Generation::run`] drives it all, appending to `qa.jsonl`, `qa.rejected.jsonl` (with
//!    the raw output and the [`Reason`]) and `qa.progress.jsonl`, so a killed run resumes
//!    without duplicates or gaps.
//! 6. [`export`] writes training formats (OpenAI chat, completion, Alpaca, ShareGPT,
//!    text-label) with a train/valid split by source document; [`validate`] checks a file the
//!    way OpenAI's fine-tuning data preparation does.
//!
//! ```
//! use docraft_core::{Chunk, ChunkId, DocId, Span, FinishReason, GenError, GenRequest, GenResponse, Generator, Usage};
//! use docraft_qa_gen::{GenerateOptions, Generation};
//!
//! // Any backend works; this one answers every chunk with the same pair.
//! struct Canned;
//! impl Generator for Canned {
//!     fn generate_batch(&self, reqs: &[GenRequest]) -> Vec<Result<GenResponse, GenError>> {
//!         reqs.iter().map(|_| Ok(GenResponse {
//!             text: r#"{"pairs":[{"question":"How long are invoices kept?","answer":"Invoices are kept for ten years."}]}"#.into(),
//!             finish: FinishReason::Stop,
//!             usage: Usage::default(),
//!         })).collect()
//!     }
//!     fn model_id(&self) -> String {
//!         "example:canned".into()
//!     }
//! }
//!
//! # fn main() -> anyhow::Result<()> {
//! let doc = DocId::from_content(b"policy");
//! let text = "Invoices are kept for ten years in the finance archive.".to_string();
//! let chunk = Chunk {
//!     id: ChunkId::new(&doc, 0, text.len()), doc_id: doc, source: "policy.md".into(),
//!     span: Span::new(0, text.len()), text, pages: None, headings: vec![],
//!     chunk_index: 0, chunk_count: 1, metadata: Default::default(),
//! };
//! let dir = tempfile::tempdir()?;
//! let out = dir.path().join("qa.jsonl");
//! let generation = Generation::new(&Canned, GenerateOptions { questions_per_chunk: 1, ..Default::default() })?;
//! let summary = generation.run(&[chunk.clone()], &out, &docraft_core::NoProgress)?;
//! assert_eq!((summary.accepted, summary.rejected_total()), (1, 0));
//! // Run again: the chunk is done, nothing is generated twice.
//! let again = generation.run(&[chunk], &out, &docraft_core::NoProgress)?;
//! assert_eq!((again.resumed, again.processed, again.accepted), (1, 0, 1));
//! # Ok(()) }
//! ```

mod error;
pub mod export;
pub mod filter;
pub mod judge;
pub mod parse;
pub mod prompt;
pub mod quality;
pub mod run;
pub mod skip;
pub mod validate;

pub use error::{QaGenError, Result};
pub use filter::{Deduper, Filters, Reason};
pub use judge::{Judge, JudgeOptions};
pub use parse::{Parsed, RawPair, parse_pairs};
pub use prompt::QaPrompt;
pub use run::{Budget, ChunkDone, Estimate, GenerateOptions, Generation, Price, Progress, Rejected, RunFiles, Summary};
