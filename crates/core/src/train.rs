//! The records a training run writes and later readers (evaluation, a progress display, an
//! HTTP service) read back: one [`MetricRecord`] per optimizer step in `metrics.jsonl`, one
//! [`TrainEvent`] per event in `events.jsonl`, and a [`CheckpointState`] in each
//! `checkpoints/step-N/state.json`. Writers and readers share these types, so no key string
//! is spelled twice.
//!
//! ```
//! use docraft_core::train::MetricRecord;
//!
//! # fn main() -> Result<(), serde_json::Error> {
//! // Older or partial lines read too: everything but the step and the loss is optional.
//! let m: MetricRecord = serde_json::from_str(r#"{"step":3,"train_loss":2.5}"#)?;
//! assert_eq!((m.step, m.train_loss, m.valid_loss), (3, 2.5, None));
//! # Ok(()) }
//! ```

use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

/// A float that was written as `null` (serde_json writes NaN and infinities so) reads as NaN.
fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// One optimizer step: a line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRecord {
    /// Optimizer steps done, 1-based (the step this line describes).
    pub step: u64,
    /// Epochs done, fractional (`step / steps_per_epoch`).
    #[serde(default, deserialize_with = "nan_if_null")]
    pub epoch: f64,
    /// Mean token loss (cross-entropy, nats) of the step's training examples.
    #[serde(deserialize_with = "nan_if_null")]
    pub train_loss: f64,
    /// Learning rate the step used.
    #[serde(default, deserialize_with = "nan_if_null")]
    pub learning_rate: f64,
    /// Global L2 norm of the gradients before clipping.
    #[serde(default, deserialize_with = "nan_if_null")]
    pub grad_norm: f64,
    /// Input tokens of the step (padding excluded).
    #[serde(default)]
    pub tokens: u64,
    /// Input tokens per second of the step.
    #[serde(default, deserialize_with = "nan_if_null")]
    pub tokens_per_s: f64,
    /// Seconds of training so far, over every resumed process of the run.
    #[serde(default, deserialize_with = "nan_if_null")]
    pub elapsed_s: f64,
    /// Peak resident memory of the process in MiB, where known (`null` otherwise).
    #[serde(default)]
    pub peak_rss_mib: Option<f64>,
    /// Top-1 token accuracy on the step's training examples (absent in logs of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_accuracy: Option<f64>,
    /// Mean token loss on the validation set, on steps where an evaluation ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_loss: Option<f64>,
    /// Top-1 token accuracy on the validation set, on steps where an evaluation ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_accuracy: Option<f64>,
}

/// The seven metrics of a checkpoint, as OpenAI's fine-tuning API reports them
/// (`fine_tuning.job.checkpoint.metrics`). Each is `None` where the run did not measure it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMetrics {
    /// The optimizer step of the checkpoint.
    #[serde(default)]
    pub step: Option<f64>,
    /// Mean token loss of the checkpoint's step.
    #[serde(default)]
    pub train_loss: Option<f64>,
    /// Top-1 token accuracy on the checkpoint's step's training examples.
    #[serde(default)]
    pub train_mean_token_accuracy: Option<f64>,
    /// Mean token loss on the validation set (the latest evaluation at or before the step).
    #[serde(default)]
    pub valid_loss: Option<f64>,
    /// Top-1 token accuracy on the validation set (the latest evaluation at or before the step).
    #[serde(default)]
    pub valid_mean_token_accuracy: Option<f64>,
    /// Mean token loss on the whole validation set, when it was evaluated at this very step.
    #[serde(default)]
    pub full_valid_loss: Option<f64>,
    /// Top-1 token accuracy on the whole validation set, when it was evaluated at this very step.
    #[serde(default)]
    pub full_valid_mean_token_accuracy: Option<f64>,
}

/// The state of a checkpoint: `checkpoints/step-N/state.json`, written last, so a checkpoint
/// directory with it is complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Optimizer steps done when the checkpoint was taken (the `N` of `step-N`).
    pub step: u64,
    /// Steps the optimizer took (its bias correction resumes from it).
    pub optimizer_steps: u64,
    /// Seconds of training before the checkpoint, over every process of the run.
    #[serde(deserialize_with = "nan_if_null")]
    pub elapsed_s: f64,
    /// Hash of the settings and the tokenized training data: a resume with other settings or
    /// data is refused.
    pub fingerprint: String,
    /// When the checkpoint was written (RFC 3339, UTC).
    pub time: String,
    /// The checkpoint's metrics (absent in checkpoints of older versions).
    #[serde(default)]
    pub metrics: CheckpointMetrics,
}

/// How serious an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventLevel {
    /// Normal progress.
    Info,
    /// Something failed (an example skipped, the run failed).
    Error,
}

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The run started from step 0.
    Started,
    /// The run continued from a checkpoint.
    Resumed,
    /// An epoch began.
    EpochStarted,
    /// An epoch ended.
    EpochFinished,
    /// The validation set was evaluated.
    Evaluation,
    /// A checkpoint was written.
    Checkpoint,
    /// A training example was rejected.
    ExampleSkipped,
    /// The run was cancelled (after writing a checkpoint at the current step).
    Cancelled,
    /// The run finished and wrote its adapter.
    Finished,
    /// The run failed.
    Failed,
}

/// One line of `events.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainEvent {
    /// When (RFC 3339, UTC).
    pub time: String,
    /// How serious.
    pub level: EventLevel,
    /// What it is about (absent in logs of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<EventKind>,
    /// A sentence for people.
    pub message: String,
    /// The optimizer step it happened at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u64>,
    /// The epoch (1-based) of epoch events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// Validation loss of an evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_loss: Option<f64>,
    /// Validation token accuracy of an evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_accuracy: Option<f64>,
    /// The checkpoint directory of a checkpoint event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

impl TrainEvent {
    /// An event of `kind` at `level` with `message`, stamped `time`; the optional fields unset.
    #[must_use]
    pub fn new(time: impl Into<String>, level: EventLevel, kind: EventKind, message: impl Into<String>) -> Self {
        Self {
            time: time.into(),
            level,
            kind: Some(kind),
            message: message.into(),
            step: None,
            epoch: None,
            valid_loss: None,
            valid_accuracy: None,
            path: None,
        }
    }

    /// The same event at `step`.
    #[must_use]
    pub fn at_step(mut self, step: u64) -> Self {
        self.step = Some(step);
        self
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn metric_lines_keep_their_keys_and_nan_round_trips_as_null() {
        let m = MetricRecord {
            step: 2,
            epoch: 0.5,
            train_loss: 2.25,
            learning_rate: 1e-4,
            grad_norm: f64::NAN,
            tokens: 10,
            tokens_per_s: 5.0,
            elapsed_s: 1.5,
            peak_rss_mib: None,
            train_accuracy: None,
            valid_loss: None,
            valid_accuracy: None,
        };
        let v: serde_json::Value = serde_json::to_value(&m).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = vec![
            "step",
            "epoch",
            "train_loss",
            "learning_rate",
            "grad_norm",
            "tokens",
            "tokens_per_s",
            "elapsed_s",
            "peak_rss_mib",
        ];
        want.sort_unstable();
        assert_eq!(keys, want);
        assert!(v["grad_norm"].is_null());
        let back: MetricRecord = serde_json::from_value(v).unwrap();
        assert!(back.grad_norm.is_nan());
        assert_eq!(back.train_loss, 2.25);
    }

    #[test]
    fn events_without_kind_read() {
        let e: TrainEvent =
            serde_json::from_str(r#"{"time":"t","level":"info","message":"epoch 1 started","step":0,"epoch":1}"#)
                .unwrap();
        assert_eq!((e.kind, e.step, e.epoch), (None, Some(0), Some(1)));
        let s = CheckpointState {
            step: 3,
            optimizer_steps: 3,
            elapsed_s: 1.0,
            fingerprint: "f".into(),
            time: "t".into(),
            metrics: CheckpointMetrics::default(),
        };
        let old = r#"{"step":3,"optimizer_steps":3,"elapsed_s":1.0,"fingerprint":"f","time":"t"}"#;
        assert_eq!(serde_json::from_str::<CheckpointState>(old).unwrap(), s);
    }
}
