//! Training settings: the documented ranges and defaults, an optional YAML/JSON file for the
//! advanced ones, validation with clear errors.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::lora::{LoraConfig, Target};
use crate::optim::Schedule;

/// Examples per optimizer step: a number, or `auto` (about 0.2% of the training set, 1 to 32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSize {
    /// Chosen from the dataset size.
    Auto,
    /// This many examples.
    Fixed(usize),
}

impl BatchSize {
    /// Parses `auto` or a number.
    ///
    /// # Errors
    /// [`TrainError::Setting`] otherwise.
    pub fn parse(s: &str) -> Result<Self> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        s.trim()
            .parse()
            .map(Self::Fixed)
            .map_err(|_| TrainError::setting("batch_size", format!("`{s}` is neither a number nor `auto`")))
    }

    /// The number for a training set of `examples`.
    #[must_use]
    pub fn resolve(self, examples: usize) -> usize {
        match self {
            Self::Fixed(n) => n,
            Self::Auto => (examples as f64 * 0.002).ceil().clamp(1.0, 32.0) as usize,
        }
    }
}

impl Serialize for BatchSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Self::Auto => s.serialize_str("auto"),
            Self::Fixed(n) => s.serialize_u64(*n as u64),
        }
    }
}

impl<'de> Deserialize<'de> for BatchSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(usize),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Self::Fixed(n)),
            Raw::S(s) => Self::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// Every training setting. Field names are the config file's keys and, with dashes, the CLI's flags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Passes over the training set, 1-10 (3).
    pub epochs: usize,
    /// Peak learning rate, 1e-6 to 1e-3 (5e-5).
    pub learning_rate: f64,
    /// Examples per optimizer step, 1-256 or `auto` (32).
    pub batch_size: BatchSize,
    /// LoRA rank, 4-64 (16).
    pub lora_rank: usize,
    /// LoRA alpha, 8-64 (32).
    pub lora_alpha: f64,
    /// Dropout on the LoRA path, 0-0.5 (0.1).
    pub lora_dropout: f64,
    /// Adapted projections (all seven by default).
    pub target_modules: Vec<String>,
    /// Scale by alpha/sqrt(r) instead of alpha/r.
    pub use_rslora: bool,
    /// Examples (or packed rows) per forward pass; the batch is accumulated over several (4).
    pub micro_batch_size: usize,
    /// Longest sequence in tokens; longer examples are cut and counted (1024).
    pub max_seq_len: usize,
    /// Pack several examples into each row (with attention kept inside each example).
    pub packing: bool,
    /// Linear warmup steps; default 5% of the steps.
    pub warmup_steps: Option<usize>,
    /// Decay after warmup: cosine, linear or constant.
    pub scheduler: Schedule,
    /// AdamW decoupled weight decay, 0-1 (0.01).
    pub weight_decay: f64,
    /// AdamW beta1 (0.9).
    pub adam_beta1: f64,
    /// AdamW beta2 (0.999).
    pub adam_beta2: f64,
    /// AdamW epsilon (1e-8).
    pub adam_epsilon: f64,
    /// Clip gradients to this global L2 norm; 0 turns clipping off (1.0).
    pub max_grad_norm: f64,
    /// Evaluate on the validation set every N steps (and at the end); 0: only at the end (100).
    pub eval_every: usize,
    /// Write a checkpoint every N steps (500), and always at the end.
    pub checkpoint_every: usize,
    /// Checkpoints to keep (3).
    pub keep_checkpoints: usize,
    /// Seed of every random choice: adapter initialization, shuffling, dropout (42).
    pub seed: u64,
    /// Stop after this many optimizer steps (for smoke runs and benchmarks).
    pub max_steps: Option<usize>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            epochs: 3,
            learning_rate: 5e-5,
            batch_size: BatchSize::Fixed(32),
            lora_rank: 16,
            lora_alpha: 32.0,
            lora_dropout: 0.1,
            target_modules: Target::ALL.iter().map(|t| t.module().to_string()).collect(),
            use_rslora: false,
            micro_batch_size: 4,
            max_seq_len: 1024,
            packing: false,
            warmup_steps: None,
            scheduler: Schedule::Cosine,
            weight_decay: 0.01,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            max_grad_norm: 1.0,
            eval_every: 100,
            checkpoint_every: 500,
            keep_checkpoints: 3,
            seed: 42,
            max_steps: None,
        }
    }
}

fn range<T: PartialOrd + std::fmt::Display + Copy>(name: &str, v: T, lo: T, hi: T) -> Result<()> {
    if !(lo..=hi).contains(&v) {
        return Err(TrainError::setting(name, format!("{v} is outside {lo}..={hi}")));
    }
    Ok(())
}

impl Settings {
    /// Reads a YAML or JSON file of settings (unknown keys are errors, so typos do not pass silently).
    ///
    /// # Errors
    /// [`TrainError::Io`] / [`TrainError::Parse`] naming the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(TrainError::io(path))?;
        // YAML is a superset of JSON, so one parser reads both.
        serde_yaml_ng::from_str(&text).map_err(|e| TrainError::parse(path, e))
    }

    /// Checks every setting against its range.
    ///
    /// # Errors
    /// [`TrainError::Setting`] naming the first bad setting and its allowed range.
    pub fn validate(&self) -> Result<()> {
        range("epochs", self.epochs, 1, 10)?;
        range("learning_rate", self.learning_rate, 1e-6, 1e-3)?;
        if let BatchSize::Fixed(n) = self.batch_size {
            range("batch_size", n, 1, 256)?;
        }
        range("lora_rank", self.lora_rank, 4, 64)?;
        range("lora_alpha", self.lora_alpha, 8.0, 64.0)?;
        range("lora_dropout", self.lora_dropout, 0.0, 0.5)?;
        range("micro_batch_size", self.micro_batch_size, 1, 256)?;
        range("max_seq_len", self.max_seq_len, 8, 131_072)?;
        range("weight_decay", self.weight_decay, 0.0, 1.0)?;
        range("adam_beta1", self.adam_beta1, 0.0, 0.999_999)?;
        range("adam_beta2", self.adam_beta2, 0.0, 0.999_999_9)?;
        range("adam_epsilon", self.adam_epsilon, 1e-12, 1e-3)?;
        range("max_grad_norm", self.max_grad_norm, 0.0, 1e6)?;
        range("checkpoint_every", self.checkpoint_every, 1, usize::MAX)?;
        range("keep_checkpoints", self.keep_checkpoints, 1, 1000)?;
        if self.max_steps == Some(0) {
            return Err(TrainError::setting("max_steps", "must be at least 1"));
        }
        if self.target_modules.is_empty() {
            return Err(TrainError::setting("target_modules", "name at least one of q, k, v, o, gate, up, down"));
        }
        self.targets()?;
        Ok(())
    }

    /// The adapted projections, parsed and deduplicated.
    ///
    /// # Errors
    /// [`TrainError::Setting`] for an unknown module name.
    pub fn targets(&self) -> Result<Vec<Target>> {
        let mut out: Vec<Target> = self.target_modules.iter().map(|m| Target::parse(m)).collect::<Result<_>>()?;
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The adapter settings.
    ///
    /// # Errors
    /// As [`Settings::targets`].
    pub fn lora(&self) -> Result<LoraConfig> {
        Ok(LoraConfig {
            rank: self.lora_rank,
            alpha: self.lora_alpha,
            dropout: self.lora_dropout,
            targets: self.targets()?,
            use_rslora: self.use_rslora,
        })
    }
}
