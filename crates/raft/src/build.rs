//! The RAFT run: questions in, one record out per question (accepted into `OUT` or rejected
//! into `OUT.rejected.jsonl` with its reason), resumable after a kill at any moment.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use docraft_core::jsonl::{JsonlWriter, read_all, sibling};
use docraft_core::rng::{SplitMix64, derived_seed};
use docraft_core::split::assign_splits;
use docraft_core::{
    CancelToken, ChatMessage, Chunk, ChunkRef, ContextDoc, GenError, GenRequest, Generator, QaPair, RaftContext,
    RaftMeta, RaftRecord, Retriever, Sampling, Usage, content_hash,
};
use serde::{Deserialize, Serialize};

use crate::cot::{Problem, check_answer, cut_answer, to_cot_text, verify};
use crate::distract::{Choice, Draw, Pool};
use crate::error::{Result, setting};
use crate::prompt::CotPrompt;

/// One named share of the records (`train=0.8`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Split {
    /// File name part (`train`, `valid`, `test`).
    pub name: String,
    /// Share of the chunks (hence, roughly, of the records).
    pub fraction: f64,
}

/// Parses `train=0.8,valid=0.1,test=0.1`. The first split takes the documents the others
/// leave; fractions must be in [0, 1] and add up to 1.
///
/// # Errors
/// [`crate::RaftError::Setting`] naming what is wrong.
pub fn parse_splits(spec: &str) -> Result<Vec<Split>> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, f) =
            part.split_once('=').ok_or_else(|| setting("split", format!("{part:?} is not NAME=FRACTION")))?;
        let fraction: f64 = f.trim().parse().map_err(|_| setting("split", format!("{f:?} is not a number")))?;
        let name = name.trim();
        if !(0.0..=1.0).contains(&fraction) {
            return Err(setting("split", format!("{name}={fraction} is outside [0, 1]")));
        }
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(setting("split", format!("{name:?}: names are letters, digits, '-' and '_'")));
        }
        if out.iter().any(|s: &Split| s.name == name) {
            return Err(setting("split", format!("{name} is named twice")));
        }
        out.push(Split { name: name.to_string(), fraction });
    }
    let sum: f64 = out.iter().map(|s| s.fraction).sum();
    if out.is_empty() || (sum - 1.0).abs() > 1e-6 {
        return Err(setting("split", format!("fractions add up to {sum}, not 1")));
    }
    Ok(out)
}

/// Settings of a RAFT build. Defaults: 3 distractors, P = 1.0 (as the reference), hard
/// distractors (the question's nearest neighbours: needs a retriever; `hard_share: 0.0` is the
/// reference's uniform sampling), splits train/valid/test = 0.8/0.1/0.1 by source document.
/// These are the defaults of `docraft raft` and `docraft run` too.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RaftOptions {
    /// Distractor documents per record (k).
    pub distractors: usize,
    /// Probability that the oracle is among the documents.
    pub p: f64,
    /// Share of the distractors taken from the question's nearest neighbours (needs a
    /// retriever): 0 is the reference's uniform sampling, 1 all hard.
    pub hard_share: f32,
    /// Ask for JSON steps whose quotes a schema restricts to the oracle's sentences.
    pub structured: bool,
    /// Most tokens per chain of thought.
    pub max_tokens: u32,
    /// Sampling (its seed is replaced per request by one derived from `seed`).
    pub sampling: Sampling,
    /// Tries per question: a chain of thought that fails verification is asked again with
    /// another seed until this many tries are spent.
    pub attempts: u32,
    /// At least one quote must have this many words.
    pub min_quote_words: usize,
    /// The final answer must be an answer and agree with the quotes: at least this share of
    /// its claim words in the quotes or the oracle, and one in the quotes
    /// ([`crate::cot::check_answer`]); 0 turns the check off. A check on the output, like
    /// qa-gen's filters: not part of the record ids, so changing it does not redo finished
    /// questions.
    #[serde(skip)]
    pub min_answer_support: f32,
    /// Train/valid/test by source document; distractors of a held-out record come from its
    /// own split or the training split, those of a training record from training documents.
    pub splits: Vec<Split>,
    /// Seed of every random choice.
    pub seed: u64,
    /// Questions sent to the generator together (default: the generator's preference).
    pub batch: Option<usize>,
}

impl Default for RaftOptions {
    fn default() -> Self {
        Self {
            distractors: 3,
            p: 1.0,
            hard_share: 1.0,
            structured: true,
            max_tokens: 384,
            sampling: Sampling::default(),
            attempts: 3,
            min_quote_words: 3,
            min_answer_support: 0.5,
            splits: vec![
                Split { name: "train".into(), fraction: 0.8 },
                Split { name: "valid".into(), fraction: 0.1 },
                Split { name: "test".into(), fraction: 0.1 },
            ],
            seed: 0,
            batch: None,
        }
    }
}

impl RaftOptions {
    fn check(&self) -> Result<()> {
        if self.distractors > 32 {
            return Err(setting("distractors", format!("{} is more than 32", self.distractors)));
        }
        if !(0.0..=1.0).contains(&self.p) {
            return Err(setting("p", format!("{} is outside [0, 1]", self.p)));
        }
        if !(0.0..=1.0).contains(&self.hard_share) {
            return Err(setting("hard_share", format!("{} is outside [0, 1]", self.hard_share)));
        }
        if self.attempts == 0 {
            return Err(setting("attempts", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.min_answer_support) {
            return Err(setting("min_answer_support", format!("{} is outside [0, 1]", self.min_answer_support)));
        }
        if self.splits.is_empty() {
            return Err(setting("splits", "at least one split"));
        }
        Ok(())
    }
}

/// A question that got no record: why, with the model's last output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejected {
    /// The record id it would have had.
    pub id: String,
    /// The question record.
    pub question_id: String,
    /// The oracle chunk.
    pub chunk_id: String,
    /// The oracle's source path.
    pub source: String,
    /// The question.
    pub question: String,
    /// Why.
    pub reason: Problem,
    /// The offending quote or error.
    pub detail: String,
    /// The model's last output (the cot text it became).
    pub raw: String,
    /// Tries spent.
    pub attempts: u32,
}

/// The two files of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftFiles {
    /// Accepted records (`OUT`).
    pub records: PathBuf,
    /// Rejected questions (`OUT.rejected.jsonl`, the stem of OUT plus `.rejected.jsonl`).
    pub rejected: PathBuf,
    /// The questions the records are built for (`OUT.questions.jsonl`, written by a
    /// question generator such as qa-gen's, with its own side files).
    pub questions: PathBuf,
    /// Log of requests sent off this machine (`OUT.requests.jsonl`).
    pub requests: PathBuf,
}

impl RaftFiles {
    /// The files for output path `out`.
    #[must_use]
    pub fn new(out: &Path) -> Self {
        Self {
            records: out.to_path_buf(),
            rejected: sibling(out, "rejected"),
            questions: sibling(out, "questions"),
            requests: sibling(out, "requests"),
        }
    }

    /// The export of one split in one format (`OUT_STEM.SPLIT.FORMAT.jsonl`).
    #[must_use]
    pub fn export(out: &Path, split: &str, format: crate::Format) -> PathBuf {
        sibling(out, &format!("{split}.{}", format.name()))
    }
}

/// Where a build stands, for progress bars.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Questions finished this run.
    pub done: usize,
    /// Questions this run has to do.
    pub total: usize,
    /// Accepted this run.
    pub accepted: usize,
    /// Rejected this run.
    pub rejected: usize,
    /// Tokens used this run.
    pub usage: Usage,
    /// Time since the run started.
    pub elapsed: Duration,
}

/// What a build did. Totals cover the files (earlier runs included): `accepted +
/// rejected_total() == questions - deferred` once a run finishes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Questions given.
    pub questions: usize,
    /// Of them, already in the files before this run.
    pub resumed: usize,
    /// Records in the accepted file for these questions.
    pub accepted: usize,
    /// Rejected questions by reason (in the rejected file, for these questions).
    pub rejected: BTreeMap<Problem, usize>,
    /// Accepted only after a failed first try.
    pub repaired: usize,
    /// Questions left for a rerun after a transient backend error.
    pub deferred: usize,
    /// Accepted records whose context holds the oracle.
    pub with_oracle: usize,
    /// Accepted records with fewer distractors than asked (too few eligible chunks).
    pub short_context: usize,
    /// Lines in the files from other questions or settings (left out of exports).
    pub foreign: usize,
    /// Accepted records per split.
    pub per_split: BTreeMap<String, usize>,
    /// Tokens used this run.
    pub usage: Usage,
    /// Why the run stopped before every question was done (`"cancelled"`), if it did; a rerun
    /// continues with the questions left.
    pub stopped: Option<String>,
    /// Seconds this run took.
    pub seconds: f64,
}

impl Summary {
    /// All rejected questions.
    #[must_use]
    pub fn rejected_total(&self) -> usize {
        self.rejected.values().sum()
    }
}

/// Builds RAFT records with a generator (and, for hard distractors, a retriever).
pub struct RaftBuilder<'a> {
    generator: &'a dyn Generator,
    retriever: Option<&'a dyn Retriever>,
    options: RaftOptions,
    prompt: CotPrompt,
    prompt_id: String,
    model: String,
    key: String,
    cancel: CancelToken,
}

impl<'a> RaftBuilder<'a> {
    /// A builder writing chains of thought with `generator`.
    ///
    /// # Errors
    /// [`crate::RaftError::Setting`] for options out of range.
    pub fn new(generator: &'a dyn Generator, options: RaftOptions) -> Result<Self> {
        options.check()?;
        let prompt = CotPrompt::new(options.structured);
        let model = generator.model_id();
        let settings = serde_json::to_string(&options).unwrap_or_default();
        let prompt_id = prompt.id();
        let key = content_hash(format!("{prompt_id}\u{1f}{model}\u{1f}{settings}").as_bytes())[..16].to_string();
        Ok(Self { generator, retriever: None, options, prompt, prompt_id, model, key, cancel: CancelToken::new() })
    }

    /// Hard distractors come from `retriever` (its index must hold the same chunks).
    #[must_use]
    pub fn with_retriever(mut self, retriever: &'a dyn Retriever) -> Self {
        self.retriever = Some(retriever);
        self
    }

    /// Stops [`Self::run`] before its next batch of questions once `cancel` is cancelled: what
    /// was written stays, the summary's `stopped` says `"cancelled"`, and a rerun continues.
    #[must_use]
    pub fn with_cancel(mut self, cancel: CancelToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// The options.
    #[must_use]
    pub fn options(&self) -> &RaftOptions {
        &self.options
    }

    /// The id of the record for question `question_id` under these settings.
    #[must_use]
    pub fn record_id(&self, question_id: &str) -> String {
        content_hash(format!("{}\u{1f}{question_id}", self.key).as_bytes())[..24].to_string()
    }

    /// Record id -> question, for every question.
    fn plan<'q>(&self, questions: &'q [QaPair]) -> BTreeMap<String, &'q QaPair> {
        questions.iter().map(|q| (self.record_id(&q.id), q)).collect()
    }

    /// The accepted records at `out` that belong to `questions` under these settings, each
    /// once: what the exports are made from (lines of other settings are left out).
    ///
    /// # Errors
    /// Reading the file.
    pub fn records(&self, questions: &[QaPair], out: &Path) -> Result<Vec<RaftRecord>> {
        if !out.exists() {
            return Ok(Vec::new());
        }
        let plan = self.plan(questions);
        let (records, _) = read_all::<RaftRecord>(out)?;
        let mut seen = HashSet::new();
        Ok(records.into_iter().filter(|r| plan.contains_key(&r.id) && seen.insert(r.id.clone())).collect())
    }

    /// Each document's split index (0 = the first split), by source document, from the
    /// chunk counts: stable while the chunks are.
    #[must_use]
    pub fn splits_of(&self, chunks: &[Chunk]) -> BTreeMap<String, usize> {
        let mut per_doc: BTreeMap<String, usize> = BTreeMap::new();
        for c in chunks {
            *per_doc.entry(c.doc_id.as_str().to_string()).or_default() += 1;
        }
        let docs: Vec<(String, usize)> = per_doc.into_iter().collect();
        let fractions: Vec<f64> = self.options.splits.iter().map(|s| s.fraction).collect();
        assign_splits(&docs, &fractions, self.options.seed)
    }

    /// Builds a record for every question not yet in the files at `out`: appends accepted
    /// records to `out` and rejected questions to `OUT.rejected.jsonl`. A rerun after a kill
    /// continues where it stopped (a question is done once its line is in either file).
    /// `progress` is told after every batch of questions; the cancellation token
    /// ([`Self::with_cancel`]) is checked before each batch.
    ///
    /// # Errors
    /// [`crate::RaftError::Setting`] when hard distractors are asked for without a retriever;
    /// file errors; retriever errors; [`crate::RaftError::Prompt`] for a broken prompt file.
    pub fn run(
        &self,
        chunks: &[Chunk],
        questions: &[QaPair],
        out: &Path,
        progress: &dyn docraft_core::Progress<Progress>,
    ) -> Result<Summary> {
        if self.options.hard_share > 0.0 && self.retriever.is_none() {
            return Err(setting("hard_share", "hard distractors need an index (a retriever)"));
        }
        let start = Instant::now();
        let files = RaftFiles::new(out);
        let doc_split = self.splits_of(chunks);
        let pool = Pool::new(chunks, |c| doc_split.get(c.doc_id.as_str()).copied().unwrap_or(0));

        let planned = self.plan(questions);
        let mut summary = Summary { questions: planned.len(), ..Summary::default() };
        let mut done: HashSet<String> = HashSet::new();
        if files.records.exists() {
            let (records, _) = read_all::<RaftRecord>(&files.records)?;
            for r in records {
                if planned.contains_key(&r.id) && done.insert(r.id.clone()) {
                    self.count_accepted(&mut summary, &r);
                } else {
                    summary.foreign += 1;
                }
            }
        }
        if files.rejected.exists() {
            let (rejected, _) = read_all::<Rejected>(&files.rejected)?;
            for r in rejected {
                if planned.contains_key(&r.id) && done.insert(r.id.clone()) {
                    *summary.rejected.entry(r.reason).or_default() += 1;
                } else {
                    summary.foreign += 1;
                }
            }
        }
        summary.resumed = done.len();
        let todo: Vec<(&String, &QaPair)> =
            planned.iter().filter(|(id, _)| !done.contains(*id)).map(|(id, q)| (id, *q)).collect();

        let (mut accepted_w, _) = JsonlWriter::<RaftRecord>::append(&files.records)?;
        let (mut rejected_w, _) = JsonlWriter::<Rejected>::append(&files.rejected)?;
        let batch = self.options.batch.unwrap_or_else(|| self.generator.preferred_batch()).max(1);
        let mut prog = Progress { total: todo.len(), ..Progress::default() };
        for group in todo.chunks(batch) {
            if self.cancel.is_cancelled() {
                summary.stopped = Some("cancelled".into());
                break;
            }
            let mut jobs = Vec::with_capacity(group.len());
            let mut rejected = Vec::new();
            for (id, q) in group {
                match self.prepare(&pool, id, q)? {
                    Ok(job) => jobs.push(job),
                    Err(r) => rejected.push(r),
                }
            }
            let (accepted, more_rejected, deferred, usage) = self.generate(&pool, jobs);
            rejected.extend(more_rejected);
            rejected_w.write_all(&rejected)?;
            accepted_w.write_all(&accepted)?;
            for r in &rejected {
                *summary.rejected.entry(r.reason).or_default() += 1;
            }
            for r in &accepted {
                self.count_accepted(&mut summary, r);
                if r.meta.attempts > 1 {
                    summary.repaired += 1;
                }
            }
            summary.deferred += deferred;
            summary.usage.prompt_tokens += usage.prompt_tokens;
            summary.usage.completion_tokens += usage.completion_tokens;
            prog.done += group.len();
            prog.accepted += accepted.len();
            prog.rejected += rejected.len();
            prog.usage = summary.usage;
            prog.elapsed = start.elapsed();
            progress.update(&prog);
        }
        accepted_w.sync()?;
        rejected_w.sync()?;
        summary.seconds = start.elapsed().as_secs_f64();
        Ok(summary)
    }

    fn count_accepted(&self, summary: &mut Summary, r: &RaftRecord) {
        summary.accepted += 1;
        if r.meta.oracle_in_context {
            summary.with_oracle += 1;
        }
        let distractors = r.meta.documents.iter().filter(|d| d.role != docraft_core::DocRole::Oracle).count();
        if distractors < self.options.distractors + usize::from(!r.meta.oracle_in_context) {
            summary.short_context += 1;
        }
        *summary.per_split.entry(r.meta.split.clone()).or_default() += 1;
    }

    /// The context of one question, or its rejection when its chunk is unknown.
    fn prepare<'q>(&self, pool: &Pool<'_>, id: &str, q: &'q QaPair) -> Result<std::result::Result<Job<'q>, Rejected>> {
        let Some(oracle) = pool.index_of(q.chunk.chunk_id.as_str()) else {
            return Ok(Err(self.rejected(
                id,
                q,
                Problem::UnknownChunk,
                format!("chunk {} is not in the chunks given", q.chunk.chunk_id.as_str()),
                String::new(),
                0,
            )));
        };
        let mut rng = SplitMix64::labelled(self.options.seed, &["context", &q.id]);
        let docs = pool.choose(
            q,
            oracle,
            Draw { k: self.options.distractors, p: self.options.p, hard_share: self.options.hard_share },
            self.retriever,
            &mut rng,
        )?;
        let lang = if q.lang.is_empty() { "en" } else { q.lang.as_str() };
        let messages = self.prompt.render(&q.question, &pool.chunks()[oracle].text, lang)?;
        Ok(Ok(Job { id: id.to_string(), question: q, oracle, docs, messages, attempts: 0, last_raw: String::new() }))
    }

    fn request(&self, pool: &Pool<'_>, job: &Job<'_>) -> GenRequest {
        let oracle = &pool.chunks()[job.oracle].text;
        let seed = derived_seed(self.options.seed, &["cot", &job.question.id, &job.attempts.to_string()]);
        GenRequest {
            messages: job.messages.clone(),
            max_tokens: self.options.max_tokens,
            sampling: Sampling { seed, ..self.options.sampling },
            json_schema: self.prompt.schema(oracle),
            tag: job.question.chunk.chunk_id.as_str().to_string(),
        }
    }

    /// Asks for chains of thought until each job is verified, rejected or its tries are
    /// spent. Returns accepted records, rejected questions, questions deferred by transient
    /// errors, and tokens used.
    fn generate(&self, pool: &Pool<'_>, mut jobs: Vec<Job<'_>>) -> (Vec<RaftRecord>, Vec<Rejected>, usize, Usage) {
        let (mut accepted, mut rejected, mut deferred, mut usage) = (Vec::new(), Vec::new(), 0, Usage::default());
        while !jobs.is_empty() {
            let requests: Vec<GenRequest> = jobs.iter().map(|j| self.request(pool, j)).collect();
            let results = self.generator.generate_batch(&requests);
            let mut again = Vec::new();
            for (mut job, result) in jobs.into_iter().zip(results) {
                job.attempts += 1;
                let oracle = &pool.chunks()[job.oracle].text;
                match result {
                    Ok(resp) => {
                        usage.prompt_tokens += resp.usage.prompt_tokens;
                        usage.completion_tokens += resp.usage.completion_tokens;
                        let (text, _) = to_cot_text(&resp.text);
                        let cut = cut_answer(&resp.text, crate::prompt::MAX_ANSWER_CHARS);
                        let checked = cut
                            .map_or(Ok(()), Err)
                            .and_then(|()| verify(&text, oracle, self.options.min_quote_words))
                            .and_then(|v| {
                                if self.options.min_answer_support <= 0.0 {
                                    return Ok(v);
                                }
                                let lang = if job.question.lang.is_empty() { "en" } else { job.question.lang.as_str() };
                                check_answer(&v, oracle, &job.question.question, lang, self.options.min_answer_support)
                                    .map(|()| v)
                            });
                        match checked {
                            Ok(v) => accepted.push(self.record(pool, &job, v)),
                            Err(_) if job.attempts < self.options.attempts => {
                                job.last_raw = text;
                                again.push(job);
                            }
                            Err(f) => {
                                rejected.push(self.rejected(
                                    &job.id,
                                    job.question,
                                    f.problem,
                                    f.detail,
                                    text,
                                    job.attempts,
                                ));
                            }
                        }
                    }
                    Err(GenError::Transient(_)) => deferred += 1,
                    Err(GenError::ContextLengthExceeded { needed, limit }) => rejected.push(self.rejected(
                        &job.id,
                        job.question,
                        Problem::ContextTooLong,
                        format!("{needed} tokens needed, the context holds {limit}"),
                        String::new(),
                        job.attempts,
                    )),
                    Err(e) => rejected.push(self.rejected(
                        &job.id,
                        job.question,
                        Problem::GenerationError,
                        e.to_string(),
                        job.last_raw,
                        job.attempts,
                    )),
                }
            }
            jobs = again;
        }
        (accepted, rejected, deferred, usage)
    }

    fn rejected(&self, id: &str, q: &QaPair, reason: Problem, detail: String, raw: String, attempts: u32) -> Rejected {
        Rejected {
            id: id.to_string(),
            question_id: q.id.clone(),
            chunk_id: q.chunk.chunk_id.as_str().to_string(),
            source: q.chunk.source.clone(),
            question: q.question.clone(),
            reason,
            detail,
            raw,
            attempts,
        }
    }

    fn record(&self, pool: &Pool<'_>, job: &Job<'_>, v: crate::cot::Verified) -> RaftRecord {
        let chunks = pool.chunks();
        let oracle = &chunks[job.oracle];
        let docs: Vec<&Chunk> = job.docs.iter().map(|c| &chunks[c.index]).collect();
        let mut instruction = String::new();
        for d in &docs {
            instruction.push_str("<DOCUMENT>");
            instruction.push_str(&d.text);
            instruction.push_str("</DOCUMENT>\n");
        }
        instruction.push_str(&job.question.question);
        let title = docs.iter().map(|d| file_name(&d.source).to_string()).collect();
        let documents = job
            .docs
            .iter()
            .map(|c: &Choice| {
                let d = &chunks[c.index];
                ContextDoc {
                    chunk_id: d.id.clone(),
                    doc_id: d.doc_id.clone(),
                    source: d.source.clone(),
                    pages: d.pages,
                    role: c.role,
                    score: c.score,
                }
            })
            .collect();
        let split = self.options.splits.get(pool.split(job.oracle)).map_or_else(String::new, |s| s.name.clone());
        RaftRecord {
            id: job.id.clone(),
            kind: "general".to_string(),
            question: job.question.question.clone(),
            context: RaftContext { title: vec![title], sentences: vec![docs.iter().map(|d| d.text.clone()).collect()] },
            oracle_context: oracle.text.clone(),
            cot_answer: v.cot_answer,
            instruction,
            final_answer: v.final_answer,
            meta: RaftMeta {
                question_id: job.question.id.clone(),
                oracle: ChunkRef::of(oracle),
                lang: job.question.lang.clone(),
                split,
                oracle_in_context: job.docs.iter().any(|c| c.role == docraft_core::DocRole::Oracle),
                documents,
                quotes: v.quotes,
                attempts: job.attempts,
                model: self.model.clone(),
                prompt: self.prompt_id.clone(),
            },
        }
    }
}

struct Job<'q> {
    id: String,
    question: &'q QaPair,
    oracle: usize,
    docs: Vec<Choice>,
    /// The chat asking for its chain of thought (the same for every try).
    messages: Vec<ChatMessage>,
    attempts: u32,
    /// The previous try's output, kept for the rejected record when the backend then fails.
    last_raw: String,
}

fn file_name(source: &str) -> &str {
    source.rsplit(['/', '\\']).next().unwrap_or(source)
}
