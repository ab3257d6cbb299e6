//! Train: a LoRA adapter on a chat / completion / text dataset.

use std::path::{Path, PathBuf};

use docraft_core::Progress;
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

/// A base model loaded and the data encoded with its tokenizer: what [`prepare`] checks
/// before any step runs (a service reports it as its `validating_files` phase).
pub struct Prepared {
    model: Llama,
    train: Dataset,
    valid: Option<Dataset>,
    settings: docraft_train::Settings,
}

impl Prepared {
    /// The training set as encoded.
    #[must_use]
    pub fn train(&self) -> &Dataset {
        &self.train
    }

    /// The validation set as encoded, if any.
    #[must_use]
    pub fn valid(&self) -> Option<&Dataset> {
        self.valid.as_ref()
    }
}

/// Validates the settings, loads the base model and encodes the data: everything that can
/// fail before the first step. A training set without a usable example is an error naming it.
///
/// # Errors
/// A setting the trainer refuses, an unreadable model or data file, no usable example.
pub fn prepare(s: &TrainSettings, paths: &TrainPaths, ctx: &Ctx) -> Result<Prepared> {
    let settings = s.settings.clone();
    settings.validate()?;
    let (base, model) = load_base(&paths.base, s.cuda)?;
    let enc = Encoder::new(base.tokenizer()?, base.template()?, base.eos.clone(), settings.max_seq_len);
    let train = load_data(&paths.data, &enc, ctx)?;
    if train.examples.is_empty() {
        return Err(PipelineError::Needs {
            stage: ctx.stage(),
            reason: format!(
                "{} has no usable training example ({} lines rejected)",
                paths.data.display(),
                train.rejected.len()
            ),
        });
    }
    let valid = paths.valid.as_ref().map(|v| load_data(v, &enc, ctx)).transpose()?;
    Ok(Prepared { model, train, valid, settings })
}

/// What [`train`] returns: the trainer's report and, with a validation set, the base model's
/// scores on it (before any step: the adapter starts as the identity), to compare with the
/// report's `valid_loss` and `valid_accuracy`.
#[derive(Debug, Clone)]
pub struct Trained {
    /// The trainer's report.
    pub report: TrainReport,
    /// Mean token loss and top-1 token accuracy of the base model on the validation set.
    pub base_eval: Option<(f64, f64)>,
}

/// Trains a [`prepare`]d run; with `resume`, continues from the newest checkpoint in the run
/// directory. `step` is told of every optimizer step after the progress event is sent. With
/// a validation set, the base model is evaluated on it first.
///
/// # Errors
/// A checkpoint of other settings, a write failure, a diverged loss; [`PipelineError::Cancelled`]
/// when the token stopped the run (after a checkpoint at the step reached).
pub fn train(
    prepared: Prepared,
    paths: &TrainPaths,
    resume: bool,
    ctx: &Ctx,
    step: &dyn Progress<StepInfo>,
) -> Result<Trained> {
    let Prepared { model, train, valid, settings } = prepared;
    let mut trainer = Trainer::new(&model, settings, train, &paths.output)?
        .with_resume(resume)
        .with_info("base_model", serde_json::json!(paths.base.display().to_string()));
    let mut base_eval = None;
    if let Some(v) = valid {
        trainer = trainer.with_valid(v);
        // A new adapter adds nothing (its B matrices start at zero): this is the base model.
        let (loss, accuracy) = trainer.evaluate()?;
        ctx.info(format!("base model on the validation set: loss {loss:.4}, token accuracy {accuracy:.4}"));
        base_eval = Some((loss, accuracy));
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
        step.update(i);
    };
    let report = trainer.run(&progress)?;
    if report.cancelled {
        return Err(PipelineError::Cancelled { stage: ctx.stage() });
    }
    Ok(Trained { report, base_eval })
}

/// Trains; with `resume`, continues from the newest checkpoint in the run directory
/// ([`prepare`] then [`train`]).
///
/// # Errors
/// As [`prepare`] and [`train`].
pub fn run(s: &TrainSettings, paths: &TrainPaths, resume: bool, ctx: &Ctx) -> Result<TrainReport> {
    let prepared = prepare(s, paths, ctx)?;
    Ok(train(prepared, paths, resume, ctx, &docraft_core::NoProgress)?.report)
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
