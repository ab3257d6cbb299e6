use docraft_core::{GenError, GenRequest, GenResponse, Generator};

use super::OpenAiConfig;
use crate::{QaGenError, Result};

/// The OpenAI-compatible backend, compiled out of this build: creating it fails with a
/// typed error.
#[derive(Debug)]
pub struct OpenAiGenerator {
    _private: (),
}

impl OpenAiGenerator {
    /// Always fails: rebuild with the `openai` feature.
    ///
    /// # Errors
    /// [`QaGenError::NotCompiled`].
    pub fn new(_config: OpenAiConfig) -> Result<Self> {
        Err(QaGenError::NotCompiled { backend: "openai", feature: "openai" })
    }
}

impl Generator for OpenAiGenerator {
    fn generate_batch(&self, requests: &[GenRequest]) -> Vec<Result<GenResponse, GenError>> {
        requests.iter().map(|_| Err(GenError::NotCompiled { backend: "openai", feature: "openai" })).collect()
    }
}
