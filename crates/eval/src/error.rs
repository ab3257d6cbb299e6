//! The crate's error type.

use std::path::PathBuf;

/// What can go wrong in an evaluation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A JSONL file could not be read.
    #[error(transparent)]
    Jsonl(#[from] docraft_core::Error),
    /// The search failed.
    #[error(transparent)]
    Retrieve(#[from] docraft_core::RetrieveError),
    /// An input holds nothing to evaluate.
    #[error("{path}: {message}")]
    Empty {
        /// The file.
        path: PathBuf,
        /// What is missing.
        message: String,
    },
}

impl EvalError {
    /// An I/O error on `path`.
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io { path: path.to_path_buf(), source }
    }
}

/// Results of this crate.
pub type Result<T, E = EvalError> = std::result::Result<T, E>;
