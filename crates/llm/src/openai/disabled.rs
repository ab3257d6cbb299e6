use docraft_core::{GenError, GenRequest, GenResponse, Generator, Usage};

use super::OpenAiConfig;
use crate::{LlmError, Result};

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
    /// [`LlmError::NotCompiled`].
    pub fn new(_config: OpenAiConfig) -> Result<Self> {
        Err(LlmError::NotCompiled { backend: "openai", feature: "openai" })
    }

    /// Always zero: no such generator can be made.
    #[must_use]
    pub fn usage(&self) -> Usage {
        Usage::default()
    }

    /// Never true: no such generator can be made.
    #[must_use]
    pub fn is_remote(&self) -> bool {
        false
    }
}

impl Generator for OpenAiGenerator {
    fn generate_batch(&self, requests: &[GenRequest]) -> Vec<Result<GenResponse, GenError>> {
        requests.iter().map(|_| Err(GenError::NotCompiled { backend: "openai", feature: "openai" })).collect()
    }

    fn model_id(&self) -> String {
        "openai:not-compiled".to_string()
    }
}
