use docraft_core::{GenError, GenRequest, GenResponse, Generator};

use super::{LlamaConfig, LlamaStats};
use crate::{LlmError, Result};

/// The llama.cpp backend, compiled out of this build: loading fails with a typed error.
#[derive(Debug)]
pub struct LlamaGenerator {
    _private: (),
}

impl LlamaGenerator {
    /// Always fails: rebuild with the `llama` feature.
    ///
    /// # Errors
    /// [`LlmError::NotCompiled`].
    pub fn load(_config: LlamaConfig) -> Result<Self> {
        Err(LlmError::NotCompiled { backend: "llama.cpp", feature: "llama" })
    }

    /// Nothing was generated: all zero.
    #[must_use]
    pub fn stats(&self) -> LlamaStats {
        LlamaStats::default()
    }
}

impl Generator for LlamaGenerator {
    fn generate_batch(&self, requests: &[GenRequest]) -> Vec<Result<GenResponse, GenError>> {
        requests.iter().map(|_| Err(GenError::NotCompiled { backend: "llama.cpp", feature: "llama" })).collect()
    }

    fn model_id(&self) -> String {
        "llama.cpp:not-compiled".to_string()
    }
}
