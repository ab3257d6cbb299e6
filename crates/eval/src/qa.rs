//! Open-book QA: a model answers RAFT `eval` records (question with the oracle among
//! distractors) and each answer is scored against the gold final answer.

use std::path::{Path, PathBuf};

use docraft_core::{ChatMessage, GenRequest, Generator, Progress, RaftEvalRecord, RaftRecord, Role, Sampling};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::metrics::{contains_gold, exact_match, final_answer, quotes, quotes_found, token_f1};
use crate::retrieval::{Skipped, json_lines};

/// One open-book question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QaCase {
    /// The record's question.
    pub question: String,
    /// What the model is given: the documents and the question (the RAFT instruction).
    pub context: String,
    /// The gold final answer.
    pub gold: String,
}

/// A line of an open-book QA set: a RAFT `eval` export or an `hf` record.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
enum QaLine {
    Eval(Box<RaftEvalRecord>),
    Hf(Box<RaftRecord>),
}

/// Reads RAFT `eval` lines ([`RaftEvalRecord`]: `question`, `context`, `gold_final_answer`);
/// `hf` lines ([`RaftRecord`]: `instruction`, `final_answer`) work too. Other lines, and
/// lines with an empty gold answer, are returned as skipped.
///
/// # Errors
/// [`EvalError::Io`](crate::EvalError::Io) when the file cannot be read.
pub fn load_cases(path: &Path) -> Result<(Vec<QaCase>, Vec<Skipped>)> {
    const NEEDS: &str = "needs question, context (or instruction) and gold_final_answer";
    let (lines, mut skipped) = json_lines::<QaLine>(path, NEEDS)?;
    let mut cases = Vec::new();
    for (line, record) in lines {
        let case = match record {
            QaLine::Eval(r) => QaCase { question: r.question, context: r.context, gold: r.gold_final_answer },
            QaLine::Hf(r) => QaCase { question: r.question, context: r.instruction, gold: r.final_answer },
        };
        if case.gold.trim().is_empty() {
            skipped.push(Skipped { path: path.to_path_buf(), line, reason: NEEDS.into() });
        } else {
            cases.push(case);
        }
    }
    skipped.sort_by_key(|s| s.line);
    Ok((cases, skipped))
}

/// How answers are generated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QaOptions {
    /// A system message before each question (the one used in training, if any).
    pub system_prompt: Option<String>,
    /// Most tokens per answer.
    pub max_tokens: u32,
    /// Seed (decoding is greedy).
    pub seed: u64,
}

impl Default for QaOptions {
    fn default() -> Self {
        Self { system_prompt: None, max_tokens: 256, seed: 42 }
    }
}

/// One scored answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QaRow {
    /// The question.
    pub question: String,
    /// The gold answer.
    pub gold: String,
    /// The model's whole output.
    pub output: String,
    /// Its final answer.
    pub answer: String,
    /// Exact match.
    pub exact: bool,
    /// Token F1.
    pub f1: f64,
    /// The answer contains the gold answer.
    pub contains: bool,
    /// Quotes in the chain of thought.
    pub quotes: usize,
    /// Of which found in the context.
    pub quotes_found: usize,
    /// The generator's error, when it failed (the row scores zero).
    pub error: Option<String>,
}

/// The scores of one model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QaScores {
    /// The model.
    pub model: String,
    /// Questions asked.
    pub questions: usize,
    /// Share answered exactly.
    pub exact_match: f64,
    /// Mean token F1.
    pub f1: f64,
    /// Share whose answer contains the gold answer.
    pub contains: f64,
    /// Share of all chain-of-thought quotes found in the context (`None`: no quotes at all).
    pub quotes_found: Option<f64>,
    /// Answers that failed to generate.
    pub errors: usize,
    /// Every answer.
    pub rows: Vec<QaRow>,
}

/// Asks `generator` every case (greedy decoding) and scores the answers; `progress` sees
/// each row as it is scored. A failed generation is kept as a row with its error.
#[must_use]
pub fn evaluate(
    generator: &dyn Generator,
    cases: &[QaCase],
    options: &QaOptions,
    progress: &dyn Progress<QaRow>,
) -> QaScores {
    let mut rows = Vec::with_capacity(cases.len());
    for case in cases {
        let mut messages = Vec::new();
        if let Some(s) = &options.system_prompt {
            messages.push(ChatMessage::new(Role::System, s.clone()));
        }
        messages.push(ChatMessage::new(Role::User, case.context.clone()));
        let request = GenRequest {
            messages,
            max_tokens: options.max_tokens,
            sampling: Sampling { temperature: 0.0, seed: options.seed, ..Sampling::default() },
            json_schema: None,
            tag: case.question.chars().take(80).collect(),
        };
        let row = match generator.generate(&request) {
            Ok(r) => score(case, &r.text, None),
            Err(e) => score(case, "", Some(e.to_string())),
        };
        progress.update(&row);
        rows.push(row);
    }
    summarize(generator.model_id(), rows)
}

/// Scores one output against its case.
#[must_use]
pub fn score(case: &QaCase, output: &str, error: Option<String>) -> QaRow {
    let answer = final_answer(output).to_string();
    let q = quotes(output);
    QaRow {
        question: case.question.clone(),
        gold: case.gold.clone(),
        exact: exact_match(&answer, &case.gold),
        f1: token_f1(&answer, &case.gold),
        contains: contains_gold(&answer, &case.gold),
        quotes: q.len(),
        quotes_found: quotes_found(&q, &case.context),
        output: output.to_string(),
        answer,
        error,
    }
}

/// Averages rows into scores.
#[must_use]
pub fn summarize(model: String, rows: Vec<QaRow>) -> QaScores {
    #[allow(clippy::cast_precision_loss)]
    let n = rows.len().max(1) as f64;
    let share = |f: &dyn Fn(&QaRow) -> bool| {
        #[allow(clippy::cast_precision_loss)]
        let c = rows.iter().filter(|r| f(r)).count() as f64;
        c / n
    };
    let quotes: usize = rows.iter().map(|r| r.quotes).sum();
    let found: usize = rows.iter().map(|r| r.quotes_found).sum();
    #[allow(clippy::cast_precision_loss)]
    let quotes_found = (quotes > 0).then(|| found as f64 / quotes as f64);
    QaScores {
        model,
        questions: rows.len(),
        exact_match: share(&|r| r.exact),
        f1: rows.iter().map(|r| r.f1).sum::<f64>() / n,
        contains: share(&|r| r.contains),
        quotes_found,
        errors: rows.iter().filter(|r| r.error.is_some()).count(),
        rows,
    }
}

/// Where an evaluation's files go.
#[must_use]
pub fn rows_file(dir: &Path, label: &str) -> PathBuf {
    dir.join(format!("qa.{label}.jsonl"))
}
