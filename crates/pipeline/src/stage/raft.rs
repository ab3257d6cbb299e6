//! RAFT: questions from qa-gen's prompt, then records from the raft crate, then one file per
//! split and format.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use docraft_core::QaPair;
use docraft_core::jsonl::read_all;
use docraft_index::Filter;
use docraft_qa_gen::{Filters, GenerateOptions, Generation, RunFiles};
use docraft_raft::{Exported, FormatOptions, RaftBuilder, RaftFiles, RaftOptions, Summary, export, parse_splits};

use super::Ctx;
use crate::error::{PipelineError, Result};
use crate::settings::{RaftSettings, RetrievalSettings};

/// Where a RAFT run reads and writes.
#[derive(Debug, Clone)]
pub struct RaftPaths {
    /// chunks.jsonl.
    pub chunks: PathBuf,
    /// The index of the same chunks, for hard distractors (a directory or a
    /// `postgres://…?collection=NAME` URL).
    pub index: Option<PathBuf>,
    /// How the index is searched for hard distractors.
    pub search: RetrievalSettings,
    /// raft.jsonl; the questions, rejected records and exports go beside it.
    pub output: PathBuf,
    /// The GGUF a local generator reads unless the settings name a model.
    pub local_model: Option<PathBuf>,
}

/// What a RAFT run did.
#[derive(Debug, Clone)]
pub struct RaftOutcome {
    /// The question run's counts.
    pub questions: docraft_qa_gen::Summary,
    /// The record run's counts.
    pub records: Summary,
    /// The files per split and format.
    pub files: Vec<Exported>,
}

/// The files a RAFT run writes for `output` with these settings: the records, the
/// rejected records, the questions and one file per split and format.
///
/// # Errors
/// [`PipelineError::Setting`] for a bad split.
pub fn output_files(s: &RaftSettings, output: &Path) -> Result<Vec<PathBuf>> {
    let splits = parse_splits(&s.split)?;
    let mut out = vec![output.to_path_buf()];
    for split in &splits {
        for f in &s.format {
            out.push(RaftFiles::export(output, &split.name, *f));
        }
    }
    Ok(out)
}

/// The eval-format file of `split` for `output`.
#[must_use]
pub fn eval_file(output: &Path, split: &str) -> PathBuf {
    RaftFiles::export(output, split, docraft_raft::Format::Eval)
}

/// The chat-format file of `split` for `output` (what training reads).
#[must_use]
pub fn chat_file(output: &Path, split: &str) -> PathBuf {
    RaftFiles::export(output, split, docraft_raft::Format::Chat)
}

/// The library options of the settings.
///
/// # Errors
/// [`PipelineError::Setting`] for a bad split.
pub fn options(s: &RaftSettings) -> Result<RaftOptions> {
    Ok(RaftOptions {
        distractors: s.distractors,
        p: s.p,
        hard_share: s.hard_share(),
        structured: !s.free_text,
        max_tokens: s.max_tokens,
        sampling: s.generator.sampling(),
        attempts: s.attempts,
        min_quote_words: s.min_quote_words,
        min_answer_support: s.min_answer_support,
        splits: parse_splits(&s.split)?,
        seed: s.generator.seed,
        batch: None,
    })
}

/// Builds RAFT records for the chunks (resumable: a rerun continues where it stopped) and
/// writes one file per split and format.
///
/// # Errors
/// Settings, models, reading chunks, writing records.
pub fn run(s: &RaftSettings, paths: &RaftPaths, ctx: &Ctx) -> Result<RaftOutcome> {
    let chunks = super::qa::read_chunks(&paths.chunks, s.limit, ctx)?;
    let options = options(s)?;
    if options.hard_share > 0.0 && paths.index.is_none() {
        return Err(PipelineError::Needs {
            stage: ctx.stage(),
            reason: "hard distractors need an index (or set distractor_mode = \"random\")".into(),
        });
    }
    let files = RaftFiles::new(&paths.output);
    let questions_path = files.questions.clone();
    let generator = super::qa::generator(&s.generator, paths.local_model.as_deref(), &files.requests, ctx)?;

    // 1. Questions, with qa-gen's prompt, filters and resumable run. The chain of thought
    //    writes the answer RAFT keeps; the question's own answer only keeps distractors that
    //    contain it out, so it need not pass grounding, nor the passage check's answer side.
    //    Chunks not worth asking about are skipped here, so they are never an oracle.
    let qopts = GenerateOptions {
        questions_per_chunk: s.questions_per_chunk,
        sampling: s.generator.sampling(),
        filters: s.checks.filters(Filters { grounding: None, self_contained_answer: false, ..Filters::default() }),
        skip_chunks: s.checks.skip_chunks(),
        ..GenerateOptions::default()
    };
    let questions_run = Generation::new(generator.as_ref(), qopts)?.with_cancel(ctx.cancel().clone());
    let est = questions_run.estimate(&chunks, &questions_path)?;
    ctx.info(format!("questions: {} chunks to do ({} already done)", est.chunks, chunks.len() - est.chunks));
    let todo = est.chunks as u64;
    let q = questions_run.run(&chunks, &questions_path, &|p: &docraft_qa_gen::Progress| {
        ctx.progress(p.done as u64, todo, "chunks", format!("{} questions kept, {} rejected", p.accepted, p.rejected));
    })?;
    ctx.info(format!(
        "questions: {} generated = {} accepted + {} rejected ({})",
        q.generated,
        q.accepted,
        q.rejected_total(),
        RunFiles::new(&questions_path).rejected.display()
    ));
    for line in super::qa::skipped_lines(&q) {
        ctx.info(format!("questions: {}", line.trim_start()));
    }
    if ctx.is_cancelled() {
        return Err(PipelineError::Cancelled { stage: ctx.stage() });
    }
    let ids: HashSet<&str> = chunks.iter().map(|c| c.id.as_str()).collect();
    let (all_questions, _) = read_all::<QaPair>(&questions_path)?;
    let questions: Vec<QaPair> =
        all_questions.into_iter().filter(|p| ids.contains(p.chunk.chunk_id.as_str())).collect();

    // 2. RAFT records.
    let opened = match &paths.index {
        Some(dir) if options.hard_share > 0.0 => Some(super::index::open_store(dir, None, None, &paths.search)?),
        _ => None,
    };
    let retriever = opened.as_ref().map(|o| o.retriever(Filter::new(), &paths.search)).transpose()?;
    let splits: Vec<String> = options.splits.iter().map(|sp| sp.name.clone()).collect();
    let mut builder = RaftBuilder::new(generator.as_ref(), options)?.with_cancel(ctx.cancel().clone());
    if let Some(r) = &retriever {
        builder = builder.with_retriever(r.as_ref());
    }
    let records = builder.run(&chunks, &questions, &paths.output, &|p: &docraft_raft::Progress| {
        let secs = p.elapsed.as_secs_f64().max(1e-9);
        let tps = p.usage.completion_tokens as f64 / secs;
        ctx.progress(
            p.done as u64,
            p.total as u64,
            "questions",
            format!("{} kept, {} rejected, {tps:.0} tok/s", p.accepted, p.rejected),
        );
    })?;
    if ctx.is_cancelled() {
        return Err(PipelineError::Cancelled { stage: ctx.stage() });
    }

    // 3. Files per split and format, from the records of this plan only.
    let planned = builder.records(&questions, &paths.output)?;
    let fo = FormatOptions {
        system_prompt: s.system_prompt.clone(),
        prompt_key: s.prompt_key.clone(),
        completion_key: s.completion_key.clone(),
    };
    let files = export(&planned, &paths.output, &splits, &s.format, &fo)?;
    Ok(RaftOutcome { questions: q, records, files })
}

/// The summary lines of a RAFT run.
#[must_use]
pub fn summary(o: &RaftOutcome, output: &Path) -> Vec<String> {
    let q = &o.questions;
    let s = &o.records;
    let mut lines = Vec::new();
    if let Some(why) = &q.stopped {
        lines.push(format!("questions stopped early: {why}; run the same command again to continue"));
    }
    lines.push(format!(
        "questions: {} generated = {} accepted + {} rejected",
        q.generated,
        q.accepted,
        q.rejected_total()
    ));
    for (reason, n) in &q.rejected {
        lines.push(format!("  question rejected {reason}: {n}"));
    }
    lines.extend(super::qa::skipped_lines(q));
    lines.push(format!(
        "records: {} questions = {} accepted + {} rejected{} ({} done before this run)",
        s.questions,
        s.accepted,
        s.rejected_total(),
        if s.deferred > 0 { format!(" + {} deferred (rerun to retry)", s.deferred) } else { String::new() },
        s.resumed
    ));
    for (reason, n) in &s.rejected {
        lines.push(format!("  rejected {reason}: {n}"));
    }
    lines.push(format!(
        "accepted after a retry: {}; with the oracle in context: {}; fewer distractors than asked: {}",
        s.repaired, s.with_oracle, s.short_context
    ));
    if s.foreign > 0 {
        lines.push(format!("lines from other settings or questions left out of the exports: {}", s.foreign));
    }
    for f in &o.files {
        lines.push(format!("{:>6} records  {}", f.records, f.path.display()));
    }
    lines.push(format!("records: {}", output.display()));
    lines.push(format!("rejected: {}", RaftFiles::new(output).rejected.display()));
    lines
}

/// Every file a RAFT run writing `output` may leave: `output` and the files beside it named by
/// core's sibling rule (`STEM.PART.jsonl`, their `.torn` pieces), as they are on disk now.
#[must_use]
pub fn existing_files(output: &Path) -> Vec<PathBuf> {
    let stem = output.file_stem().map(|s| format!("{}.", s.to_string_lossy())).unwrap_or_default();
    let dir = output.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&stem)))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}
