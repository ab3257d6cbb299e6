//! The one error type of the RAFT builder.

/// What can go wrong while building RAFT records. Problems with a single record (bad model
/// output, a quote not in the oracle) are not errors: they become rejected records.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RaftError {
    /// Reading or writing a JSONL file failed (the message names the file).
    #[error(transparent)]
    Core(#[from] docraft_core::Error),
    /// A setting is out of range.
    #[error("setting {name}: {reason}")]
    Setting {
        /// The setting.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Searching for hard distractors failed.
    #[error("hard distractors: {0}")]
    Retrieve(#[from] docraft_core::RetrieveError),
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A prompt template could not be rendered (names the template and the variable).
    #[error(transparent)]
    Prompt(#[from] docraft_core::prompt::PromptError),
}

/// Result with [`RaftError`].
pub type Result<T, E = RaftError> = std::result::Result<T, E>;

pub(crate) fn setting(name: &'static str, reason: impl Into<String>) -> RaftError {
    RaftError::Setting { name, reason: reason.into() }
}
