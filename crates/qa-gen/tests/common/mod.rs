//! Test helpers: chunks.
#![allow(dead_code)]

use docraft_core::{Chunk, ChunkId, DocId, Span};

/// A chunk of `text` from document `doc` (its own source name).
pub fn chunk(doc: &str, text: &str) -> Chunk {
    let doc_id = DocId::from_content(doc.as_bytes());
    Chunk {
        id: ChunkId::new(&doc_id, 0, text.len()),
        doc_id,
        source: format!("docs/{doc}"),
        text: text.to_string(),
        span: Span::new(0, text.len()),
        pages: None,
        headings: vec![],
        chunk_index: 0,
        chunk_count: 1,
        metadata: Default::default(),
    }
}
