//! A generation run: chunks in, `qa.jsonl` + `qa.rejected.jsonl` out, resumable at any
//! moment.
//!
//! Each chunk is one unit of work, keyed by its *generation key* (chunk id and text, prompt,
//! model and settings hashed together). Its outcome is written in three appends: rejected
//! records, accepted pairs, then a marker line in `qa.progress.jsonl`. A run killed anywhere
//! leaves, at most, records of one chunk without a marker; the next run moves those aside
//! (to `*.interrupted`), redoes that chunk, and skips every chunk with a marker. So each
//! chunk's records are written exactly once, and the counts in the markers always add up to
//! the lines of the two files.
//!
//! Chunks not worth asking about (tables of contents, boilerplate, navigation: see
//! [`crate::skip`]) are skipped before generation when [`GenerateOptions::skip_chunks`] is on:
//! each is one record in the rejected file under its reason (`toc`, `boilerplate`,
//! `navigation`) and a marker like any other chunk, and the summary counts them apart from
//! rejected pairs. A run with skipping off moves those records and markers aside and asks
//! about the chunks.
//!
//! With a [`Judge`], the pairs that pass the filters are scored by it before the
//! near-duplicate check (so the run's duplicates are judged against kept pairs only, as a
//! resumed run's are).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use docraft_core::jsonl::{JsonlWriter, read_all, retain};
use docraft_core::{CancelToken, Chunk, ChunkRef};
use docraft_core::{
    ChunkId, DocId, Embedder, GenError, GenRequest, GenResponse, Generator, JudgeScores, QaPair, Sampling, Usage,
    content_hash,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::filter::{Deduper, Filters, Reason};
use crate::judge::{Judge, Verdict};
use crate::parse::{RawPair, parse_pairs};
use crate::prompt::QaPrompt;
use crate::skip::{Skip, classify};
use crate::{QaGenError, Result};

/// Prices of a priced endpoint, per million tokens, for cost estimates and budgets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// Per million prompt tokens.
    pub input_per_million: f64,
    /// Per million generated tokens.
    pub output_per_million: f64,
}

impl Price {
    /// The cost of `usage`.
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn cost(&self, usage: Usage) -> f64 {
        (usage.prompt_tokens as f64 * self.input_per_million + usage.completion_tokens as f64 * self.output_per_million)
            / 1e6
    }
}

/// Limits on what one invocation spends. The run stops cleanly at a chunk-batch boundary:
/// pairs stop once reached; tokens and cost stop *before* a batch that could pass them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Accepted pairs.
    pub max_pairs: Option<u64>,
    /// Prompt + generated tokens.
    pub max_tokens: Option<u64>,
    /// Cost in the price's currency (needs a [`Price`]).
    pub max_cost: Option<f64>,
}

/// Settings of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Pairs asked for per chunk.
    pub questions_per_chunk: usize,
    /// Most tokens generated per chunk.
    pub max_tokens: u32,
    /// Sampling; its seed is the run's seed (each chunk gets its own seed derived from it).
    pub sampling: Sampling,
    /// Quality filters.
    pub filters: Filters,
    /// Spending limits.
    pub budget: Budget,
    /// Prices, for cost estimates.
    pub price: Option<Price>,
    /// Chunks per batch handed to the generator (default: its preferred batch).
    pub batch: Option<usize>,
    /// Skip chunks not worth asking about (tables of contents, indexes, copyright and license
    /// boilerplate, navigation), each recorded with its reason. On by default.
    pub skip_chunks: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            questions_per_chunk: 3,
            max_tokens: 512,
            sampling: Sampling::default(),
            filters: Filters::default(),
            budget: Budget::default(),
            price: None,
            batch: None,
            skip_chunks: true,
        }
    }
}

/// One rejected candidate, or one skipped chunk (its reason `toc`, `boilerplate` or
/// `navigation`, the start of its text in `raw`): a line of `qa.rejected.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejected {
    /// The chunk's generation key.
    pub gen_key: String,
    /// The chunk.
    pub chunk_id: ChunkId,
    /// Its document.
    pub doc_id: DocId,
    /// Its source path.
    pub source: String,
    /// Why.
    pub reason: Reason,
    /// Details (the measured value, the error message).
    pub detail: String,
    /// The question, when one was parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    /// The answer, when one was parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// The raw model output (for parse failures) or the offending item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// The model.
    pub model: String,
    /// The prompt id.
    pub prompt: String,
}

/// The marker that a chunk is done: a line of `qa.progress.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkDone {
    /// The chunk's generation key.
    pub gen_key: String,
    /// The chunk.
    pub chunk_id: ChunkId,
    /// Pairs accepted.
    pub accepted: u64,
    /// Records written to the rejected file, by reason: rejected candidates, or the one
    /// record of a skipped chunk under its skip reason.
    pub rejected: BTreeMap<Reason, u64>,
    /// Whether the output needed repair to parse.
    pub repaired: bool,
    /// Tokens used (the judge's included).
    pub usage: Usage,
}

impl ChunkDone {
    /// Whether the chunk was skipped before generation (its only record is a skip reason).
    #[must_use]
    pub fn is_skipped(&self) -> bool {
        self.accepted == 0 && !self.rejected.is_empty() && self.rejected.keys().all(|r| r.is_skip())
    }
}

/// Where a run writes, derived from the dataset path `DIR/NAME.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFiles {
    /// Accepted pairs (`NAME.jsonl`).
    pub accepted: PathBuf,
    /// Rejected candidates (`NAME.rejected.jsonl`).
    pub rejected: PathBuf,
    /// Done markers (`NAME.progress.jsonl`).
    pub progress: PathBuf,
    /// Log of requests sent off this machine (`NAME.requests.jsonl`).
    pub requests: PathBuf,
}

impl RunFiles {
    /// The files of a run writing `out`.
    #[must_use]
    pub fn new(out: &Path) -> Self {
        let side = |part: &str| docraft_core::jsonl::sibling(out, part);
        Self {
            accepted: out.to_path_buf(),
            rejected: side("rejected"),
            progress: side("progress"),
            requests: side("requests"),
        }
    }
}

/// Counts of a run, over the whole output (earlier runs included).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Chunks given.
    pub chunks: usize,
    /// Chunks already done by an earlier run (skipped).
    pub resumed: usize,
    /// Chunks done by this run.
    pub processed: usize,
    /// Chunks left undone (budget reached, or cancelled).
    pub remaining: usize,
    /// Candidates generated: `accepted + rejected`.
    pub generated: u64,
    /// Pairs in the dataset.
    pub accepted: u64,
    /// Candidates rejected, by reason.
    pub rejected: BTreeMap<Reason, u64>,
    /// Chunks skipped before generation (not worth asking about), by reason.
    pub skipped: BTreeMap<Reason, u64>,
    /// Outputs that needed repair to parse.
    pub repaired: u64,
    /// Tokens used by this run.
    pub usage: Usage,
    /// Records of an interrupted chunk moved aside before it was redone.
    pub rolled_back: usize,
    /// Why the run stopped early, if it did: a budget, or `"cancelled"`.
    pub stopped: Option<String>,
    /// Seconds this run took.
    pub seconds: f64,
}

impl Summary {
    /// All rejections.
    #[must_use]
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// All skipped chunks.
    #[must_use]
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    fn add(&mut self, done: &ChunkDone) {
        self.accepted += done.accepted;
        for (r, n) in &done.rejected {
            let counts = if r.is_skip() { &mut self.skipped } else { &mut self.rejected };
            *counts.entry(*r).or_default() += n;
        }
        self.generated = self.accepted + self.rejected_total();
        self.repaired += u64::from(done.repaired);
    }
}

/// Progress reported after each batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Chunks to do in this run.
    pub todo: usize,
    /// Of those, done so far.
    pub done: usize,
    /// Pairs accepted by this run so far.
    pub accepted: u64,
    /// Candidates rejected by this run so far.
    pub rejected: u64,
    /// Chunks skipped by this run so far.
    pub skipped: u64,
    /// Tokens used so far.
    pub usage: Usage,
    /// Time since this run started.
    pub elapsed: Duration,
}

/// What a run will cost, before it starts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    /// Chunks still to do.
    pub chunks: usize,
    /// Of those, chunks that will be skipped (no tokens).
    pub skipped: usize,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Most generated tokens (`max_tokens` per chunk).
    pub max_completion_tokens: u64,
    /// Whether prompt tokens were counted with the model's tokenizer (else about 4
    /// characters per token).
    pub exact: bool,
    /// Upper bound of the cost, with a price.
    pub max_cost: Option<f64>,
}

/// A generation run over chunks.
pub struct Generation<'a> {
    generator: &'a dyn Generator,
    embedder: Option<&'a dyn Embedder>,
    judge: Option<Judge<'a>>,
    options: GenerateOptions,
    prompt: QaPrompt,
    /// `prompt.id()` and `prompt.schema()`, computed once: every request and record uses them.
    prompt_id: String,
    schema: serde_json::Value,
    model: String,
    cancel: CancelToken,
}

impl std::fmt::Debug for Generation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation").field("model", &self.model).field("options", &self.options).finish_non_exhaustive()
    }
}

impl<'a> Generation<'a> {
    /// A run with `generator` and `options`.
    ///
    /// # Errors
    /// [`QaGenError::Setting`] for out-of-range options.
    pub fn new(generator: &'a dyn Generator, options: GenerateOptions) -> Result<Self> {
        if options.questions_per_chunk == 0 || options.questions_per_chunk > 50 {
            return Err(QaGenError::Setting { name: "questions_per_chunk", reason: "must be 1..=50".into() });
        }
        if options.max_tokens < 16 {
            return Err(QaGenError::Setting { name: "max_tokens", reason: "must be at least 16".into() });
        }
        if options.budget.max_cost.is_some() && options.price.is_none() {
            return Err(QaGenError::Setting {
                name: "max_cost",
                reason: "a cost budget needs prices (input and output per million tokens)".into(),
            });
        }
        let prompt = QaPrompt::new(options.questions_per_chunk);
        let model = generator.model_id();
        let (prompt_id, schema) = (prompt.id(), prompt.schema());
        Ok(Self {
            generator,
            embedder: None,
            judge: None,
            options,
            prompt,
            prompt_id,
            schema,
            model,
            cancel: CancelToken::new(),
        })
    }

    /// Detects near-duplicate questions by embedding similarity instead of text similarity.
    #[must_use]
    pub fn with_embedder(mut self, embedder: &'a dyn Embedder) -> Self {
        self.embedder = Some(embedder);
        self
    }

    /// Has `judge` score every pair that passes the filters; pairs below its threshold, or
    /// whose verdict cannot be read, are rejected with their reason (see [`crate::judge`]).
    /// Like the filters, the judge is not part of the generation key: chunks done before are
    /// not judged again.
    #[must_use]
    pub fn with_judge(mut self, judge: Judge<'a>) -> Self {
        self.judge = Some(judge);
        self
    }

    /// Stops [`Self::run`] before its next batch of chunks once `cancel` is cancelled: what was
    /// written stays, the summary's `stopped` says `"cancelled"`, and a rerun resumes as after
    /// a kill.
    #[must_use]
    pub fn with_cancel(mut self, cancel: CancelToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// The prompt this run uses.
    #[must_use]
    pub fn prompt(&self) -> &QaPrompt {
        &self.prompt
    }

    /// The generation key of a chunk: its id and text, the prompt, the model and every
    /// setting that changes the output. Filters are not part of it: changing a threshold does
    /// not make a run redo finished chunks.
    #[must_use]
    pub fn gen_key(&self, chunk: &Chunk) -> String {
        let key = json!({
            "chunk": chunk.id,
            "text": content_hash(chunk.text.as_bytes()),
            "prompt": self.prompt_id,
            "model": self.model,
            "n": self.options.questions_per_chunk,
            "max_tokens": self.options.max_tokens,
            "sampling": self.options.sampling,
        });
        content_hash(key.to_string().as_bytes())[..32].to_string()
    }

    fn request(&self, chunk: &Chunk, lang: &str) -> Result<GenRequest> {
        let seed_hex = content_hash(format!("{}:{}", self.options.sampling.seed, chunk.id).as_bytes());
        let seed = u64::from_str_radix(&seed_hex[..16], 16).unwrap_or(self.options.sampling.seed);
        Ok(GenRequest {
            messages: self.prompt.render(chunk, lang)?,
            max_tokens: self.options.max_tokens,
            sampling: Sampling { seed, ..self.options.sampling },
            json_schema: Some(self.schema.clone()),
            tag: chunk.id.to_string(),
        })
    }

    /// Tokens and cost of the chunks not done yet in `out`.
    ///
    /// # Errors
    /// [`QaGenError::Core`] if the progress file cannot be read; [`QaGenError::Prompt`] if a
    /// prompt file names a variable the prompt does not give.
    pub fn estimate(&self, chunks: &[Chunk], out: &Path) -> Result<Estimate> {
        let done: HashSet<String> = markers(&RunFiles::new(out))?
            .into_iter()
            .filter(|d| self.options.skip_chunks || !d.is_skipped())
            .map(|d| d.gen_key)
            .collect();
        let mut est =
            Estimate { chunks: 0, skipped: 0, prompt_tokens: 0, max_completion_tokens: 0, exact: true, max_cost: None };
        for chunk in chunks.iter().filter(|c| !done.contains(&self.gen_key(c))) {
            if self.skip_of(chunk).is_some() {
                est.chunks += 1;
                est.skipped += 1;
                continue;
            }
            let req = self.request(chunk, &QaPrompt::language_of(chunk))?;
            let text: String = req.messages.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n");
            let tokens = match self.generator.count_tokens(&text) {
                Some(n) => n as u64,
                None => {
                    est.exact = false;
                    text.chars().count().div_ceil(4) as u64
                }
            };
            est.chunks += 1;
            est.prompt_tokens += tokens + 8 * req.messages.len() as u64;
            est.max_completion_tokens += u64::from(self.options.max_tokens);
        }
        est.max_cost = self
            .options
            .price
            .map(|p| p.cost(Usage { prompt_tokens: est.prompt_tokens, completion_tokens: est.max_completion_tokens }));
        Ok(est)
    }

    /// Runs over `chunks`, appending to `out` and its side files, skipping chunks an earlier
    /// run finished. `progress` is told after every batch; the cancellation token
    /// ([`Self::with_cancel`]) is checked before each batch.
    ///
    /// # Errors
    /// File errors, embedder errors and a broken prompt file stop the run (everything written
    /// so far is kept and a rerun resumes); a failed request or bad output never does: it is a rejected record.
    pub fn run(
        &self,
        chunks: &[Chunk],
        out: &Path,
        progress: &dyn docraft_core::Progress<Progress>,
    ) -> Result<Summary> {
        let started = Instant::now();
        let files = RunFiles::new(out);
        let mut summary = Summary { chunks: chunks.len(), ..Summary::default() };

        // 1. What earlier runs finished; roll back records of a chunk cut off mid-write. With
        //    skipping off, the chunks an earlier run skipped are to be asked about now: their
        //    markers, then their records, move aside to `*.interrupted`.
        if !self.options.skip_chunks {
            retain::<ChunkDone, _>(&files.progress, |d| !d.is_skipped())?;
        }
        let (mut progress_w, _) = JsonlWriter::<ChunkDone>::append(&files.progress)?;
        let markers = markers(&files)?;
        let done: HashSet<String> = markers.iter().map(|d| d.gen_key.clone()).collect();
        markers.iter().for_each(|d| summary.add(d));
        summary.rolled_back = retain::<Rejected, _>(&files.rejected, |r| done.contains(&r.gen_key))?
            + retain::<QaPair, _>(&files.accepted, |p| done.contains(&p.gen_key))?;
        let (mut accepted_w, _) = JsonlWriter::<QaPair>::append(&files.accepted)?;
        let (mut rejected_w, _) = JsonlWriter::<Rejected>::append(&files.rejected)?;

        // 2. Near-duplicates are judged against everything already accepted.
        let mut dedup = self.options.filters.dedup.map(|t| Deduper::new(t, self.embedder));
        if let Some(d) = dedup.as_mut()
            && files.accepted.exists()
        {
            let (pairs, _) = read_all::<QaPair>(&files.accepted)?;
            d.preload(&pairs.iter().map(|p| p.question.as_str()).collect::<Vec<_>>())?;
        }

        // 3. The chunks left, in batches.
        let mut seen = HashSet::new();
        let todo: Vec<(&Chunk, String)> = chunks
            .iter()
            .map(|c| (c, self.gen_key(c)))
            .filter(|(_, k)| !done.contains(k) && seen.insert(k.clone()))
            .collect();
        summary.resumed = chunks.len() - todo.len();
        let batch = self.options.batch.unwrap_or_else(|| self.generator.preferred_batch()).max(1);
        let mut state = Progress {
            todo: todo.len(),
            done: 0,
            accepted: 0,
            rejected: 0,
            skipped: 0,
            usage: Usage::default(),
            elapsed: Duration::ZERO,
        };
        for group in todo.chunks(batch) {
            if self.cancel.is_cancelled() {
                summary.stopped = Some("cancelled".into());
                break;
            }
            if let Some(why) = self.over_budget(&state, group.len()) {
                summary.stopped = Some(why);
                break;
            }
            let langs: Vec<String> = group.iter().map(|(c, _)| QaPrompt::language_of(c)).collect();
            // Chunks not worth asking about are not sent.
            let skips: Vec<Option<Skip>> = group.iter().map(|(c, _)| self.skip_of(c)).collect();
            let requests: Vec<GenRequest> = group
                .iter()
                .zip(&langs)
                .zip(&skips)
                .filter(|(_, skip)| skip.is_none())
                .map(|(((c, _), l), _)| self.request(c, l))
                .collect::<Result<_>>()?;
            let mut results = if requests.is_empty() { Vec::new() } else { self.generator.generate_batch(&requests) };
            results.resize_with(requests.len(), || Err(GenError::Permanent("the backend returned no result".into())));
            let mut results = results.into_iter();
            let mut screened = Vec::with_capacity(group.len());
            for (((chunk, key), lang), skip) in group.iter().zip(&langs).zip(&skips) {
                screened.push(match skip {
                    Some(skip) => self.skipped(chunk, key, skip),
                    None => {
                        let result = results
                            .next()
                            .unwrap_or_else(|| Err(GenError::Permanent("the backend returned no result".into())));
                        self.screen(chunk, key, lang, result)
                    }
                });
            }
            if let Some(judge) = &self.judge {
                self.apply_judge(judge, group, &langs, &mut screened)?;
            }
            for (((chunk, key), lang), sc) in group.iter().zip(&langs).zip(screened) {
                let outcome = self.accept(chunk, key, lang, sc, dedup.as_mut())?;
                rejected_w.write_all(&outcome.rejected)?;
                accepted_w.write_all(&outcome.accepted)?;
                progress_w.write(&outcome.done)?;
                summary.add(&outcome.done);
                summary.usage += outcome.done.usage;
                summary.processed += 1;
                state.done += 1;
                state.accepted += outcome.done.accepted;
                if outcome.done.is_skipped() {
                    state.skipped += 1;
                } else {
                    state.rejected += outcome.done.rejected.values().sum::<u64>();
                }
                state.usage += outcome.done.usage;
            }
            state.elapsed = started.elapsed();
            progress.update(&state);
        }
        summary.remaining = todo.len() - summary.processed;
        summary.seconds = started.elapsed().as_secs_f64();
        Ok(summary)
    }

    fn over_budget(&self, state: &Progress, next: usize) -> Option<String> {
        let b = &self.options.budget;
        if let Some(max) = b.max_pairs
            && state.accepted >= max
        {
            return Some(format!("--max-pairs {max} reached ({} pairs)", state.accepted));
        }
        // The next batch could use up to its prompts plus max_tokens each; the prompt side is
        // bounded by what the batches so far used per chunk.
        let per_chunk_prompt = if state.done == 0 { 0 } else { state.usage.prompt_tokens / state.done as u64 };
        let next_usage = Usage {
            prompt_tokens: per_chunk_prompt * next as u64,
            completion_tokens: u64::from(self.options.max_tokens) * next as u64,
        };
        let used = state.usage.prompt_tokens + state.usage.completion_tokens;
        if let Some(max) = b.max_tokens
            && used + next_usage.prompt_tokens + next_usage.completion_tokens > max
        {
            return Some(format!("--max-tokens-total {max} would be passed ({used} tokens used)"));
        }
        if let (Some(max), Some(price)) = (b.max_cost, self.options.price) {
            let spent = price.cost(state.usage);
            if spent + price.cost(next_usage) > max {
                return Some(format!("--max-cost {max} would be passed ({spent:.4} spent)"));
            }
        }
        None
    }

    /// Why `chunk` is skipped, when skipping is on and it is not worth asking about.
    fn skip_of(&self, chunk: &Chunk) -> Option<Skip> {
        if !self.options.skip_chunks {
            return None;
        }
        classify(&chunk.text, &chunk.headings)
    }

    /// A rejected record of `chunk`.
    fn rejected(
        &self,
        chunk: &Chunk,
        key: &str,
        reason: Reason,
        detail: String,
        pair: Option<&RawPair>,
        raw: Option<String>,
    ) -> Rejected {
        Rejected {
            gen_key: key.to_string(),
            chunk_id: chunk.id.clone(),
            doc_id: chunk.doc_id.clone(),
            source: chunk.source.clone(),
            reason,
            detail,
            question: pair.map(|p| p.question.clone()),
            answer: pair.map(|p| p.answer.clone()),
            raw,
            model: self.model.clone(),
            prompt: self.prompt_id.clone(),
        }
    }

    fn empty_outcome(chunk: &Chunk, key: &str) -> Outcome {
        Outcome {
            accepted: Vec::new(),
            rejected: Vec::new(),
            done: ChunkDone {
                gen_key: key.to_string(),
                chunk_id: chunk.id.clone(),
                accepted: 0,
                rejected: BTreeMap::new(),
                repaired: false,
                usage: Usage::default(),
            },
        }
    }

    /// The one record of a skipped chunk: its reason, what was seen, and the start of its
    /// text.
    fn skipped(&self, chunk: &Chunk, key: &str, skip: &Skip) -> Screened {
        let mut out = Self::empty_outcome(chunk, key);
        let start: String = chunk.text.chars().take(SKIPPED_TEXT_CHARS).collect();
        out.rejected.push(self.rejected(
            chunk,
            key,
            skip.reason,
            format!("chunk skipped, not worth asking about: {}", skip.detail),
            None,
            Some(start),
        ));
        Screened { out, candidates: Vec::new() }
    }

    /// Parses and filters one chunk's output: rejected records so far, the pairs that passed
    /// (with their position among them, which names the pair), and the chunk's tokens.
    fn screen(
        &self,
        chunk: &Chunk,
        key: &str,
        lang: &str,
        result: std::result::Result<GenResponse, GenError>,
    ) -> Screened {
        let mut out = Self::empty_outcome(chunk, key);
        let response = match result {
            Ok(r) => r,
            Err(e) => {
                let reason = if matches!(e, GenError::ContextLengthExceeded { .. }) {
                    Reason::ContextLength
                } else {
                    Reason::BackendError
                };
                out.rejected.push(self.rejected(chunk, key, reason, e.to_string(), None, None));
                return Screened { out, candidates: Vec::new() };
            }
        };
        out.done.usage = response.usage;
        let parsed = match parse_pairs(&response.text) {
            Ok(p) => p,
            Err(e) => {
                let mut detail = e.0;
                if response.finish == docraft_core::FinishReason::Length {
                    detail.push_str(" (output cut off at max_tokens)");
                }
                out.rejected.push(self.rejected(chunk, key, Reason::Unparseable, detail, None, Some(response.text)));
                return Screened { out, candidates: Vec::new() };
            }
        };
        out.done.repaired = parsed.repaired;
        for item in parsed.incomplete {
            out.rejected.push(self.rejected(
                chunk,
                key,
                Reason::Incomplete,
                "an item without a question or an answer".into(),
                None,
                Some(item),
            ));
        }
        let n = self.options.questions_per_chunk;
        let mut candidates = Vec::new();
        for (i, pair) in parsed.pairs.into_iter().enumerate() {
            if i >= n {
                let detail = format!("pair {} of a request for {n}", i + 1);
                out.rejected.push(self.rejected(chunk, key, Reason::Surplus, detail, Some(&pair), None));
            } else if let Some((reason, detail)) = self.options.filters.check(&pair, &chunk.text, lang) {
                out.rejected.push(self.rejected(chunk, key, reason, detail, Some(&pair), None));
            } else {
                candidates.push(pair);
            }
        }
        let candidates = candidates.into_iter().enumerate().map(|(i, p)| (i, p, None)).collect();
        Screened { out, candidates }
    }

    /// Scores the batch's surviving pairs with the judge (one call): kept pairs get their
    /// scores, the others become rejected records with their reason; the judge's tokens count
    /// for the chunk.
    fn apply_judge(
        &self,
        judge: &Judge<'_>,
        group: &[(&Chunk, String)],
        langs: &[String],
        screened: &mut [Screened],
    ) -> Result<()> {
        let items: Vec<(&Chunk, &str, &RawPair)> = group
            .iter()
            .zip(langs)
            .zip(screened.iter())
            .flat_map(|(((chunk, _), lang), sc)| sc.candidates.iter().map(move |(_, p, _)| (*chunk, lang.as_str(), p)))
            .collect();
        if items.is_empty() {
            return Ok(());
        }
        let mut verdicts = judge.judge(&items)?.into_iter();
        let min = judge.options().min_score;
        let who = judge.model().to_string();
        for ((chunk, key), sc) in group.iter().zip(screened.iter_mut()) {
            let mut kept = Vec::with_capacity(sc.candidates.len());
            for (i, pair, _) in std::mem::take(&mut sc.candidates) {
                let (verdict, usage) =
                    verdicts.next().unwrap_or_else(|| (Verdict::Failed("no verdict".into()), Usage::default()));
                sc.out.done.usage += usage;
                let reject = |reason: Reason, detail: String, raw: Option<String>| {
                    self.rejected(chunk, key, reason, detail, Some(&pair), raw)
                };
                match verdict {
                    Verdict::Keep(scores) => kept.push((i, pair, Some(scores))),
                    Verdict::Low(scores, raw) => {
                        let detail = format!(
                            "judge {who}: faithfulness {}, usefulness {}, below {min}: {}",
                            scores.faithfulness, scores.usefulness, scores.reason
                        );
                        sc.out.rejected.push(reject(Reason::JudgeLowScore, detail, Some(raw)));
                    }
                    Verdict::Unparseable(raw) => {
                        let detail = format!("judge {who}: no faithfulness and usefulness scores 1..=5 in its output");
                        sc.out.rejected.push(reject(Reason::JudgeUnparseable, detail, Some(raw)));
                    }
                    Verdict::Failed(e) => {
                        sc.out.rejected.push(reject(Reason::JudgeError, format!("judge {who}: {e}"), None));
                    }
                }
            }
            sc.candidates = kept;
        }
        Ok(())
    }

    /// The near-duplicate check over the pairs left, then the accepted pairs and the chunk's
    /// done marker.
    fn accept(
        &self,
        chunk: &Chunk,
        key: &str,
        lang: &str,
        screened: Screened,
        dedup: Option<&mut Deduper<'_>>,
    ) -> Result<Outcome> {
        let Screened { mut out, candidates } = screened;
        let dups = match dedup {
            Some(d) => d.check_all(&candidates.iter().map(|(_, p, _)| p.question.as_str()).collect::<Vec<_>>())?,
            None => vec![None; candidates.len()],
        };
        for ((i, pair, judge), dup) in candidates.into_iter().zip(dups) {
            if let Some((earlier, sim)) = dup {
                let detail = format!("similarity {sim:.2} with an earlier question: {earlier}");
                out.rejected.push(self.rejected(chunk, key, Reason::Duplicate, detail, Some(&pair), None));
                continue;
            }
            out.accepted.push(QaPair {
                id: content_hash(format!("{key}:{i}").as_bytes())[..32].to_string(),
                chunk: ChunkRef::of(chunk),
                question: pair.question,
                answer: pair.answer,
                lang: lang.to_string(),
                model: self.model.clone(),
                prompt: self.prompt_id.clone(),
                gen_key: key.to_string(),
                judge,
            });
        }
        Ok(out.finish())
    }
}

/// Characters of a skipped chunk's text kept in its record.
const SKIPPED_TEXT_CHARS: usize = 300;

/// A chunk's output after the filters: its records so far and the pairs still in the running
/// (position among the pairs that passed the filters, the pair, the judge's scores).
struct Screened {
    out: Outcome,
    candidates: Vec<(usize, RawPair, Option<JudgeScores>)>,
}

/// The done markers of a run (none when it has not started).
fn markers(files: &RunFiles) -> Result<Vec<ChunkDone>> {
    if !files.progress.exists() {
        return Ok(Vec::new());
    }
    Ok(read_all::<ChunkDone>(&files.progress)?.0)
}

struct Outcome {
    accepted: Vec<QaPair>,
    rejected: Vec<Rejected>,
    done: ChunkDone,
}

impl Outcome {
    fn finish(mut self) -> Self {
        self.done.accepted = self.accepted.len() as u64;
        for r in &self.rejected {
            *self.done.rejected.entry(r.reason).or_default() += 1;
        }
        self
    }
}
