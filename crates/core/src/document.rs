use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::DocId;

/// A half-open byte range `[start, end)` into a document's text. Serialized as `[start, end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(from = "[usize; 2]", into = "[usize; 2]")]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// A span from `start` to `end` (swapped if given backwards).
    #[must_use]
    pub fn new(start: usize, end: usize) -> Self {
        if start <= end { Self { start, end } } else { Self { start: end, end: start } }
    }

    /// Its length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether it covers no byte.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Whether the two spans share at least one byte.
    #[must_use]
    pub fn overlaps(&self, other: &Span) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// As a `Range<usize>`.
    #[must_use]
    pub fn range(&self) -> Range<usize> {
        self.start..self.end
    }
}

impl From<[usize; 2]> for Span {
    fn from([start, end]: [usize; 2]) -> Self {
        Self::new(start, end)
    }
}

impl From<Span> for [usize; 2] {
    fn from(s: Span) -> Self {
        [s.start, s.end]
    }
}

impl From<Range<usize>> for Span {
    fn from(r: Range<usize>) -> Self {
        Self::new(r.start, r.end)
    }
}

/// An inclusive range of 1-based page numbers `[first, last]`. Serialized as `[first, last]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "[u32; 2]", into = "[u32; 2]")]
pub struct PageRange {
    /// First page (1-based).
    pub first: u32,
    /// Last page (1-based, inclusive).
    pub last: u32,
}

impl PageRange {
    /// Pages `first..=last` (swapped if given backwards).
    #[must_use]
    pub fn new(first: u32, last: u32) -> Self {
        if first <= last { Self { first, last } } else { Self { first: last, last: first } }
    }

    /// Whether page `p` lies in the range.
    #[must_use]
    pub fn contains(&self, p: u32) -> bool {
        self.first <= p && p <= self.last
    }
}

impl From<[u32; 2]> for PageRange {
    fn from([a, b]: [u32; 2]) -> Self {
        Self::new(a, b)
    }
}

impl From<PageRange> for [u32; 2] {
    fn from(p: PageRange) -> Self {
        [p.first, p.last]
    }
}

/// The kind of file a document came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum DocFormat {
    /// PDF.
    Pdf,
    /// Markdown (CommonMark with tables, front matter).
    Markdown,
    /// Plain text.
    Text,
}

impl DocFormat {
    /// Lower-case name, as serialized.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pdf => "pdf",
            Self::Markdown => "markdown",
            Self::Text => "text",
        }
    }
}

/// A part of the text under one heading path, e.g. `["Guide", "Install"]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// The bytes of the document text this section covers.
    pub span: Span,
    /// Heading path, outermost first; empty before the first heading.
    pub headings: Vec<String>,
}

/// What is known about a document beyond its text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Title: front matter `title`, the PDF's Info `/Title`, or the first heading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Guessed language of the text, ISO 639-1 where one exists (`"es"`, `"en"`), else 639-3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Other fields: Markdown front matter, PDF Info entries (`author`, `producer`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, serde_json::Value>,
}

/// A loaded document: its extracted text and how that text maps back to the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// Content-derived id (see [`DocId::from_content`]).
    pub id: DocId,
    /// Where it was read from.
    pub source: String,
    /// What kind of file it was.
    pub format: DocFormat,
    /// Extracted, cleaned text (UTF-8, `\n` line ends, paragraphs separated by a blank line).
    pub text: String,
    /// For paged formats, the byte range of each page in `text`, in page order (page 1 first);
    /// empty otherwise. Ranges are ascending and do not overlap.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pages: Vec<Span>,
    /// Heading sections in text order (Markdown; empty where the format has none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sections: Vec<Section>,
    /// Title, language and other fields.
    #[serde(default)]
    pub metadata: Metadata,
    /// Things worth knowing that did not stop the load (e.g. pages without a text layer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Document {
    /// A document of `format` read from `source` whose raw bytes were `raw` and whose
    /// extracted text is `text`. The id comes from `raw`.
    #[must_use]
    pub fn new(source: impl Into<String>, format: DocFormat, raw: &[u8], text: String) -> Self {
        Self {
            id: DocId::from_content(raw),
            source: source.into(),
            format,
            text,
            pages: Vec::new(),
            sections: Vec::new(),
            metadata: Metadata::default(),
            warnings: Vec::new(),
        }
    }

    /// The text of `span`, or `None` if it is out of bounds or not on char boundaries.
    #[must_use]
    pub fn slice(&self, span: Span) -> Option<&str> {
        self.text.get(span.range())
    }

    /// The pages a span touches, as a range of 1-based page numbers; `None` for unpaged formats.
    ///
    /// An empty span counts as touching the page it starts on.
    #[must_use]
    pub fn pages_of(&self, span: Span) -> Option<PageRange> {
        if self.pages.is_empty() {
            return None;
        }
        let probe_end = span.end.max(span.start + 1);
        let mut first = None;
        let mut last = None;
        for (i, p) in self.pages.iter().enumerate() {
            // A span ending exactly at a page start does not touch that page.
            let touches = p.start < probe_end && span.start < p.end.max(p.start + 1);
            if touches {
                let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
                first.get_or_insert(n);
                last = Some(n);
            }
        }
        match (first, last) {
            (Some(a), Some(b)) => Some(PageRange::new(a, b)),
            // Between pages (e.g. the form feed): the page before.
            _ => {
                let before = self.pages.iter().take_while(|p| p.start <= span.start).count();
                let n = u32::try_from(before.max(1)).unwrap_or(u32::MAX);
                Some(PageRange::new(n, n))
            }
        }
    }

    /// The heading path in force at byte `offset` (the innermost section containing it).
    #[must_use]
    pub fn headings_at(&self, offset: usize) -> &[String] {
        // Sections are in text order and do not overlap: the last one starting at or before offset.
        let idx = self.sections.partition_point(|s| s.span.start <= offset);
        match idx.checked_sub(1).and_then(|i| self.sections.get(i)) {
            Some(s) if offset < s.span.end || s.span.is_empty() => &s.headings,
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paged() -> Document {
        let text = "page one\x0cpage two\x0cpage three".to_string();
        let mut d = Document::new("x.pdf", DocFormat::Pdf, b"x", text);
        d.pages = vec![Span::new(0, 8), Span::new(9, 17), Span::new(18, 28)];
        d
    }

    #[test]
    fn pages_of_spans() {
        let d = paged();
        assert_eq!(d.pages_of(Span::new(0, 4)), Some(PageRange::new(1, 1)));
        assert_eq!(d.pages_of(Span::new(5, 12)), Some(PageRange::new(1, 2)));
        assert_eq!(d.pages_of(Span::new(9, 28)), Some(PageRange::new(2, 3)));
        // A span ending at a page start stays on the page before.
        assert_eq!(d.pages_of(Span::new(0, 9)), Some(PageRange::new(1, 1)));
        // The separator alone belongs to the page before.
        assert_eq!(d.pages_of(Span::new(8, 9)), Some(PageRange::new(1, 1)));
        let plain = Document::new("x.txt", DocFormat::Text, b"x", "abc".into());
        assert_eq!(plain.pages_of(Span::new(0, 2)), None);
    }

    #[test]
    fn headings_at_offsets() {
        let mut d = Document::new("x.md", DocFormat::Markdown, b"x", "0123456789".into());
        d.sections = vec![
            Section { span: Span::new(0, 3), headings: vec![] },
            Section { span: Span::new(3, 7), headings: vec!["A".into()] },
            Section { span: Span::new(7, 10), headings: vec!["A".into(), "B".into()] },
        ];
        assert!(d.headings_at(1).is_empty());
        assert_eq!(d.headings_at(3), ["A"]);
        assert_eq!(d.headings_at(9), ["A", "B"]);
    }

    #[test]
    fn span_serializes_as_pair() {
        let s = Span::new(3, 9);
        assert_eq!(serde_json::to_string(&s).unwrap(), "[3,9]");
        let back: Span = serde_json::from_str("[3,9]").unwrap();
        assert_eq!(back, s);
        assert_eq!(serde_json::to_string(&PageRange::new(2, 4)).unwrap(), "[2,4]");
    }
}
