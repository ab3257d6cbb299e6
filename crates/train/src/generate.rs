//! Decoding with base + adapter: greedy or sampled, stopping at end of sequence, streaming text.

use tokenizers::Tokenizer;

use crate::error::{Result, TrainError};
use crate::lora::Adapter;
use crate::model::{KvCache, Llama};
use crate::rng::SplitMix64;
use crate::tokenizer::{ChatTemplate, Message};

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
#[derive(Debug)]
pub struct ChatModel {
    model: Llama,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    stop: Vec<u32>,
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
        Ok(Self { model, tokenizer, template, stop })
    }

    /// The prompt ids for `messages`, ending where the assistant's turn begins.
    ///
    /// # Errors
    /// Template or tokenizer errors.
    pub fn prompt_ids(&self, messages: &[Message]) -> Result<Vec<u32>> {
        let text = self.template.render(messages, true)?;
        let enc = self.tokenizer.encode(text.as_str(), false).map_err(|e| TrainError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Answers the conversation; `on_text` receives the text as it grows (a streaming display).
    ///
    /// # Errors
    /// Template, tokenizer or tensor errors.
    pub fn reply(&self, messages: &[Message], opts: &GenOptions, mut on_text: impl FnMut(&str)) -> Result<String> {
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
        tok.decode(&out, true).map_err(|e| TrainError::Tokenizer(e.to_string()))
    }
}
