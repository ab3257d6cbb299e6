//! Question/answer pairs (`docraft generate`) and their export as a training file.

use std::path::{Path, PathBuf};

use docraft_core::{Chunk, Embedder, Generator};
use docraft_llm::GeneratorSettings;
use docraft_qa_gen::export::{ExportOptions, ExportReport, export};
use docraft_qa_gen::{
    Budget, Estimate, Filters, GenerateOptions, Generation, Judge, JudgeOptions, Price, RunFiles, Summary,
};

use super::Ctx;
use crate::error::{PipelineError, Result};
use crate::settings::{ExportSettings, QaSettings};

/// The chunks of a chunks.jsonl (the first `limit`): [`super::index::read_chunks`], which
/// reports malformed lines and a torn last line and goes on.
///
/// # Errors
/// When the file cannot be read.
pub fn read_chunks(path: &Path, limit: Option<usize>, ctx: &Ctx) -> Result<Vec<Chunk>> {
    let mut chunks = super::index::read_chunks(path, ctx)?;
    if let Some(n) = limit {
        chunks.truncate(n);
    }
    Ok(chunks)
}

/// Loads the generator of `settings` (a local GGUF: `local_model` unless the settings name
/// one). Requests that leave the machine are logged to the settings' log, else `default_log`.
///
/// # Errors
/// The generator's error (missing model, bad endpoint, remote endpoint not allowed).
pub fn generator(
    settings: &GeneratorSettings,
    local_model: Option<&Path>,
    default_log: &Path,
    ctx: &Ctx,
) -> Result<Box<dyn Generator>> {
    let mut s = settings.clone();
    if s.model.is_none()
        && let Some(m) = local_model
    {
        s.model = Some(m.display().to_string());
    }
    let generator = docraft_llm::build_generator(&s, default_log)?;
    if let Some(log) = s.remote_log(default_log) {
        ctx.warn(format!(
            "note: {} is not on this machine; every request is logged to {}",
            s.base_url.as_deref().unwrap_or("the endpoint"),
            log.display()
        ));
    }
    Ok(generator)
}

/// The generation options of the settings.
#[must_use]
pub fn options(s: &QaSettings) -> GenerateOptions {
    let price = match (s.price_input, s.price_output) {
        (Some(i), Some(o)) => Some(Price { input_per_million: i, output_per_million: o }),
        _ => None,
    };
    GenerateOptions {
        questions_per_chunk: s.questions_per_chunk,
        max_tokens: s.max_tokens,
        sampling: s.generator.sampling(),
        filters: s.checks.filters(Filters {
            grounding: (s.grounding > 0.0).then_some(s.grounding),
            language: !s.no_language_filter,
            dedup: (s.dedup > 0.0).then_some(s.dedup),
            ..Filters::default()
        }),
        budget: Budget { max_pairs: s.max_pairs, max_tokens: s.max_tokens_total, max_cost: s.max_cost },
        price,
        batch: None,
        skip_chunks: s.checks.skip_chunks(),
    }
}

/// The judge options of the settings: their threshold, greedy decoding, the run's seed.
#[must_use]
pub fn judge_options(s: &QaSettings) -> JudgeOptions {
    let d = JudgeOptions::default();
    JudgeOptions {
        min_score: s.judge_min_score,
        sampling: docraft_core::Sampling { seed: s.generator.seed, ..d.sampling },
        ..d
    }
}

/// Where the pairs go.
#[derive(Debug, Clone)]
pub struct QaPaths {
    /// chunks.jsonl.
    pub chunks: PathBuf,
    /// qa.jsonl (rejected, progress and request logs beside it).
    pub output: PathBuf,
    /// The GGUF a local generator reads unless the settings name a model.
    pub local_model: Option<PathBuf>,
    /// The embedding model for `dedup_embeddings`.
    pub embedder: Option<PathBuf>,
}

/// What a generation run did.
#[derive(Debug, Clone)]
pub struct QaOutcome {
    /// The estimate made before generating.
    pub estimate: Estimate,
    /// Chunks read.
    pub chunks: usize,
    /// The run's counts (None with `estimate_only`).
    pub summary: Option<Summary>,
}

/// Generates question/answer pairs for the chunks, appending to `paths.output`; a killed or
/// cancelled run continues where it stopped when run again.
///
/// # Errors
/// Reading chunks, loading models, or writing the dataset.
pub fn generate(s: &QaSettings, paths: &QaPaths, estimate_only: bool, ctx: &Ctx) -> Result<QaOutcome> {
    let chunks = read_chunks(&paths.chunks, s.limit, ctx)?;
    let generator = generator(&s.generator, paths.local_model.as_deref(), &RunFiles::new(&paths.output).requests, ctx)?;
    let embedder: Option<Box<dyn Embedder>> = if s.dedup_embeddings {
        let dir = paths.embedder.clone().unwrap_or_else(docraft_index::default_model_dir);
        let backend = super::index::backend_for_dir(&dir);
        Some(super::index::embedder(backend, &dir, docraft_index::EmbedOptions::default()).map_err(|e| {
            PipelineError::Needs {
                stage: ctx.stage(),
                reason: format!("dedup_embeddings needs the embedding model in {}: {e}", dir.display()),
            }
        })?)
    } else {
        None
    };
    // The judge: its own model when one is configured, else the generator itself.
    let judge_generator = match (&s.judge, &s.judge_generator) {
        (true, Some(g)) => {
            Some(self::generator(g, paths.local_model.as_deref(), &RunFiles::new(&paths.output).requests, ctx)?)
        }
        _ => None,
    };
    let mut run = Generation::new(generator.as_ref(), options(s))?.with_cancel(ctx.cancel().clone());
    if let Some(e) = embedder.as_deref() {
        run = run.with_embedder(e);
    }
    if s.judge {
        let g = judge_generator.as_deref().unwrap_or(generator.as_ref());
        let judge = Judge::new(g, judge_options(s))?;
        ctx.info(format!("judge: {} scores each pair, keeping those at {} or more", judge.model(), s.judge_min_score));
        run = run.with_judge(judge);
    }
    let estimate = run.estimate(&chunks, &paths.output)?;
    let approx = if estimate.exact { "" } else { "about " };
    let cost = estimate.max_cost.map(|c| format!(", at most {c:.4} in cost")).unwrap_or_default();
    let skipping = if estimate.skipped > 0 {
        format!(", {} to skip as not worth asking about", estimate.skipped)
    } else {
        String::new()
    };
    let line = format!(
        "{} chunks to do ({} already done{skipping}): {approx}{} prompt tokens + at most {} generated{cost}",
        estimate.chunks,
        chunks.len() - estimate.chunks,
        estimate.prompt_tokens,
        estimate.max_completion_tokens
    );
    if estimate_only {
        ctx.warn(line);
    } else {
        ctx.info(line);
    }
    if estimate_only {
        return Ok(QaOutcome { estimate, chunks: chunks.len(), summary: None });
    }
    let todo = estimate.chunks as u64;
    let summary = run.run(&chunks, &paths.output, &|p: &docraft_qa_gen::Progress| {
        let secs = p.elapsed.as_secs_f64().max(1e-9);
        let rate = (p.accepted + p.rejected) as f64 / secs;
        let tps = p.usage.completion_tokens as f64 / secs;
        ctx.progress(
            p.done as u64,
            todo,
            "chunks",
            format!(
                "{} kept, {} rejected, {} chunks skipped, {rate:.2} pairs/s, {tps:.0} tok/s",
                p.accepted, p.rejected, p.skipped
            ),
        );
    })?;
    Ok(QaOutcome { estimate, chunks: chunks.len(), summary: Some(summary) })
}

/// The summary lines of a generation run.
#[must_use]
pub fn summary(o: &QaOutcome, output: &Path) -> Vec<String> {
    let Some(s) = &o.summary else { return Vec::new() };
    let files = RunFiles::new(output);
    let mut lines = vec![
        format!("chunks: {} ({} done before, {} now, {} left)", s.chunks, s.resumed, s.processed, s.remaining),
        format!("pairs: {} generated = {} accepted + {} rejected", s.generated, s.accepted, s.rejected_total()),
    ];
    for (reason, n) in &s.rejected {
        lines.push(format!("  rejected {reason}: {n}"));
    }
    lines.extend(skipped_lines(s));
    if s.repaired > 0 {
        lines.push(format!("outputs repaired before parsing: {}", s.repaired));
    }
    if s.rolled_back > 0 {
        lines.push(format!("records of an interrupted chunk moved aside and redone: {}", s.rolled_back));
    }
    lines.push(format!(
        "tokens this run: {} prompt + {} generated in {:.1} s",
        s.usage.prompt_tokens, s.usage.completion_tokens, s.seconds
    ));
    if let Some(why) = &s.stopped {
        lines.push(format!("stopped early: {why}; run the same command again to continue"));
    }
    lines.push(format!("dataset: {}", files.accepted.display()));
    lines.push(format!("rejected: {}", files.rejected.display()));
    lines
}

/// The lines on skipped chunks (none when none was skipped): how many, then one per reason.
#[must_use]
pub fn skipped_lines(s: &Summary) -> Vec<String> {
    if s.skipped.is_empty() {
        return Vec::new();
    }
    let mut lines =
        vec![format!("chunks skipped, not worth asking about: {} (recorded in the rejected file)", s.skipped_total())];
    for (reason, n) in &s.skipped {
        lines.push(format!("  skipped {reason}: {n}"));
    }
    lines
}

/// Exports the pairs of `input` as a training file at `output` (and `NAME.valid.jsonl`
/// beside it when a validation share is asked for).
///
/// # Errors
/// Reading the pairs or writing the files.
pub fn export_pairs(s: &ExportSettings, input: &Path, output: &Path) -> Result<ExportReport> {
    let options = ExportOptions {
        format: s.format,
        system_prompt: s.system_prompt.clone(),
        valid_fraction: s.valid_fraction,
        seed: s.seed,
    };
    Ok(export(input, output, &options)?)
}

/// The summary lines of an export.
#[must_use]
pub fn export_summary(r: &ExportReport) -> Vec<String> {
    let mut lines =
        vec![format!("train: {} ({} examples from {} documents)", r.train_path.display(), r.train, r.train_docs)];
    if let Some(p) = &r.valid_path {
        lines.push(format!("valid: {} ({} examples from {} documents)", p.display(), r.valid, r.valid_docs));
    }
    lines
}
