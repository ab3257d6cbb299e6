//! The docraft run engine: the whole pipeline from typed settings into one run directory.
//!
//! ```text
//! documents ─ ingest ─> chunks.jsonl ─ index ─> index/ ─┬─ qa ─> qa.jsonl ─ export ─> qa.train.jsonl
//!                                                       └─ raft ─> raft.*.jsonl
//!                                  train (LoRA) <─ the chat file of raft (or the export) ─> train/adapter/
//!                                  eval ─> report/ (retrieval, open-book QA base vs adapter, loss plots)
//! ```
//!
//! - [`Settings`] holds every stage's typed settings (the tables of `docraft.toml`); each
//!   `Default` is the stage crate's own, so the CLI, the config file and a Rust caller share
//!   one set of defaults.
//! - [`Pipeline::run`] runs the enabled stages, writing `manifest.json` with a fingerprint per
//!   stage (its settings and the sha256 of its inputs, models and prompts): an unchanged stage
//!   is skipped, an interrupted or cancelled one resumed, a changed one redone with every
//!   stage after it.
//! - Progress goes to a sink the caller gives as typed [`Event`]s (any closure
//!   `Fn(&Event) + Sync`); a [`CancelToken`](docraft_core::CancelToken) stops the run between
//!   units of work (a file, a chunk, a question, a training step), and the same run resumes.
//! - [`stage`] has each stage as one call from settings and explicit paths: what each
//!   `docraft` subcommand runs alone.
//!
//! ```no_run
//! use docraft_core::CancelToken;
//! use docraft_pipeline::{Event, Pipeline, Settings};
//!
//! # fn main() -> Result<(), docraft_pipeline::PipelineError> {
//! let mut settings = Settings::default();
//! settings.raft.limit = Some(8);
//! settings.train.settings.max_steps = Some(4);
//! let pipeline = Pipeline::new(settings, vec!["fixtures/docs".into()], "out/run");
//! let summary = pipeline.run(&|e: &Event| eprintln!("{e:?}"), &CancelToken::new())?;
//! println!("report: {:?}", summary.report);
//! # Ok(()) }
//! ```

mod error;
mod event;
pub mod manifest;
mod run;
pub mod settings;
pub mod stage;

pub use error::{PipelineError, Result};
pub use event::{Event, Level, SkipReason, Stage, StartMode};
pub use manifest::{Manifest, StageRecord, StageStatus};
pub use run::{Pipeline, RunLayout, RunSummary};
pub use settings::Settings;
