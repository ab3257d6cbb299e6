use std::path::Path;

use docraft_core::{EmbedError, Embedder};

use super::EmbedOptions;

/// The ONNX embedder, compiled out: every call says how to get it back.
#[derive(Debug)]
pub struct OnnxEmbedder {
    _private: (),
}

impl OnnxEmbedder {
    /// Always fails: this build has no `fastembed` feature.
    ///
    /// # Errors
    /// [`EmbedError::NotCompiled`].
    pub fn from_dir(_dir: impl AsRef<Path>, _options: EmbedOptions) -> Result<Self, EmbedError> {
        Err(EmbedError::NotCompiled { backend: "ONNX (fastembed)", feature: "fastembed" })
    }
}

impl Embedder for OnnxEmbedder {
    fn embed(&self, _texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Err(EmbedError::NotCompiled { backend: "ONNX (fastembed)", feature: "fastembed" })
    }

    fn model_id(&self) -> String {
        "onnx:not-compiled".to_string()
    }
}
