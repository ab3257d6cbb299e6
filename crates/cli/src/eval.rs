//! `docraft eval`: retrieval recall@k and MRR, open-book QA before and after fine-tuning, and
//! a report with plots.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use docraft_eval::qa::{self, QaOptions};
use docraft_eval::report::{Losses, Report};
use docraft_eval::retrieval;
use docraft_index::IndexRetriever;
use docraft_train::generate::ChatModel;

#[derive(Args)]
pub struct EvalArgs {
    /// The directory for report.md, report.json, the plots (SVG) and each model's answers.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Retrieval: the index to search.
    #[arg(long, value_name = "INDEX_DIR")]
    index: Option<PathBuf>,
    /// Retrieval: questions whose source is known, JSONL: generated Q&A (qa.jsonl), RAFT
    /// records (any format with `meta`), or your own lines `{"question", "chunk_id"}` or
    /// `{"question", "source": "file.pdf", "page": 3}`.
    #[arg(long, value_name = "FILE.jsonl", requires = "index")]
    questions: Option<PathBuf>,
    /// Retrieval: the cut-offs k of recall@k.
    #[arg(long, value_delimiter = ',', default_value = "1,3,5,10")]
    k: Vec<usize>,
    /// Open-book QA: RAFT `eval` records (RAFT_NAME.test.eval.jsonl): question, oracle among
    /// distractors, gold final answer.
    #[arg(long, value_name = "FILE.jsonl", requires = "base")]
    qa_set: Option<PathBuf>,
    /// Open-book QA: the base model (GGUF file or Hugging Face directory).
    #[arg(long, value_name = "FILE.gguf|HF_DIR")]
    base: Option<PathBuf>,
    /// Open-book QA: the adapter to compare with the base (base + adapter).
    #[arg(long, value_name = "DIR")]
    adapter: Option<PathBuf>,
    /// Open-book QA: the system message used in training, if any.
    #[arg(long)]
    system_prompt: Option<String>,
    /// Open-book QA: only the first N records.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Open-book QA: most tokens per answer.
    #[arg(long, default_value_t = 256)]
    max_tokens: u32,
    /// Plot the loss curves of this training run (`docraft train -o RUN`, or RUN_DIR/train).
    #[arg(long, value_name = "RUN")]
    train_run: Option<PathBuf>,
    /// A note for the report (repeatable).
    #[arg(long)]
    note: Vec<String>,
    /// Run the models on CUDA (a build with `--features cuda`).
    #[arg(long)]
    cuda: bool,
    /// No per-answer lines.
    #[arg(short, long)]
    quiet: bool,
}

pub fn eval(a: &EvalArgs) -> Result<ExitCode> {
    let report = evaluate(a)?;
    println!("report: {}", report.display());
    Ok(ExitCode::SUCCESS)
}

/// Runs what the arguments ask for and writes the report; returns the path of report.md.
pub fn evaluate(a: &EvalArgs) -> Result<PathBuf> {
    if a.questions.is_none() && a.qa_set.is_none() && a.train_run.is_none() {
        bail!("nothing to evaluate: give --index with --questions, --qa-set with --base, or --train-run");
    }
    let mut report = Report { title: "docraft evaluation".into(), notes: a.note.clone(), ..Report::default() };
    if let (Some(dir), Some(path)) = (&a.index, &a.questions) {
        let (index, embedder) = crate::search::open_index(dir, None, None)?;
        let (cases, skipped) = retrieval::load_cases(path)?;
        report.skipped.extend(skipped);
        if cases.is_empty() {
            report.notes.push(format!("retrieval: no usable question in {}", path.display()));
        } else {
            let retriever = IndexRetriever::new(&index, embedder.as_ref());
            let r = retrieval::evaluate(&retriever, &cases, &a.k)?;
            let recall: Vec<String> = r.recall_at.iter().map(|(k, v)| format!("recall@{k} {v:.3}")).collect();
            println!("retrieval: {} questions, {}, MRR {:.3}", r.questions, recall.join(", "), r.mrr);
            report.retrieval = Some((path.display().to_string(), r));
        }
    }
    if let (Some(set), Some(base)) = (&a.qa_set, &a.base) {
        let (mut cases, skipped) = qa::load_cases(set)?;
        report.skipped.extend(skipped);
        cases.truncate(a.limit);
        report.qa_set = Some(set.display().to_string());
        if cases.is_empty() {
            report.notes.push(format!("open-book QA: no usable record in {}", set.display()));
        } else {
            let device = docraft_train::device(a.cuda)?;
            let options = QaOptions { system_prompt: a.system_prompt.clone(), max_tokens: a.max_tokens, seed: 42 };
            let mut models = vec![("base", None)];
            if let Some(ad) = &a.adapter {
                models.push(("adapter", Some(ad.as_path())));
            }
            std::fs::create_dir_all(&a.output).with_context(|| format!("creating {}", a.output.display()))?;
            for (label, adapter) in models {
                let model = ChatModel::load(base, adapter, &device)
                    .with_context(|| format!("loading {}", base.display()))?
                    .with_name(if adapter.is_some() { "base + adapter" } else { "base" });
                let bar = crate::progress_bar(a.quiet, cases.len() as u64, &format!("{label} answers"));
                let scores = qa::evaluate(&model, &cases, &options, &|_: &qa::QaRow| bar.inc(1));
                bar.finish_and_clear();
                println!(
                    "open-book QA, {}: {} questions, exact match {:.3}, token F1 {:.3}, contains gold {:.3}, quotes found {}",
                    scores.model,
                    scores.questions,
                    scores.exact_match,
                    scores.f1,
                    scores.contains,
                    scores.quotes_found.map_or("-".into(), |q| format!("{q:.3}"))
                );
                let rows = qa::rows_file(&a.output, label);
                let mut w = docraft_core::jsonl::JsonlWriter::create(&rows)?;
                w.write_all(&scores.rows)?;
                report.qa.push(scores);
            }
        }
    }
    if let Some(run) = &a.train_run {
        let metrics = run.join("metrics.jsonl");
        report.losses = Some(Losses::read(&metrics)?);
    }
    let written = report.write(&a.output)?;
    written.into_iter().next().context("the report was not written")
}
