use std::path::Path;

use docraft_core::{EmbedError, Embedder};

use super::EmbedOptions;

fn not_compiled() -> EmbedError {
    EmbedError::NotCompiled { backend: "candle", feature: "candle" }
}

/// The candle embedder, compiled out: every call says how to get it back.
#[derive(Debug)]
pub struct CandleEmbedder {
    _private: (),
}

impl CandleEmbedder {
    /// How the ids of this backend's models begin (`candle:MODEL:...`): an index records the id
    /// of the model that built it, so this tells which backend reads it.
    pub const ID_PREFIX: &'static str = "candle:";

    /// Always fails: this build has no `candle` feature.
    ///
    /// # Errors
    /// [`EmbedError::NotCompiled`].
    pub fn from_dir(_dir: impl AsRef<Path>, _options: EmbedOptions) -> Result<Self, EmbedError> {
        Err(not_compiled())
    }
}

impl Embedder for CandleEmbedder {
    fn embed(&self, _texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Err(not_compiled())
    }

    fn model_id(&self) -> String {
        "candle:not-compiled".to_string()
    }
}
