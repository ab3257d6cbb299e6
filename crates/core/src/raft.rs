//! RAFT records: what `raft` writes and `train` and `eval` read (through the exported
//! formats).
//!
//! A [`RaftRecord`] keeps the field layout of the RAFT reference implementation (gorilla's
//! `raft/raft.py`, the `hf` format) so existing RAFT consumers read our files, plus one
//! [`RaftMeta`] object with docraft's lineage.

use serde::{Deserialize, Serialize};

use crate::{ChunkId, ChunkRef, DocId, PageRange};

/// The `context` column of the reference: one list of titles and one list of documents,
/// each wrapped in an outer list (`{"title": [[...]], "sentences": [[...]]}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RaftContext {
    /// `[[title of each document]]` (the reference writes `placeholder_title`; we write the
    /// source file name).
    pub title: Vec<Vec<String>>,
    /// `[[text of each document]]`, in the shuffled order the instruction shows them.
    pub sentences: Vec<Vec<String>>,
}

/// Why a document is in a record's context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocRole {
    /// The chunk the question was asked about.
    Oracle,
    /// A distractor drawn uniformly from the eligible chunks.
    Random,
    /// A distractor among the question's nearest neighbours in the index.
    Hard,
}

/// One document of a record's context, in the order the instruction shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextDoc {
    /// The chunk.
    pub chunk_id: ChunkId,
    /// Its document.
    pub doc_id: DocId,
    /// Its source path.
    pub source: String,
    /// Its pages, for paged formats.
    pub pages: Option<PageRange>,
    /// Oracle, or how the distractor was chosen.
    pub role: DocRole,
    /// For hard distractors: the retriever's similarity to the question.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
}

/// docraft's own fields, kept beside the reference's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RaftMeta {
    /// The question record this came from (a `QaPair` id).
    pub question_id: String,
    /// The oracle chunk, with its document, pages, span and headings.
    #[serde(flatten)]
    pub oracle: ChunkRef,
    /// Language of the question (ISO 639-1).
    pub lang: String,
    /// The split the oracle's document belongs to (`train`, `valid`, `test`).
    pub split: String,
    /// Whether the oracle is among the context documents (probability P).
    pub oracle_in_context: bool,
    /// The context documents, in instruction order.
    pub documents: Vec<ContextDoc>,
    /// The quotes of the chain of thought (each found in the oracle).
    pub quotes: Vec<String>,
    /// Generation attempts it took (1 unless a first answer failed verification).
    pub attempts: u32,
    /// The model that wrote the chain of thought.
    pub model: String,
    /// The prompt that asked for it (`name@hash`).
    pub prompt: String,
}

/// One RAFT training record: the reference's `hf` layout plus [`RaftMeta`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RaftRecord {
    /// Stable id (question id and the build settings hashed together).
    pub id: String,
    /// `general` (the reference's type for documents that are not API docs).
    #[serde(rename = "type")]
    pub kind: String,
    /// The question.
    pub question: String,
    /// The context documents.
    pub context: RaftContext,
    /// The oracle chunk's text.
    pub oracle_context: String,
    /// Reasoning quoting the oracle between `##begin_quote##` and `##end_quote##`, ending
    /// with `<ANSWER>: ...`.
    pub cot_answer: String,
    /// Every document as `<DOCUMENT>...</DOCUMENT>` on its own line, then the question.
    pub instruction: String,
    /// The text after `<ANSWER>:`.
    pub final_answer: String,
    /// Lineage and how the record was made.
    pub meta: RaftMeta,
}

/// One line of a RAFT `eval` export: what an open-book evaluation asks and checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RaftEvalRecord {
    /// The question.
    pub question: String,
    /// The gold answer (the record's `final_answer`).
    pub gold_final_answer: String,
    /// What the model is given: the documents and the question (the record's `instruction`).
    pub context: String,
    /// The record's lineage.
    pub meta: RaftMeta,
}

impl RaftEvalRecord {
    /// The `eval` line of `record`.
    #[must_use]
    pub fn of(record: &RaftRecord) -> Self {
        Self {
            question: record.question.clone(),
            gold_final_answer: record.final_answer.clone(),
            context: record.instruction.clone(),
            meta: record.meta.clone(),
        }
    }
}
