//! The SFT loop: batches, AdamW, schedule, accumulation, clipping, evaluation, metrics and events,
//! atomic checkpoints, resume on the same trajectory, and the final PEFT adapter.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use candle_core::{DType, Tensor, Var};
use docraft_core::jsonl::{self, JsonlWriter};
use docraft_core::rng::SplitMix64;
use docraft_core::train::{CheckpointMetrics, CheckpointState, EventKind, EventLevel, MetricRecord, TrainEvent};
use docraft_core::{CancelToken, Progress};
use serde_json::{Value, json};

use crate::data::{Dataset, MicroBatch, Tokens, micro_batches};
use crate::error::{Result, TrainError};
use crate::lora::Adapter;
use crate::model::{Dropout, Inputs, Llama};
use crate::optim::{AdamW, clip_grad_norm};
use crate::settings::Settings;

/// The files of a run directory.
#[derive(Debug, Clone)]
pub struct RunFiles {
    dir: PathBuf,
}

impl RunFiles {
    /// The files under `dir`.
    #[must_use]
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.to_path_buf() }
    }
    /// The run directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// `config.json`: the resolved settings and what the run was built from.
    #[must_use]
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    /// `metrics.jsonl`: one line per optimizer step.
    #[must_use]
    pub fn metrics(&self) -> PathBuf {
        self.dir.join("metrics.jsonl")
    }
    /// `events.jsonl`: started, epochs, evaluations, checkpoints, finished or failed.
    #[must_use]
    pub fn events(&self) -> PathBuf {
        self.dir.join("events.jsonl")
    }
    /// `checkpoints/`: `step-NNNNNN` directories.
    #[must_use]
    pub fn checkpoints(&self) -> PathBuf {
        self.dir.join("checkpoints")
    }
    /// `adapter/`: the final adapter in peft layout.
    #[must_use]
    pub fn adapter(&self) -> PathBuf {
        self.dir.join("adapter")
    }

    /// Every `checkpoints/step-N` directory with its step, oldest first (complete or not).
    #[must_use]
    pub fn checkpoint_dirs(&self) -> Vec<(usize, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(self.checkpoints()) else { return Vec::new() };
        let mut all: Vec<(usize, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name.strip_prefix("step-").and_then(|s| s.parse().ok()).map(|step| (step, e.path()))
            })
            .collect();
        all.sort();
        all
    }

    /// The newest complete checkpoint (one with `state.json`), if any.
    #[must_use]
    pub fn latest_checkpoint(&self) -> Option<(usize, PathBuf)> {
        self.checkpoint_dirs().into_iter().rev().find(|(_, p)| p.join("state.json").exists())
    }
}

/// What a step reports to a progress display.
#[derive(Debug, Clone)]
pub struct StepInfo {
    /// Optimizer steps done (1-based).
    pub step: usize,
    /// Steps the run will take.
    pub total: usize,
    /// Mean token loss of the step.
    pub loss: f64,
    /// Input tokens per second of the step.
    pub tokens_per_s: f64,
    /// Learning rate used.
    pub learning_rate: f64,
    /// The step's full record, as written to `metrics.jsonl` (a service stores it as it happens).
    pub record: MetricRecord,
}

/// The outcome of [`Trainer::run`].
#[derive(Debug, Clone)]
pub struct TrainReport {
    /// Steps done (including those of a resumed run).
    pub steps: usize,
    /// Steps planned.
    pub total_steps: usize,
    /// Steps per epoch.
    pub steps_per_epoch: usize,
    /// Step the run resumed from.
    pub resumed_from: Option<usize>,
    /// Loss of the last step.
    pub last_train_loss: Option<f64>,
    /// Mean token loss on the validation set at the end.
    pub valid_loss: Option<f64>,
    /// Validation top-1 token accuracy at the end.
    pub valid_accuracy: Option<f64>,
    /// Mean input tokens per second over this process's steps.
    pub tokens_per_s: f64,
    /// Examples used for training.
    pub examples: usize,
    /// Examples per optimizer step.
    pub batch_size: usize,
    /// Lines rejected in the data files.
    pub rejected: usize,
    /// Examples cut at `max_seq_len`.
    pub truncated: usize,
    /// Trainable parameters.
    pub trainable: usize,
    /// Whether the run stopped before its last step (`stop_after`, or cancelled).
    pub stopped_early: bool,
    /// Whether the run was cancelled through its token ([`Trainer::with_cancel`]); a
    /// checkpoint at the step reached was written, and a resumed run continues from it.
    pub cancelled: bool,
    /// The adapter directory (written when the run finished).
    pub adapter_dir: PathBuf,
}

/// Runs LoRA supervised fine-tuning of a [`Llama`] on a [`Dataset`].
pub struct Trainer<'a> {
    model: &'a Llama,
    adapter: Adapter,
    settings: Settings,
    train: Dataset,
    valid: Option<Dataset>,
    pad: u32,
    files: RunFiles,
    info: serde_json::Map<String, Value>,
    resume: bool,
    stop_after: Option<usize>,
    cancel: CancelToken,
}

impl std::fmt::Debug for Trainer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer").field("settings", &self.settings).field("dir", &self.files.dir).finish()
    }
}

/// The event of a checkpoint written at `step` into `path`.
fn checkpoint_event(step: usize, path: PathBuf) -> TrainEvent {
    let mut e = info(EventKind::Checkpoint, format!("checkpoint saved: {}", path.display()));
    e.step = Some(step as u64);
    e.path = Some(path);
    e
}

/// An `info` event of `kind`, stamped now.
fn info(kind: EventKind, message: String) -> TrainEvent {
    TrainEvent::new(now_rfc3339(), EventLevel::Info, kind, message)
}

fn now_rfc3339() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Peak resident memory of this process in MiB (Linux), if known.
#[must_use]
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

impl<'a> Trainer<'a> {
    /// A trainer for `model` on `train`, writing into `run_dir`. The adapter is initialized from the
    /// settings' seed.
    ///
    /// # Errors
    /// [`TrainError::Setting`] for settings out of range or an empty training set.
    pub fn new(model: &'a Llama, settings: Settings, train: Dataset, run_dir: &Path) -> Result<Self> {
        settings.validate()?;
        if train.examples.is_empty() {
            return Err(TrainError::Parse {
                path: train.path.clone(),
                message: format!("no usable training examples ({} lines rejected)", train.rejected.len()),
            });
        }
        let adapter =
            Adapter::new(model.config(), settings.lora()?, settings.seed, master_dtype(model.dtype()), model.device())?;
        let pad = model.config().eos_ids().first().copied().unwrap_or(0);
        Ok(Self {
            model,
            adapter,
            settings,
            train,
            valid: None,
            pad,
            files: RunFiles::new(run_dir),
            info: serde_json::Map::new(),
            resume: false,
            stop_after: None,
            cancel: CancelToken::new(),
        })
    }

    /// Evaluates on `valid` every `eval_every` steps and at the end.
    #[must_use]
    pub fn with_valid(mut self, valid: Dataset) -> Self {
        self.valid = Some(valid);
        self
    }

    /// Continues from the newest checkpoint in the run directory (or starts when there is none).
    #[must_use]
    pub fn with_resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// Stops (as a kill would, but cleanly) after this many optimizer steps in total, without writing
    /// the final adapter; a later resumed run continues the same trajectory.
    #[must_use]
    pub fn with_stop_after(mut self, steps: usize) -> Self {
        self.stop_after = Some(steps);
        self
    }

    /// Records `key: value` in `config.json` (the base model, data files, ...).
    #[must_use]
    pub fn with_info(mut self, key: &str, value: Value) -> Self {
        self.info.insert(key.to_string(), value);
        self
    }

    /// Stops [`Trainer::run`] before its next optimizer step once `cancel` is cancelled: a
    /// checkpoint at the step reached is written, and the report says `cancelled`. A run with
    /// [`Trainer::with_resume`] continues from that checkpoint on the same trajectory.
    #[must_use]
    pub fn with_cancel(mut self, cancel: CancelToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// The adapter being trained.
    #[must_use]
    pub fn adapter(&self) -> &Adapter {
        &self.adapter
    }

    /// Examples per step, steps per epoch and total steps.
    #[must_use]
    pub fn plan(&self) -> (usize, usize, usize) {
        let n = self.train.examples.len();
        let bs = self.settings.batch_size.resolve(n).min(n).max(1);
        let per_epoch = n.div_ceil(bs);
        let mut total = per_epoch * self.settings.epochs;
        if let Some(m) = self.settings.max_steps {
            total = total.min(m);
        }
        (bs, per_epoch, total)
    }

    /// The order of the training examples in `epoch` (0-based): a shuffle keyed by the seed, so a
    /// resumed run sees the same batches.
    fn epoch_order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.train.examples.len()).collect();
        SplitMix64::keyed(self.settings.seed, &[0x5EED, epoch as u64]).shuffle(&mut order);
        order
    }

    /// The base model as recorded with [`Trainer::with_info`] (`base_model`), for adapter configs.
    fn base_name(&self) -> &str {
        self.info.get("base_model").and_then(Value::as_str).unwrap_or("")
    }

    fn fingerprint(&self) -> Result<String> {
        let mut s = serde_json::to_vec(&self.settings).map_err(|e| TrainError::parse(self.files.config(), e))?;
        for e in &self.train.examples {
            s.extend_from_slice(&(e.ids.len() as u64).to_le_bytes());
            for id in &e.ids {
                s.extend_from_slice(&id.to_le_bytes());
            }
        }
        Ok(docraft_core::content_hash(&s))
    }

    /// Trains until the last step (or `stop_after`, or a cancellation), then saves the adapter.
    /// `progress` is told after every optimizer step.
    ///
    /// # Errors
    /// [`TrainError::Checkpoint`] when the run directory holds another run (without resume) or a
    /// checkpoint of other settings; io and tensor errors. A failure is also written to `events.jsonl`.
    pub fn run(&mut self, progress: &dyn Progress<StepInfo>) -> Result<TrainReport> {
        let dir = self.files.dir.clone();
        std::fs::create_dir_all(&dir).map_err(TrainError::io(&dir))?;
        let (mut events, _) = JsonlWriter::<TrainEvent>::append(self.files.events())?;
        let result = self.run_inner(&mut events, progress);
        if let Err(e) = &result {
            events.write(&TrainEvent::new(
                now_rfc3339(),
                EventLevel::Error,
                EventKind::Failed,
                format!("failed: {e}"),
            ))?;
        }
        result
    }

    fn run_inner(
        &mut self,
        events: &mut JsonlWriter<TrainEvent>,
        progress: &dyn Progress<StepInfo>,
    ) -> Result<TrainReport> {
        let (bs, per_epoch, total) = self.plan();
        let fingerprint = self.fingerprint()?;
        let names: Vec<String> = self.adapter.named_vars().into_iter().map(|(n, _)| n).collect();
        let vars: Vec<Var> = self.adapter.named_vars().into_iter().map(|(_, v)| v.clone()).collect();
        let var_refs: Vec<&Var> = vars.iter().collect();
        let s = self.settings.clone();
        let mut opt = AdamW::new(&var_refs, s.adam_beta1, s.adam_beta2, s.adam_epsilon, s.weight_decay)?;
        let warmup = s.warmup_steps.unwrap_or(total.div_ceil(20));
        let mut event = |e: TrainEvent| -> Result<()> { Ok(events.write(&e)?) };

        // Start or resume.
        let mut start = 0;
        let mut elapsed_before = 0.0;
        let latest = self.files.latest_checkpoint();
        let resumed_from = match (&latest, self.resume) {
            (Some((step, path)), true) => {
                let state = read_state(path)?;
                if state.fingerprint != fingerprint {
                    return Err(TrainError::Checkpoint {
                        path: path.clone(),
                        message: "written with other settings or data; use a new run directory".into(),
                    });
                }
                let adapter_vals = load_st(&path.join("adapter_model.safetensors"), self.model.device())?;
                self.adapter.assign(&adapter_vals)?;
                let opt_vals = load_st(&path.join("optimizer.safetensors"), self.model.device())?;
                opt.restore(&names, &opt_vals, usize::try_from(state.optimizer_steps).unwrap_or(*step))?;
                elapsed_before = if state.elapsed_s.is_finite() { state.elapsed_s } else { 0.0 };
                start = *step;
                // Metrics written after the checkpoint belong to the lost trajectory: set them aside.
                let s0 = *step as u64;
                jsonl::retain::<MetricRecord, _>(self.files.metrics(), |m| m.step <= s0)?;
                event(info(EventKind::Resumed, format!("resumed from checkpoint step {step}")).at_step(s0))?;
                Some(*step)
            }
            (Some(_), false) => {
                return Err(TrainError::Checkpoint {
                    path: self.files.checkpoints(),
                    message: "this run directory already holds a run; pass --resume to continue it or choose another directory".into(),
                });
            }
            (None, _) => {
                // Starting from step 0: lines of an earlier attempt killed before its first
                // checkpoint would duplicate the steps about to be redone.
                jsonl::retain::<MetricRecord, _>(self.files.metrics(), |_| false)?;
                None
            }
        };
        let mut config = json!({
            "settings": s,
            "resolved": {"batch_size": bs, "steps_per_epoch": per_epoch, "total_steps": total, "warmup_steps": warmup,
                         "gradient_accumulation": bs.div_ceil(s.micro_batch_size),
                         "trainable_parameters": self.adapter.parameter_count()},
            "data": {"train": self.train.path, "train_examples": self.train.examples.len(),
                     "train_rejected": self.train.rejected.len(), "train_truncated": self.train.truncated,
                     "train_target_tokens": self.train.target_tokens(),
                     "valid": self.valid.as_ref().map(|v| &v.path),
                     "valid_examples": self.valid.as_ref().map(|v| v.examples.len())},
            "model": self.model.config(),
            "fingerprint": fingerprint,
        });
        if let Some(o) = config.as_object_mut() {
            o.extend(self.info.clone());
        }
        crate::base::write_json(&self.files.config(), &config)?;
        if resumed_from.is_none() {
            event(
                info(
                    EventKind::Started,
                    format!(
                        "started: {} examples, {} steps of {bs} examples, {} trainable parameters",
                        self.train.examples.len(),
                        total,
                        self.adapter.parameter_count()
                    ),
                )
                .at_step(0),
            )?;
        }
        for r in self.train.rejected.iter().chain(self.valid.iter().flat_map(|v| v.rejected.iter())) {
            event(TrainEvent::new(
                now_rfc3339(),
                EventLevel::Error,
                EventKind::ExampleSkipped,
                format!("example skipped: {r}"),
            ))?;
        }

        let (mut metrics, _) = JsonlWriter::<MetricRecord>::append(self.files.metrics())?;
        let t0 = Instant::now();
        let mut tokens_done = 0usize;
        let mut last_loss = None;
        let mut last_eval = (None, None);
        let stop = self.stop_after.unwrap_or(usize::MAX).min(total);
        let mut step = start;
        let mut order = (usize::MAX, Vec::new());
        let mut cancelled = false;
        let mut last_checkpoint = start;
        let mut last_metrics = CheckpointMetrics::default();
        while step < stop {
            if self.cancel.is_cancelled() {
                cancelled = true;
                break;
            }
            let epoch = step / per_epoch;
            if order.0 != epoch {
                order = (epoch, self.epoch_order(epoch));
            }
            if step % per_epoch == 0 {
                let mut e = info(EventKind::EpochStarted, format!("epoch {} started", step / per_epoch + 1));
                e.step = Some(step as u64);
                e.epoch = Some((step / per_epoch + 1) as u64);
                event(e)?;
            }
            let ts = Instant::now();
            let b = step % per_epoch;
            let examples: Vec<&Tokens> =
                order.1[b * bs..((b + 1) * bs).min(order.1.len())].iter().map(|&i| &self.train.examples[i]).collect();
            let step_targets: usize = examples.iter().map(|e| e.target_count()).sum();
            let mbs = micro_batches(&examples, s.micro_batch_size, self.pad, s.packing, s.max_seq_len);
            let mut grads: Vec<Option<Tensor>> = vec![None; vars.len()];
            let mut loss_sum = 0.0;
            let mut step_tokens = 0;
            let (mut step_correct, mut step_scored) = (0usize, 0usize);
            for (mi, mb) in mbs.iter().enumerate() {
                let dropout = Dropout::new(s.lora_dropout, s.seed, (step as u64) << 16 | mi as u64);
                let out = self.forward_loss(mb, Some(&dropout))?;
                let scaled = (out.sum / step_targets as f64)?;
                let store = scaled.backward()?;
                loss_sum += f64::from(out_scalar(&scaled)?);
                step_correct += out.correct;
                step_scored += out.tokens;
                for (g, v) in grads.iter_mut().zip(&vars) {
                    if let Some(new) = store.get(v.as_tensor()) {
                        *g = Some(match g.take() {
                            Some(old) => (old + new)?,
                            None => new.clone(),
                        });
                    }
                }
                step_tokens += mb.tokens;
            }
            if !loss_sum.is_finite() {
                return Err(TrainError::Diverged { step: step + 1 });
            }
            let grad_norm = clip_grad_norm(&mut grads, s.max_grad_norm)?;
            let lr = s.scheduler.lr(s.learning_rate, warmup, total, step);
            opt.step(&var_refs, &grads, lr)?;
            step += 1;
            tokens_done += step_tokens;
            let tokens_per_s = step_tokens as f64 / ts.elapsed().as_secs_f64().max(1e-9);
            last_loss = Some(loss_sum);
            let mut m = MetricRecord {
                step: step as u64,
                epoch: step as f64 / per_epoch as f64,
                train_loss: loss_sum,
                learning_rate: lr,
                grad_norm,
                tokens: step_tokens as u64,
                tokens_per_s,
                elapsed_s: elapsed_before + t0.elapsed().as_secs_f64(),
                peak_rss_mib: peak_rss_mib(),
                #[allow(clippy::cast_precision_loss)]
                train_accuracy: Some(step_correct as f64 / step_scored.max(1) as f64),
                valid_loss: None,
                valid_accuracy: None,
            };
            let eval_now = self.valid.is_some() && ((s.eval_every > 0 && step % s.eval_every == 0) || step == total);
            if eval_now {
                let (vl, va) = self.evaluate()?;
                m.valid_loss = Some(vl);
                m.valid_accuracy = Some(va);
                last_eval = (Some(vl), Some(va));
                let mut e = info(
                    EventKind::Evaluation,
                    format!("evaluation at step {step}: loss {vl:.4}, token accuracy {va:.4}"),
                )
                .at_step(step as u64);
                e.valid_loss = Some(vl);
                e.valid_accuracy = Some(va);
                event(e)?;
            }
            metrics.write(&m)?;
            progress.update(&StepInfo {
                step,
                total,
                loss: loss_sum,
                tokens_per_s,
                learning_rate: lr,
                record: m.clone(),
            });
            if step % per_epoch == 0 || step == total {
                let mut e = info(EventKind::EpochFinished, format!("epoch {} finished", step.div_ceil(per_epoch)));
                e.step = Some(step as u64);
                e.epoch = Some(step.div_ceil(per_epoch) as u64);
                event(e)?;
            }
            #[allow(clippy::cast_precision_loss)]
            let checkpoint_metrics = CheckpointMetrics {
                step: Some(step as f64),
                train_loss: Some(loss_sum),
                train_mean_token_accuracy: m.train_accuracy,
                valid_loss: last_eval.0,
                valid_mean_token_accuracy: last_eval.1,
                full_valid_loss: m.valid_loss,
                full_valid_mean_token_accuracy: m.valid_accuracy,
            };
            if step % s.checkpoint_every == 0 || step == total {
                let elapsed = elapsed_before + t0.elapsed().as_secs_f64();
                let path =
                    self.save_checkpoint(step, &opt, &names, &fingerprint, elapsed, checkpoint_metrics.clone())?;
                last_checkpoint = step;
                event(checkpoint_event(step, path))?;
            }
            last_metrics = checkpoint_metrics;
        }
        if cancelled {
            // The run ends here: a checkpoint at the step reached, so a resume loses nothing.
            if step > last_checkpoint {
                let elapsed = elapsed_before + t0.elapsed().as_secs_f64();
                let path = self.save_checkpoint(step, &opt, &names, &fingerprint, elapsed, last_metrics)?;
                event(checkpoint_event(step, path))?;
            }
            event(
                info(EventKind::Cancelled, format!("cancelled at step {step}; a resumed run continues from here"))
                    .at_step(step as u64),
            )?;
        }
        let finished = step >= total;
        if finished {
            self.adapter.save_peft(&self.files.adapter(), self.base_name())?;
            if resumed_from != Some(total) {
                event(
                    info(EventKind::Finished, format!("finished: adapter saved to {}", self.files.adapter().display()))
                        .at_step(step as u64),
                )?;
            }
        }
        let elapsed = t0.elapsed().as_secs_f64();
        Ok(TrainReport {
            steps: step,
            total_steps: total,
            steps_per_epoch: per_epoch,
            resumed_from,
            last_train_loss: last_loss,
            valid_loss: last_eval.0,
            valid_accuracy: last_eval.1,
            tokens_per_s: if elapsed > 0.0 { tokens_done as f64 / elapsed } else { 0.0 },
            examples: self.train.examples.len(),
            batch_size: bs,
            rejected: self.train.rejected.len() + self.valid.as_ref().map_or(0, |v| v.rejected.len()),
            truncated: self.train.truncated,
            trainable: self.adapter.parameter_count(),
            stopped_early: !finished,
            cancelled,
            adapter_dir: self.files.adapter(),
        })
    }

    fn forward_loss(&self, mb: &MicroBatch, dropout: Option<&Dropout>) -> Result<crate::model::LossOut> {
        let inputs = Inputs::new(&mb.rows, &mb.segments, self.model.dtype(), self.model.device())?;
        let hidden = self.model.hidden(&inputs, Some(&self.adapter), dropout)?;
        self.model.loss(&hidden, &mb.positions, &mb.targets)
    }

    /// Mean token loss and top-1 token accuracy on the validation set (no dropout).
    ///
    /// # Errors
    /// Tensor errors.
    pub fn evaluate(&self) -> Result<(f64, f64)> {
        let Some(valid) = &self.valid else { return Ok((f64::NAN, f64::NAN)) };
        let refs: Vec<&Tokens> = valid.examples.iter().collect();
        let mut sum = 0.0;
        let (mut n, mut correct) = (0usize, 0usize);
        for mb in micro_batches(&refs, self.settings.micro_batch_size, self.pad, false, self.settings.max_seq_len) {
            let out = self.forward_loss(&mb, None)?;
            sum += f64::from(out_scalar(&out.sum.detach())?);
            n += out.tokens;
            correct += out.correct;
        }
        Ok((sum / n.max(1) as f64, correct as f64 / n.max(1) as f64))
    }

    fn save_checkpoint(
        &self,
        step: usize,
        opt: &AdamW,
        names: &[String],
        fingerprint: &str,
        elapsed: f64,
        metrics: CheckpointMetrics,
    ) -> Result<PathBuf> {
        let root = self.files.checkpoints();
        let final_dir = root.join(format!("step-{step:06}"));
        let tmp = root.join(format!(".tmp-step-{step:06}"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(TrainError::io(&tmp))?;
        }
        self.adapter.save_peft(&tmp, self.base_name())?;
        let opt_path = tmp.join("optimizer.safetensors");
        let state: HashMap<String, Tensor> =
            opt.state(names).into_iter().map(|(k, v)| Ok((k, v.to_dtype(DType::F32)?))).collect::<Result<_>>()?;
        candle_core::safetensors::save(&state, &opt_path).map_err(|e| TrainError::model(&opt_path, e.to_string()))?;
        let state = CheckpointState {
            step: step as u64,
            optimizer_steps: opt.steps() as u64,
            elapsed_s: elapsed,
            fingerprint: fingerprint.to_string(),
            time: now_rfc3339(),
            metrics,
        };
        crate::base::write_json(&tmp.join("state.json"), &state)?;
        for f in ["adapter_model.safetensors", "optimizer.safetensors", "state.json", "adapter_config.json"] {
            let p = tmp.join(f);
            std::fs::File::open(&p).and_then(|f| f.sync_all()).map_err(TrainError::io(&p))?;
        }
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir).map_err(TrainError::io(&final_dir))?;
        }
        std::fs::rename(&tmp, &final_dir).map_err(TrainError::io(&final_dir))?;
        // Keep the newest K.
        let all = self.files.checkpoint_dirs();
        let excess = all.len().saturating_sub(self.settings.keep_checkpoints);
        for (_, p) in all.into_iter().take(excess) {
            std::fs::remove_dir_all(&p).map_err(TrainError::io(&p))?;
        }
        Ok(final_dir)
    }
}

/// The dtype of trainable weights and optimizer state: at least f32, whatever the compute dtype.
fn master_dtype(compute: DType) -> DType {
    if compute == DType::F64 { DType::F64 } else { DType::F32 }
}

fn out_scalar(t: &Tensor) -> Result<f32> {
    Ok(t.to_dtype(DType::F32)?.to_scalar::<f32>()?)
}

fn read_state(dir: &Path) -> Result<CheckpointState> {
    let p = dir.join("state.json");
    let text = std::fs::read_to_string(&p).map_err(TrainError::io(&p))?;
    serde_json::from_str(&text).map_err(|e| TrainError::parse(&p, e))
}

fn load_st(path: &Path, device: &candle_core::Device) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, device)
        .map_err(|e| TrainError::Checkpoint { path: path.to_path_buf(), message: e.to_string() })
}
