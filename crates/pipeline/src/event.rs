//! What a run reports as it goes: typed events for a sink the caller gives (the CLI draws
//! progress bars from them; a server stores them as job events).

use serde::{Deserialize, Serialize};

use crate::error::PipelineError;

/// A stage of the pipeline, in run order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Documents to chunks.
    Ingest,
    /// Chunks to a vector index.
    Index,
    /// Question/answer pairs.
    Qa,
    /// QA pairs to a training file.
    Export,
    /// RAFT records.
    Raft,
    /// LoRA fine-tuning.
    Train,
    /// Scores and the report.
    Eval,
}

impl Stage {
    /// Every stage, in run order.
    pub const ALL: [Self; 7] = [Self::Ingest, Self::Index, Self::Qa, Self::Export, Self::Raft, Self::Train, Self::Eval];

    /// The stage's name (`ingest`, ..., the config section).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::Index => "index",
            Self::Qa => "qa",
            Self::Export => "export",
            Self::Raft => "raft",
            Self::Train => "train",
            Self::Eval => "eval",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Stage {
    type Err = PipelineError;
    fn from_str(s: &str) -> Result<Self, PipelineError> {
        Self::ALL.into_iter().find(|x| x.name() == s).ok_or_else(|| PipelineError::Config {
            origin: "stage".into(),
            reason: format!(
                "{s:?} is not a stage ({})",
                Self::ALL.iter().map(|x| x.name()).collect::<Vec<_>>().join(", ")
            ),
        })
    }
}

/// How a stage starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartMode {
    /// From scratch (its old outputs removed).
    Fresh,
    /// Continuing an interrupted run with the same fingerprint.
    Resume,
}

/// Why a stage did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SkipReason {
    /// Same fingerprint, outputs as recorded.
    Unchanged,
    /// Turned off in the settings.
    Disabled,
}

/// How much a message matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// For the record.
    Info,
    /// Something was skipped or rejected; the run goes on.
    Warn,
}

/// One thing that happened during a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A stage starts.
    Started {
        /// The stage.
        stage: Stage,
        /// Fresh or resumed.
        mode: StartMode,
    },
    /// A stage does not run.
    Skipped {
        /// The stage.
        stage: Stage,
        /// Why.
        reason: SkipReason,
    },
    /// Units of work done so far.
    Progress {
        /// The stage.
        stage: Stage,
        /// Units done (files, chunks, questions, steps, answers).
        done: u64,
        /// Units in all (0 while unknown).
        total: u64,
        /// What a unit is.
        unit: String,
        /// A short status line (kept / rejected counts, loss, tokens/s).
        message: String,
    },
    /// Something worth telling: a skipped input line, a remote endpoint, a note.
    Message {
        /// The stage.
        stage: Stage,
        /// How much it matters.
        level: Level,
        /// The text.
        text: String,
    },
    /// A stage finished.
    Finished {
        /// The stage.
        stage: Stage,
        /// Wall time.
        seconds: f64,
        /// What it did, a line each (counts, files written).
        summary: Vec<String>,
    },
    /// A stage was cancelled; its finished work is kept and a rerun resumes it.
    Cancelled {
        /// The stage.
        stage: Stage,
    },
    /// A stage failed.
    Failed {
        /// The stage.
        stage: Stage,
        /// The error, with its causes.
        error: String,
    },
}

impl Event {
    /// The stage the event is about.
    #[must_use]
    pub fn stage(&self) -> Stage {
        match self {
            Self::Started { stage, .. }
            | Self::Skipped { stage, .. }
            | Self::Progress { stage, .. }
            | Self::Message { stage, .. }
            | Self::Finished { stage, .. }
            | Self::Cancelled { stage }
            | Self::Failed { stage, .. } => *stage,
        }
    }
}
