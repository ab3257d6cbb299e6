//! `docraft eval`: retrieval recall@k and MRR, open-book QA before and after fine-tuning, and
//! a report with plots.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use docraft_pipeline::settings::EvalSettings;
use docraft_pipeline::stage::eval::EvalInputs;
use docraft_pipeline::stage::{self, Ctx};
use docraft_pipeline::{Event, Stage};

fn d() -> EvalSettings {
    EvalSettings::default()
}

#[derive(Args)]
pub struct EvalArgs {
    /// The directory for report.md, report.json, the plots (SVG) and each model's answers.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Retrieval: the index to search (a directory or `postgres://…/DB?collection=NAME`).
    #[arg(long, value_name = "INDEX_DIR")]
    index: Option<PathBuf>,
    #[command(flatten)]
    search: crate::search::RetrievalArgs,
    /// Retrieval: questions whose source is known, JSONL: generated Q&A (qa.jsonl), RAFT
    /// records (any format with `meta`), or your own lines `{"question", "chunk_id"}` or
    /// `{"question", "source": "file.pdf", "page": 3}`.
    #[arg(long, value_name = "FILE.jsonl", requires = "index")]
    questions: Option<PathBuf>,
    /// Retrieval: the cut-offs k of recall@k.
    #[arg(long, value_delimiter = ',', default_values_t = d().k)]
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
    #[arg(long, default_value_t = d().limit)]
    limit: usize,
    /// Open-book QA: most tokens per answer.
    #[arg(long, default_value_t = d().max_tokens)]
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
    let settings = EvalSettings {
        enabled: true,
        k: a.k.clone(),
        limit: a.limit,
        max_tokens: a.max_tokens,
        system_prompt: a.system_prompt.clone(),
        note: a.note.clone(),
        cuda: a.cuda,
    };
    let inputs = EvalInputs {
        output: a.output.clone(),
        index: a.index.clone(),
        search: a.search.settings(),
        questions: a.questions.clone(),
        qa_set: a.qa_set.clone(),
        base: a.base.clone(),
        adapter: a.adapter.clone(),
        train_run: a.train_run.clone(),
    };
    let term = crate::render::Terminal::new(a.quiet);
    let sink = |e: &Event| term.event(e);
    let ctx = Ctx::new(Stage::Eval, &sink, crate::render::cancel_on_interrupt());
    let report = stage::eval::run(&settings, &inputs, &ctx)?;
    println!("report: {}", report.display());
    Ok(ExitCode::SUCCESS)
}
