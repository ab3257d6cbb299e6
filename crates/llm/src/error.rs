use std::path::PathBuf;

/// Errors of loading a model or connecting to an endpoint. Each names the model file,
/// endpoint URL or setting that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LlmError {
    /// Opening or writing a file (the request log) failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The model file could not be loaded.
    #[error("model {path}: {reason}")]
    Model {
        /// The model file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A setting is out of range, missing or inconsistent.
    #[error("invalid setting {name}: {reason}")]
    Setting {
        /// The setting (the field of [`GeneratorSettings`](crate::GeneratorSettings), which is
        /// also the CLI flag with `-` for `_`).
        name: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// A non-loopback endpoint was given without allowing remote endpoints.
    #[error(
        "refusing to send documents to {url}: it is not on this machine. Pass --allow-remote \
         (allow_remote) to send chunks there; every request will be logged"
    )]
    RemoteRefused {
        /// The endpoint.
        url: String,
    },
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
}

impl LlmError {
    // Only the openai backend writes a file (its request log).
    #[cfg_attr(not(feature = "openai"), allow(dead_code))]
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    pub(crate) fn setting(name: &'static str, reason: impl Into<String>) -> Self {
        Self::Setting { name, reason: reason.into() }
    }
}

/// Result with [`LlmError`].
pub type Result<T, E = LlmError> = std::result::Result<T, E>;
