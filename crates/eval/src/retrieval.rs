//! Retrieval quality: recall@k and mean reciprocal rank over questions whose source is known.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use docraft_core::{Chunk, ChunkId, QaPair, RaftEvalRecord, RaftRecord, Retriever};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

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

/// A user's own question line: `{"question", "chunk_id"}` or `{"question", "source", "page"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct UserCase {
    /// The question.
    #[serde(default)]
    pub question: Option<String>,
    /// The chunk that answers it.
    #[serde(default)]
    pub chunk_id: Option<ChunkId>,
    /// Or the file (path or file name) that answers it.
    #[serde(default)]
    pub source: Option<String>,
    /// And the page of that file (any page when absent).
    #[serde(default)]
    pub page: Option<u32>,
}

/// A line of a questions file: a generated pair, a RAFT record (`hf` or `eval` export), or a
/// user's own line; tried in that order.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
enum CaseLine {
    Qa(Box<QaPair>),
    Raft(Box<RaftRecord>),
    RaftEval(Box<RaftEvalRecord>),
    User(UserCase),
}

impl CaseLine {
    /// The question and what answers it, or why the line gives no case.
    fn case(self) -> std::result::Result<Case, &'static str> {
        let (question, relevant) = match self {
            Self::Qa(p) => (p.question, Relevant::Chunk(p.chunk.chunk_id)),
            Self::Raft(r) => (r.question, Relevant::Chunk(r.meta.oracle.chunk_id)),
            Self::RaftEval(r) => (r.question, Relevant::Chunk(r.meta.oracle.chunk_id)),
            Self::User(u) => {
                let question = u.question.ok_or("no \"question\"")?;
                let relevant = match (u.chunk_id, u.source) {
                    (Some(id), _) => Relevant::Chunk(id),
                    (None, Some(source)) => Relevant::Page { source, page: u.page },
                    (None, None) => return Err("no chunk_id, meta.chunk_id or source to check hits against"),
                };
                (question, relevant)
            }
        };
        if question.trim().is_empty() {
            return Err("no \"question\"");
        }
        Ok(Case { question, relevant })
    }
}

/// Reads cases from JSONL. Each line is a generated [`QaPair`] (its chunk is the source), a
/// RAFT record in the `hf` or `eval` layout (its oracle chunk), or a [`UserCase`] naming a
/// `chunk_id` or a `source` with an optional `page`. Lines without them are returned as
/// skipped, with the reason; duplicate questions are kept once.
///
/// # Errors
/// [`EvalError::Io`] when the file cannot be read.
pub fn load_cases(path: &Path) -> Result<(Vec<Case>, Vec<Skipped>)> {
    let (lines, mut skipped) = json_lines::<CaseLine>(path, "not a question record")?;
    let mut cases = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (line, record) in lines {
        match record.case() {
            Ok(case) => {
                if seen.insert(case.question.clone()) {
                    cases.push(case);
                }
            }
            Err(reason) => skipped.push(Skipped { path: path.to_path_buf(), line, reason: reason.to_string() }),
        }
    }
    skipped.sort_by_key(|s| s.line);
    Ok((cases, skipped))
}

/// Parsed lines with their 1-based numbers, and the lines that did not parse.
pub(crate) type Lines<T> = (Vec<(usize, T)>, Vec<Skipped>);

/// The non-blank lines of a JSONL file parsed as `T`, with their 1-based numbers; lines that
/// are not JSON, or not a `T` (`what` says what was expected), come back as skipped.
pub(crate) fn json_lines<T: DeserializeOwned>(path: &Path, what: &str) -> Result<Lines<T>> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
    let mut values = Vec::new();
    let mut skipped = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        match serde_json::from_str(line) {
            Ok(v) => values.push((i + 1, v)),
            Err(e) => {
                let reason = if e.is_data() { what.to_string() } else { format!("not JSON: {e}") };
                skipped.push(Skipped { path: path.to_path_buf(), line: i + 1, reason });
            }
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
pub fn evaluate(retriever: &dyn Retriever, cases: &[Case], ks: &[usize]) -> Result<RetrievalReport> {
    if cases.is_empty() {
        return Err(EvalError::Empty { path: PathBuf::new(), message: "no questions to evaluate retrieval on".into() });
    }
    let depth = ks.iter().copied().max().unwrap_or(10).max(1);
    let mut ranks = Vec::with_capacity(cases.len());
    for case in cases {
        let hits = retriever.search(&case.question, depth)?;
        let rank = hits.iter().position(|h| case.relevant.matches(&h.chunk));
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
