//! Chunking with text-splitter: by characters or by tokens, capacity as a range, overlap,
//! Markdown-aware for Markdown documents. Every chunk keeps its byte span into the
//! document text, its pages and its heading path.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use docraft_core::{Chunk, ChunkId, DocFormat, Document, Span};
use text_splitter::{ChunkConfig, ChunkSizer, MarkdownSplitter, TextSplitter};
use tokenizers::Tokenizer;

use crate::error::Error;

/// Splits a document into chunks. One required method.
pub trait Chunker: Send + Sync {
    /// The chunks of `doc`, in text order.
    ///
    /// # Errors
    /// Implementation-defined; the built-in [`TextChunker`] does not fail once built.
    fn chunk(&self, doc: &Document) -> Result<Vec<Chunk>, Error>;
}

/// How chunk sizes are measured.
#[derive(Clone)]
pub enum Sizer {
    /// Unicode scalar values (chars).
    Characters,
    /// Tokens of a Hugging Face tokenizer (a `tokenizer.json`).
    Tokens(Arc<Tokenizer>),
}

impl std::fmt::Debug for Sizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Characters => f.write_str("Characters"),
            Self::Tokens(_) => f.write_str("Tokens"),
        }
    }
}

impl Sizer {
    /// Tokens of the tokenizer in `path` (a `tokenizer.json`). Its truncation and padding
    /// are cleared first: a tokenizer shipped with `truncation: 128` would otherwise measure
    /// every long text as 128 tokens.
    ///
    /// # Errors
    /// [`Error::Tokenizer`] naming the file.
    pub fn tokens_from_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let mut tok = Tokenizer::from_file(path)
            .map_err(|e| Error::Tokenizer { path: path.to_path_buf(), reason: e.to_string() })?;
        tok.with_truncation(None).map_err(|e| Error::Tokenizer { path: path.to_path_buf(), reason: e.to_string() })?;
        tok.with_padding(None);
        Ok(Self::Tokens(Arc::new(tok)))
    }

    /// The size of `text` in this sizer's unit.
    #[must_use]
    pub fn size(&self, text: &str) -> usize {
        match self {
            Self::Characters => text.chars().count(),
            Self::Tokens(t) => t.as_ref().size(text),
        }
    }

    fn unit(&self) -> &'static str {
        match self {
            Self::Characters => "chars",
            Self::Tokens(_) => "tokens",
        }
    }
}

impl ChunkSizer for Sizer {
    fn size(&self, chunk: &str) -> usize {
        Sizer::size(self, chunk)
    }
}

/// Chunking settings: a capacity range `min..=max` (chunks aim for `min` and may grow to
/// `max` to stay at a higher semantic level), an overlap, and a sizer.
#[derive(Debug, Clone)]
pub struct ChunkSettings {
    min: usize,
    max: usize,
    overlap: usize,
    sizer: Sizer,
}

impl Default for ChunkSettings {
    /// 800..=1200 characters, overlap 100.
    fn default() -> Self {
        Self { min: 800, max: 1200, overlap: 100, sizer: Sizer::Characters }
    }
}

impl ChunkSettings {
    /// Chunks of `capacity` (a size, or a range such as `500..1000`, end exclusive, or
    /// `500..=1000`) measured in characters, with no overlap.
    ///
    /// # Errors
    /// [`Error::ChunkConfig`] if the capacity is empty or zero.
    pub fn new(capacity: impl Into<Capacity>) -> Result<Self, Error> {
        let Capacity(r) = capacity.into();
        let (min, max) = (r.start, r.end);
        if max == 0 || min > max {
            return Err(Error::ChunkConfig(format!("capacity {min}..={max} is empty")));
        }
        Ok(Self { min: min.max(1), max, overlap: 0, sizer: Sizer::Characters })
    }

    /// Sets the overlap between consecutive chunks (in the sizer's unit).
    ///
    /// # Errors
    /// [`Error::ChunkConfig`] if the overlap is not smaller than the smallest chunk.
    pub fn with_overlap(mut self, overlap: usize) -> Result<Self, Error> {
        if overlap >= self.min {
            return Err(Error::ChunkConfig(format!(
                "overlap {overlap} must be smaller than the chunk size {}",
                self.min
            )));
        }
        self.overlap = overlap;
        Ok(self)
    }

    /// Measures sizes with `sizer`.
    #[must_use]
    pub fn with_sizer(mut self, sizer: Sizer) -> Self {
        self.sizer = sizer;
        self
    }

    /// Smallest target size.
    #[must_use]
    pub fn min(&self) -> usize {
        self.min
    }

    /// Largest size a chunk may have.
    #[must_use]
    pub fn max(&self) -> usize {
        self.max
    }

    /// Overlap between neighbours.
    #[must_use]
    pub fn overlap(&self) -> usize {
        self.overlap
    }

    /// The sizer.
    #[must_use]
    pub fn sizer(&self) -> &Sizer {
        &self.sizer
    }

    /// A one-line description, e.g. `800..=1200 chars, overlap 100`.
    #[must_use]
    pub fn describe(&self) -> String {
        format!("{}..={} {}, overlap {}", self.min, self.max, self.sizer.unit(), self.overlap)
    }
}

/// A chunk capacity: one size or an inclusive range of sizes.
#[derive(Debug, Clone)]
pub struct Capacity(Range<usize>);

impl From<usize> for Capacity {
    fn from(n: usize) -> Self {
        Self(n..n)
    }
}

impl From<Range<usize>> for Capacity {
    /// `a..b` is `a..=b-1`.
    fn from(r: Range<usize>) -> Self {
        Self(r.start..r.end.saturating_sub(1))
    }
}

impl From<std::ops::RangeInclusive<usize>> for Capacity {
    fn from(r: std::ops::RangeInclusive<usize>) -> Self {
        Self(*r.start()..*r.end())
    }
}

/// The built-in chunker: text-splitter's `MarkdownSplitter` for Markdown, `TextSplitter`
/// (paragraphs, then lines, sentences, words) for everything else.
#[derive(Debug, Clone)]
pub struct TextChunker {
    settings: ChunkSettings,
}

impl TextChunker {
    /// A chunker with `settings`.
    #[must_use]
    pub fn new(settings: ChunkSettings) -> Self {
        Self { settings }
    }

    /// Its settings.
    #[must_use]
    pub fn settings(&self) -> &ChunkSettings {
        &self.settings
    }

    fn config(&self) -> Result<ChunkConfig<&Sizer>, Error> {
        ChunkConfig::new(self.settings.min..self.settings.max + 1)
            .with_sizer(&self.settings.sizer)
            .with_overlap(self.settings.overlap)
            .map_err(|e| Error::ChunkConfig(e.to_string()))
    }
}

impl Chunker for TextChunker {
    fn chunk(&self, doc: &Document) -> Result<Vec<Chunk>, Error> {
        let config = self.config()?;
        let spans: Vec<Span> = match doc.format {
            DocFormat::Markdown => MarkdownSplitter::new(config)
                .chunk_indices(&doc.text)
                .map(|(start, s)| Span::new(start, start + s.len()))
                .collect(),
            _ => TextSplitter::new(config)
                .chunk_indices(&doc.text)
                .map(|(start, s)| Span::new(start, start + s.len()))
                .collect(),
        };
        Ok(chunks_from_spans(doc, &spans))
    }
}

/// Document metadata as carried by each chunk: `title`, `language`, `format` and fields.
fn chunk_metadata(doc: &Document) -> std::collections::BTreeMap<String, serde_json::Value> {
    let mut m = doc.metadata.fields.clone();
    if let Some(t) = &doc.metadata.title {
        m.insert("title".into(), t.clone().into());
    }
    if let Some(l) = &doc.metadata.language {
        m.insert("language".into(), l.clone().into());
    }
    m.insert("format".into(), doc.format.as_str().into());
    m
}

/// Builds chunk records for the given spans of `doc` (spans on char boundaries, in order).
#[must_use]
pub fn chunks_from_spans(doc: &Document, spans: &[Span]) -> Vec<Chunk> {
    let metadata = chunk_metadata(doc);
    let count = spans.len();
    spans
        .iter()
        .enumerate()
        .filter_map(|(i, &span)| {
            let text = doc.slice(span)?.to_string();
            Some(Chunk {
                id: ChunkId::new(&doc.id, span.start, span.end),
                doc_id: doc.id.clone(),
                source: doc.source.clone(),
                text,
                span,
                pages: doc.pages_of(span),
                headings: doc.headings_at(span.start).to_vec(),
                chunk_index: i,
                chunk_count: count,
                metadata: metadata.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_validate() {
        assert!(ChunkSettings::new(0).is_err());
        assert!(ChunkSettings::new(100).and_then(|s| s.with_overlap(100)).is_err());
        let s = ChunkSettings::new(100..=200).and_then(|s| s.with_overlap(10)).unwrap();
        assert_eq!((s.min(), s.max(), s.overlap()), (100, 200, 10));
        assert_eq!(s.describe(), "100..=200 chars, overlap 10");
    }

    #[test]
    fn chunks_rebuild_text_and_fit() {
        let text = "Uno dos tres. ".repeat(200);
        let doc = Document::new("a.txt", DocFormat::Text, b"a", text);
        let s = ChunkSettings::new(100..=150).and_then(|s| s.with_overlap(20)).unwrap();
        let chunks = TextChunker::new(s).chunk(&doc).unwrap();
        assert!(chunks.len() > 10);
        for c in &chunks {
            assert_eq!(doc.slice(c.span), Some(c.text.as_str()));
            assert!(c.text.chars().count() <= 150);
            assert_eq!(c.chunk_count, chunks.len());
        }
        // Overlap: each chunk starts before the previous one ends.
        assert!(chunks.windows(2).all(|w| w[1].span.start < w[0].span.end));
    }
}
