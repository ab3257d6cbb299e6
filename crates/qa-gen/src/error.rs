use std::path::PathBuf;

/// Errors of question/answer generation, export and validation. Each names the file or
/// setting that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QaGenError {
    /// Reading or writing a JSONL file failed (names the file and line).
    #[error(transparent)]
    Core(#[from] docraft_core::Error),
    /// Reading or writing another file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A model file (a tokenizer) could not be loaded.
    #[error("model {path}: {reason}")]
    Model {
        /// The model file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A setting is out of range or inconsistent.
    #[error("invalid setting {name}: {reason}")]
    Setting {
        /// The setting.
        name: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// The embedder used for near-duplicate detection failed.
    #[error("near-duplicate check: {0}")]
    Embed(#[from] docraft_core::EmbedError),
    /// An input record cannot be exported or validated.
    #[error("{path}:{line}: {reason}")]
    Record {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A prompt template could not be rendered (names the template and the variable).
    #[error(transparent)]
    Prompt(#[from] docraft_core::prompt::PromptError),
}

impl QaGenError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}

/// Result with [`QaGenError`].
pub type Result<T, E = QaGenError> = std::result::Result<T, E>;
