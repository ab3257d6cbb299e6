//! Metadata filters: which chunks a search may return. One type for every vector store: the
//! embedded HNSW index applies it inside its graph walk, pgvector translates it to SQL.

use globset::{Glob, GlobMatcher};

use crate::Chunk;

/// A filter expression that cannot be parsed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("filter {filter:?}: {reason}")]
pub struct FilterError {
    /// The expression as given.
    pub filter: String,
    /// What is wrong and what is expected.
    pub reason: String,
}

/// One condition on a chunk.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Condition {
    /// The chunk belongs to this document id.
    Doc(String),
    /// The chunk's source path, or its file name, matches this glob (`*.pdf`, `manuals/**`;
    /// `*` and `?` also match `/`, as globset does by default). The pattern as written is
    /// `matcher.glob().glob()`.
    Source(GlobMatcher),
    /// The chunk's pages overlap `[first, last]` (chunks of unpaged formats never match).
    Pages(u32, u32),
    /// The chunk's metadata field `key` equals `value` (numbers and booleans compared as
    /// written; a list matches if any element does).
    Meta(String, String),
}

impl Condition {
    /// The group this condition belongs to: conditions of one group are alternatives.
    fn group(&self) -> &str {
        match self {
            Self::Doc(_) => "doc",
            Self::Source(_) => "source",
            Self::Pages(..) => "page",
            Self::Meta(key, _) => key,
        }
    }

    /// Whether `chunk` satisfies the condition.
    #[must_use]
    pub fn matches(&self, chunk: &Chunk) -> bool {
        match self {
            Self::Doc(id) => chunk.doc_id.as_str() == id,
            Self::Source(glob) => {
                glob.is_match(&chunk.source)
                    || std::path::Path::new(&chunk.source).file_name().is_some_and(|n| glob.is_match(n))
            }
            Self::Pages(first, last) => chunk.pages.is_some_and(|p| p.first <= *last && *first <= p.last),
            Self::Meta(key, value) => chunk.metadata.get(key).is_some_and(|v| value_matches(v, value)),
        }
    }
}

/// Whether a metadata value matches the wanted text: strings as written, numbers and
/// booleans as JSON, a list when any element does, null never.
#[must_use]
pub fn value_matches(v: &serde_json::Value, wanted: &str) -> bool {
    match v {
        serde_json::Value::String(s) => s == wanted,
        serde_json::Value::Array(items) => items.iter().any(|i| value_matches(i, wanted)),
        serde_json::Value::Null => false,
        other => serde_json::from_str::<serde_json::Value>(wanted).is_ok_and(|w| &w == other),
    }
}

/// A conjunction of conditions: a chunk passes when, for every key used, it matches at least
/// one of that key's conditions. So `source=*.pdf source=*.md language=es` means "(PDF or
/// Markdown) and Spanish". The empty filter passes everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    conditions: Vec<Condition>,
}

impl Filter {
    /// The filter that passes every chunk.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a condition.
    #[must_use]
    pub fn with(mut self, condition: Condition) -> Self {
        self.conditions.push(condition);
        self
    }

    /// Parses `KEY=VALUE` expressions, as the CLI's `--filter` takes them:
    /// `doc=ID`, `source=GLOB`, `page=N` or `page=A-B` (also `pages=`), and any other key
    /// compares a metadata field (`language=es`, `format=pdf`, `title=...`).
    ///
    /// # Errors
    /// [`FilterError`] naming the expression: no `=`, an empty key, a bad glob or page range.
    pub fn parse<S: AsRef<str>>(expressions: &[S]) -> Result<Self, FilterError> {
        let mut filter = Self::new();
        for e in expressions {
            filter.conditions.push(parse_condition(e.as_ref())?);
        }
        Ok(filter)
    }

    /// Whether there are no conditions.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// The conditions, in the order given (a store that translates filters reads them here:
    /// conditions on the same key are alternatives, different keys all apply).
    #[must_use]
    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    /// The conditions grouped by key, in order of first use: a chunk passes when it matches
    /// at least one condition of every group.
    #[must_use]
    pub fn groups(&self) -> Vec<Vec<&Condition>> {
        let mut groups: Vec<(&str, Vec<&Condition>)> = Vec::new();
        for c in &self.conditions {
            match groups.iter_mut().find(|(k, _)| *k == c.group()) {
                Some((_, g)) => g.push(c),
                None => groups.push((c.group(), vec![c])),
            }
        }
        groups.into_iter().map(|(_, g)| g).collect()
    }

    /// Whether `chunk` passes.
    #[must_use]
    pub fn matches(&self, chunk: &Chunk) -> bool {
        self.groups().iter().all(|g| g.iter().any(|c| c.matches(chunk)))
    }
}

fn parse_condition(expr: &str) -> Result<Condition, FilterError> {
    let bad = |reason: &str| FilterError { filter: expr.to_string(), reason: reason.to_string() };
    let Some((key, value)) = expr.split_once('=') else {
        return Err(bad("expected KEY=VALUE (doc=ID, source=GLOB, page=N or A-B, or a metadata field)"));
    };
    let (key, value) = (key.trim(), value.trim());
    if key.is_empty() {
        return Err(bad("the key is empty"));
    }
    Ok(match key {
        "doc" | "doc_id" => Condition::Doc(value.to_string()),
        "source" => Condition::Source(Glob::new(value).map_err(|e| bad(&format!("bad glob: {e}")))?.compile_matcher()),
        "page" | "pages" => {
            let (a, b) = value.split_once('-').unwrap_or((value, value));
            match (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
                (Ok(a), Ok(b)) if a >= 1 && a <= b => Condition::Pages(a, b),
                _ => return Err(bad("expected a page N or a range A-B (1-based, A <= B)")),
            }
        }
        _ => Condition::Meta(key.to_string(), value.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChunkId, DocId, PageRange, Span};

    fn chunk(source: &str, pages: Option<(u32, u32)>, language: &str) -> Chunk {
        let doc_id = DocId::from_content(source.as_bytes());
        Chunk {
            id: ChunkId::new(&doc_id, 0, 1),
            doc_id,
            source: source.to_string(),
            text: "x".into(),
            span: Span::new(0, 1),
            pages: pages.map(|(a, b)| PageRange::new(a, b)),
            headings: vec![],
            chunk_index: 0,
            chunk_count: 1,
            metadata: [("language".to_string(), serde_json::json!(language))].into_iter().collect(),
        }
    }

    #[test]
    fn same_key_is_or_different_keys_are_and() {
        let pdf = chunk("docs/manual.pdf", Some((3, 4)), "es");
        let md = chunk("docs/notes.md", None, "en");
        let f = Filter::parse(&["source=*.pdf", "source=*.md"]).unwrap();
        assert!(f.matches(&pdf) && f.matches(&md));
        let f = Filter::parse(&["source=*.pdf", "source=*.md", "language=es"]).unwrap();
        assert!(f.matches(&pdf) && !f.matches(&md));
        assert!(Filter::new().matches(&md));
    }

    #[test]
    fn pages_overlap_and_file_names_match() {
        let c = chunk("a/b/manual.pdf", Some((3, 4)), "es");
        assert!(Filter::parse(&["page=4"]).unwrap().matches(&c));
        assert!(Filter::parse(&["pages=1-3"]).unwrap().matches(&c));
        assert!(!Filter::parse(&["page=5-9"]).unwrap().matches(&c));
        assert!(!Filter::parse(&["page=1"]).unwrap().matches(&chunk("x.md", None, "en")));
        assert!(Filter::parse(&["source=manual.pdf"]).unwrap().matches(&c));
        assert!(Filter::parse(&[format!("doc={}", c.doc_id.as_str())]).unwrap().matches(&c));
        assert!(!Filter::parse(&["doc=0000"]).unwrap().matches(&c));
    }

    #[test]
    fn bad_expressions_name_themselves() {
        for bad in ["nokey", "=x", "page=0", "page=5-2", "page=x", "source=a[b"] {
            let e = Filter::parse(&[bad]).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }
}
