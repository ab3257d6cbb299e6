//! Question/answer records: what `qa-gen` writes and `raft`, `train` and exports read.

use serde::{Deserialize, Serialize};

use crate::{ChunkId, DocId, PageRange, Span};

/// A question about one chunk and its answer grounded in that chunk. One line of `qa.jsonl`.
///
/// Every pair carries its lineage: the chunk and document it came from (with pages and
/// byte span for citations), and the model and prompt that wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QaPair {
    /// Stable id: derived from the generation key and the pair's position in its answer.
    pub id: String,
    /// The chunk the pair is about.
    pub chunk_id: ChunkId,
    /// The chunk's document.
    pub doc_id: DocId,
    /// The document's source path.
    pub source: String,
    /// Pages of the chunk, for paged formats.
    pub pages: Option<PageRange>,
    /// Byte span of the chunk in its document's text.
    pub span: Span,
    /// Heading path of the chunk.
    #[serde(default)]
    pub headings: Vec<String>,
    /// The question.
    pub question: String,
    /// The answer, grounded in the chunk.
    pub answer: String,
    /// Language of the pair (ISO 639-1, e.g. `en`, `es`).
    pub lang: String,
    /// The model that wrote it.
    pub model: String,
    /// The prompt that asked for it (`name@hash`).
    pub prompt: String,
    /// The generation key: chunk, prompt, model and settings hashed together. A resumed run
    /// skips chunks whose key is already done.
    pub gen_key: String,
}
