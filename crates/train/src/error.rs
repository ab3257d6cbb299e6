//! The one error type of this crate.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

/// Everything that can go wrong while loading a model, reading data, training or saving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A JSON (or YAML) file did not parse or did not have the expected fields.
    #[error("{}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// A model file (GGUF, safetensors, config.json) is missing something or is not supported.
    #[error("{}: {message}", path.display())]
    Model {
        /// The model file or directory.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// A training example could not be used; the run goes on with the others.
    #[error("{}:{line}: {message}", path.display())]
    Example {
        /// The JSONL file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        message: String,
    },
    /// A setting is out of range or inconsistent.
    #[error("invalid setting `{name}`: {message}")]
    Setting {
        /// The setting, as spelled in the config file and on the command line.
        name: String,
        /// Why it was rejected.
        message: String,
    },
    /// A chat template did not compile or render.
    #[error("chat template: {0}")]
    Template(String),
    /// The tokenizer could not be built or failed on a text.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A checkpoint is missing, torn or was written with other settings.
    #[error("{}: {message}", path.display())]
    Checkpoint {
        /// The checkpoint directory.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// A JSONL file (metrics, events) could not be written or read back.
    #[error(transparent)]
    Jsonl(#[from] docraft_core::Error),
    /// A tensor operation failed (shapes, dtypes, device).
    #[error("tensor: {0}")]
    Candle(#[from] candle_core::Error),
    /// Training stopped early because the loss became NaN or infinite.
    #[error("loss is not finite at step {step}; lower the learning rate")]
    Diverged {
        /// The optimizer step.
        step: usize,
    },
    /// A device was asked for that this build does not include.
    #[error("{0} support is not compiled in; rebuild with `--features {0}`")]
    NotCompiled(&'static str),
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }

    pub(crate) fn model(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Model { path: path.into(), message: message.into() }
    }

    pub(crate) fn parse(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        Self::Parse { path: path.into(), message: message.to_string() }
    }

    pub(crate) fn setting(name: &str, message: impl Into<String>) -> Self {
        Self::Setting { name: name.to_string(), message: message.into() }
    }
}
