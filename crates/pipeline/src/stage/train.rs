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

/// The open-book QA cases of a validation file of RAFT records in OpenAI chat format: lines
/// whose last assistant message ends its reasoning with `<ANSWER>:` (what `docraft raft`
/// writes). The user message is the context given, the final answer the gold one. Lines of
/// other shapes are not cases (an ordinary chat file has none).
///
/// # Errors
/// When the file cannot be read.
pub fn raft_chat_cases(path: &Path, max: usize) -> Result<(Vec<docraft_eval::qa::QaCase>, Option<String>)> {
    let text = std::fs::read_to_string(path).map_err(|e| PipelineError::io(path, e))?;
    let mut cases = Vec::new();
    let mut system = None;
    for line in text.lines() {
        if cases.len() >= max {
            break;
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let Some(messages) = v.get("messages").and_then(serde_json::Value::as_array) else { continue };
        let content = |role: &str| {
            messages
                .iter()
                .rev()
                .find(|m| m.get("role").and_then(serde_json::Value::as_str) == Some(role))
                .and_then(|m| m.get("content").and_then(serde_json::Value::as_str))
        };
        let (Some(user), Some(answer)) = (content("user"), content("assistant")) else { continue };
        if !answer.contains(docraft_eval::metrics::ANSWER_TAG) {
            continue;
        }
        if system.is_none() {
            system = content("system").map(str::to_string);
        }
        let gold = docraft_eval::metrics::final_answer(answer).to_string();
        let question = user.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(user).trim().to_string();
        if !gold.is_empty() {
            cases.push(docraft_eval::qa::QaCase { question, context: user.to_string(), gold });
        }
    }
    Ok((cases, system))
}

/// Open-book QA of the base model and of base + adapter on the RAFT records of a validation
/// file (at most `max` of them, greedy decoding): `None` when the file holds no RAFT record.
///
/// # Errors
/// Reading the file, loading the model or the adapter.
pub fn open_book_qa(
    base: &Path,
    adapter: &Path,
    valid: &Path,
    max: usize,
    max_tokens: u32,
    cuda: bool,
) -> Result<Option<(docraft_eval::qa::QaScores, docraft_eval::qa::QaScores)>> {
    let (cases, system_prompt) = raft_chat_cases(valid, max)?;
    if cases.is_empty() {
        return Ok(None);
    }
    let device = docraft_train::device(cuda)?;
    let options = docraft_eval::qa::QaOptions { system_prompt, max_tokens, ..docraft_eval::qa::QaOptions::default() };
    let base_model = docraft_train::generate::ChatModel::load(base, None, &device)?;
    let before = docraft_eval::qa::evaluate(&base_model, &cases, &options, &docraft_core::NoProgress);
    drop(base_model);
    let tuned = docraft_train::generate::ChatModel::load(base, Some(adapter), &device)?;
    let after = docraft_eval::qa::evaluate(&tuned, &cases, &options, &docraft_core::NoProgress);
    Ok(Some((before, after)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn raft_records_in_chat_format_are_open_book_cases_and_plain_chats_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("valid.jsonl");
        let raft = serde_json::json!({"messages": [
            {"role": "system", "content": "Answer from the documents."},
            {"role": "user", "content": "<DOCUMENT>Bolts: 18 Nm.</DOCUMENT>\nWhat torque?"},
            {"role": "assistant", "content": "##Reason: ##begin_quote##Bolts: 18 Nm.##end_quote## <ANSWER>: 18 Nm"}]});
        let plain = serde_json::json!({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]});
        std::fs::write(&p, format!("{raft}\n{plain}\nnot json\n")).unwrap();
        let (cases, system) = raft_chat_cases(&p, 10).unwrap();
        assert_eq!(cases.len(), 1);
        assert_eq!((cases[0].gold.as_str(), cases[0].question.as_str()), ("18 Nm", "What torque?"));
        assert_eq!(system.as_deref(), Some("Answer from the documents."));
        std::fs::write(&p, format!("{plain}\n")).unwrap();
        assert!(raft_chat_cases(&p, 10).unwrap().0.is_empty());
    }
}
