use std::collections::{HashMap, VecDeque};
use std::io::{Read, Seek, SeekFrom};
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use docraft_core::{FinishReason, GenError, GenRequest, GenResponse, Generator, Usage, content_hash};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::gguf::GgufContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaLoraAdapter, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::vocab::LlamaVocab;
use llama_cpp_2::{LlamaStateSeqFlags, SeqState};

use super::{LlamaConfig, LlamaStats};
use crate::{LlmError, Result};

/// llama.cpp allows one backend per process; every generator shares it.
static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();

/// Rows from which llama.cpp's CPU flash attention computes a batch with its tiled kernel,
/// whose rounding differs from the kernel for fewer rows (`GGML_FA_TILE_Q`). A prompt
/// evaluated whole goes through the tiled kernel when it has that many tokens; so that its
/// tokens are computed the same way from a shared prefix, each prompt keeps a tail of at least
/// that many tokens, and a shorter prefix is evaluated beside throwaway rows that make up the
/// number.
const TILED_ROWS: usize = 64;
/// Rows llama.cpp's CPU matrix products take together for weights it repacks (Q4_0, Q4_K,
/// Q6_K, ... on x86 with AVX2): rows in whole groups of 4 from the start of a batch go through
/// one kernel, the rest one by one through another that rounds differently. A shared prefix
/// ends on a multiple of 4, so that every prompt token lands in the same kind of group as in
/// the whole prompt. With these two rules greedy outputs stay the same with and without reuse.
const ROW_GROUP: usize = 4;
/// Proposals the main model checks per pass: with the token before them, fewer rows than a
/// [`ROW_GROUP`], so they are computed by the kernel that decodes one token at a time and the
/// greedy output stays the same as without a draft model. Longer proposals are checked over
/// several passes.
const CHECKED_PER_PASS: usize = ROW_GROUP - 2;
/// Shortest shared prefix worth a pass of its own, in tokens.
const MIN_PREFIX: usize = 16;
/// Shortest tail each prompt keeps to evaluate itself, in tokens.
const MIN_TAIL: usize = TILED_ROWS;
/// Shared prefixes whose KV state is kept between batches, per model.
const PREFIX_STATES: usize = 4;
/// Recent prompts remembered (their tokens only) to spot a prefix shared across batches.
const RECENT_PROMPTS: usize = 8;
/// The draft model stops proposing when it gives its next token less than this probability.
const DRAFT_P_MIN: f32 = 0.75;
/// Most tokens by which the vocabularies of a draft and its main model may differ in size
/// (padding tokens at the end; llama.cpp's own limit).
const DRAFT_VOCAB_SLACK: i32 = 128;
/// GGUF's value types of strings and of 32-bit floats (`enum gguf_type`, part of the file
/// format): llama.cpp aborts when a key it reads has another type, so they are checked first.
const GGUF_TYPE_STRING: u32 = 8;
const GGUF_TYPE_FLOAT32: u32 = 6;
/// What `--lora` takes, for error messages.
const LORA_HINT: &str = "--lora takes a llama.cpp LoRA adapter in GGUF, general.type = adapter and adapter.type = \
                         lora, as llama.cpp's convert_lora_to_gguf.py writes";

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
///
/// The token prefix the prompts share (the system prompt and instructions of a run) is
/// evaluated once and every sequence starts from a copy of its KV cache; the prefix's state
/// is kept for the next batches ([`LlamaConfig::with_prefix_reuse`]). With a draft model
/// ([`LlamaConfig::with_draft_model`]) greedy requests are decoded speculatively. Neither
/// changes what is generated; [`LlamaGenerator::stats`] tells what they saved.
///
/// A LoRA adapter ([`LlamaConfig::with_lora`]) is loaded once with the model and applied to
/// every context of the main model (not to the draft model's).
pub struct LlamaGenerator {
    /// The LoRA adapter applied to every context of `model`. llama.cpp owns it with the model
    /// (it is freed with the model, and only the model: this is a handle), so it is valid as
    /// long as `model` is; the contexts that use it borrow `model` and live within one batch.
    /// Behind a mutex because applying it takes `&mut` (batches run one at a time anyway).
    lora: Option<Mutex<LlamaLoraAdapter>>,
    model: LlamaModel,
    draft: Option<LlamaModel>,
    template: LlamaChatTemplate,
    config: LlamaConfig,
    model_id: String,
    threads: i32,
    /// Whether the model's cache can be cut at any position (not recurrent, hybrid or
    /// sliding-window): prefix reuse needs it.
    cuttable: bool,
    grammars: Mutex<HashMap<String, std::result::Result<String, String>>>,
    stats: Mutex<LlamaStats>,
    busy: Mutex<Prefixes>,
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
    /// Loads the GGUF file and its chat template, the LoRA adapter if one is named, and the
    /// draft model if one is named.
    ///
    /// # Errors
    /// [`LlmError::Model`] when the file is missing or not a model llama.cpp can load, or
    /// when it has no chat template and none was named; naming the LoRA adapter when it is
    /// missing, not a llama.cpp LoRA adapter in GGUF, or made for another architecture or
    /// tensor shapes than the model's; naming the draft model when it cannot be loaded, when
    /// its vocabulary differs from the main model's, or when either model's cache cannot be
    /// cut back (recurrent and hybrid models cannot be decoded speculatively).
    pub fn load(config: LlamaConfig) -> Result<Self> {
        let path = config.model.clone();
        let model_err = |reason: String| LlmError::Model { path: path.clone(), reason };
        let mut model = load_model(&path, &config, "run scripts/setup.sh to fetch the default model")?;
        let lora = match &config.lora {
            Some(lora_path) => Some(load_lora(&mut model, &path, lora_path)?),
            None => None,
        };
        let template = match &config.chat_template {
            Some(name) => {
                LlamaChatTemplate::new(name).map_err(|e| model_err(format!("chat template {name:?}: {e}")))?
            }
            None => model.chat_template(None).map_err(|_| {
                model_err("the file has no chat template: name one (e.g. --chat-template gemma or chatml)".into())
            })?,
        };
        let draft = match &config.draft_model {
            Some(draft_path) => {
                let draft_err = |reason: String| LlmError::Model { path: draft_path.clone(), reason };
                let draft = load_model(draft_path, &config, "the draft model must be a GGUF file")?;
                same_vocabulary(&model, &draft).map_err(|why| {
                    draft_err(format!(
                        "cannot draft for {}: its vocabulary differs ({why}); a draft model must use the \
                         main model's tokenizer",
                        path.display()
                    ))
                })?;
                for (m, p) in [(&model, &path), (&draft, draft_path)] {
                    if m.is_recurrent() || m.is_hybrid() {
                        return Err(LlmError::Model {
                            path: p.clone(),
                            reason: "speculative decoding needs a cache that can be cut back; recurrent and \
                                     hybrid models have none (drop --draft-model)"
                                .into(),
                        });
                    }
                }
                Some(draft)
            }
            None => None,
        };
        let threads = config
            .threads
            .map_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get), |t| t as usize);
        let mut id = model_id(&path).map_err(|e| model_err(e.to_string()))?;
        if let Some(lora_path) = &config.lora {
            // What the adapter makes of the model is another model: runs keyed by the model's
            // id (resuming, the generation key) must not mix it with the plain one.
            let adapter = model_id(lora_path)
                .map_err(|e| LlmError::Model { path: lora_path.clone(), reason: format!("LoRA adapter: {e}") })?;
            id = format!("{id}+{adapter}");
        }
        let cuttable = !(model.is_recurrent() || model.is_hybrid() || sliding_window(&model));
        Ok(Self {
            lora: lora.map(Mutex::new),
            model,
            draft,
            template,
            config,
            model_id: id,
            threads: i32::try_from(threads).unwrap_or(1),
            cuttable,
            grammars: Mutex::new(HashMap::new()),
            stats: Mutex::new(LlamaStats::default()),
            busy: Mutex::new(Prefixes::default()),
        })
    }

    /// The settings it was loaded with.
    #[must_use]
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// What it did since it was loaded: prompt tokens evaluated and taken from a shared
    /// prefix's cache, tokens generated, the draft model's proposals and acceptances. Take
    /// two and [`LlamaStats::since`] for one run's share.
    #[must_use]
    pub fn stats(&self) -> LlamaStats {
        *self.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether shared prompt prefixes are reused: asked for, and possible with this model
    /// (not with recurrent, hybrid or sliding-window models, whose cache cannot be cut at any
    /// position).
    #[must_use]
    pub fn reuses_prefixes(&self) -> bool {
        self.config.prefix_reuse && self.cuttable
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
        if tokens.is_empty() {
            return Err(GenError::Permanent("the prompt has no tokens".into()));
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

    fn run_batch(
        &self,
        requests: &[GenRequest],
        prefixes: &mut Prefixes,
        stats: &mut LlamaStats,
    ) -> Vec<std::result::Result<GenResponse, GenError>> {
        let mut results: Vec<Option<std::result::Result<GenResponse, GenError>>> = vec![None; requests.len()];
        let mut queue = VecDeque::new();
        for (i, r) in requests.iter().enumerate() {
            match self.tokenize_prompt(r).and_then(|t| self.sampler(r).map(|s| (t, s))) {
                Ok((tokens, sampler)) => queue.push_back((i, tokens, sampler)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        if !queue.is_empty()
            && let Err(e) = self.decode_all(requests, queue, &mut results, prefixes, stats)
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

    /// The shared prefix of the queued prompts, to evaluate once (empty: none worth it).
    fn batch_prefix(&self, prompts: &[&[LlamaToken]], prefixes: &Prefixes) -> Vec<LlamaToken> {
        if !self.reuses_prefixes() {
            return Vec::new();
        }
        let known = prefixes.main.iter().map(|e| e.tokens.as_slice()).chain(prefixes.recent.iter().map(Vec::as_slice));
        let n = shared_prefix(prompts, known);
        prompts.first().map_or_else(Vec::new, |p| p[..n].to_vec())
    }

    /// Continuous batching over `parallel` sequence slots, from the shared prefix's cache,
    /// with speculative decoding when a draft model is loaded.
    fn decode_all(
        &self,
        requests: &[GenRequest],
        mut queue: VecDeque<(usize, Vec<LlamaToken>, Picker)>,
        results: &mut [Option<std::result::Result<GenResponse, GenError>>],
        prefixes: &mut Prefixes,
        stats: &mut LlamaStats,
    ) -> std::result::Result<(), GenError> {
        let slots_n = (self.config.parallel as usize).min(queue.len()).max(1);
        let per_seq = self.config.context as usize;
        let draft_max = if self.draft.is_some() { self.config.draft_max as usize } else { 0 };
        let n_batch = per_seq.max(512) + slots_n * (1 + draft_max);
        let prompts: Vec<&[LlamaToken]> = queue.iter().map(|(_, t, _)| t.as_slice()).collect();
        let prefix = self.batch_prefix(&prompts, prefixes);
        if self.reuses_prefixes() {
            prefixes.remember(&prompts);
        }
        let mut main = Lane::new(&self.model, self.lora.as_ref(), slots_n, per_seq, n_batch, self.threads)?;
        stats.prompt_tokens_evaluated += main.establish_prefix(&prefix, &mut prefixes.main) as u64;
        let mut draft = match &self.draft {
            Some(model) => {
                // The draft stays the plain model: no adapter.
                let mut lane = Lane::new(model, None, slots_n, per_seq, n_batch, self.threads)?;
                stats.draft_prompt_tokens_evaluated += lane.establish_prefix(&prefix, &mut prefixes.draft) as u64;
                Some(lane)
            }
            None => None,
        };
        let vocab = self.model.vocab();
        let mut slots: Vec<Option<Slot>> = (0..slots_n).map(|_| None).collect();
        loop {
            if let Some(lane) = draft.as_mut()
                && lane.propose(&mut slots, requests, per_seq, draft_max, &vocab, stats).is_err()
            {
                // The draft only saves time: without it every sequence goes on as it is.
                draft = None;
                for slot in slots.iter_mut().flatten() {
                    slot.drafts.clear();
                }
            }
            main.batch.clear();
            for (s, slot) in slots.iter_mut().enumerate() {
                let Some(slot) = slot else { continue };
                let fed = slot.tokens.len() - slot.pos;
                for (i, t) in slot.tokens[slot.pos..].iter().enumerate() {
                    main.batch.add(*t, pos(slot.pos + i), &[seq(s)], i + 1 == fed).map_err(batch_err)?;
                }
                slot.pos = slot.tokens.len();
                slot.logits.clear();
                slot.logits.push(main.batch.n_tokens() - 1);
                for (j, d) in slot.drafts.iter().take(CHECKED_PER_PASS).enumerate() {
                    main.batch.add(*d, pos(slot.pos + j), &[seq(s)], true).map_err(batch_err)?;
                    slot.logits.push(main.batch.n_tokens() - 1);
                }
            }
            for (s, slot) in slots.iter_mut().enumerate() {
                if slot.is_some() {
                    continue;
                }
                let fits = queue.front().is_some_and(|(_, t, _)| {
                    main.batch.n_tokens() as usize + t.len().saturating_sub(main.prefix) <= n_batch
                });
                if !fits {
                    continue;
                }
                let Some((req, tokens, sampler)) = queue.pop_front() else { break };
                let start = main.start(s)?;
                let draft_pos = match draft.as_mut() {
                    Some(lane) => lane.start(s)?,
                    None => 0,
                };
                let last = tokens.len() - 1;
                for (p, t) in tokens.iter().enumerate().skip(start) {
                    main.batch.add(*t, pos(p), &[seq(s)], p == last).map_err(batch_err)?;
                }
                stats.prompt_tokens += tokens.len() as u64;
                stats.prompt_tokens_cached += start as u64;
                stats.prompt_tokens_evaluated += (tokens.len() - start) as u64;
                *slot = Some(Slot {
                    req,
                    sampler,
                    greedy: requests[req].sampling.temperature <= 0.0,
                    n_prompt: tokens.len(),
                    pos: tokens.len(),
                    draft_pos,
                    tokens,
                    drafts: Vec::new(),
                    draft_logit: 0,
                    logits: vec![main.batch.n_tokens() - 1],
                    generated: 0,
                    bytes: Vec::new(),
                });
            }
            if main.batch.n_tokens() == 0 {
                return Ok(());
            }
            if let Err(e) = main.ctx.decode(&mut main.batch) {
                // Fail the sequences of this step only; the queue goes on (without the shared
                // prefix: its cache goes with the rest).
                for slot in slots.iter_mut() {
                    if let Some(s) = slot.take() {
                        results[s.req] = Some(Err(GenError::Permanent(format!("llama.cpp decode: {e}"))));
                    }
                }
                main.clear();
                if let Some(lane) = draft.as_mut() {
                    lane.clear();
                }
                continue;
            }
            for (s, slot_ref) in slots.iter_mut().enumerate() {
                let Some(slot) = slot_ref else { continue };
                let max_tokens = requests[slot.req].max_tokens;
                let checked = slot.logits.len() - 1;
                let (finish, matched) = slot.pick(&main.ctx, &vocab, max_tokens, per_seq, stats);
                if let Some(finish) = finish {
                    if let Some(done) = slot_ref.take() {
                        stats.completion_tokens += u64::from(done.generated);
                        results[done.req] = Some(Ok(GenResponse {
                            text: String::from_utf8_lossy(&done.bytes).into_owned(),
                            finish,
                            usage: Usage {
                                prompt_tokens: done.n_prompt as u64,
                                completion_tokens: u64::from(done.generated),
                            },
                        }));
                    }
                    continue;
                }
                // Proposals checked and rejected leave the main model's cache.
                if matched < checked {
                    main.cut(s, slot.pos)?;
                }
                if matched > checked {
                    // All checked ones and the next one were right: the rest stay for the next
                    // pass, and the draft's cache (the proposals) stays valid.
                    slot.drafts.drain(..matched);
                } else {
                    // A proposal was wrong (at `pos`): it and those after it leave the draft's
                    // cache.
                    slot.drafts.clear();
                    if slot.draft_pos > slot.pos {
                        slot.draft_pos = slot.pos;
                        if let Some(lane) = draft.as_mut()
                            && lane.cut(s, slot.pos).is_err()
                        {
                            draft = None;
                        }
                    }
                }
            }
        }
    }
}

/// One model's context for a batch: a sequence per slot, one that holds the shared prefix
/// the slots start from, and one for throwaway rows.
struct Lane<'m> {
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    n_batch: usize,
    /// Tokens of the shared prefix in [`Lane::prefix_seq`] (0: none).
    prefix: usize,
    prefix_seq: i32,
    /// The sequence of throwaway rows (see [`TILED_ROWS`]).
    scratch_seq: i32,
}

impl<'m> Lane<'m> {
    /// A context of `model` with `lora` applied (scale 1) when given.
    fn new(
        model: &'m LlamaModel,
        lora: Option<&Mutex<LlamaLoraAdapter>>,
        slots_n: usize,
        per_seq: usize,
        n_batch: usize,
        threads: i32,
    ) -> std::result::Result<Self, GenError> {
        let n_ctx = u32::try_from(per_seq.saturating_mul(slots_n)).unwrap_or(u32::MAX);
        // The cache is unified: a copied prefix is shared by the sequences, not duplicated.
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(u32::try_from(n_batch).unwrap_or(u32::MAX))
            .with_n_seq_max(u32::try_from(slots_n + 2).unwrap_or(1))
            .with_n_threads(threads)
            .with_n_threads_batch(threads)
            .with_kv_unified(true);
        let backend = backend().map_err(|e| GenError::Permanent(e.to_string()))?;
        let mut ctx = model
            .new_context(backend, params)
            .map_err(|e| GenError::Permanent(format!("llama.cpp context of {n_ctx} tokens: {e}")))?;
        if let Some(lora) = lora {
            let mut adapter = lora.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            ctx.lora_adapter_set(&mut adapter, 1.0)
                .map_err(|e| GenError::Permanent(format!("llama.cpp LoRA adapter: {e}")))?;
        }
        Ok(Self {
            ctx,
            batch: LlamaBatch::new(n_batch, 1),
            n_batch,
            prefix: 0,
            prefix_seq: seq(slots_n),
            scratch_seq: seq(slots_n + 1),
        })
    }

    /// Puts `prefix` into the prefix sequence: from the longest kept state that shares a
    /// start with it (cut to that start), the rest evaluated; the result is kept for later
    /// batches. Returns the tokens evaluated. On any failure the lane goes on without a
    /// prefix.
    fn establish_prefix(&mut self, prefix: &[LlamaToken], states: &mut Vec<PrefixState>) -> usize {
        if prefix.is_empty() {
            return 0;
        }
        let best = states
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let n = lcp(&e.tokens, prefix);
                (i, n - n % ROW_GROUP)
            })
            .filter(|&(_, n)| n >= MIN_PREFIX)
            .max_by_key(|&(_, n)| n);
        let mut have = 0;
        if let Some((i, n)) = best {
            let entry = states.remove(i);
            let restored = self.ctx.state_seq_set(&entry.state, self.prefix_seq).is_ok()
                && (n == entry.tokens.len() || self.ctx.kv_cache_seq_rm(self.prefix_seq, Some(len32(n)), None).is_ok());
            if restored {
                have = n;
            } else {
                let _ = self.ctx.clear_kv_cache_seq(Some(self.prefix_seq.unsigned_abs()), None, None);
            }
            // Most recently used last.
            states.push(entry);
        }
        let mut evaluated = 0;
        let step = (self.n_batch - TILED_ROWS) / ROW_GROUP * ROW_GROUP;
        for chunk in prefix[have..].chunks(step) {
            self.batch.clear();
            let start = have + evaluated;
            for (i, t) in chunk.iter().enumerate() {
                if self.batch.add(*t, pos(start + i), &[self.prefix_seq], false).is_err() {
                    return self.drop_prefix(evaluated);
                }
            }
            // Throwaway rows of a sequence of their own, after the prefix's in the batch (and
            // so in the cache), bring it to TILED_ROWS rows (see there) and to whole groups of
            // ROW_GROUP rows.
            let rows = chunk.len().max(TILED_ROWS).next_multiple_of(ROW_GROUP);
            for i in 0..rows - chunk.len() {
                if self.batch.add(chunk[0], pos(i), &[self.scratch_seq], false).is_err() {
                    return self.drop_prefix(evaluated);
                }
            }
            let decoded = self.ctx.decode(&mut self.batch);
            let _ = self.ctx.clear_kv_cache_seq(Some(self.scratch_seq.unsigned_abs()), None, None);
            if decoded.is_err() {
                return self.drop_prefix(evaluated);
            }
            evaluated += chunk.len();
        }
        self.prefix = prefix.len();
        if evaluated > 0
            && let Ok(state) = self.ctx.state_seq_get(self.prefix_seq, LlamaStateSeqFlags::empty())
        {
            // A kept prefix that this one extends serves nothing this one does not.
            states.retain(|e| !prefix.starts_with(&e.tokens));
            states.push(PrefixState { tokens: prefix.to_vec(), state });
            if states.len() > PREFIX_STATES {
                states.remove(0);
            }
        }
        evaluated
    }

    fn drop_prefix(&mut self, evaluated: usize) -> usize {
        let _ = self.ctx.clear_kv_cache_seq(Some(self.prefix_seq.unsigned_abs()), None, None);
        self.prefix = 0;
        evaluated
    }

    /// Empties slot `s`'s sequence and gives it the shared prefix; returns the position its
    /// own tokens start at.
    fn start(&mut self, s: usize) -> std::result::Result<usize, GenError> {
        self.ctx
            .clear_kv_cache_seq(Some(seq(s).unsigned_abs()), None, None)
            .map_err(|e| GenError::Permanent(e.to_string()))?;
        if self.prefix > 0 {
            self.ctx
                .kv_cache_seq_cp(self.prefix_seq, seq(s), None, None)
                .map_err(|e| GenError::Permanent(e.to_string()))?;
        }
        Ok(self.prefix)
    }

    /// Drops slot `s`'s cache from position `from` on.
    fn cut(&mut self, s: usize, from: usize) -> std::result::Result<(), GenError> {
        self.ctx.kv_cache_seq_rm(seq(s), Some(len32(from)), None).map_err(|e| GenError::Permanent(e.to_string()))
    }

    /// Empties the whole cache, the shared prefix with it.
    fn clear(&mut self) {
        self.ctx.clear_kv_cache();
        self.prefix = 0;
    }

    /// The draft model's turn, for each greedy decoding slot whose earlier proposals are used
    /// up: catches its cache up with the accepted tokens, then proposes up to `draft_max`
    /// tokens, one batch per token, stopping early where the draft is unsure. Leaves the
    /// proposals in `Slot::drafts`.
    fn propose(
        &mut self,
        slots: &mut [Option<Slot>],
        requests: &[GenRequest],
        per_seq: usize,
        draft_max: usize,
        vocab: &LlamaVocab<'_>,
        stats: &mut LlamaStats,
    ) -> std::result::Result<(), GenError> {
        let n_vocab = vocab.n_tokens();
        self.batch.clear();
        let mut budget = vec![0usize; slots.len()];
        for (s, slot) in slots.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            // Only sequences past their prompt (one token waiting to be fed) and greedy ones:
            // a sampled sequence's next token is not the main model's most likely one.
            if !slot.greedy || slot.tokens.len() != slot.pos + 1 || !slot.drafts.is_empty() {
                continue;
            }
            let max_tokens = requests[slot.req].max_tokens as usize;
            // The main model writes at most one more token than it accepts.
            let k = draft_max
                .min(max_tokens.saturating_sub(slot.generated as usize + 1))
                .min(per_seq.saturating_sub(slot.tokens.len() + 1));
            let feed = &slot.tokens[slot.draft_pos..];
            if k == 0 || feed.is_empty() || self.batch.n_tokens() as usize + feed.len() > self.n_batch {
                continue;
            }
            for (i, t) in feed.iter().enumerate() {
                self.batch.add(*t, pos(slot.draft_pos + i), &[seq(s)], i + 1 == feed.len()).map_err(batch_err)?;
            }
            stats.draft_prompt_tokens_evaluated += slot.n_prompt.saturating_sub(slot.draft_pos) as u64;
            slot.draft_pos = slot.tokens.len();
            slot.draft_logit = self.batch.n_tokens() - 1;
            budget[s] = k;
        }
        while self.batch.n_tokens() > 0 {
            self.ctx.decode(&mut self.batch).map_err(|e| GenError::Permanent(format!("draft decode: {e}")))?;
            self.batch.clear();
            for (s, slot) in slots.iter_mut().enumerate() {
                let Some(slot) = slot else { continue };
                if budget[s] == 0 {
                    continue;
                }
                let (token, p) = top_token(self.ctx.get_logits_ith(slot.draft_logit));
                if p < DRAFT_P_MIN || token.0 >= n_vocab {
                    budget[s] = 0;
                    continue;
                }
                slot.drafts.push(token);
                stats.draft_tokens += 1;
                if slot.drafts.len() >= budget[s] || vocab.is_eog(token) {
                    budget[s] = 0;
                    continue;
                }
                self.batch.add(token, pos(slot.draft_pos), &[seq(s)], true).map_err(batch_err)?;
                slot.draft_pos += 1;
                slot.draft_logit = self.batch.n_tokens() - 1;
            }
        }
        Ok(())
    }
}

/// The state of a shared prefix's sequence, kept between batches.
struct PrefixState {
    tokens: Vec<LlamaToken>,
    state: SeqState,
}

/// What prefix reuse keeps between batches: each model's prefix states (most recently used
/// last) and the latest prompts, whose shared starts become prefixes.
#[derive(Default)]
struct Prefixes {
    main: Vec<PrefixState>,
    draft: Vec<PrefixState>,
    recent: VecDeque<Vec<LlamaToken>>,
}

impl Prefixes {
    fn remember(&mut self, prompts: &[&[LlamaToken]]) {
        for p in prompts {
            self.recent.push_back(p.to_vec());
            if self.recent.len() > RECENT_PROMPTS {
                self.recent.pop_front();
            }
        }
    }
}

/// Length of the common start of `a` and `b`.
fn lcp(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// How many leading tokens of the prompts to evaluate once as their shared prefix: the start
/// all of them share when there are several, or the longest start they share with a `known`
/// token sequence (a kept prefix, an earlier prompt), cut to a multiple of [`ROW_GROUP`].
/// Every prompt keeps a tail of at least [`MIN_TAIL`] tokens to evaluate (see [`TILED_ROWS`];
/// and its last token's logits give the first output token). 0 when under [`MIN_PREFIX`].
fn shared_prefix<'a>(prompts: &[&[LlamaToken]], known: impl Iterator<Item = &'a [LlamaToken]>) -> usize {
    let Some(first) = prompts.first() else { return 0 };
    let shortest = prompts.iter().map(|p| p.len()).min().unwrap_or(0);
    let common = prompts[1..].iter().fold(first.len(), |n, p| n.min(lcp(first, p)));
    let cap = common.min(shortest.saturating_sub(MIN_TAIL));
    let mut best = if prompts.len() > 1 { cap } else { 0 };
    for k in known {
        best = best.max(lcp(k, &first[..cap]));
    }
    let best = best - best % ROW_GROUP;
    if best < MIN_PREFIX { 0 } else { best }
}

/// The most likely token of `logits` and its probability.
fn top_token(logits: &[f32]) -> (LlamaToken, f32) {
    let (mut best, mut max) = (0, f32::NEG_INFINITY);
    for (i, &l) in logits.iter().enumerate() {
        if l > max {
            (best, max) = (i, l);
        }
    }
    let sum: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    // Logits that say nothing (NaN, all -inf) give no confidence.
    let p = 1.0 / sum;
    (LlamaToken(i32::try_from(best).unwrap_or(0)), if p.is_finite() { p } else { 0.0 })
}

/// Loads a GGUF file; `hint` says how to get it when it is missing.
fn load_model(path: &Path, config: &LlamaConfig, hint: &str) -> Result<LlamaModel> {
    let err = |reason: String| LlmError::Model { path: path.to_path_buf(), reason };
    if !path.is_file() {
        return Err(err(format!("no such file ({hint})")));
    }
    let backend = backend()?;
    let params = LlamaModelParams::default().with_n_gpu_layers(config.gpu_layers);
    LlamaModel::load_from_file(backend, path, &params)
        .map_err(|e| err(format!("llama.cpp cannot load it ({e}); is it a GGUF model file?")))
}

/// Loads the LoRA adapter at `path` for `model` (the GGUF at `model_path`). Its metadata is
/// checked first, for errors that say what is wrong (and because llama.cpp aborts on keys of
/// another type); llama.cpp then checks that every tensor it changes is in the model with
/// the same shape. The adapter belongs to `model` and is freed with it.
fn load_lora(model: &mut LlamaModel, model_path: &Path, path: &Path) -> Result<LlamaLoraAdapter> {
    let err = |why: String| LlmError::Model {
        path: path.to_path_buf(),
        reason: format!("cannot apply this LoRA adapter to {}: {why}", model_path.display()),
    };
    if !path.is_file() {
        return Err(err(format!("no such file ({LORA_HINT})")));
    }
    if path.to_str().is_none() {
        return Err(err("llama.cpp needs a path that is valid UTF-8".into()));
    }
    let gguf = GgufContext::from_file(path).ok_or_else(|| err(format!("not a GGUF file ({LORA_HINT})")))?;
    let general_type = gguf_str(&gguf, "general.type").map_err(&err)?;
    if general_type != Some("adapter") {
        let what = match general_type {
            Some("model") => "a model, not an adapter (general.type = model)".to_string(),
            Some(t) => format!("not an adapter (general.type = {t})"),
            None => "not an adapter (no general.type)".to_string(),
        };
        return Err(err(format!("it is {what}; {LORA_HINT}")));
    }
    let adapter_type = gguf_str(&gguf, "adapter.type").map_err(&err)?;
    if adapter_type != Some("lora") {
        let t = adapter_type.unwrap_or("missing");
        return Err(err(format!("adapter.type is {t}, not lora; {LORA_HINT}")));
    }
    let Some(arch) = gguf_str(&gguf, "general.architecture").map_err(&err)? else {
        return Err(err(format!("it names no architecture (general.architecture); {LORA_HINT}")));
    };
    if let Ok(model_arch) = model.meta_val_str("general.architecture")
        && model_arch != arch
    {
        return Err(err(format!("it adapts a model of architecture {arch}, and this one is {model_arch}")));
    }
    let alpha = gguf.find_key("adapter.lora.alpha");
    if alpha >= 0 && gguf.kv_type(alpha) != GGUF_TYPE_FLOAT32 {
        return Err(err("adapter.lora.alpha is not a 32-bit float".into()));
    }
    drop(gguf);
    model.lora_adapter_init(path).map_err(|e| {
        err(format!(
            "llama.cpp cannot load it ({e}): a tensor it changes is missing from the model, has \
             another shape, or the file is damaged; was it trained for this base model? (set \
             DOCRAFT_LLAMA_LOG=1 for llama.cpp's reason)"
        ))
    })
}

/// The string value of `key` in a GGUF's metadata (`None`: absent); `Err` when it is of
/// another type.
fn gguf_str<'a>(gguf: &'a GgufContext, key: &str) -> std::result::Result<Option<&'a str>, String> {
    let i = gguf.find_key(key);
    if i < 0 {
        return Ok(None);
    }
    if gguf.kv_type(i) != GGUF_TYPE_STRING {
        return Err(format!("{key} is not a string"));
    }
    Ok(gguf.val_str(i))
}

/// Whether `draft` tokenizes as `main` does: the same kind of tokenizer, special tokens and
/// token texts (the sizes may differ by a few padding tokens at the end). `Err` says how
/// they differ.
fn same_vocabulary(main: &LlamaModel, draft: &LlamaModel) -> std::result::Result<(), String> {
    let (a, b) = (main.vocab(), draft.vocab());
    if a.vocab_type() != b.vocab_type() {
        return Err(format!("a {:?} tokenizer against {:?}", b.vocab_type(), a.vocab_type()));
    }
    let (na, nb) = (main.n_vocab(), draft.n_vocab());
    if (na - nb).abs() > DRAFT_VOCAB_SLACK {
        return Err(format!("{nb} tokens against {na}"));
    }
    if (a.should_add_bos(), a.bos(), a.eos()) != (b.should_add_bos(), b.bos(), b.eos()) {
        return Err("other BOS/EOS tokens".into());
    }
    let text = |v: &LlamaVocab<'_>, t| v.text(t).map(|c| c.to_string_lossy().into_owned());
    for id in 0..na.min(nb) {
        let t = LlamaToken(id);
        if a.text(t) != b.text(t) {
            return Err(format!("token {id} is {:?} against {:?}", text(&b, t), text(&a, t)));
        }
    }
    Ok(())
}

/// Whether the model attends through a sliding window (its cache forgets old positions, so
/// a kept prefix cannot be cut back anywhere).
fn sliding_window(model: &LlamaModel) -> bool {
    model
        .meta_val_str("general.architecture")
        .ok()
        .and_then(|arch| model.meta_val_str(&format!("{arch}.attention.sliding_window")).ok())
        .is_some_and(|w| w.trim() != "0")
}

fn batch_err(e: impl std::fmt::Display) -> GenError {
    GenError::Permanent(format!("llama.cpp batch: {e}"))
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

/// One sequence being decoded.
struct Slot {
    req: usize,
    sampler: Picker,
    /// Greedy (temperature 0): the draft model may propose its tokens.
    greedy: bool,
    n_prompt: usize,
    /// The prompt and the tokens written so far; the last one is not yet in the cache.
    tokens: Vec<LlamaToken>,
    /// Tokens in the main model's cache.
    pos: usize,
    /// Tokens in the draft model's cache (`tokens`, then proposals).
    draft_pos: usize,
    /// The draft model's proposals for this step.
    drafts: Vec<LlamaToken>,
    draft_logit: i32,
    /// Where this step's logits are in the main batch: the last token fed, then each proposal.
    logits: Vec<i32>,
    generated: u32,
    bytes: Vec<u8>,
}

impl Slot {
    /// Picks this pass's tokens: one from the last token fed, then one more per checked
    /// proposal as long as the main model picked the proposal itself. Returns why the sequence
    /// ended, if it did, and how many proposals matched the picks in a row (the last pick
    /// counts too when it matches the first unchecked proposal); the cache then holds `pos`
    /// valid tokens.
    fn pick(
        &mut self,
        ctx: &LlamaContext<'_>,
        vocab: &LlamaVocab<'_>,
        max_tokens: u32,
        per_seq: usize,
        stats: &mut LlamaStats,
    ) -> (Option<FinishReason>, usize) {
        let base = self.tokens.len();
        let checked = self.logits.len() - 1;
        let mut matched = 0;
        let mut finish = None;
        for (i, &idx) in self.logits.iter().enumerate() {
            let token = self.sampler.pick(ctx, idx, vocab);
            self.generated += 1;
            finish = if vocab.is_eog(token) {
                Some(FinishReason::Stop)
            } else {
                self.bytes.extend(vocab.token_to_piece(token, false, None));
                (self.generated >= max_tokens || self.tokens.len() + 1 >= per_seq).then_some(FinishReason::Length)
            };
            self.tokens.push(token);
            if finish.is_some() || self.drafts.get(i) != Some(&token) {
                break;
            }
            matched += 1;
        }
        stats.decode_steps += 1;
        stats.draft_accepted += matched as u64;
        self.pos = base + matched.min(checked);
        (finish, matched)
    }
}

fn seq(slot: usize) -> i32 {
    i32::try_from(slot).unwrap_or(0)
}

fn pos(p: usize) -> i32 {
    i32::try_from(p).unwrap_or(i32::MAX)
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
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
        let mut prefixes = self.busy.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut stats = LlamaStats { requests: requests.len() as u64, ..LlamaStats::default() };
        let out = self.run_batch(requests, &mut prefixes, &mut stats);
        *self.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += stats;
        out
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

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(ids: &[i32]) -> Vec<LlamaToken> {
        ids.iter().copied().map(LlamaToken).collect()
    }

    /// `shared` tokens counting up from `head`, then `own` tokens of value `tag`.
    fn prompt(head: i32, shared: usize, own: usize, tag: i32) -> Vec<LlamaToken> {
        let mut v: Vec<LlamaToken> = (0..shared).map(|i| LlamaToken(head + i32::try_from(i).unwrap_or(0))).collect();
        v.extend(std::iter::repeat_n(LlamaToken(-tag), own));
        v
    }

    #[test]
    fn the_shared_prefix_is_the_common_start_within_a_batch_and_with_known_prompts() {
        // Prompts of 100 shared tokens and a tail of 80 of their own.
        let a = prompt(100, 100, 80, 1);
        let b = prompt(100, 100, 80, 2);
        let none = std::iter::empty::<&[LlamaToken]>;
        // Two prompts: all they share.
        assert_eq!(shared_prefix(&[&a, &b], none()), 100);
        // One prompt alone shares nothing with nobody, however long.
        assert_eq!(shared_prefix(&[&a], none()), 0);
        // ... but what it shares with an earlier prompt.
        assert_eq!(shared_prefix(&[&a], [b.as_slice()].into_iter()), 100);
        // Each prompt keeps a tail of MIN_TAIL tokens: an identical prompt gives the rest.
        assert_eq!(shared_prefix(&[&a], [a.as_slice()].into_iter()), a.len() - MIN_TAIL);
        assert_eq!(shared_prefix(&[&a, &a.clone()], none()), a.len() - MIN_TAIL);
        // The shortest prompt bounds it: 100 shared, but only 30 tokens of its own.
        let short = prompt(100, 100, 30, 3);
        assert_eq!(shared_prefix(&[&a, &short], none()), 64, "130 - MIN_TAIL, down to a multiple of ROW_GROUP");
        // 99 shared tokens: 96 of them.
        let e = prompt(100, 99, 80, 5);
        assert_eq!(shared_prefix(&[&a, &e], none()), 96);
        // A prompt too short to keep a tail of MIN_TAIL after MIN_PREFIX shares nothing.
        let tiny = prompt(100, 40, 30, 4);
        assert_eq!(shared_prefix(&[&a, &tiny], none()), 0);
        // Shorter than MIN_PREFIX: not worth a pass of its own.
        let c = prompt(100, MIN_PREFIX - 1, 80, 1);
        let d = prompt(100, MIN_PREFIX - 1, 80, 2);
        assert_eq!(shared_prefix(&[&c, &d], none()), 0);
        // Nothing in common, nothing known.
        let other = prompt(5000, 100, 80, 1);
        assert_eq!(shared_prefix(&[&a, &other], [b.as_slice()].into_iter()), 0);
        assert_eq!(shared_prefix(&[], none()), 0);
        assert_eq!(lcp(&toks(&[1, 2, 3]), &toks(&[1, 2, 4, 5])), 2);
    }

    #[test]
    fn the_top_token_and_its_probability() {
        let (t, p) = top_token(&[0.0, 2.0, 0.0]);
        assert_eq!(t, LlamaToken(1));
        let want = 2f32.exp() / (2.0 + 2f32.exp());
        assert!((p - want).abs() < 1e-6, "{p} vs {want}");
        // Logits that say nothing give no confidence, not a token to trust.
        let (_, p) = top_token(&[f32::NAN, f32::NAN]);
        assert!(p < DRAFT_P_MIN);
        let (_, p) = top_token(&[f32::NEG_INFINITY, f32::NEG_INFINITY]);
        assert!(p < DRAFT_P_MIN);
    }
}
