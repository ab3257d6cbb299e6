//! The pipeline's error: what failed, naming the stage, file, section or key.

use std::path::{Path, PathBuf};

use crate::Stage;

/// Why a pipeline run or a stage failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// A config file that cannot be used: names the file and what is wrong.
    #[error("{origin}: {reason}")]
    Config {
        /// The file (or "settings" for values built in code).
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// A setting out of range: names the section and key.
    #[error("[{section}] {key}: {reason}")]
    Setting {
        /// The section (`raft`, `train`, ...).
        section: String,
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A file or directory that cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A run directory whose manifest cannot be read.
    #[error("{}: not a docraft manifest: {reason}", path.display())]
    Manifest {
        /// manifest.json.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A stage needs something the settings or earlier stages do not give.
    #[error("[{stage}] {reason}")]
    Needs {
        /// The stage.
        stage: Stage,
        /// What is missing.
        reason: String,
    },
    /// The caller cancelled the run; finished work is kept and the same run resumes.
    #[error("cancelled during {stage}; run again to resume")]
    Cancelled {
        /// The stage that was running.
        stage: Stage,
    },
    /// Reading and chunking documents failed.
    #[error(transparent)]
    Ingest(#[from] docraft_ingest::Error),
    /// Embedding or the vector index failed.
    #[error(transparent)]
    Index(#[from] docraft_index::IndexError),
    /// Embedding failed.
    #[error(transparent)]
    Embed(#[from] docraft_core::EmbedError),
    /// Loading a generator failed.
    #[error(transparent)]
    Llm(#[from] docraft_llm::LlmError),
    /// Question/answer generation, export or validation failed.
    #[error(transparent)]
    QaGen(#[from] docraft_qa_gen::QaGenError),
    /// Building RAFT records failed.
    #[error(transparent)]
    Raft(#[from] docraft_raft::RaftError),
    /// Training failed.
    #[error(transparent)]
    Train(#[from] docraft_train::TrainError),
    /// Evaluation failed.
    #[error(transparent)]
    Eval(#[from] docraft_eval::EvalError),
    /// Shared records or JSONL io failed.
    #[error(transparent)]
    Core(#[from] docraft_core::Error),
    /// A search failed (embedding the query or reading the store).
    #[error(transparent)]
    Retrieve(#[from] docraft_core::RetrieveError),
}

impl PipelineError {
    /// An io error on `path`.
    #[must_use]
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io { path: path.to_path_buf(), source }
    }

    /// A bad setting.
    #[must_use]
    pub fn setting(section: &str, key: &str, reason: impl Into<String>) -> Self {
        Self::Setting { section: section.into(), key: key.into(), reason: reason.into() }
    }

    /// Whether this is a cancellation (not a failure).
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Self::Cancelled { .. })
    }
}

/// The pipeline's result.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;
