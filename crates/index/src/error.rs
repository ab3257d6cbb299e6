//! The index crate's error type.

use std::path::PathBuf;

use docraft_core::EmbedError;

/// Why an index operation failed. Each variant names the directory, file or input at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// The embedder failed (model or runtime).
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// Reading or writing records failed (chunks file, chunk table).
    #[error(transparent)]
    Records(#[from] docraft_core::Error),
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The directory is not a docraft index, or its files do not agree with each other.
    #[error("{path}: not a usable docraft index: {reason}")]
    Corrupt {
        /// The index directory or the file in it.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The index was written by another version of the on-disk format.
    #[error(
        "{path}: index format version {found}, this docraft reads version {expected}: rebuild it with `docraft index build`"
    )]
    Version {
        /// The index directory.
        path: PathBuf,
        /// The version found.
        found: u32,
        /// The version this build reads and writes.
        expected: u32,
    },
    /// The query's embedder is not the model the index was built with.
    #[error(
        "the index was built with embedding model {index_model}, the query embedder is {embedder_model}: \
         use the same model (--model) or rebuild the index"
    )]
    ModelMismatch {
        /// Model id recorded in the index.
        index_model: String,
        /// Model id of the embedder in hand.
        embedder_model: String,
    },
    /// A search on an index without live chunks.
    #[error("the index is empty: build it from a chunks file first (`docraft index build chunks.jsonl -o DIR`)")]
    Empty,
    /// A vector of the wrong length, or with NaN/infinite/all-zero values.
    #[error("{what}: {reason}")]
    BadVector {
        /// Which vector (chunk id or "query").
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A filter expression that cannot be parsed.
    #[error(transparent)]
    Filter(#[from] docraft_core::FilterError),
    /// PostgreSQL failed or refused (connection, schema, query), or the store URL is not
    /// usable: names the store (its URL without the password).
    #[error("{store}: {reason}")]
    Postgres {
        /// The store.
        store: String,
        /// What went wrong.
        reason: String,
    },
    /// A backend compiled out of this build.
    #[error("{what} is not compiled in: rebuild docraft-index with `--features {feature}`")]
    NotCompiled {
        /// The backend.
        what: &'static str,
        /// The cargo feature that enables it.
        feature: &'static str,
    },
    /// A setting out of range.
    #[error("{setting}: {reason}")]
    Setting {
        /// The setting.
        setting: &'static str,
        /// The accepted range.
        reason: String,
    },
    /// The run was cancelled (through its `CancelToken`) before it finished; the index is
    /// as it was before the call.
    #[error("cancelled after embedding {embedded} of {total} texts; the index is unchanged")]
    Cancelled {
        /// Texts embedded before the cancellation (their vectors are dropped).
        embedded: usize,
        /// Texts there were to embed.
        total: usize,
    },
    /// The graph library failed (caught panic or error), with the operation.
    #[error("{path}: HNSW graph: {reason}")]
    Graph {
        /// The index directory (or "memory").
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}

impl IndexError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Corrupt { path: path.into(), reason: reason.into() }
    }
}

/// Result with [`IndexError`].
pub type Result<T, E = IndexError> = std::result::Result<T, E>;

/// The message of a caught panic (from a dependency that panics instead of returning errors).
#[cfg_attr(not(feature = "fastembed"), allow(dead_code))]
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
}
