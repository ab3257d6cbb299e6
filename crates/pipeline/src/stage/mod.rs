//! Each stage as one library call from typed settings and explicit paths: what `docraft run`
//! chains and what each `docraft` subcommand runs alone.
//!
//! A stage reports through a [`Ctx`]: progress and messages become [`Event`]s for the
//! caller's sink, and the cancellation token is checked between units of work.

pub mod eval;
pub mod index;
pub mod ingest;
pub mod qa;
pub mod raft;
pub mod train;

use docraft_core::{CancelToken, Progress};

use crate::event::{Event, Level, Stage};

/// A sink that drops every event.
pub fn ignore_events(_: &Event) {}

/// What a running stage reports to and is stopped by.
pub struct Ctx<'a> {
    stage: Stage,
    events: &'a dyn Progress<Event>,
    cancel: CancelToken,
}

impl<'a> Ctx<'a> {
    /// A context for `stage` reporting to `events`, stopped by `cancel`.
    #[must_use]
    pub fn new(stage: Stage, events: &'a dyn Progress<Event>, cancel: CancelToken) -> Self {
        Self { stage, events, cancel }
    }

    /// The stage.
    #[must_use]
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The cancellation token (stage crates check it between units of work).
    #[must_use]
    pub fn cancel(&self) -> &CancelToken {
        &self.cancel
    }

    /// Whether the caller asked to stop.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Sends an event.
    pub fn emit(&self, event: Event) {
        self.events.update(&event);
    }

    /// Reports progress.
    pub fn progress(&self, done: u64, total: u64, unit: &str, message: String) {
        self.emit(Event::Progress { stage: self.stage, done, total, unit: unit.to_string(), message });
    }

    /// Reports a message.
    pub fn message(&self, level: Level, text: impl Into<String>) {
        self.emit(Event::Message { stage: self.stage, level, text: text.into() });
    }

    /// A warning.
    pub fn warn(&self, text: impl Into<String>) {
        self.message(Level::Warn, text);
    }

    /// An information.
    pub fn info(&self, text: impl Into<String>) {
        self.message(Level::Info, text);
    }
}

/// Runs `work` on a thread pool of `threads` (the global one when unset), so a setting of
/// one stage never changes the threads of another in the same process.
pub(crate) fn with_threads<T: Send>(
    threads: Option<usize>,
    stage: Stage,
    work: impl FnOnce() -> crate::Result<T> + Send,
) -> crate::Result<T> {
    match threads {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build()
            .map_err(|e| crate::PipelineError::setting(stage.name(), "threads", e.to_string()))?
            .install(work),
        None => work(),
    }
}
