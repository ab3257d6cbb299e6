//! llama.cpp in process (llama-cpp-2): any GGUF model, several sequences decoded together.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::{LlmError, Result};

#[cfg(feature = "llama")]
mod enabled;
#[cfg(feature = "llama")]
pub use enabled::LlamaGenerator;

#[cfg(not(feature = "llama"))]
mod disabled;
#[cfg(not(feature = "llama"))]
pub use disabled::LlamaGenerator;

/// Tokens per sequence that [`LlamaConfig::with_context`] accepts.
const CONTEXT_RANGE: std::ops::RangeInclusive<u32> = 64..=131_072;
/// Parallel sequences that [`LlamaConfig::with_parallel`] accepts.
const PARALLEL_RANGE: std::ops::RangeInclusive<u32> = 1..=64;

/// Settings of the llama.cpp backend. Build with [`LlamaConfig::new`] and the `with_*`
/// methods, which check their values; read them back with the getters.
///
/// ```
/// use docraft_llm::LlamaConfig;
///
/// let cfg = LlamaConfig::new("model.gguf").with_parallel(4)?.with_threads(2)?.with_grammar(false);
/// assert_eq!((cfg.parallel(), cfg.threads(), cfg.grammar()), (4, Some(2), false));
/// assert!(LlamaConfig::new("model.gguf").with_context(8).is_err());
/// # Ok::<(), docraft_llm::LlmError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LlamaConfig {
    model: PathBuf,
    chat_template: Option<String>,
    context: u32,
    parallel: u32,
    threads: Option<u32>,
    gpu_layers: u32,
    grammar: bool,
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

    /// Uses the named chat template (`chatml`, `gemma`, `llama3`, ...), for models whose
    /// file has none, or to override the file's.
    #[must_use]
    pub fn with_chat_template(mut self, name: impl Into<String>) -> Self {
        self.chat_template = Some(name.into());
        self
    }

    /// Tokens per sequence (64..=131072): prompt plus output must fit.
    ///
    /// # Errors
    /// [`LlmError::Setting`] naming `context` when out of range.
    pub fn with_context(mut self, tokens: u32) -> Result<Self> {
        check_context(tokens)?;
        self.context = tokens;
        Ok(self)
    }

    /// Sequences decoded together (1..=64; continuous batching: more keeps the CPU busy).
    ///
    /// # Errors
    /// [`LlmError::Setting`] naming `parallel` when out of range.
    pub fn with_parallel(mut self, n: u32) -> Result<Self> {
        check_parallel(n)?;
        self.parallel = n;
        Ok(self)
    }

    /// CPU threads (at least 1).
    ///
    /// # Errors
    /// [`LlmError::Setting`] naming `threads` for 0.
    pub fn with_threads(mut self, n: u32) -> Result<Self> {
        check_threads(n)?;
        self.threads = Some(n);
        Ok(self)
    }

    /// Layers to offload to the GPU (needs a build with the `cuda` feature; `u32::MAX`: all).
    #[must_use]
    pub fn with_gpu_layers(mut self, n: u32) -> Self {
        self.gpu_layers = n;
        self
    }

    /// Turns grammar-constrained JSON (the request's schema as a llama.cpp grammar) on or off.
    #[must_use]
    pub fn with_grammar(mut self, on: bool) -> Self {
        self.grammar = on;
        self
    }

    /// The GGUF file.
    #[must_use]
    pub fn model(&self) -> &Path {
        &self.model
    }

    /// The chat template named in place of the file's (`None`: the file's own).
    #[must_use]
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Tokens per sequence.
    #[must_use]
    pub fn context(&self) -> u32 {
        self.context
    }

    /// Sequences decoded together.
    #[must_use]
    pub fn parallel(&self) -> u32 {
        self.parallel
    }

    /// CPU threads (`None`: all available).
    #[must_use]
    pub fn threads(&self) -> Option<u32> {
        self.threads
    }

    /// Layers offloaded to the GPU.
    #[must_use]
    pub fn gpu_layers(&self) -> u32 {
        self.gpu_layers
    }

    /// Whether output is constrained to the request's JSON schema.
    #[must_use]
    pub fn grammar(&self) -> bool {
        self.grammar
    }
}

pub(crate) fn check_context(tokens: u32) -> Result<()> {
    if CONTEXT_RANGE.contains(&tokens) {
        Ok(())
    } else {
        Err(LlmError::setting("context", format!("{tokens} is not in 64..=131072 tokens")))
    }
}

pub(crate) fn check_parallel(n: u32) -> Result<()> {
    if PARALLEL_RANGE.contains(&n) {
        Ok(())
    } else {
        Err(LlmError::setting("parallel", format!("{n} is not in 1..=64")))
    }
}

pub(crate) fn check_threads(n: u32) -> Result<()> {
    if n == 0 { Err(LlmError::setting("threads", "must be at least 1")) } else { Ok(()) }
}

/// The GGUF `scripts/setup.sh` fetches: SmolLM2-135M-Instruct, Q4_1, under
/// [`docraft_core::models_dir`] (`$DOCRAFT_MODELS`, else `~/.cache/docraft/models`).
#[must_use]
pub fn default_gguf() -> PathBuf {
    docraft_core::models_dir().join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
}
