use std::path::PathBuf;

/// Errors of question/answer generation, export and validation. Each names the file,
/// setting or endpoint that failed.
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
    /// The model could not be loaded.
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
    /// A non-loopback endpoint was given without allowing remote endpoints.
    #[error(
        "refusing to send documents to {url}: it is not on this machine. Pass --allow-remote \
         (GeneratorConfig::allow_remote) to send chunks there; every request will be logged"
    )]
    RemoteRefused {
        /// The endpoint.
        url: String,
    },
    /// The embedder used for near-duplicate detection failed.
    #[error("near-duplicate check: {0}")]
    Embed(#[from] docraft_core::EmbedError),
    /// A backend failed as a whole (not one request).
    #[error("{backend}: {reason}")]
    Backend {
        /// The backend.
        backend: &'static str,
        /// What failed.
        reason: String,
    },
    /// The backend was compiled out of this build.
    #[error("the {backend} generator is not compiled in: rebuild with `--features {feature}`")]
    NotCompiled {
        /// The backend's name.
        backend: &'static str,
        /// The cargo feature that enables it.
        feature: &'static str,
    },
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
