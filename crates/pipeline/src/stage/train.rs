//! Train: a LoRA adapter on a chat / completion / text dataset.

use std::path::{Path, PathBuf};

use docraft_train::data::{Dataset, Encoder};
use docraft_train::{BaseModel, Llama, StepInfo, TrainReport, Trainer};

use super::Ctx;
use crate::error::{PipelineError, Result};
use crate::settings::TrainSettings;

/// What a training run reads and where it writes.
#[derive(Debug, Clone)]
pub struct TrainPaths {
    /// The base model: a GGUF file or a Hugging Face directory.
    pub base: PathBuf,
    /// The training data (JSONL).
    pub data: PathBuf,
    /// Validation data, if any.
    pub valid: Option<PathBuf>,
    /// The run directory: config.json, metrics.jsonl, events.jsonl, checkpoints/, adapter/.
    pub output: PathBuf,
}

/// Loads a base model on the device the settings ask for.
///
/// # Errors
/// The trainer's error (unreadable model, CUDA not compiled in).
pub fn load_base(path: &Path, cuda: bool) -> Result<(BaseModel, Llama)> {
    let device = docraft_train::device(cuda)?;
    let base = BaseModel::load(path, &device)?;
    let model = Llama::new(&base, docraft_train::compute_dtype(&device), &device)?;
    Ok((base, model))
}

fn load_data(path: &Path, enc: &Encoder, ctx: &Ctx) -> Result<Dataset> {
    let d = Dataset::load(path, enc)?;
    for r in &d.rejected {
        ctx.warn(format!("skipped: {r}"));
    }
    ctx.info(format!(
        "{}: {} examples ({} target tokens), {} rejected, {} cut at max_seq_len",
        path.display(),
        d.examples.len(),
        d.target_tokens(),
        d.rejected.len(),
        d.truncated
    ));
    Ok(d)
}

/// Whether `run_dir` holds a checkpoint to resume from.
#[must_use]
pub fn has_checkpoint(run_dir: &Path) -> bool {
    docraft_train::RunFiles::new(run_dir).latest_checkpoint().is_some()
}

/// Trains; with `resume`, continues from the newest checkpoint in the run directory.
///
/// # Errors
/// Loading the base or the data, a setting the trainer refuses, a write failure.
pub fn run(s: &TrainSettings, paths: &TrainPaths, resume: bool, ctx: &Ctx) -> Result<TrainReport> {
    let settings = s.settings.clone();
    settings.validate()?;
    let (base, model) = load_base(&paths.base, s.cuda)?;
    let enc = Encoder::new(base.tokenizer()?, base.template()?, base.eos.clone(), settings.max_seq_len);
    let train = load_data(&paths.data, &enc, ctx)?;
    let mut trainer = Trainer::new(&model, settings, train, &paths.output)?
        .with_resume(resume)
        .with_info("base_model", serde_json::json!(paths.base.display().to_string()));
    if let Some(v) = &paths.valid {
        trainer = trainer.with_valid(load_data(v, &enc, ctx)?);
    }
    let (bs, _, total) = trainer.plan();
    ctx.info(format!(
        "training {} LoRA parameters, {total} steps of {bs} examples",
        trainer.adapter().parameter_count()
    ));
    let mut trainer = trainer.with_cancel(ctx.cancel().clone());
    let progress = |i: &StepInfo| {
        ctx.progress(
            i.step as u64,
            total as u64,
            "steps",
            format!("loss {:.4}, {:.0} tok/s, lr {:.2e}", i.loss, i.tokens_per_s, i.learning_rate),
        );
    };
    let report = trainer.run(&progress)?;
    if report.cancelled {
        return Err(PipelineError::Cancelled { stage: ctx.stage() });
    }
    Ok(report)
}

/// The summary lines of a training run.
#[must_use]
pub fn summary(r: &TrainReport) -> Vec<String> {
    let mut line = format!(
        "{} steps ({} this run{}), last train loss {}",
        r.steps,
        r.steps - r.resumed_from.unwrap_or(0),
        r.resumed_from.map(|s| format!(", resumed from step {s}")).unwrap_or_default(),
        r.last_train_loss.map_or("-".into(), |l| format!("{l:.4}")),
    );
    if let (Some(l), Some(acc)) = (r.valid_loss, r.valid_accuracy) {
        line += &format!(", valid loss {l:.4}, token accuracy {acc:.3}");
    }
    line += &format!("; {:.0} tokens/s", r.tokens_per_s);
    let mut lines = vec![line];
    if r.rejected > 0 || r.truncated > 0 {
        lines.push(format!(
            "{} lines rejected, {} examples cut at max_seq_len (see events.jsonl)",
            r.rejected, r.truncated
        ));
    }
    lines.push(format!("adapter: {}", r.adapter_dir.display()));
    lines
}
