//! Embedder backends: ONNX Runtime through fastembed (`fastembed` feature, default) and
//! candle (`candle` feature). A backend compiled out keeps its type, whose constructor returns
//! [`docraft_core::EmbedError::NotCompiled`].

use std::path::{Path, PathBuf};

use docraft_core::EmbedError;

#[cfg(feature = "candle")]
mod candle;
#[cfg(not(feature = "candle"))]
mod candle_disabled;
#[cfg(feature = "fastembed")]
mod onnx;
#[cfg(not(feature = "fastembed"))]
mod onnx_disabled;

#[cfg(feature = "candle")]
pub use candle::CandleEmbedder;
#[cfg(not(feature = "candle"))]
pub use candle_disabled::CandleEmbedder;
#[cfg(feature = "fastembed")]
pub use onnx::OnnxEmbedder;
#[cfg(not(feature = "fastembed"))]
pub use onnx_disabled::OnnxEmbedder;

/// Where `scripts/setup.sh` puts the default embedding model: `$DOCRAFT_MODELS/all-minilm-l6-v2`,
/// or `~/.cache/docraft/models/all-minilm-l6-v2` when `DOCRAFT_MODELS` is not set.
#[must_use]
pub fn default_model_dir() -> PathBuf {
    docraft_core::models_dir().join("all-minilm-l6-v2")
}

/// Settings shared by the embedders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedOptions {
    /// Texts per model call (default 8). Texts are sorted by length first, so a batch holds
    /// texts of similar length and little padding.
    pub batch_size: usize,
    /// Intra-op threads (default: all cores).
    pub threads: Option<usize>,
    /// Longest input in tokens; longer texts are truncated (default 256).
    pub max_tokens: usize,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        Self { batch_size: 8, threads: None, max_tokens: 256 }
    }
}

/// Runs `run` over batches of texts of similar length and puts the vectors back in input
/// order: padding to the longest text of a batch is the classic slowdown of batched inference.
#[cfg_attr(not(any(feature = "fastembed", feature = "candle")), allow(dead_code))]
pub(crate) fn by_length(
    texts: &[&str],
    batch_size: usize,
    mut run: impl FnMut(&[&str]) -> Result<Vec<Vec<f32>>, EmbedError>,
) -> Result<Vec<Vec<f32>>, EmbedError> {
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| texts.get(i).map_or(0, |t| t.len()));
    let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
    for batch in order.chunks(batch_size.max(1)) {
        let batch_texts: Vec<&str> = batch.iter().filter_map(|&i| texts.get(i).copied()).collect();
        let vectors = run(&batch_texts)?;
        if vectors.len() != batch_texts.len() {
            return Err(EmbedError::Runtime(format!("{} vectors for {} texts", vectors.len(), batch_texts.len())));
        }
        for (&i, v) in batch.iter().zip(vectors) {
            if let Some(slot) = out.get_mut(i) {
                *slot = v;
            }
        }
    }
    Ok(out)
}

/// An [`EmbedError::Model`] for `path`.
#[cfg_attr(not(any(feature = "fastembed", feature = "candle")), allow(dead_code))]
pub(crate) fn model_err(path: &Path, reason: impl std::fmt::Display) -> EmbedError {
    EmbedError::Model { path: path.display().to_string(), reason: reason.to_string() }
}

/// Checks that `dir` is a directory holding every one of `files`; the error names what is
/// missing.
#[cfg_attr(not(any(feature = "fastembed", feature = "candle")), allow(dead_code))]
pub(crate) fn check_model_dir(dir: &Path, files: &[&str]) -> Result<(), EmbedError> {
    if !dir.is_dir() {
        return Err(model_err(dir, "no such directory (scripts/setup.sh fetches all-MiniLM-L6-v2)"));
    }
    let missing: Vec<&str> = files.iter().copied().filter(|f| !dir.join(f).is_file()).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(model_err(dir, format!("incomplete model directory, missing {}", missing.join(", "))))
    }
}
