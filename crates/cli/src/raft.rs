//! `docraft raft`: questions from qa-gen, then RAFT records from the raft crate, then one
//! file per split and format.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use docraft_core::jsonl::read_all;
use docraft_core::jsonl::sibling;
use docraft_core::{QaPair, Retriever};
use docraft_index::IndexRetriever;
use docraft_qa_gen::{Filters, GenerateOptions, Generation, RunFiles};
use docraft_raft::{Format, FormatOptions, RaftBuilder, RaftFiles, RaftOptions, export, parse_splits};

use crate::qa::GeneratorArgs;

/// How distractors are chosen.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DistractorMode {
    /// Uniformly among the eligible chunks (the reference's way).
    Random,
    /// The question's nearest neighbours in the index (needs --index).
    Hard,
}

#[derive(Args)]
pub struct RaftArgs {
    /// chunks.jsonl written by `docraft ingest`.
    chunks: PathBuf,
    /// The index of the same chunks (`docraft index build`), for hard distractors.
    #[arg(long)]
    index: Option<PathBuf>,
    /// The records to write (appended to). Beside it: OUT_NAME.rejected.jsonl,
    /// OUT_NAME.questions.jsonl (the questions, from qa-gen's prompt) and one
    /// OUT_NAME.SPLIT.FORMAT.jsonl per split and format.
    #[arg(short, long)]
    output: PathBuf,
    /// Distractor documents per record (k).
    #[arg(long, default_value_t = 3)]
    distractors: usize,
    /// Probability that the oracle is among the documents.
    #[arg(long, default_value_t = 1.0)]
    p: f64,
    /// Questions asked per chunk.
    #[arg(short = 'n', long, default_value_t = 5)]
    questions_per_chunk: usize,
    /// random or hard (nearest neighbours of the question in --index).
    #[arg(long, value_enum, default_value = "hard")]
    distractor_mode: DistractorMode,
    /// Mix: the share of distractors that are hard (overrides --distractor-mode).
    #[arg(long)]
    hard_share: Option<f32>,
    /// Formats to write: any of hf, completion, chat, eval (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "hf,completion,chat,eval")]
    format: Vec<Format>,
    /// Splits by source document, the first taking what the others leave.
    #[arg(long, default_value = "train=0.8,valid=0.1,test=0.1")]
    split: String,
    /// chat: a system message first.
    #[arg(long)]
    system_prompt: Option<String>,
    /// completion: name of the prompt column.
    #[arg(long, default_value = "prompt")]
    prompt_key: String,
    /// completion: name of the completion column.
    #[arg(long, default_value = "completion")]
    completion_key: String,
    /// Ask for free-text chains of thought (the reference's prompt) instead of JSON steps
    /// whose quotes are restricted to the oracle's sentences.
    #[arg(long)]
    free_text: bool,
    /// Tries per question before a chain of thought that fails verification is rejected.
    #[arg(long, default_value_t = 3)]
    attempts: u32,
    /// At least one quote must have this many words.
    #[arg(long, default_value_t = 3)]
    min_quote_words: usize,
    /// Most tokens per chain of thought.
    #[arg(long, default_value_t = 384)]
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

pub fn raft(a: &RaftArgs) -> Result<ExitCode> {
    let chunks = crate::qa::read_chunks(&a.chunks, a.limit)?;
    let splits = parse_splits(&a.split)?;
    let hard_share = a.hard_share.unwrap_or(if a.distractor_mode == DistractorMode::Hard { 1.0 } else { 0.0 });
    if hard_share > 0.0 && a.index.is_none() {
        bail!("hard distractors need --index INDEX_DIR (or use --distractor-mode random)");
    }
    let questions_path = sibling(&a.output, "questions");
    let generator = a.generator.build(sibling(&a.output, "requests"))?;

    // 1. Questions, with qa-gen's prompt, filters and resumable run.
    let options = GenerateOptions {
        questions_per_chunk: a.questions_per_chunk,
        sampling: a.generator.sampling(),
        // The chain of thought writes the answer RAFT keeps; the question's own answer only
        // serves to keep distractors that contain it out, so it need not pass grounding.
        filters: Filters { grounding: None, ..Filters::default() },
        ..GenerateOptions::default()
    };
    let questions_run = Generation::new(generator.as_ref(), options)?;
    let est = questions_run.estimate(&chunks, &questions_path)?;
    eprintln!("questions: {} chunks to do ({} already done)", est.chunks, chunks.len() - est.chunks);
    let pb = crate::progress_bar(a.quiet, est.chunks as u64, "chunks");
    let q = questions_run.run(&chunks, &questions_path, &|p: &docraft_qa_gen::Progress| {
        pb.set_position(p.done as u64);
        pb.set_message(format!("{} questions kept, {} rejected", p.accepted, p.rejected));
    })?;
    pb.finish_and_clear();
    println!(
        "questions: {} generated = {} accepted + {} rejected ({})",
        q.generated,
        q.accepted,
        q.rejected_total(),
        RunFiles::new(&questions_path).rejected.display()
    );
    if let Some(why) = &q.stopped {
        println!("questions stopped early: {why}; run the same command again to continue");
    }
    let ids: HashSet<&str> = chunks.iter().map(|c| c.id.as_str()).collect();
    let (all_questions, _) = read_all::<QaPair>(&questions_path)?;
    let questions: Vec<QaPair> =
        all_questions.into_iter().filter(|p| ids.contains(p.chunk.chunk_id.as_str())).collect();

    // 2. RAFT records.
    let opened = match &a.index {
        Some(dir) if hard_share > 0.0 => Some(crate::search::open_index(dir, None, None)?),
        _ => None,
    };
    let retriever = opened.as_ref().map(|(index, embedder)| IndexRetriever::new(index, embedder.as_ref()));
    let options = RaftOptions {
        distractors: a.distractors,
        p: a.p,
        hard_share,
        structured: !a.free_text,
        max_tokens: a.max_tokens,
        sampling: a.generator.sampling(),
        attempts: a.attempts,
        min_quote_words: a.min_quote_words,
        splits: splits.clone(),
        seed: a.generator.seed(),
        batch: None,
    };
    let mut builder = RaftBuilder::new(generator.as_ref(), options)?;
    if let Some(r) = &retriever {
        builder = builder.with_retriever(r as &dyn Retriever);
    }
    let pb = crate::progress_bar(a.quiet, questions.len() as u64, "questions");
    let s = builder.run(&chunks, &questions, &a.output, &|p: &docraft_raft::Progress| {
        pb.set_length(p.total as u64);
        pb.set_position(p.done as u64);
        let secs = p.elapsed.as_secs_f64().max(1e-9);
        #[allow(clippy::cast_precision_loss)]
        let tps = p.usage.completion_tokens as f64 / secs;
        pb.set_message(format!("{} kept, {} rejected, {tps:.0} tok/s", p.accepted, p.rejected));
    })?;
    pb.finish_and_clear();
    println!(
        "records: {} questions = {} accepted + {} rejected{} ({} done before this run)",
        s.questions,
        s.accepted,
        s.rejected_total(),
        if s.deferred > 0 { format!(" + {} deferred (rerun to retry)", s.deferred) } else { String::new() },
        s.resumed
    );
    for (reason, n) in &s.rejected {
        println!("  rejected {reason}: {n}");
    }
    println!(
        "accepted after a retry: {}; with the oracle in context: {}; fewer distractors than asked: {}",
        s.repaired, s.with_oracle, s.short_context
    );
    if s.foreign > 0 {
        println!("lines from other settings or questions left out of the exports: {}", s.foreign);
    }

    // 3. Files per split and format, from the records of this plan only.
    let records = builder.records(&questions, &a.output)?;
    let names: Vec<String> = splits.iter().map(|s| s.name.clone()).collect();
    let fo = FormatOptions {
        system_prompt: a.system_prompt.clone(),
        prompt_key: a.prompt_key.clone(),
        completion_key: a.completion_key.clone(),
    };
    for f in export(&records, &a.output, &names, &a.format, &fo)? {
        println!("{:>6} records  {}", f.records, f.path.display());
    }
    println!("records: {}\nrejected: {}", a.output.display(), RaftFiles::new(&a.output).rejected.display());
    Ok(ExitCode::SUCCESS)
}
