use std::collections::{HashMap, VecDeque};
use std::io::{Read, Seek, SeekFrom};
use std::num::NonZeroU32;
use std::sync::{Mutex, OnceLock};

use docraft_core::{FinishReason, GenError, GenRequest, GenResponse, Generator, Usage, content_hash};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::vocab::LlamaVocab;

use super::LlamaConfig;
use crate::{LlmError, Result};

/// llama.cpp allows one backend per process; every generator shares it.
static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();

fn backend() -> Result<&'static LlamaBackend> {
    BACKEND
        .get_or_init(|| {
            let mut b = LlamaBackend::init().map_err(|e| e.to_string())?;
            if std::env::var_os("DOCRAFT_LLAMA_LOG").is_none() {
                b.void_logs();
            }
            Ok(b)
        })
        .as_ref()
        .map_err(|e| LlmError::Backend { backend: "llama.cpp", reason: e.clone() })
}

/// A GGUF model run in process by llama.cpp.
///
/// [`Generator::generate_batch`] decodes up to `parallel` requests at once as separate
/// sequences of one context (continuous batching: a finished sequence's slot takes the next
/// request at once). Each request gets its own sampler chain, seeded from its
/// [`Sampling::seed`](docraft_core::Sampling), and, when it carries a JSON schema, a grammar
/// that only lets the model write JSON matching it.
pub struct LlamaGenerator {
    model: LlamaModel,
    template: LlamaChatTemplate,
    config: LlamaConfig,
    model_id: String,
    threads: i32,
    grammars: Mutex<HashMap<String, std::result::Result<String, String>>>,
    busy: Mutex<()>,
}

impl std::fmt::Debug for LlamaGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaGenerator")
            .field("model_id", &self.model_id)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl LlamaGenerator {
    /// Loads the GGUF file and its chat template.
    ///
    /// # Errors
    /// [`LlmError::Model`] when the file is missing or not a model llama.cpp can load, or
    /// when it has no chat template and none was named.
    pub fn load(config: LlamaConfig) -> Result<Self> {
        let path = config.model.clone();
        let model_err = |reason: String| LlmError::Model { path: path.clone(), reason };
        if !path.is_file() {
            return Err(model_err("no such file (run scripts/setup.sh to fetch the default model)".into()));
        }
        let backend = backend()?;
        let params = LlamaModelParams::default().with_n_gpu_layers(config.gpu_layers);
        let model = LlamaModel::load_from_file(backend, &path, &params)
            .map_err(|e| model_err(format!("llama.cpp cannot load it ({e}); is it a GGUF model file?")))?;
        let template = match &config.chat_template {
            Some(name) => {
                LlamaChatTemplate::new(name).map_err(|e| model_err(format!("chat template {name:?}: {e}")))?
            }
            None => model.chat_template(None).map_err(|_| {
                model_err("the file has no chat template: name one (e.g. --chat-template gemma or chatml)".into())
            })?,
        };
        let threads = config
            .threads
            .map_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get), |t| t as usize);
        let model_id = model_id(&path).map_err(|e| model_err(e.to_string()))?;
        Ok(Self {
            model,
            template,
            config,
            model_id,
            threads: i32::try_from(threads).unwrap_or(1),
            grammars: Mutex::new(HashMap::new()),
            busy: Mutex::new(()),
        })
    }

    /// The settings it was loaded with.
    #[must_use]
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The prompt text the chat template makes of a request.
    ///
    /// # Errors
    /// [`GenError::Permanent`] when the template cannot be applied.
    pub fn render(&self, request: &GenRequest) -> std::result::Result<String, GenError> {
        let chat = request
            .messages
            .iter()
            .map(|m| LlamaChatMessage::new(m.role.as_str().to_string(), m.content.clone()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| GenError::Permanent(format!("message: {e}")))?;
        self.model
            .apply_chat_template(&self.template, &chat, true)
            .map_err(|e| GenError::Permanent(format!("chat template: {e}")))
    }

    fn tokenize_prompt(&self, request: &GenRequest) -> std::result::Result<Vec<LlamaToken>, GenError> {
        let text = self.render(request)?;
        let vocab = self.model.vocab();
        let mut tokens = vocab.tokenize(text.as_bytes(), false, true);
        if vocab.should_add_bos() && tokens.first() != Some(&vocab.bos()) {
            tokens.insert(0, vocab.bos());
        }
        let needed = tokens.len() as u64 + u64::from(request.max_tokens);
        if needed > u64::from(self.config.context) {
            return Err(GenError::ContextLengthExceeded { needed, limit: u64::from(self.config.context) });
        }
        Ok(tokens)
    }

    fn grammar(&self, schema: &serde_json::Value) -> std::result::Result<String, GenError> {
        let key = schema.to_string();
        let mut cache = self.grammars.lock().map_err(|_| GenError::Permanent("grammar cache poisoned".into()))?;
        cache
            .entry(key.clone())
            .or_insert_with(|| llama_cpp_2::json_schema_to_grammar(&key).map_err(|e| e.to_string()))
            .clone()
            .map_err(|e| GenError::Permanent(format!("JSON schema to grammar: {e}")))
    }

    fn sampler(&self, request: &GenRequest) -> std::result::Result<Picker, GenError> {
        let s = request.sampling;
        let grammar = match &request.json_schema {
            Some(schema) if self.config.grammar => {
                let g = self.grammar(schema)?;
                Some(
                    LlamaSampler::grammar(&self.model, &g, "root")
                        .map_err(|e| GenError::Permanent(format!("grammar: {e}")))?,
                )
            }
            _ => None,
        };
        let mut chain = Vec::new();
        if (s.repeat_penalty - 1.0).abs() > f32::EPSILON {
            chain.push(LlamaSampler::penalties(self.model.n_vocab(), 64, s.repeat_penalty, 0.0, 0.0));
        }
        if s.temperature <= 0.0 {
            chain.push(LlamaSampler::greedy());
        } else {
            if s.top_k > 0 {
                chain.push(LlamaSampler::top_k(i32::try_from(s.top_k).unwrap_or(i32::MAX)));
            }
            chain.push(LlamaSampler::top_p(s.top_p, 1));
            chain.push(LlamaSampler::temp(s.temperature));
            // llama.cpp seeds are 32-bit: fold the 64-bit seed.
            #[allow(clippy::cast_possible_truncation)]
            chain.push(LlamaSampler::dist((s.seed ^ (s.seed >> 32)) as u32));
        }
        Ok(Picker { chain: LlamaSampler::chain_simple(chain), grammar })
    }

    fn run_batch(&self, requests: &[GenRequest]) -> Vec<std::result::Result<GenResponse, GenError>> {
        let mut results: Vec<Option<std::result::Result<GenResponse, GenError>>> = vec![None; requests.len()];
        let mut queue = VecDeque::new();
        for (i, r) in requests.iter().enumerate() {
            match self.tokenize_prompt(r).and_then(|t| self.sampler(r).map(|s| (t, s))) {
                Ok((tokens, sampler)) => queue.push_back((i, tokens, sampler)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        if !queue.is_empty()
            && let Err(e) = self.decode_all(requests, queue, &mut results)
        {
            for r in &mut results {
                r.get_or_insert_with(|| Err(e.clone()));
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(GenError::Permanent("request was not decoded".into()))))
            .collect()
    }

    /// Continuous batching over `parallel` sequence slots.
    fn decode_all(
        &self,
        requests: &[GenRequest],
        mut queue: VecDeque<(usize, Vec<LlamaToken>, Picker)>,
        results: &mut [Option<std::result::Result<GenResponse, GenError>>],
    ) -> std::result::Result<(), GenError> {
        let slots_n = (self.config.parallel as usize).min(queue.len()).max(1);
        let per_seq = self.config.context;
        let n_batch = per_seq.max(512) as usize + slots_n;
        let n_ctx = per_seq.saturating_mul(u32::try_from(slots_n).unwrap_or(1));
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(u32::try_from(n_batch).unwrap_or(u32::MAX))
            .with_n_seq_max(u32::try_from(slots_n).unwrap_or(1))
            .with_n_threads(self.threads)
            .with_n_threads_batch(self.threads)
            .with_kv_unified(true);
        let backend = backend().map_err(|e| GenError::Permanent(e.to_string()))?;
        let mut ctx = self
            .model
            .new_context(backend, params)
            .map_err(|e| GenError::Permanent(format!("llama.cpp context of {n_ctx} tokens: {e}")))?;
        let vocab = self.model.vocab();
        let mut batch = LlamaBatch::new(n_batch, 1);
        let mut slots: Vec<Option<Slot>> = (0..slots_n).map(|_| None).collect();
        loop {
            batch.clear();
            for (s, slot) in slots.iter_mut().enumerate() {
                if let Some(slot) = slot {
                    batch.add(slot.next, slot.pos, &[seq(s)], true).map_err(|e| GenError::Permanent(e.to_string()))?;
                    slot.pos += 1;
                    slot.logits = batch.n_tokens() - 1;
                }
            }
            for (s, slot) in slots.iter_mut().enumerate() {
                if slot.is_some() {
                    continue;
                }
                let fits = queue.front().is_some_and(|(_, t, _)| batch.n_tokens() as usize + t.len() <= n_batch);
                if !fits {
                    continue;
                }
                let Some((req, tokens, sampler)) = queue.pop_front() else { break };
                ctx.clear_kv_cache_seq(Some(seq(s).unsigned_abs()), None, None)
                    .map_err(|e| GenError::Permanent(e.to_string()))?;
                let last = tokens.len() - 1;
                for (p, t) in tokens.iter().enumerate() {
                    batch.add(*t, pos(p), &[seq(s)], p == last).map_err(|e| GenError::Permanent(e.to_string()))?;
                }
                *slot = Some(Slot {
                    req,
                    sampler,
                    pos: pos(tokens.len()),
                    next: LlamaToken(0),
                    logits: batch.n_tokens() - 1,
                    generated: 0,
                    bytes: Vec::new(),
                    prompt_tokens: tokens.len() as u64,
                });
            }
            if batch.n_tokens() == 0 {
                return Ok(());
            }
            if let Err(e) = ctx.decode(&mut batch) {
                // Fail the sequences of this step only; the queue goes on.
                for slot in slots.iter_mut() {
                    if let Some(s) = slot.take() {
                        results[s.req] = Some(Err(GenError::Permanent(format!("llama.cpp decode: {e}"))));
                    }
                }
                ctx.clear_kv_cache();
                continue;
            }
            for slot_ref in &mut slots {
                let Some(slot) = slot_ref else { continue };
                let token = slot.sampler.pick(&ctx, slot.logits, &vocab);
                slot.generated += 1;
                let max = requests[slot.req].max_tokens;
                let finish = if vocab.is_eog(token) {
                    Some(FinishReason::Stop)
                } else {
                    slot.bytes.extend(vocab.token_to_piece(token, false, None));
                    (slot.generated >= max || slot.pos as u32 + 1 >= per_seq).then_some(FinishReason::Length)
                };
                slot.next = token;
                if let Some(finish) = finish
                    && let Some(s) = slot_ref.take()
                {
                    results[s.req] = Some(Ok(GenResponse {
                        text: String::from_utf8_lossy(&s.bytes).into_owned(),
                        finish,
                        usage: Usage { prompt_tokens: s.prompt_tokens, completion_tokens: u64::from(s.generated) },
                    }));
                }
            }
        }
    }
}

/// Picks tokens for one sequence: the sampler chain, and the request's grammar if any.
///
/// Checking a grammar against the whole vocabulary at every step is the slow part of
/// constrained decoding (49k candidates for SmolLM2). As llama.cpp's own common sampler does,
/// the chain picks first and the grammar only checks that one token; only when the grammar
/// rejects it is it applied to every candidate and the chain run again.
struct Picker {
    chain: LlamaSampler,
    grammar: Option<LlamaSampler>,
}

impl Picker {
    fn pick(&mut self, ctx: &LlamaContext<'_>, idx: i32, vocab: &LlamaVocab<'_>) -> LlamaToken {
        let mut candidates = ctx.token_data_array_ith(idx);
        candidates.apply_sampler(&mut self.chain);
        let mut token = candidates.selected_token();
        if let Some(grammar) = self.grammar.as_mut() {
            let allowed = token.is_some_and(|t| {
                let mut one = LlamaTokenDataArray::new(vec![LlamaTokenData::new(t, 1.0, 0.0)], false);
                one.apply_sampler(grammar);
                one.data.first().is_some_and(|d| d.logit().is_finite())
            });
            if !allowed {
                let mut all = ctx.token_data_array_ith(idx);
                all.apply_sampler(grammar);
                all.apply_sampler(&mut self.chain);
                token = all.selected_token();
            }
        }
        let token = token.unwrap_or_else(|| vocab.eos());
        // The sequence ends at an end-of-generation token; llama.cpp aborts when a grammar
        // that is not complete accepts one, so it never sees it.
        if let Some(grammar) = self.grammar.as_mut()
            && !vocab.is_eog(token)
        {
            grammar.accept(token);
        }
        self.chain.accept(token);
        token
    }
}

struct Slot {
    req: usize,
    sampler: Picker,
    pos: i32,
    next: LlamaToken,
    logits: i32,
    generated: u32,
    bytes: Vec<u8>,
    prompt_tokens: u64,
}

fn seq(slot: usize) -> i32 {
    i32::try_from(slot).unwrap_or(0)
}

fn pos(p: usize) -> i32 {
    i32::try_from(p).unwrap_or(i32::MAX)
}

/// `file-name#hash` where the hash covers the size and the first and last MiB: cheap on
/// multi-GB files, and different for different quantizations of one model.
fn model_id(path: &std::path::Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let mut buf = len.to_le_bytes().to_vec();
    let mut head = Vec::new();
    f.by_ref().take(1 << 20).read_to_end(&mut head)?;
    buf.extend(head);
    f.seek(SeekFrom::Start(len.saturating_sub(1 << 20)))?;
    f.read_to_end(&mut buf)?;
    let name = path.file_name().map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned());
    Ok(format!("{name}#{}", &content_hash(&buf)[..12]))
}

impl Generator for LlamaGenerator {
    fn generate_batch(&self, requests: &[GenRequest]) -> Vec<std::result::Result<GenResponse, GenError>> {
        // One batch at a time: a second caller would only fight for the same cores.
        let _guard = self.busy.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.run_batch(requests)
    }

    fn model_id(&self) -> String {
        self.model_id.clone()
    }

    fn preferred_batch(&self) -> usize {
        self.config.parallel as usize
    }

    fn count_tokens(&self, text: &str) -> Option<usize> {
        Some(self.model.vocab().tokenize(text.as_bytes(), false, true).len())
    }
}
