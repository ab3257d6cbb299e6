//! RAFT datasets for docraft (Zhang et al. 2024, "RAFT: Adapting Language Model to Domain
//! Specific RAG"; reference code in gorilla's `raft/`).
//!
//! A RAFT record teaches a model to answer from the right document while ignoring the
//! others: a question, its oracle chunk hidden among distractor chunks, and a chain of
//! thought that quotes the oracle and ends with the final answer. Data flow:
//!
//! ```text
//! questions (QaPair: from qa-gen, or your own) + chunks
//!   -> context: oracle with probability P, k distractors (random, or hard = the question's
//!      nearest neighbours through core's Retriever), never the oracle, an overlapping chunk,
//!      a near-duplicate or a chunk holding the answer; shuffled; seeded       [distract]
//!   -> chain of thought from a Generator, seeing the question and the oracle  [prompt]
//!   -> every ##begin_quote##...##end_quote## checked against the oracle, the
//!      final answer checked to be an answer that agrees with the quotes;
//!      failures asked again, then rejected with their reason                 [cot]
//!   -> RaftRecord lines in OUT, rejected questions in OUT.rejected.jsonl      [build]
//!   -> hf / completion / chat / eval files per train/valid/test split         [format]
//! ```
//!
//! Splits are by source document; a training record's distractors come from training
//! documents only, so no held-out text reaches training. A run killed at any moment
//! continues where it stopped: a question is done once its line is in either file.
//!
//! ```
//! use docraft_raft::cot::verify;
//!
//! let oracle = "Tighten the flange bolts to 45 Nm. Check the wrench every six months.";
//! let cot = "The manual says ##begin_quote##tighten the flange bolts to 45 Nm##end_quote##.\n<ANSWER>: 45 Nm";
//! assert_eq!(verify(cot, oracle, 3).map(|ok| ok.final_answer), Ok("45 Nm".to_string()));
//! assert!(verify("##begin_quote##tighten them to 50 Nm##end_quote## <ANSWER>: 50", oracle, 3).is_err());
//! ```

mod build;
pub mod cot;
mod distract;
mod error;
pub mod format;
mod prompt;

pub use build::{Progress, RaftBuilder, RaftFiles, RaftOptions, Rejected, Split, Summary, parse_splits};
pub use cot::Problem;
pub use error::{RaftError, Result};
pub use format::{Exported, Format, FormatOptions, export};
pub use prompt::{CotPrompt, PROMPT_NAME, PROMPTS};
