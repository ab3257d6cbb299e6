//! Evaluation of a docraft run: how well the index finds a question's source, and how well a
//! model answers with the right documents in front of it, before and after fine-tuning.
//!
//! Data flow:
//!
//! - [`retrieval`]: questions whose source chunk is known (generated Q&A, RAFT records, or a
//!   user's JSONL naming a chunk id or a file and page) go through a
//!   [`Retriever`](docraft_core::Retriever); recall@k and mean reciprocal rank come out;
//! - [`qa`]: open-book questions in the RAFT `eval` format (question + oracle among
//!   distractors, gold final answer) go through any [`Generator`](docraft_core::Generator)
//!   (the base model, then base + adapter); [`metrics`] scores each answer: exact match,
//!   token F1, answer contains gold, and the share of the chain of thought's quotes found in
//!   the context;
//! - [`report`]: `report.md`, `report.json` and SVG plots ([`plot`]): training and validation
//!   loss by step, before/after scores, recall@k.
//!
//! ```
//! use docraft_eval::metrics::{exact_match, token_f1};
//!
//! assert!(exact_match("The 45 N·m.", "45 n·m"));
//! assert!((token_f1("45 N·m exactly", "45 N·m") - 0.8).abs() < 1e-9);
//! ```

mod error;
pub mod metrics;
pub mod plot;
pub mod qa;
pub mod report;
pub mod retrieval;

pub use error::{EvalError, Result};
