//! Embedder backends: USE-m3 on ONNX Runtime through ort and BERT-style models on ONNX Runtime
//! through fastembed (both with the `fastembed` feature, default), and BERT-style models on
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
#[cfg(feature = "fastembed")]
mod use_m3;
#[cfg(not(feature = "fastembed"))]
mod use_m3_disabled;

#[cfg(feature = "candle")]
pub use candle::CandleEmbedder;
#[cfg(not(feature = "candle"))]
pub use candle_disabled::CandleEmbedder;
#[cfg(feature = "fastembed")]
pub use onnx::OnnxEmbedder;
#[cfg(not(feature = "fastembed"))]
pub use onnx_disabled::OnnxEmbedder;
#[cfg(feature = "fastembed")]
pub use use_m3::UseM3Embedder;
#[cfg(not(feature = "fastembed"))]
pub use use_m3_disabled::UseM3Embedder;

/// The folder of all-MiniLM-L6-v2 (English; for [`OnnxEmbedder`] and [`CandleEmbedder`]) under
/// [`docraft_core::models_dir`].
pub const MINILM_DIR: &str = "all-minilm-l6-v2";
/// The folder of USE-m3 (multilingual; for [`UseM3Embedder`]) under [`docraft_core::models_dir`].
pub const USE_M3_DIR: &str = "use-m3";

/// Where `scripts/setup.sh` puts the default embedding model, the multilingual USE-m3:
/// `$DOCRAFT_MODELS/use-m3`, or `~/.cache/docraft/models/use-m3` when `DOCRAFT_MODELS` is not
/// set. The one place the default model is named (the pipeline's default backend runs it).
/// Chosen by measurement (docs/BENCHMARKS.md, "Retrieval"): with hybrid retrieval it finds
/// Spanish passages far better than all-MiniLM-L6-v2 (MRR 0.56 against 0.41) at the same
/// English recall@5, and embeds about 8x faster on CPU.
#[must_use]
pub fn default_model_dir() -> PathBuf {
    use_m3_model_dir()
}

/// Where `scripts/setup.sh` puts all-MiniLM-L6-v2, the model of the `onnx` and `candle`
/// backends when no directory is given: `$DOCRAFT_MODELS/all-minilm-l6-v2`.
#[must_use]
pub fn minilm_model_dir() -> PathBuf {
    docraft_core::models_dir().join(MINILM_DIR)
}

/// Where `scripts/setup.sh` puts USE-m3, the model of the `use-m3` backend when no directory
/// is given: `$DOCRAFT_MODELS/use-m3`.
#[must_use]
pub fn use_m3_model_dir() -> PathBuf {
    docraft_core::models_dir().join(USE_M3_DIR)
}

/// What `config.json` of a USE-m3 directory names its model (`scripts/use_m3/convert.py`).
pub(crate) const USE_M3_MODEL_NAME: &str = "universal-sentence-encoder-multilingual-v3";

/// Whether `dir` holds USE-m3 as `scripts/setup.sh` writes it: its `config.json` names the model.
pub(crate) fn is_use_m3_dir(dir: &Path) -> bool {
    std::fs::read(dir.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|c| c["model"] == USE_M3_MODEL_NAME)
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
        return Err(model_err(
            dir,
            "no such directory (scripts/setup.sh fetches the embedding models: USE-m3 and all-MiniLM-L6-v2)",
        ));
    }
    let missing: Vec<&str> = files.iter().copied().filter(|f| !dir.join(f).is_file()).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(model_err(
            dir,
            format!("incomplete model directory, missing {} (run scripts/setup.sh)", missing.join(", ")),
        ))
    }
}
