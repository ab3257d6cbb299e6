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
/// Draft tokens in a row that [`LlamaConfig::with_draft_max`] accepts.
const DRAFT_MAX_RANGE: std::ops::RangeInclusive<u32> = 1..=32;
/// Default most tokens the draft model proposes in a row.
pub(crate) const DEFAULT_DRAFT_MAX: u32 = 8;

/// Settings of the llama.cpp backend. Build with [`LlamaConfig::new`] and the `with_*`
/// methods, which check their values; read them back with the getters.
///
/// ```
/// use docraft_llm::LlamaConfig;
///
/// let cfg = LlamaConfig::new("model.gguf").with_parallel(4)?.with_threads(2)?.with_grammar(false);
/// assert_eq!((cfg.parallel(), cfg.threads(), cfg.grammar()), (4, Some(2), false));
/// let tuned = cfg.with_lora(Some("adapter.gguf".into()));
/// assert_eq!(tuned.lora(), Some(std::path::Path::new("adapter.gguf")));
/// assert!(LlamaConfig::new("model.gguf").with_context(8).is_err());
/// # Ok::<(), docraft_llm::LlmError>(())
/// ```
///
/// Two settings make generation faster without changing what it writes:
/// - **Shared-prompt reuse** ([`with_prefix_reuse`](Self::with_prefix_reuse), on by default):
///   the longest token prefix the prompts of a batch share with each other or with earlier
///   prompts (the system prompt and instructions of a run) is evaluated once; every sequence
///   starts from a copy of its KV cache, so only its own tail is evaluated. The prefix's state
///   is kept for later batches. Off for models whose cache cannot be cut at any position
///   (recurrent, hybrid and sliding-window models).
/// - **Speculative decoding** ([`with_draft_model`](Self::with_draft_model)): a small model
///   with the same vocabulary proposes up to [`draft_max`](Self::draft_max) tokens, the main
///   model checks them (two per pass) and keeps those it would have written itself. Only for
///   greedy requests (temperature 0): sampled requests are decoded without the draft (no
///   speculative sampling), so they too come out as without it, seed for seed.
///
/// A fine-tuned model can be served without merging: [`with_lora`](Self::with_lora) names a
/// llama.cpp LoRA adapter (GGUF) that is applied to the model at load time (changing what it
/// writes; the draft model stays as it is).
///
/// "Without changing" holds to the bit on CPU for one sequence at a time (`parallel` 1) and
/// prompts up to 512 tokens: the shared prefix and each prompt's own tail are batched so that
/// llama.cpp computes every token with the same kernels as in the whole prompt (attention
/// tiles from 64 rows, matrix products of repacked weights in groups of 4 rows), and the main
/// model checks two proposals per pass, so that, with the token before them, they go through
/// the kernels that decode single tokens (a draft of 8 is checked over several passes). For
/// speculative decoding also only with one thread: with more, llama.cpp splits long caches
/// between threads for single tokens and rounds differently. Beyond that (several sequences
/// at once, GPU offload), as without these settings, llama.cpp's results depend slightly on
/// how a batch is made up, and a near tie between two tokens can go the other way.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LlamaConfig {
    model: PathBuf,
    chat_template: Option<String>,
    context: u32,
    parallel: u32,
    threads: Option<u32>,
    gpu_layers: u32,
    grammar: bool,
    prefix_reuse: bool,
    draft_model: Option<PathBuf>,
    draft_max: u32,
    lora: Option<PathBuf>,
}

impl LlamaConfig {
    /// Defaults for `model`: the file's chat template, 2048 tokens per sequence, 8 parallel
    /// sequences, all CPU threads, no GPU, grammar on, shared-prompt reuse on, no draft model
    /// (8 draft tokens in a row when one is named), no LoRA adapter.
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
            prefix_reuse: true,
            draft_model: None,
            draft_max: DEFAULT_DRAFT_MAX,
            lora: None,
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

    /// Turns shared-prompt reuse on or off: evaluating the prefix the prompts share once and
    /// starting every sequence from a copy of its KV cache. Off, every prompt is evaluated
    /// whole (the outputs are the same).
    #[must_use]
    pub fn with_prefix_reuse(mut self, on: bool) -> Self {
        self.prefix_reuse = on;
        self
    }

    /// A draft model for speculative decoding (`None`: none): a smaller GGUF with the same
    /// vocabulary. [`LlamaGenerator::load`] refuses one whose vocabulary differs.
    #[must_use]
    pub fn with_draft_model(mut self, path: Option<PathBuf>) -> Self {
        self.draft_model = path;
        self
    }

    /// Most tokens the draft model proposes in a row (1..=32). It stops earlier when it is
    /// unsure of its next token (probability under 0.75); the main model checks two per pass.
    ///
    /// # Errors
    /// [`LlmError::Setting`] naming `draft_max` when out of range.
    pub fn with_draft_max(mut self, n: u32) -> Result<Self> {
        check_draft_max(n)?;
        self.draft_max = n;
        Ok(self)
    }

    /// A llama.cpp LoRA adapter (GGUF: `general.type = adapter`, `adapter.type = lora`)
    /// applied to the model at load time with scale 1, so a fine-tuned model serves without
    /// merging (`None`: none). Only the main model gets it, not the draft model.
    /// [`LlamaGenerator::load`] refuses a file that is missing, not such an adapter, or made
    /// for another architecture or tensor shapes.
    #[must_use]
    pub fn with_lora(mut self, path: Option<PathBuf>) -> Self {
        self.lora = path;
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

    /// Whether the prefix prompts share is evaluated once and reused.
    #[must_use]
    pub fn prefix_reuse(&self) -> bool {
        self.prefix_reuse
    }

    /// The draft model for speculative decoding, if any.
    #[must_use]
    pub fn draft_model(&self) -> Option<&Path> {
        self.draft_model.as_deref()
    }

    /// Most tokens the draft model proposes in a row.
    #[must_use]
    pub fn draft_max(&self) -> u32 {
        self.draft_max
    }

    /// The LoRA adapter applied to the model, if any.
    #[must_use]
    pub fn lora(&self) -> Option<&Path> {
        self.lora.as_deref()
    }
}

/// What a [`LlamaGenerator`] did since it was loaded: how much of the prompts was evaluated
/// and how much came from a shared prefix's cache, and how the draft model fared.
///
/// ```
/// use docraft_llm::LlamaStats;
///
/// let s = LlamaStats { draft_tokens: 40, draft_accepted: 30, ..LlamaStats::default() };
/// assert_eq!(s.acceptance_rate(), Some(0.75));
/// assert_eq!(LlamaStats::default().acceptance_rate(), None);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LlamaStats {
    /// Requests answered (failed ones included).
    pub requests: u64,
    /// Tokens of the prompts (what [`Usage::prompt_tokens`](docraft_core::Usage) sums).
    pub prompt_tokens: u64,
    /// Prompt tokens taken from a shared prefix's KV cache instead of being evaluated.
    pub prompt_tokens_cached: u64,
    /// Prompt tokens the main model evaluated: the prompts' own tails plus each shared
    /// prefix the first time it was seen.
    pub prompt_tokens_evaluated: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
    /// Passes of the main model that gave a sequence its next tokens, counted per sequence:
    /// `completion_tokens` without a draft model, fewer with one (`completion_tokens /
    /// decode_steps` tokens per pass).
    pub decode_steps: u64,
    /// Tokens the draft model proposed.
    pub draft_tokens: u64,
    /// Proposed tokens the main model accepted.
    pub draft_accepted: u64,
    /// Prompt tokens the draft model evaluated.
    pub draft_prompt_tokens_evaluated: u64,
}

impl LlamaStats {
    /// Share of the draft's proposals the main model accepted (`None` before any).
    #[must_use]
    pub fn acceptance_rate(&self) -> Option<f64> {
        #[allow(clippy::cast_precision_loss)]
        (self.draft_tokens > 0).then(|| self.draft_accepted as f64 / self.draft_tokens as f64)
    }

    /// The counts of `self` minus those of `earlier` (what happened in between).
    #[must_use]
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            requests: self.requests.saturating_sub(earlier.requests),
            prompt_tokens: self.prompt_tokens.saturating_sub(earlier.prompt_tokens),
            prompt_tokens_cached: self.prompt_tokens_cached.saturating_sub(earlier.prompt_tokens_cached),
            prompt_tokens_evaluated: self.prompt_tokens_evaluated.saturating_sub(earlier.prompt_tokens_evaluated),
            completion_tokens: self.completion_tokens.saturating_sub(earlier.completion_tokens),
            decode_steps: self.decode_steps.saturating_sub(earlier.decode_steps),
            draft_tokens: self.draft_tokens.saturating_sub(earlier.draft_tokens),
            draft_accepted: self.draft_accepted.saturating_sub(earlier.draft_accepted),
            draft_prompt_tokens_evaluated: self
                .draft_prompt_tokens_evaluated
                .saturating_sub(earlier.draft_prompt_tokens_evaluated),
        }
    }
}

impl std::ops::AddAssign for LlamaStats {
    fn add_assign(&mut self, rhs: Self) {
        self.requests += rhs.requests;
        self.prompt_tokens += rhs.prompt_tokens;
        self.prompt_tokens_cached += rhs.prompt_tokens_cached;
        self.prompt_tokens_evaluated += rhs.prompt_tokens_evaluated;
        self.completion_tokens += rhs.completion_tokens;
        self.decode_steps += rhs.decode_steps;
        self.draft_tokens += rhs.draft_tokens;
        self.draft_accepted += rhs.draft_accepted;
        self.draft_prompt_tokens_evaluated += rhs.draft_prompt_tokens_evaluated;
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

pub(crate) fn check_draft_max(n: u32) -> Result<()> {
    if DRAFT_MAX_RANGE.contains(&n) {
        Ok(())
    } else {
        Err(LlmError::setting("draft_max", format!("{n} is not in 1..=32")))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lora_adapter_is_none_by_default_and_set_by_its_builder() {
        let plain = LlamaConfig::new("model.gguf");
        assert_eq!(plain.lora(), None);
        let tuned = plain.clone().with_lora(Some("adapter.gguf".into()));
        assert_eq!(tuned.lora(), Some(Path::new("adapter.gguf")));
        // The adapter makes another configuration: the model writes otherwise.
        assert_ne!(tuned, plain);
        assert_eq!(tuned.clone().with_lora(None), plain);
        // Nothing else changes.
        assert_eq!((tuned.model(), tuned.draft_model()), (Path::new("model.gguf"), None));
    }
}
