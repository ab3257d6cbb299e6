//! llama.cpp in process (llama-cpp-2): any GGUF model, several sequences decoded together.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[cfg(feature = "llama")]
mod enabled;
#[cfg(feature = "llama")]
pub use enabled::LlamaGenerator;

#[cfg(not(feature = "llama"))]
mod disabled;
#[cfg(not(feature = "llama"))]
pub use disabled::LlamaGenerator;

/// Settings of the llama.cpp backend. Build with [`LlamaConfig::new`] and the `with_*`
/// methods, which check their values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// The GGUF file.
    pub model: PathBuf,
    /// A chat template name llama.cpp knows (`chatml`, `gemma`, `llama3`, ...), for models
    /// whose file has none, or to override the file's. `None`: the file's template.
    pub chat_template: Option<String>,
    /// Context per sequence, in tokens: prompt plus output must fit.
    pub context: u32,
    /// Sequences decoded together (continuous batching): more keeps the CPU busy.
    pub parallel: u32,
    /// CPU threads (default: all available).
    pub threads: Option<u32>,
    /// Layers offloaded to the GPU (needs a build with the `cuda` feature; `u32::MAX`: all).
    pub gpu_layers: u32,
    /// Constrain output to the request's JSON schema with a llama.cpp grammar.
    pub grammar: bool,
}

impl LlamaConfig {
    /// Defaults for `model`: the file's chat template, 2048 tokens per sequence, 8 parallel
    /// sequences, all CPU threads, no GPU, grammar on.
    #[must_use]
    pub fn new(model: impl Into<PathBuf>) -> Self {
        Self {
            model: model.into(),
            chat_template: None,
            context: 2048,
            parallel: 8,
            threads: None,
            gpu_layers: 0,
            grammar: true,
        }
    }

    /// Uses the named chat template.
    #[must_use]
    pub fn with_chat_template(mut self, name: impl Into<String>) -> Self {
        self.chat_template = Some(name.into());
        self
    }

    /// Tokens per sequence (64..=131072).
    ///
    /// # Errors
    /// [`crate::QaGenError::Setting`] when out of range.
    pub fn with_context(mut self, tokens: u32) -> crate::Result<Self> {
        if !(64..=131_072).contains(&tokens) {
            return Err(setting("context", "must be 64..=131072 tokens"));
        }
        self.context = tokens;
        Ok(self)
    }

    /// Parallel sequences (1..=64).
    ///
    /// # Errors
    /// [`crate::QaGenError::Setting`] when out of range.
    pub fn with_parallel(mut self, n: u32) -> crate::Result<Self> {
        if !(1..=64).contains(&n) {
            return Err(setting("parallel", "must be 1..=64"));
        }
        self.parallel = n;
        Ok(self)
    }

    /// CPU threads (at least 1).
    ///
    /// # Errors
    /// [`crate::QaGenError::Setting`] for 0.
    pub fn with_threads(mut self, n: u32) -> crate::Result<Self> {
        if n == 0 {
            return Err(setting("threads", "must be at least 1"));
        }
        self.threads = Some(n);
        Ok(self)
    }

    /// Layers to offload to the GPU.
    #[must_use]
    pub fn with_gpu_layers(mut self, n: u32) -> Self {
        self.gpu_layers = n;
        self
    }

    /// Turns grammar-constrained JSON on or off.
    #[must_use]
    pub fn with_grammar(mut self, on: bool) -> Self {
        self.grammar = on;
        self
    }
}

/// The GGUF `scripts/setup.sh` fetches: SmolLM2-135M-Instruct, Q4_1, under
/// [`docraft_core::models_dir`].
#[must_use]
pub fn default_gguf() -> PathBuf {
    docraft_core::models_dir().join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn setting(name: &'static str, reason: &str) -> crate::QaGenError {
    crate::QaGenError::Setting { name, reason: reason.to_string() }
}
