//! Decoding with base + adapter: greedy or sampled, stopping at end of sequence, streaming text.

use docraft_core::rng::SplitMix64;
use docraft_core::{ChatMessage, FinishReason, GenError, GenRequest, GenResponse, Usage};
use tokenizers::Tokenizer;

use crate::error::{Result, TrainError};
use crate::lora::Adapter;
use crate::model::{KvCache, Llama};
use crate::tokenizer::ChatTemplate;

/// How to pick tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct GenOptions {
    /// Most new tokens.
    pub max_tokens: usize,
    /// 0 for greedy; otherwise softmax temperature.
    pub temperature: f64,
    /// Nucleus sampling mass (1.0: off).
    pub top_p: f64,
    /// Seed of the sampler.
    pub seed: u64,
    /// Token ids that end the answer (end of sequence, end of turn).
    pub stop: Vec<u32>,
}

impl Default for GenOptions {
    fn default() -> Self {
        Self { max_tokens: 256, temperature: 0.0, top_p: 1.0, seed: 42, stop: Vec::new() }
    }
}

/// Generates after `prompt`; `on_token` sees each new id and returns false to stop early.
/// Returns the new ids (without the stop token).
///
/// # Errors
/// Tensor errors; [`TrainError::Setting`] for an empty prompt or one longer than the model's context.
pub fn generate(
    model: &Llama,
    adapter: Option<&Adapter>,
    prompt: &[u32],
    opts: &GenOptions,
    mut on_token: impl FnMut(u32) -> bool,
) -> Result<Vec<u32>> {
    if prompt.is_empty() {
        return Err(TrainError::setting("prompt", "is empty"));
    }
    let mut cache = KvCache::default();
    let mut rng = SplitMix64::new(opts.seed);
    let mut logits = model.forward_cached(prompt, &mut cache, adapter)?;
    let mut out = Vec::new();
    let limit = model.config().max_position_embeddings;
    while out.len() < opts.max_tokens && cache.len() < limit {
        let v: Vec<f32> = logits.to_vec1()?;
        let next = pick(&v, opts, &mut rng);
        if opts.stop.contains(&next) {
            break;
        }
        out.push(next);
        if !on_token(next) {
            break;
        }
        logits = model.forward_cached(&[next], &mut cache, adapter)?;
    }
    Ok(out)
}

fn pick(logits: &[f32], opts: &GenOptions, rng: &mut SplitMix64) -> u32 {
    let argmax = || {
        logits.iter().enumerate().fold((0usize, f32::NEG_INFINITY), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0
            as u32
    };
    if opts.temperature <= 0.0 {
        return argmax();
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<(usize, f64)> =
        logits.iter().enumerate().map(|(i, &x)| (i, (f64::from(x - max) / opts.temperature).exp())).collect();
    let z: f64 = probs.iter().map(|p| p.1).sum();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut kept = Vec::new();
    let mut mass = 0.0;
    for (i, p) in probs {
        kept.push((i, p / z));
        mass += p / z;
        if mass >= opts.top_p {
            break;
        }
    }
    let mut r = rng.next_f64() * mass;
    for (i, p) in &kept {
        r -= p;
        if r <= 0.0 {
            return *i as u32;
        }
    }
    kept.last().map_or_else(argmax, |k| k.0 as u32)
}

/// A chat model: weights (adapter merged for speed), tokenizer, template and stop tokens.
///
/// It is also a [`docraft_core::Generator`], so the stages that take one (`ask`, evaluation)
/// run base and base + adapter alike, with token streaming.
#[derive(Debug)]
pub struct ChatModel {
    model: Llama,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    stop: Vec<u32>,
    name: String,
}

impl ChatModel {
    /// Wraps a model; with an adapter, its weights are merged in (same outputs, faster decoding).
    ///
    /// # Errors
    /// Tensor errors while merging.
    pub fn new(model: &Llama, adapter: Option<&Adapter>, tokenizer: Tokenizer, template: ChatTemplate) -> Result<Self> {
        let model = match adapter {
            Some(a) => model.merged(a)?,
            None => model.clone(),
        };
        let mut stop = model.config().eos_ids();
        for s in ["<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|endoftext|>", "</s>"] {
            if let Some(id) = tokenizer.token_to_id(s) {
                stop.push(id);
            }
        }
        Ok(Self { model, tokenizer, template, stop, name: "candle".into() })
    }

    /// Loads a base model (GGUF file or Hugging Face directory) and, when given, a peft adapter
    /// directory, on `device`; the model id names both files.
    ///
    /// # Errors
    /// [`TrainError`] when a file cannot be read or the adapter does not fit the base.
    pub fn load(
        base: &std::path::Path,
        adapter: Option<&std::path::Path>,
        device: &candle_core::Device,
    ) -> Result<Self> {
        let b = crate::BaseModel::load(base, device)?;
        let model = Llama::new(&b, crate::compute_dtype(device), device)?;
        let a = match adapter {
            Some(dir) => Some(Adapter::load_peft(dir, &b.config, model.dtype(), model.device())?),
            None => None,
        };
        let name = |p: &std::path::Path| p.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let mut id = name(base);
        if let Some(dir) = adapter {
            let parent = dir.parent().map(name).unwrap_or_default();
            id = format!("{id}+{parent}/{}", name(dir));
        }
        Ok(Self::new(&model, a.as_ref(), b.tokenizer()?, b.template()?)?.with_name(id))
    }

    /// Names the model (its [`docraft_core::Generator::model_id`]).
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The prompt ids for `messages`, ending where the assistant's turn begins.
    ///
    /// # Errors
    /// Template or tokenizer errors.
    pub fn prompt_ids(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        let text = self.template.render(messages, true)?;
        let enc = self.tokenizer.encode(text.as_str(), false).map_err(|e| TrainError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Answers the conversation; `on_text` receives the text as it grows (a streaming display).
    ///
    /// # Errors
    /// Template, tokenizer or tensor errors.
    pub fn reply(&self, messages: &[ChatMessage], opts: &GenOptions, on_text: impl FnMut(&str)) -> Result<String> {
        Ok(self.reply_counted(messages, opts, on_text)?.0)
    }

    /// [`Self::reply`], also returning the prompt's and the answer's token counts and whether
    /// the answer reached `max_tokens`.
    fn reply_counted(
        &self,
        messages: &[ChatMessage],
        opts: &GenOptions,
        mut on_text: impl FnMut(&str),
    ) -> Result<(String, usize, usize, bool)> {
        let ids = self.prompt_ids(messages)?;
        let mut opts = opts.clone();
        opts.stop.extend(self.stop.iter().copied());
        let mut generated = Vec::new();
        let mut shown = 0;
        let tok = &self.tokenizer;
        let out = generate(&self.model, None, &ids, &opts, |id| {
            generated.push(id);
            if let Ok(text) = tok.decode(&generated, true) {
                // Only emit whole characters: a byte-level token may end mid-character.
                if !text.ends_with('\u{FFFD}') && text.len() > shown && text.is_char_boundary(shown) {
                    on_text(&text[shown..]);
                    shown = text.len();
                }
            }
            true
        })?;
        let text = tok.decode(&out, true).map_err(|e| TrainError::Tokenizer(e.to_string()))?;
        Ok((text, ids.len(), out.len(), out.len() >= opts.max_tokens))
    }
}

impl docraft_core::Generator for ChatModel {
    fn generate_batch(&self, requests: &[GenRequest]) -> Vec<std::result::Result<GenResponse, GenError>> {
        requests.iter().map(|r| self.generate_stream(r, &mut |_| {})).collect()
    }

    fn generate_stream(
        &self,
        request: &GenRequest,
        on_text: &mut dyn FnMut(&str),
    ) -> std::result::Result<GenResponse, GenError> {
        let opts = GenOptions {
            max_tokens: request.max_tokens as usize,
            temperature: f64::from(request.sampling.temperature),
            top_p: f64::from(request.sampling.top_p),
            seed: request.sampling.seed,
            stop: Vec::new(),
        };
        let ids = self.prompt_ids(&request.messages).map_err(|e| GenError::Permanent(e.to_string()))?;
        let limit = self.model.config().max_position_embeddings;
        if ids.len() + opts.max_tokens.min(1) > limit {
            return Err(GenError::ContextLengthExceeded { needed: ids.len() as u64 + 1, limit: limit as u64 });
        }
        let (text, prompt, completion, cut) = self
            .reply_counted(&request.messages, &opts, |t| on_text(t))
            .map_err(|e| GenError::Permanent(e.to_string()))?;
        Ok(GenResponse {
            text,
            finish: if cut { FinishReason::Length } else { FinishReason::Stop },
            usage: Usage { prompt_tokens: prompt as u64, completion_tokens: completion as u64 },
        })
    }

    fn model_id(&self) -> String {
        self.name.clone()
    }

    fn count_tokens(&self, text: &str) -> Option<usize> {
        self.tokenizer.encode(text, false).ok().map(|e| e.len())
    }
}
