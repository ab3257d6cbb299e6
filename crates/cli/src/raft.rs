//! `docraft raft`: arguments to [`RaftSettings`], then the pipeline's RAFT stage.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use docraft_pipeline::settings::{DistractorMode, RaftSettings};
use docraft_pipeline::stage::{self, Ctx};
use docraft_pipeline::{Event, Stage};

use crate::qa::{GeneratorArgs, QuestionCheckArgs};

fn d() -> RaftSettings {
    RaftSettings::default()
}

#[derive(Args)]
pub struct RaftArgs {
    /// chunks.jsonl written by `docraft ingest`.
    chunks: PathBuf,
    /// The index of the same chunks (`docraft index build`: a directory or
    /// `postgres://…/DB?collection=NAME`), for hard distractors.
    #[arg(long)]
    index: Option<PathBuf>,
    #[command(flatten)]
    search: crate::search::RetrievalArgs,
    /// The records to write (appended to). Beside it: OUT_NAME.rejected.jsonl,
    /// OUT_NAME.questions.jsonl (the questions, from qa-gen's prompt) and one
    /// OUT_NAME.SPLIT.FORMAT.jsonl per split and format.
    #[arg(short, long)]
    output: PathBuf,
    /// Distractor documents per record (k).
    #[arg(long, default_value_t = d().distractors)]
    distractors: usize,
    /// Probability that the oracle is among the documents.
    #[arg(long, default_value_t = d().p)]
    p: f64,
    /// Questions asked per chunk.
    #[arg(short = 'n', long, default_value_t = d().questions_per_chunk)]
    questions_per_chunk: usize,
    /// random or hard (nearest neighbours of the question in --index).
    #[arg(long, value_enum, default_value_t = d().distractor_mode.into())]
    distractor_mode: Mode,
    /// Mix: the share of distractors that are hard (overrides --distractor-mode).
    #[arg(long)]
    hard_share: Option<f32>,
    /// Formats to write: any of hf, completion, chat, eval (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = d().format)]
    format: Vec<docraft_raft::Format>,
    /// Splits by source document, the first taking what the others leave.
    #[arg(long, default_value_t = d().split)]
    split: String,
    /// chat: a system message first.
    #[arg(long)]
    system_prompt: Option<String>,
    /// completion: name of the prompt column.
    #[arg(long, default_value_t = d().prompt_key)]
    prompt_key: String,
    /// completion: name of the completion column.
    #[arg(long, default_value_t = d().completion_key)]
    completion_key: String,
    /// Ask for free-text chains of thought (the reference's prompt) instead of JSON steps
    /// whose quotes are restricted to the oracle's sentences.
    #[arg(long)]
    free_text: bool,
    /// Tries per question before a chain of thought that fails verification is rejected.
    #[arg(long, default_value_t = d().attempts)]
    attempts: u32,
    /// At least one quote must have this many words.
    #[arg(long, default_value_t = d().min_quote_words)]
    min_quote_words: usize,
    /// The final answer must answer and agree with its quotes: at least this share of its
    /// claim words (content words not in the question) in the quotes or the oracle, and one
    /// in the quotes (0 turns the check off).
    #[arg(long, default_value_t = d().min_answer_support)]
    min_answer_support: f32,
    #[command(flatten)]
    checks: QuestionCheckArgs,
    /// Most tokens per chain of thought.
    #[arg(long, default_value_t = d().max_tokens)]
    max_tokens: u32,
    /// Only the first N chunks.
    #[arg(long)]
    limit: Option<usize>,
    #[command(flatten)]
    generator: GeneratorArgs,
    /// Hide the progress bars.
    #[arg(short, long)]
    quiet: bool,
}

/// How distractors are chosen (the flag's values).
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Uniformly among the eligible chunks (the reference's way).
    Random,
    /// The question's nearest neighbours in the index (needs --index).
    Hard,
}

impl From<DistractorMode> for Mode {
    fn from(m: DistractorMode) -> Self {
        match m {
            DistractorMode::Random => Self::Random,
            DistractorMode::Hard => Self::Hard,
        }
    }
}

impl RaftArgs {
    fn settings(&self) -> RaftSettings {
        RaftSettings {
            enabled: true,
            generator: self.generator.settings(),
            distractors: self.distractors,
            p: self.p,
            questions_per_chunk: self.questions_per_chunk,
            distractor_mode: match self.distractor_mode {
                Mode::Random => DistractorMode::Random,
                Mode::Hard => DistractorMode::Hard,
            },
            hard_share: self.hard_share,
            format: self.format.clone(),
            split: self.split.clone(),
            system_prompt: self.system_prompt.clone(),
            prompt_key: self.prompt_key.clone(),
            completion_key: self.completion_key.clone(),
            free_text: self.free_text,
            attempts: self.attempts,
            min_quote_words: self.min_quote_words,
            min_answer_support: self.min_answer_support,
            max_tokens: self.max_tokens,
            limit: self.limit,
            checks: self.checks.settings(),
        }
    }
}

pub fn raft(a: &RaftArgs) -> Result<ExitCode> {
    let settings = a.settings();
    let term = crate::render::Terminal::new(a.quiet);
    let sink = |e: &Event| term.event(e);
    let ctx = Ctx::new(Stage::Raft, &sink, crate::render::cancel_on_interrupt());
    let paths = stage::raft::RaftPaths {
        chunks: a.chunks.clone(),
        index: a.index.clone(),
        search: a.search.settings(),
        output: a.output.clone(),
        local_model: None,
    };
    let o = stage::raft::run(&settings, &paths, &ctx)?;
    term.summary(Stage::Raft, &stage::raft::summary(&o, &a.output));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches, Parser};

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        raft: RaftArgs,
    }

    #[test]
    fn flags_default_to_the_library_settings() -> anyhow::Result<()> {
        let m = Cli::command().try_get_matches_from(["raft", "chunks.jsonl", "-o", "raft.jsonl"])?;
        let cli = Cli::from_arg_matches(&m)?;
        assert_eq!(cli.raft.settings(), RaftSettings::default());
        Ok(())
    }
}
