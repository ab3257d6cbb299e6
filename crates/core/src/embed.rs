//! The embedding interface every stage uses to turn text into vectors.

use std::sync::Arc;

/// Why an embedding failed. Each variant says what the caller can do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbedError {
    /// The model could not be loaded (missing or unreadable files): names the path.
    #[error("embedding model {path}: {reason}")]
    Model {
        /// The model directory or file.
        path: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The runtime (e.g. ONNX Runtime) is missing or failed.
    #[error("embedding runtime: {0}")]
    Runtime(String),
    /// The backend was compiled out of this build.
    #[error("the {backend} embedder is not compiled in: rebuild with `--features {feature}`")]
    NotCompiled {
        /// The backend's name.
        backend: &'static str,
        /// The cargo feature that enables it.
        feature: &'static str,
    },
}

/// Turns texts into vectors; the order of the output follows the input. Two required methods:
/// the vectors, and the name of the model that makes them (indexes and caches are keyed by it,
/// so an embedder without an honest id would mix vectors of different models).
pub trait Embedder: Send + Sync {
    /// One vector per text, in input order.
    ///
    /// # Errors
    /// [`EmbedError`] when the model or runtime fails.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError>;

    /// A stable name of the model (for caches and index compatibility checks): two embedders
    /// with the same id must give the same vectors.
    fn model_id(&self) -> String;
}

impl<T: Embedder + ?Sized> Embedder for &T {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        (**self).embed(texts)
    }
    fn model_id(&self) -> String {
        (**self).model_id()
    }
}

impl<T: Embedder + ?Sized> Embedder for Box<T> {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        (**self).embed(texts)
    }
    fn model_id(&self) -> String {
        (**self).model_id()
    }
}

impl<T: Embedder + ?Sized> Embedder for Arc<T> {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        (**self).embed(texts)
    }
    fn model_id(&self) -> String {
        (**self).model_id()
    }
}
