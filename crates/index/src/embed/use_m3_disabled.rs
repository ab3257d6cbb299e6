use std::path::Path;

use docraft_core::{EmbedError, Embedder};

use super::EmbedOptions;

fn not_compiled() -> EmbedError {
    EmbedError::NotCompiled { backend: "USE-m3 (ONNX Runtime)", feature: "fastembed" }
}

/// The USE-m3 embedder, compiled out: every call says how to get it back.
#[derive(Debug)]
pub struct UseM3Embedder {
    _private: (),
}

impl UseM3Embedder {
    /// How the ids of this backend's models begin (`use-m3:DIR:...`): an index records the id
    /// of the model that built it, so this tells which backend reads it.
    pub const ID_PREFIX: &'static str = "use-m3:";

    /// Whether `dir` holds USE-m3 as `scripts/setup.sh` writes it (its `config.json` names the
    /// model), so that a directory tells which backend reads it.
    #[must_use]
    pub fn holds_model(dir: &Path) -> bool {
        super::is_use_m3_dir(dir)
    }

    /// Always fails: this build has no `fastembed` feature.
    ///
    /// # Errors
    /// [`EmbedError::NotCompiled`].
    pub fn from_dir(_dir: impl AsRef<Path>, _options: EmbedOptions) -> Result<Self, EmbedError> {
        Err(not_compiled())
    }

    /// Always fails: this build has no `fastembed` feature.
    ///
    /// # Errors
    /// [`EmbedError::NotCompiled`].
    pub fn token_ids(&self, _text: &str) -> Result<Vec<u32>, EmbedError> {
        Err(not_compiled())
    }
}

impl Embedder for UseM3Embedder {
    fn embed(&self, _texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Err(not_compiled())
    }

    fn model_id(&self) -> String {
        "use-m3:not-compiled".to_string()
    }
}
