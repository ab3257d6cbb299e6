//! Eval: retrieval recall@k and MRR, open-book QA of a base model and base + adapter, loss
//! curves, and the report.

use std::path::{Path, PathBuf};

use docraft_eval::qa::{self, QaOptions};
use docraft_eval::report::{Losses, Report};
use docraft_eval::retrieval;
use docraft_index::Filter;
use docraft_train::generate::ChatModel;

use super::Ctx;
use crate::error::{PipelineError, Result};
use crate::settings::{EvalSettings, RetrievalSettings};

/// What to evaluate.
#[derive(Debug, Clone, Default)]
pub struct EvalInputs {
    /// The report directory.
    pub output: PathBuf,
    /// Retrieval: the index to search (a directory or a `postgres://…?collection=NAME` URL)...
    pub index: Option<PathBuf>,
    /// ... searched this way...
    pub search: RetrievalSettings,
    /// ... for these questions (generated QA, RAFT records, or the user's own lines).
    pub questions: Option<PathBuf>,
    /// Open-book QA: RAFT `eval` records...
    pub qa_set: Option<PathBuf>,
    /// ... answered by this base model...
    pub base: Option<PathBuf>,
    /// ... and by base + this adapter.
    pub adapter: Option<PathBuf>,
    /// Loss curves of this training run directory.
    pub train_run: Option<PathBuf>,
}

/// Runs what the inputs ask for and writes the report; returns the path of report.md.
///
/// # Errors
/// [`PipelineError::Needs`] when there is nothing to evaluate; reading, model or writing
/// errors otherwise. Unusable input lines are listed in the report, not errors.
pub fn run(s: &EvalSettings, inputs: &EvalInputs, ctx: &Ctx) -> Result<PathBuf> {
    if inputs.questions.is_none() && inputs.qa_set.is_none() && inputs.train_run.is_none() {
        return Err(PipelineError::Needs {
            stage: ctx.stage(),
            reason: "nothing to evaluate: give an index with questions, a QA set with a base model, or a training run"
                .into(),
        });
    }
    let mut report = Report { title: "docraft evaluation".into(), notes: s.note.clone(), ..Report::default() };
    if let (Some(dir), Some(path)) = (&inputs.index, &inputs.questions) {
        let opened = super::index::open_store(dir, None, None, &inputs.search)?;
        let (cases, skipped) = retrieval::load_cases(path)?;
        report.skipped.extend(skipped);
        if cases.is_empty() {
            report.notes.push(format!("retrieval: no usable question in {}", path.display()));
        } else {
            let retriever = opened.retriever(Filter::new(), &inputs.search)?;
            let r = retrieval::evaluate(&retriever, &cases, &s.k)?;
            ctx.info(format!("retrieval: {}", opened.retrieval(&inputs.search)));
            let recall: Vec<String> = r.recall_at.iter().map(|(k, v)| format!("recall@{k} {v:.3}")).collect();
            ctx.info(format!("retrieval: {} questions, {}, MRR {:.3}", r.questions, recall.join(", "), r.mrr));
            report.retrieval = Some((path.display().to_string(), r));
        }
    }
    if let (Some(set), Some(base)) = (&inputs.qa_set, &inputs.base) {
        let (mut cases, skipped) = qa::load_cases(set)?;
        report.skipped.extend(skipped);
        cases.truncate(s.limit);
        report.qa_set = Some(set.display().to_string());
        if cases.is_empty() {
            report.notes.push(format!("open-book QA: no usable record in {}", set.display()));
        } else {
            let device = docraft_train::device(s.cuda)?;
            let options =
                QaOptions { system_prompt: s.system_prompt.clone(), max_tokens: s.max_tokens, ..QaOptions::default() };
            let mut models = vec![("base", None)];
            if let Some(ad) = &inputs.adapter {
                models.push(("adapter", Some(ad.as_path())));
            }
            std::fs::create_dir_all(&inputs.output).map_err(|e| PipelineError::io(&inputs.output, e))?;
            for (label, adapter) in models {
                let model = ChatModel::load(base, adapter, &device)?.with_name(if adapter.is_some() {
                    "base + adapter"
                } else {
                    "base"
                });
                let total = cases.len() as u64;
                let done = std::sync::atomic::AtomicU64::new(0);
                let scores = qa::evaluate(&model, &cases, &options, &|_: &qa::QaRow| {
                    let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    ctx.progress(n, total, &format!("{label} answers"), String::new());
                });
                ctx.info(format!(
                    "open-book QA, {}: {} questions, exact match {:.3}, token F1 {:.3}, contains gold {:.3}, quotes found {}",
                    scores.model,
                    scores.questions,
                    scores.exact_match,
                    scores.f1,
                    scores.contains,
                    scores.quotes_found.map_or("-".into(), |q| format!("{q:.3}"))
                ));
                let rows = qa::rows_file(&inputs.output, label);
                let mut w = docraft_core::jsonl::JsonlWriter::create(&rows)?;
                w.write_all(&scores.rows)?;
                report.qa.push(scores);
                if ctx.is_cancelled() {
                    return Err(PipelineError::Cancelled { stage: ctx.stage() });
                }
            }
        }
    }
    if let Some(run) = &inputs.train_run {
        report.losses = Some(Losses::read(&docraft_train::RunFiles::new(run).metrics())?);
    }
    let written = report.write(&inputs.output)?;
    written.into_iter().next().ok_or_else(|| PipelineError::Needs {
        stage: ctx.stage(),
        reason: format!("the report was not written to {}", inputs.output.display()),
    })
}

/// The path of report.md in a report directory.
#[must_use]
pub fn report_md(dir: &Path) -> PathBuf {
    dir.join("report.md")
}
