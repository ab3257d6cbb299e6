use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{ChunkId, DocId, PageRange, Span};

/// A piece of a document, the unit every later stage works on.
///
/// A chunk always maps back to its source: `text == document.text[span]`, `pages` are the
/// pages that span touches (paged formats), `headings` the heading path in force where it
/// starts. One line of `chunks.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    /// Stable id (see [`ChunkId::new`]).
    pub id: ChunkId,
    /// The document it belongs to.
    pub doc_id: DocId,
    /// The document's source path.
    pub source: String,
    /// The chunk's text: exactly the document's text at `span`.
    pub text: String,
    /// Byte range `[start, end)` in the document's text.
    pub span: Span,
    /// Pages `[first, last]` (1-based, inclusive), or `null` for unpaged formats.
    pub pages: Option<PageRange>,
    /// Heading path where the chunk starts, outermost first; `[]` if none.
    #[serde(default)]
    pub headings: Vec<String>,
    /// Position of this chunk in its document (0-based).
    #[serde(default)]
    pub chunk_index: usize,
    /// How many chunks its document has.
    #[serde(default)]
    pub chunk_count: usize,
    /// Document metadata carried along for filtering: `title`, `language`, `format` and
    /// front-matter fields.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, serde_json::Value>,
}
