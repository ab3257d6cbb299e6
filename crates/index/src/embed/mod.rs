//! Embedder backends.

#[cfg(feature = "fastembed")]
mod onnx;
#[cfg(not(feature = "fastembed"))]
mod onnx_disabled;

#[cfg(feature = "fastembed")]
pub use onnx::OnnxEmbedder;
#[cfg(not(feature = "fastembed"))]
pub use onnx_disabled::OnnxEmbedder;

/// Settings of the ONNX embedder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxOptions {
    /// Texts per model call (default 8). Texts are sorted by length first, so a batch holds
    /// texts of similar length and little padding.
    pub batch_size: usize,
    /// ONNX Runtime intra-op threads (default: all cores).
    pub threads: Option<usize>,
    /// Longest input in tokens; longer texts are truncated (default 256).
    pub max_tokens: usize,
}

impl Default for OnnxOptions {
    fn default() -> Self {
        Self { batch_size: 8, threads: None, max_tokens: 256 }
    }
}
