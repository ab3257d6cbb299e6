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

impl TextChunker {
    /// The chunks of `doc`, and how much text the splitter was handed to make them (see
    /// [`SplitWork`]).
    ///
    /// # Errors
    /// [`Error::ChunkConfig`] if text-splitter refuses the settings (not after
    /// [`ChunkSettings`] validated them).
    pub fn chunk_with_work(&self, doc: &Document) -> Result<(Vec<Chunk>, SplitWork), Error> {
        let config = self.config()?;
        let limits = WindowLimits::for_settings(&self.settings);
        let (spans, work) = match doc.format {
            DocFormat::Markdown => {
                let splitter = MarkdownSplitter::new(config);
                windowed_spans(&doc.text, limits, markdown_restart, |w| {
                    splitter.chunk_indices(w).map(|(i, s)| (i, s.len())).collect()
                })
            }
            _ => {
                let splitter = TextSplitter::new(config);
                windowed_spans(
                    &doc.text,
                    limits,
                    |_, _| true,
                    |w| splitter.chunk_indices(w).map(|(i, s)| (i, s.len())).collect(),
                )
            }
        };
        Ok((chunks_from_spans(doc, &spans), work))
    }
}

impl Chunker for TextChunker {
    fn chunk(&self, doc: &Document) -> Result<Vec<Chunk>, Error> {
        self.chunk_with_work(doc).map(|(chunks, _)| chunks)
    }
}

/// How much text [`TextChunker`] handed to text-splitter for one document: the measure of
/// its work, which stays linear in the length of the text.
///
/// text-splitter looks, for every chunk, from the chunk's start to the next boundary of each
/// semantic level (sentence, word, line breaks) and over all line breaks after it, so on
/// text without boundaries (a long line without sentence ends, or without any whitespace)
/// or with very many lines its time grows with the square of the text's length. The chunker
/// therefore hands it the text in windows: the whole text when it is at most 256 KiB with at
/// most 8192 lines and no line longer than six chunks (every ordinary document), else
/// consecutive windows of at most that size, cut at line ends, with long lines in pieces of
/// six chunks. The chunks near a window's end (within a chunk and a quarter) are dropped and
/// made again from the next window, which starts where the first dropped chunk started, so
/// chunks still overlap and run on across windows as they do in one piece; in our tests
/// (prose, long lines, Markdown, text without whitespace) the chunks are the same as
/// text-splitter's over the whole text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SplitWork {
    /// Windows handed to the splitter.
    pub windows: usize,
    /// Bytes handed to the splitter, over all windows.
    pub bytes: usize,
    /// Bytes of the largest window.
    pub largest_window: usize,
}

/// Text handed to the splitter at once, at most (bytes, plus the end of a line).
const WINDOW_BYTES: usize = 256 * 1024;
/// Lines handed to the splitter at once, at most.
const WINDOW_LINES: usize = 8192;
/// A line longer than this many chunks (at most) is handed over in pieces of that size.
const LINE_CHUNKS: usize = 6;

/// Where windows end, for one chunker's settings.
#[derive(Debug, Clone, Copy)]
struct WindowLimits {
    /// The longest piece of a line in one window, in characters.
    line_chars: usize,
}

impl WindowLimits {
    fn for_settings(settings: &ChunkSettings) -> Self {
        // A token is a few characters; a character is one unit of the character sizer.
        let chars_per_unit = match settings.sizer {
            Sizer::Characters => 1,
            Sizer::Tokens(_) => 4,
        };
        let line_chars = settings.max.saturating_mul(chars_per_unit).saturating_mul(LINE_CHUNKS).max(4096);
        Self { line_chars }
    }
}

/// The end of the window that starts at `pos` (a char boundary): the text's end if it is
/// near, else the end of the line where the window reaches [`WINDOW_BYTES`] or
/// [`WINDOW_LINES`], or `line_chars` characters into the first line that is longer than that
/// from where the window meets it. Looks at no more than the window and one line piece
/// beyond it, so the windows of a text are found in linear time.
fn window_end(text: &str, pos: usize, limits: WindowLimits) -> usize {
    let len = text.len();
    let bytes = text.as_bytes();
    let line_chars = limits.line_chars;
    // More bytes than this hold more than `line_chars` characters (4 bytes at most each).
    let probe = line_chars.saturating_mul(4).saturating_add(1);
    let mut start = pos;
    let mut lines = 0;
    loop {
        let probe_end = len.min(start.saturating_add(probe));
        let line_end = bytes
            .get(start..probe_end)
            .and_then(|b| b.iter().position(|&c| c == b'\n'))
            .map_or(probe_end, |i| start + i + 1);
        if line_end - start > line_chars {
            let rest = text.get(start..).unwrap_or_default();
            if let Some((i, _)) = rest.char_indices().nth(line_chars)
                && start + i < line_end
            {
                return start + i;
            }
        }
        if line_end >= len {
            return len;
        }
        lines += 1;
        if line_end - pos >= WINDOW_BYTES || lines >= WINDOW_LINES {
            return line_end;
        }
        start = line_end;
    }
}

/// Whether a Markdown window may start at `offset`: at a letter after a space or a line
/// break, where no block (list item, heading, quote, table row, fence) can open.
fn markdown_restart(text: &str, offset: usize) -> bool {
    let before = text.get(..offset).and_then(|t| t.chars().next_back());
    let first = text.get(offset..).and_then(|t| t.chars().next());
    matches!(before, Some(' ' | '\n')) && first.is_some_and(char::is_alphabetic)
}

/// Splits `text` window by window with `split` (which returns `(start, length)` of each chunk
/// of the text it is given, in order) and returns the spans of all chunks in `text`.
/// `restart(text, offset)` tells whether a window may start at `offset` without the splitter
/// reading the text there differently (for Markdown: not where a line could open a block).
fn windowed_spans(
    text: &str,
    limits: WindowLimits,
    restart: impl Fn(&str, usize) -> bool,
    mut split: impl FnMut(&str) -> Vec<(usize, usize)>,
) -> (Vec<Span>, SplitWork) {
    let mut spans = Vec::new();
    let mut work = SplitWork::default();
    let mut pos = 0;
    while pos < text.len() {
        let end = window_end(text, pos, limits);
        let Some(window) = text.get(pos..end) else { break };
        work.windows += 1;
        work.bytes += window.len();
        work.largest_window = work.largest_window.max(window.len());
        let found = split(window);
        let at = |&(start, len): &(usize, usize)| Span::new(pos + start, pos + start + len);
        if end >= text.len() {
            spans.extend(found.iter().map(at));
            break;
        }
        // Chunks within a chunk length (and a quarter) of the window's end may have been cut
        // short by it, or placed differently: they are made again from the next window, which
        // starts where the first of them starts (or earlier, at a chunk start where `restart`
        // says the splitter reads the text as it would in one piece). The first chunk is
        // always kept, so the run moves on.
        let longest = found.iter().map(|c| c.1).max().unwrap_or(0);
        let keep_until = end.saturating_sub(longest + longest / 4);
        let mut kept =
            found.iter().skip(1).take_while(|c| at(c).end <= keep_until).count() + usize::from(!found.is_empty());
        if kept < found.len()
            && let Some(j) = (1..=kept).rev().find(|&j| found.get(j).is_some_and(|c| restart(text, at(c).start)))
        {
            kept = j;
        }
        spans.extend(found.iter().take(kept).map(at));
        let next = match found.get(kept) {
            Some(c) => at(c).start,
            None => spans.last().map_or(end, |s| s.end),
        };
        pos = if next > pos { next } else { end };
    }
    (spans, work)
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
