//! Retrieval quality: recall@k and mean reciprocal rank over questions whose source is known.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use docraft_core::{Chunk, ChunkId, Retriever};
use serde::Serialize;
use serde_json::Value;

use crate::error::{EvalError, Result};

/// What counts as a right hit for a question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Relevant {
    /// This chunk.
    Chunk(ChunkId),
    /// Any chunk of this file (path or file name) touching this page, or any page when `None`.
    Page {
        /// The file.
        source: String,
        /// The page.
        page: Option<u32>,
    },
}

impl Relevant {
    /// Whether `chunk` is a right hit.
    #[must_use]
    pub fn matches(&self, chunk: &Chunk) -> bool {
        match self {
            Self::Chunk(id) => &chunk.id == id,
            Self::Page { source, page } => {
                let name = Path::new(&chunk.source).file_name().map(|n| n.to_string_lossy().into_owned());
                let same_file = &chunk.source == source || name.as_deref() == Some(source.as_str());
                same_file && page.is_none_or(|p| chunk.pages.is_some_and(|r| r.contains(p)))
            }
        }
    }
}

/// One question with its known source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Case {
    /// The question.
    pub question: String,
    /// Its right answer's place.
    pub relevant: Relevant,
}

/// A line that gave no case, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// The file.
    pub path: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// Why.
    pub reason: String,
}

/// Reads cases from JSONL. Each line needs a `question` and one of: `chunk_id` or
/// `chunk.chunk_id` (generated Q&A pairs), `meta.chunk_id` (the oracle of RAFT `hf` and
/// `eval` records), or `source` with an optional `page` (a user's own set). Lines without them are
/// returned as skipped, with the reason; duplicate questions are kept once.
///
/// # Errors
/// [`EvalError::Io`] when the file cannot be read.
pub fn load_cases(path: &Path) -> Result<(Vec<Case>, Vec<Skipped>)> {
    let (lines, mut skipped) = json_lines(path)?;
    let mut cases = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (line, v) in lines {
        let skip = |reason: &str| Skipped { path: path.to_path_buf(), line, reason: reason.to_string() };
        let Some(question) = v["question"].as_str().filter(|q| !q.trim().is_empty()) else {
            skipped.push(skip("no \"question\""));
            continue;
        };
        let id = [&v["chunk_id"], &v["chunk"]["chunk_id"], &v["meta"]["chunk_id"], &v["meta"]["oracle"]["chunk_id"]]
            .into_iter()
            .find_map(|x| x.as_str());
        let relevant = match (id, v["source"].as_str()) {
            (Some(id), _) => Relevant::Chunk(ChunkId::from_string(id.to_string())),
            (None, Some(source)) => Relevant::Page {
                source: source.to_string(),
                page: v["page"].as_u64().and_then(|p| u32::try_from(p).ok()),
            },
            (None, None) => {
                skipped.push(skip("no chunk_id, meta.chunk_id or source to check hits against"));
                continue;
            }
        };
        if seen.insert(question.to_string()) {
            cases.push(Case { question: question.to_string(), relevant });
        }
    }
    skipped.sort_by_key(|s| s.line);
    Ok((cases, skipped))
}

/// Parsed lines with their 1-based numbers, and the lines that did not parse.
pub(crate) type Lines = (Vec<(usize, Value)>, Vec<Skipped>);

/// The non-blank lines of a JSONL file parsed as JSON, with their 1-based numbers; lines that
/// are not JSON come back as skipped, with the parser's reason.
pub(crate) fn json_lines(path: &Path) -> Result<Lines> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
    let mut values = Vec::new();
    let mut skipped = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        match serde_json::from_str(line) {
            Ok(v) => values.push((i + 1, v)),
            Err(e) => skipped.push(Skipped { path: path.to_path_buf(), line: i + 1, reason: format!("not JSON: {e}") }),
        }
    }
    Ok((values, skipped))
}

/// Scores of a retrieval evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetrievalReport {
    /// Questions evaluated.
    pub questions: usize,
    /// Share of questions with a right hit among the first k, per k.
    pub recall_at: BTreeMap<usize, f64>,
    /// Mean reciprocal rank of the first right hit (0 when none within the largest k).
    pub mrr: f64,
    /// Rank (1-based) of the first right hit per question, `None` when not found.
    pub ranks: Vec<Option<usize>>,
}

/// Searches each case's question and scores where its source ranks, for every `k` in `ks`.
///
/// # Errors
/// [`EvalError::Retrieve`] when a search fails; [`EvalError::Empty`] without cases.
pub fn evaluate(
    retriever: &dyn Retriever,
    chunks: &dyn Fn(&ChunkId) -> Option<Chunk>,
    cases: &[Case],
    ks: &[usize],
) -> Result<RetrievalReport> {
    if cases.is_empty() {
        return Err(EvalError::Empty { path: PathBuf::new(), message: "no questions to evaluate retrieval on".into() });
    }
    let depth = ks.iter().copied().max().unwrap_or(10).max(1);
    let mut ranks = Vec::with_capacity(cases.len());
    for case in cases {
        let hits = retriever.search(&case.question, depth)?;
        let rank = hits.iter().position(|h| chunks(&h.chunk_id).is_some_and(|c| case.relevant.matches(&c)));
        ranks.push(rank.map(|r| r + 1));
    }
    #[allow(clippy::cast_precision_loss)]
    let n = cases.len() as f64;
    #[allow(clippy::cast_precision_loss)]
    let recall_at =
        ks.iter().map(|&k| (k, ranks.iter().filter(|r| r.is_some_and(|r| r <= k)).count() as f64 / n)).collect();
    #[allow(clippy::cast_precision_loss)]
    let mrr = ranks.iter().map(|r| r.map_or(0.0, |r| 1.0 / r as f64)).sum::<f64>() / n;
    Ok(RetrievalReport { questions: cases.len(), recall_at, mrr, ranks })
}
