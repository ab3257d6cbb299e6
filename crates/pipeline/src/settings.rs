//! Typed settings of every stage: the tables of `docraft.toml`.
//!
//! Each stage has a struct whose `Default` is the library's own default (taken from the stage
//! crate where it has one: [`GenerateOptions`], [`Filters`], [`RaftOptions`],
//! [`docraft_train::Settings`], [`EmbedOptions`], [`HnswParams`], [`QaOptions`]). The CLI's
//! flags take their defaults from these structs, and `docraft run --print-config` prints them,
//! so every default has one source. Keys are the field names; in a TOML file they may be
//! written with `-` or `_` (`questions-per-chunk` = `questions_per_chunk`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use docraft_eval::qa::QaOptions;
use docraft_index::{EmbedOptions, HnswParams, Retrieval};
use docraft_llm::GeneratorSettings;
use docraft_qa_gen::export::Format as ExportFormat;
use docraft_qa_gen::{Filters, GenerateOptions, JudgeOptions};
use docraft_raft::{Format as RaftFormat, RaftOptions};
use serde::{Deserialize, Serialize};

use crate::error::{PipelineError, Result};

/// Model files shared by the stages. A relative path is taken under
/// [`docraft_core::models_dir`]; an absent one is the model `scripts/setup.sh` fetches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelSettings {
    /// The GGUF that writes questions and answers (qa, raft) when their backend is local.
    pub generator: Option<PathBuf>,
    /// The model that is fine-tuned and evaluated (GGUF file or Hugging Face directory).
    pub base: Option<PathBuf>,
    /// The sentence-embedding model directory of the index.
    pub embedder: Option<PathBuf>,
}

fn resolve(p: Option<&PathBuf>, default: PathBuf) -> PathBuf {
    match p {
        Some(p) if p.is_absolute() => p.clone(),
        Some(p) => docraft_core::models_dir().join(p),
        None => default,
    }
}

impl ModelSettings {
    /// The generator GGUF, resolved.
    #[must_use]
    pub fn generator_path(&self) -> PathBuf {
        resolve(self.generator.as_ref(), docraft_llm::default_gguf())
    }

    /// The base model, resolved.
    #[must_use]
    pub fn base_path(&self) -> PathBuf {
        resolve(self.base.as_ref(), docraft_llm::default_gguf())
    }

    /// The embedding model directory of the default backend, resolved.
    #[must_use]
    pub fn embedder_path(&self) -> PathBuf {
        self.embedder_path_for(EmbedBackend::default())
    }

    /// The embedding model directory, resolved; unset, the model `backend` runs by default
    /// ([`EmbedBackend::default_model_dir`]).
    #[must_use]
    pub fn embedder_path_for(&self, backend: EmbedBackend) -> PathBuf {
        resolve(self.embedder.as_ref(), backend.default_model_dir())
    }
}

/// Chunk sizes when none are given: in characters...
pub const DEFAULT_CHUNK_CHARS: (usize, usize) = (800, 1200);
/// ... with this overlap ...
pub const DEFAULT_OVERLAP_CHARS: usize = 100;
/// ... or in tokens, with `tokenizer`...
pub const DEFAULT_CHUNK_TOKENS: (usize, usize) = (200, 300);
/// ... with this overlap.
pub const DEFAULT_OVERLAP_TOKENS: usize = 30;

/// `[ingest]`: reading and chunking documents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IngestSettings {
    /// Chunk size: `N` or `MIN..MAX` (chunks aim for MIN and may grow to MAX to end at a
    /// paragraph or sentence), in characters, or in tokens with `tokenizer`. Unset: 800..1200
    /// characters, or 200..300 tokens.
    pub chunk_size: Option<String>,
    /// Overlap between consecutive chunks, in the same unit. Unset: 100 characters or 30 tokens.
    pub overlap: Option<usize>,
    /// Measure chunks in tokens of this tokenizer.json.
    pub tokenizer: Option<PathBuf>,
    /// Only take files matching these globs (`*.pdf`, `manuals/**`).
    pub include: Vec<String>,
    /// Leave out files matching these globs.
    pub exclude: Vec<String>,
    /// Fail if any file fails.
    pub strict: bool,
    /// Keep running headers, footers and page numbers of PDFs.
    pub keep_page_furniture: bool,
    /// Worker threads (unset: all cores).
    pub threads: Option<usize>,
}

/// Which model and runtime embed text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbedBackend {
    /// A BERT-style model (model.onnx, all-MiniLM-L6-v2 unless another directory is given) on
    /// ONNX Runtime, through fastembed.
    Onnx,
    /// A BERT-style model (model.safetensors, all-MiniLM-L6-v2 unless another directory is
    /// given) on candle: no ONNX Runtime needed.
    Candle,
    /// The multilingual Universal Sentence Encoder (USE-m3: Spanish, English and 14 more
    /// languages, 512 dims) on ONNX Runtime, from the directory `scripts/setup.sh` converts.
    /// The default ([`docraft_index::default_model_dir`] says why).
    #[default]
    #[serde(rename = "use-m3")]
    UseM3,
}

impl EmbedBackend {
    /// The backend's name in settings and on the command line.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Onnx => "onnx",
            Self::Candle => "candle",
            Self::UseM3 => "use-m3",
        }
    }

    /// The model this backend runs when no directory is given, as `scripts/setup.sh` puts it:
    /// USE-m3 ([`docraft_index::use_m3_model_dir`]) or, for `onnx` and `candle`,
    /// all-MiniLM-L6-v2 ([`docraft_index::minilm_model_dir`]). The default backend's is
    /// [`docraft_index::default_model_dir`].
    #[must_use]
    pub fn default_model_dir(self) -> PathBuf {
        match self {
            Self::UseM3 => docraft_index::use_m3_model_dir(),
            Self::Onnx | Self::Candle => docraft_index::minilm_model_dir(),
        }
    }
}

impl std::str::FromStr for EmbedBackend {
    type Err = PipelineError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "onnx" => Ok(Self::Onnx),
            "candle" => Ok(Self::Candle),
            "use-m3" => Ok(Self::UseM3),
            _ => Err(PipelineError::setting("index", "backend", format!("{s:?} is not onnx, candle or use-m3"))),
        }
    }
}

impl std::fmt::Display for EmbedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How an index is searched (by `search`, `ask`, `eval` and RAFT's hard distractors): by
/// vectors, by keywords (BM25 over the same chunks) or both fused. Keys of `[index]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetrievalSettings {
    /// `vector`, `keyword` or `hybrid` (vector and keyword lists fused by reciprocal rank).
    /// A pgvector collection is searched by keywords in PostgreSQL (its BM25 terms table).
    pub retrieval: Retrieval,
    /// Weight of the vector list in hybrid retrieval.
    pub vector_weight: f32,
    /// Weight of the keyword list in hybrid retrieval.
    pub keyword_weight: f32,
}

impl Default for RetrievalSettings {
    fn default() -> Self {
        Self {
            retrieval: Retrieval::default(),
            vector_weight: docraft_index::DEFAULT_VECTOR_WEIGHT,
            keyword_weight: docraft_index::DEFAULT_KEYWORD_WEIGHT,
        }
    }
}

/// `[index]`: embedding the chunks and building the vector index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IndexSettings {
    /// Embedding model directory (unset: `[models] embedder`, else the backend's model as
    /// `scripts/setup.sh` puts it).
    pub model: Option<PathBuf>,
    /// Embedding model and runtime: `use-m3` (multilingual, the default), or `onnx` or
    /// `candle` (all-MiniLM-L6-v2 unless `model` says otherwise).
    pub backend: EmbedBackend,
    /// Texts per model call.
    pub batch: usize,
    /// Threads for the model and the graph (unset: all cores).
    pub threads: Option<usize>,
    /// Longest input in tokens; longer chunks are truncated.
    pub max_tokens: usize,
    /// HNSW links per node (M).
    pub max_connections: usize,
    /// HNSW candidate list while inserting.
    pub ef_construction: usize,
    /// Build a new index even if the output holds one.
    pub rebuild: bool,
    /// How the index is searched.
    #[serde(flatten)]
    pub search: RetrievalSettings,
}

impl Default for IndexSettings {
    fn default() -> Self {
        let e = EmbedOptions::default();
        let h = HnswParams::default();
        Self {
            model: None,
            backend: EmbedBackend::default(),
            batch: e.batch_size,
            threads: e.threads,
            max_tokens: e.max_tokens,
            max_connections: h.max_connections,
            ef_construction: h.ef_construction,
            rebuild: false,
            search: RetrievalSettings::default(),
        }
    }
}

/// The question checks `[qa]` and `[raft]` share: which chunks are asked about and which
/// questions are accepted. Each is on by default; these keys turn them off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QuestionChecks {
    /// Ask about every chunk: do not skip tables of contents, indexes, copyright and license
    /// text or navigation (skipped chunks are counted and recorded with their reason).
    pub keep_all_chunks: bool,
    /// Accept questions that are not asked as questions (no `?`/`¿`, no question word first).
    pub no_question_filter: bool,
    /// Accept pairs that point at the passage ("the text", "este fragmento", "según el
    /// documento").
    pub no_passage_filter: bool,
    /// Accept answers that answer nothing (a question, "I don't know", "no se menciona").
    pub no_answer_filter: bool,
}

impl Default for QuestionChecks {
    fn default() -> Self {
        let f = Filters::default();
        Self {
            keep_all_chunks: !GenerateOptions::default().skip_chunks,
            no_question_filter: !f.question_form,
            no_passage_filter: !f.self_contained,
            no_answer_filter: !f.answer_form,
        }
    }
}

impl QuestionChecks {
    /// `filters` with these checks' three question filters set.
    #[must_use]
    pub fn filters(&self, filters: Filters) -> Filters {
        Filters {
            question_form: !self.no_question_filter,
            self_contained: !self.no_passage_filter,
            answer_form: !self.no_answer_filter,
            ..filters
        }
    }

    /// Whether chunks not worth asking about are skipped.
    #[must_use]
    pub fn skip_chunks(&self) -> bool {
        !self.keep_all_chunks
    }
}

/// `[qa]`: question/answer pairs (`docraft generate`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QaSettings {
    /// Whether `docraft run` runs this stage.
    pub enabled: bool,
    /// The generator.
    #[serde(flatten)]
    pub generator: GeneratorSettings,
    /// Question/answer pairs asked for per chunk.
    pub questions_per_chunk: usize,
    /// Most tokens generated per chunk.
    pub max_tokens: u32,
    /// Only the first N chunks.
    pub limit: Option<usize>,
    /// Stop (cleanly, resumable) once this many pairs are accepted in this run.
    pub max_pairs: Option<u64>,
    /// Stop before this run would use more tokens (prompt + output).
    pub max_tokens_total: Option<u64>,
    /// Stop before this run would cost more (needs both prices).
    pub max_cost: Option<f64>,
    /// Price per million prompt tokens.
    pub price_input: Option<f64>,
    /// Price per million generated tokens.
    pub price_output: Option<f64>,
    /// Least share of the answer's words found in the chunk (0 turns the check off).
    pub grounding: f32,
    /// Turn off the language check.
    pub no_language_filter: bool,
    /// Near-duplicate threshold (0 turns the check off).
    pub dedup: f32,
    /// Judge near-duplicates by embeddings (the index's embedding model).
    pub dedup_embeddings: bool,
    /// Which chunks are asked about and which questions are accepted (the keys sit in `[qa]`).
    #[serde(flatten)]
    pub checks: QuestionChecks,
    /// Have a judge model score each pair that passes the filters (1..=5 for faithfulness and
    /// usefulness) and reject those below `judge_min_score`; the scores stay in the pair.
    pub judge: bool,
    /// Least judge score, 1..=5, both faithfulness and usefulness must reach.
    pub judge_min_score: u8,
    /// The judge model, with every generator key (`[qa.judge-generator]` in a config file;
    /// on the command line a GGUF path or a JSON object). Unset: the generator that writes
    /// the pairs judges them. The judge decodes greedily, with the run's seed.
    pub judge_generator: Option<GeneratorSettings>,
}

impl Default for QaSettings {
    fn default() -> Self {
        let g = GenerateOptions::default();
        let f = Filters::default();
        Self {
            enabled: false,
            generator: GeneratorSettings::default(),
            questions_per_chunk: g.questions_per_chunk,
            max_tokens: g.max_tokens,
            limit: None,
            max_pairs: g.budget.max_pairs,
            max_tokens_total: g.budget.max_tokens,
            max_cost: g.budget.max_cost,
            price_input: None,
            price_output: None,
            grounding: f.grounding.unwrap_or(0.0),
            no_language_filter: !f.language,
            dedup: f.dedup.unwrap_or(0.0),
            dedup_embeddings: false,
            checks: QuestionChecks::default(),
            judge: false,
            judge_min_score: JudgeOptions::default().min_score,
            judge_generator: None,
        }
    }
}

/// `[export]`: the QA pairs as a training file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExportSettings {
    /// Output format: openai-chat, completion, alpaca, sharegpt, text-label.
    #[serde(with = "by_name")]
    pub format: ExportFormat,
    /// A system prompt for every example.
    pub system_prompt: Option<String>,
    /// Share of pairs held out for validation, split by source document.
    pub valid_fraction: f64,
    /// Seed of the split.
    pub seed: u64,
}

impl Default for ExportSettings {
    fn default() -> Self {
        Self { format: ExportFormat::OpenaiChat, system_prompt: None, valid_fraction: 0.0, seed: 0 }
    }
}

/// How distractors are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DistractorMode {
    /// Uniformly among the eligible chunks.
    Random,
    /// The question's nearest neighbours in the index.
    Hard,
}

/// `[raft]`: RAFT records (`docraft raft`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RaftSettings {
    /// Whether `docraft run` runs this stage.
    pub enabled: bool,
    /// The generator.
    #[serde(flatten)]
    pub generator: GeneratorSettings,
    /// Distractor documents per record (k).
    pub distractors: usize,
    /// Probability that the oracle is among the documents.
    pub p: f64,
    /// Questions asked per chunk.
    pub questions_per_chunk: usize,
    /// random or hard (nearest neighbours of the question in the index).
    pub distractor_mode: DistractorMode,
    /// The share of distractors that are hard (overrides `distractor_mode`).
    pub hard_share: Option<f32>,
    /// Formats to write: any of hf, completion, chat, eval.
    #[serde(with = "by_name_list")]
    pub format: Vec<RaftFormat>,
    /// Splits by source document, the first taking what the others leave.
    pub split: String,
    /// chat: a system message first (also used by `[eval]` unless it sets its own).
    pub system_prompt: Option<String>,
    /// completion: name of the prompt column.
    pub prompt_key: String,
    /// completion: name of the completion column.
    pub completion_key: String,
    /// Free-text chains of thought (the reference's prompt) instead of JSON steps.
    pub free_text: bool,
    /// Tries per question before a failing chain of thought is rejected.
    pub attempts: u32,
    /// At least one quote must have this many words.
    pub min_quote_words: usize,
    /// The final answer must be an answer and agree with its quotes: at least this share of
    /// its claim words (content words not in the question) in the quotes or the oracle, and
    /// one in the quotes (0 turns the check off).
    pub min_answer_support: f32,
    /// Most tokens per chain of thought.
    pub max_tokens: u32,
    /// Only the first N chunks.
    pub limit: Option<usize>,
    /// Which chunks are asked about and which questions are accepted (the keys sit in
    /// `[raft]`).
    #[serde(flatten)]
    pub checks: QuestionChecks,
}

/// Questions RAFT asks per chunk unless told otherwise.
pub const RAFT_QUESTIONS_PER_CHUNK: usize = 5;

impl Default for RaftSettings {
    fn default() -> Self {
        let r = RaftOptions::default();
        let fo = docraft_raft::FormatOptions::default();
        let split = r.splits.iter().map(|s| format!("{}={}", s.name, s.fraction)).collect::<Vec<_>>().join(",");
        Self {
            enabled: true,
            generator: GeneratorSettings::default(),
            distractors: r.distractors,
            p: r.p,
            questions_per_chunk: RAFT_QUESTIONS_PER_CHUNK,
            distractor_mode: if r.hard_share > 0.0 { DistractorMode::Hard } else { DistractorMode::Random },
            hard_share: None,
            format: RaftFormat::ALL.to_vec(),
            split,
            system_prompt: fo.system_prompt,
            prompt_key: fo.prompt_key,
            completion_key: fo.completion_key,
            free_text: !r.structured,
            attempts: r.attempts,
            min_quote_words: r.min_quote_words,
            min_answer_support: r.min_answer_support,
            max_tokens: r.max_tokens,
            limit: None,
            checks: QuestionChecks::default(),
        }
    }
}

impl RaftSettings {
    /// The share of hard distractors these settings ask for.
    #[must_use]
    pub fn hard_share(&self) -> f32 {
        self.hard_share.unwrap_or(if self.distractor_mode == DistractorMode::Hard { 1.0 } else { 0.0 })
    }
}

/// `[train]`: LoRA fine-tuning (every key of [`docraft_train::Settings`], plus these).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainSettings {
    /// Whether `docraft run` runs this stage.
    pub enabled: bool,
    /// Run on CUDA device 0 (a build with the `cuda` feature).
    pub cuda: bool,
    /// The trainer's settings.
    #[serde(flatten)]
    pub settings: docraft_train::Settings,
}

impl Default for TrainSettings {
    fn default() -> Self {
        Self { enabled: true, cuda: false, settings: docraft_train::Settings::default() }
    }
}

/// `[eval]`: retrieval and open-book QA scores, the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EvalSettings {
    /// Whether `docraft run` runs this stage.
    pub enabled: bool,
    /// The cut-offs k of recall@k.
    pub k: Vec<usize>,
    /// Open-book QA: only the first N records.
    pub limit: usize,
    /// Open-book QA: most tokens per answer.
    pub max_tokens: u32,
    /// Open-book QA: the system message used in training (unset: `[raft] system_prompt`).
    pub system_prompt: Option<String>,
    /// Notes for the report.
    pub note: Vec<String>,
    /// Run the models on CUDA.
    pub cuda: bool,
}

impl Default for EvalSettings {
    fn default() -> Self {
        let q = QaOptions::default();
        Self {
            enabled: true,
            k: vec![1, 3, 5, 10],
            limit: 20,
            max_tokens: q.max_tokens,
            system_prompt: q.system_prompt,
            note: Vec::new(),
            cuda: false,
        }
    }
}

/// Every stage's settings: a whole `docraft.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// `[models]`.
    pub models: ModelSettings,
    /// `[ingest]`.
    pub ingest: IngestSettings,
    /// `[index]`.
    pub index: IndexSettings,
    /// `[qa]`.
    pub qa: QaSettings,
    /// `[export]`.
    pub export: ExportSettings,
    /// `[raft]`.
    pub raft: RaftSettings,
    /// `[train]`.
    pub train: TrainSettings,
    /// `[eval]`.
    pub eval: EvalSettings,
}

/// The sections of a config file, in order.
pub const SECTIONS: [&str; 8] = ["models", "ingest", "index", "qa", "export", "raft", "train", "eval"];

/// Paths `docraft run` sets itself, per section: named in the error when a config sets them.
const RUN_OWNED: &[(&str, &[&str])] = &[
    ("ingest", &["output", "report", "paths"]),
    ("index", &["output", "chunks"]),
    ("qa", &["output", "chunks"]),
    ("export", &["output", "input"]),
    ("raft", &["output", "index", "chunks"]),
    ("train", &["output", "base", "data", "valid", "resume", "config"]),
    ("eval", &["output", "index", "questions", "qa_set", "base", "adapter", "train_run"]),
];

/// The keys a settings struct has (its fields, flattened ones included), from its JSON form.
fn keys_of<T: Serialize + Default>() -> BTreeSet<String> {
    match serde_json::to_value(T::default()) {
        Ok(serde_json::Value::Object(m)) => m.into_iter().map(|(k, _)| k).collect(),
        _ => BTreeSet::new(),
    }
}

/// The keys a section accepts.
#[must_use]
pub fn section_keys(section: &str) -> BTreeSet<String> {
    match section {
        "models" => keys_of::<ModelSettings>(),
        "ingest" => keys_of::<IngestSettings>(),
        "index" => keys_of::<IndexSettings>(),
        "qa" => keys_of::<QaSettings>(),
        "export" => keys_of::<ExportSettings>(),
        "raft" => keys_of::<RaftSettings>(),
        "train" => keys_of::<TrainSettings>(),
        "eval" => keys_of::<EvalSettings>(),
        _ => BTreeSet::new(),
    }
}

/// The known key nearest `key` by edit distance, when it is near enough to be a typo.
fn closest<'a>(key: &str, known: &'a BTreeSet<String>) -> Option<&'a str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let cur = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
                prev = cur;
            }
        }
        row[b.len()]
    }
    known.iter().map(|k| (distance(key, k), k)).filter(|(d, k)| *d <= 2.max(k.len() / 4)).min().map(|(_, k)| k.as_str())
}

/// `key-name` -> `key_name`, recursively in tables.
fn normalize_keys(table: toml::Table) -> toml::Table {
    table
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                toml::Value::Table(t) => toml::Value::Table(normalize_keys(t)),
                other => other,
            };
            (k.replace('-', "_"), v)
        })
        .collect()
}

impl Settings {
    /// Parses a config file's text. `origin` names it in errors. Every section and key is
    /// checked before anything runs, so a typo fails at once naming the section and key.
    ///
    /// # Errors
    /// [`PipelineError::Config`] for invalid TOML, an unknown section or key, a run-owned path,
    /// a value of the wrong type or out of range.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let config = |reason: String| PipelineError::Config { origin: origin.to_string(), reason };
        let table: toml::Table = toml::from_str(text).map_err(|e| config(format!("not valid TOML: {e}")))?;
        for (section, value) in &table {
            let section = section.replace('-', "_");
            if !SECTIONS.contains(&section.as_str()) {
                return Err(config(format!("unknown section [{section}] (known: {})", SECTIONS.join(", "))));
            }
            let Some(t) = value.as_table() else {
                return Err(config(format!("`{section}` must be a table ([{section}])")));
            };
            let known = section_keys(&section);
            for written in t.keys() {
                let key = written.replace('-', "_");
                if known.contains(&key) {
                    continue;
                }
                let owned = RUN_OWNED.iter().any(|(s, keys)| *s == section && keys.contains(&key.as_str()));
                return Err(config(if owned {
                    format!("[{section}] `{written}` is set by docraft run itself and cannot be configured")
                } else {
                    let hint = closest(&key, &known).map(|k| format!("did you mean `{k}`? ")).unwrap_or_default();
                    let list: Vec<&str> = known.iter().map(String::as_str).collect();
                    format!("[{section}] unknown key `{written}`: {hint}(known: {})", list.join(", "))
                }));
            }
        }
        let table = normalize_keys(table);
        let settings: Self = toml::Value::Table(table).try_into().map_err(|e| config(format!("{e}")))?;
        settings.validate().map_err(|e| config(e.to_string()))?;
        Ok(settings)
    }

    /// Reads a config file.
    ///
    /// # Errors
    /// [`PipelineError::Io`] when it cannot be read, else as [`Settings::from_toml`].
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| PipelineError::io(path, e))?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Checks every value that has a range.
    ///
    /// # Errors
    /// [`PipelineError::Setting`] naming the section and key.
    pub fn validate(&self) -> Result<()> {
        if let Some(c) = &self.ingest.chunk_size {
            parse_capacity(c)?;
        }
        for (section, g) in [("qa", &self.qa.generator), ("raft", &self.raft.generator)] {
            let enabled = if section == "qa" { self.qa.enabled } else { self.raft.enabled };
            if enabled {
                g.validate().map_err(|e| PipelineError::setting(section, "generator", e.to_string()))?;
            }
        }
        if self.qa.enabled && self.qa.judge {
            if let Some(g) = &self.qa.judge_generator {
                g.validate().map_err(|e| PipelineError::setting("qa", "judge_generator", e.to_string()))?;
            }
            if !(1..=5).contains(&self.qa.judge_min_score) {
                let reason = format!("{} is not in 1..=5", self.qa.judge_min_score);
                return Err(PipelineError::setting("qa", "judge_min_score", reason));
            }
        }
        if !(0.0..=1.0).contains(&self.raft.min_answer_support) {
            let reason = format!("{} is not between 0 and 1", self.raft.min_answer_support);
            return Err(PipelineError::setting("raft", "min_answer_support", reason));
        }
        docraft_raft::parse_splits(&self.raft.split)
            .map_err(|e| PipelineError::setting("raft", "split", e.to_string()))?;
        if !(0.0..=1.0).contains(&self.raft.p) {
            return Err(PipelineError::setting("raft", "p", format!("{} is not between 0 and 1", self.raft.p)));
        }
        self.train.settings.validate().map_err(|e| PipelineError::setting("train", "settings", e.to_string()))?;
        if self.eval.k.contains(&0) {
            return Err(PipelineError::setting("eval", "k", "every k must be at least 1"));
        }
        if !(0.0..1.0).contains(&self.export.valid_fraction) {
            return Err(PipelineError::setting(
                "export",
                "valid_fraction",
                format!("{} is not in [0, 1)", self.export.valid_fraction),
            ));
        }
        Ok(())
    }

    /// Every key of every section with its value, as a TOML config: what `docraft run
    /// --print-config` shows. Unset optional keys are listed as comments.
    ///
    /// # Errors
    /// [`PipelineError::Config`] if a value cannot be written as TOML (not expected).
    pub fn to_toml(&self) -> Result<String> {
        let json = serde_json::to_value(self)
            .map_err(|e| PipelineError::Config { origin: "settings".into(), reason: e.to_string() })?;
        let mut out = String::new();
        for section in SECTIONS {
            out.push_str(&format!("[{section}]\n"));
            let Some(serde_json::Value::Object(fields)) = json.get(section) else { continue };
            for (key, value) in fields {
                let key = key.replace('_', "-");
                match json_to_toml(value) {
                    Some(v) => out.push_str(&format!("{key} = {v}\n")),
                    None => out.push_str(&format!("# {key} =   (unset)\n")),
                }
            }
            out.push('\n');
        }
        Ok(out)
    }
}

fn json_to_toml(v: &serde_json::Value) -> Option<String> {
    use serde_json::Value as J;
    match v {
        J::Null => None,
        J::Bool(b) => Some(b.to_string()),
        J::Number(n) => Some(n.to_string()),
        J::String(s) => Some(toml::Value::String(s.clone()).to_string()),
        J::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(json_to_toml).collect();
            Some(format!("[{}]", parts.join(", ")))
        }
        J::Object(fields) => {
            // An inline table (a generator's settings): unset keys left out.
            let parts: Vec<String> = fields
                .iter()
                .filter_map(|(k, v)| json_to_toml(v).map(|v| format!("{} = {v}", k.replace('_', "-"))))
                .collect();
            Some(format!("{{ {} }}", parts.join(", ")))
        }
    }
}

/// Parses `N`, `A..B`, `A..=B` or `A-B` (both ends inclusive).
///
/// # Errors
/// [`PipelineError::Setting`] for anything else, or an empty or zero range.
pub fn parse_capacity(s: &str) -> Result<(usize, usize)> {
    let s = s.trim();
    let parts: Option<(&str, &str)> = s.split_once("..=").or_else(|| s.split_once("..")).or_else(|| s.split_once('-'));
    let (a, b) = match parts {
        Some((a, b)) => (a.trim().parse::<usize>(), b.trim().parse::<usize>()),
        None => (s.parse::<usize>(), s.parse::<usize>()),
    };
    match (a, b) {
        (Ok(a), Ok(b)) if a <= b && b > 0 => Ok((a, b)),
        _ => Err(PipelineError::setting(
            "ingest",
            "chunk_size",
            format!("{s:?}: expected N or MIN..MAX with 0 < MIN <= MAX"),
        )),
    }
}

/// Serde through a type's `name()` and `FromStr`.
mod by_name {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(f: &super::ExportFormat, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(f.name())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<super::ExportFormat, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Serde of a list of RAFT formats, as a list of names or one comma-separated string.
mod by_name_list {
    use serde::{Deserialize, Deserializer, Serializer, ser::SerializeSeq};

    pub(crate) fn serialize<S: Serializer>(f: &[super::RaftFormat], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(f.len()))?;
        for x in f {
            seq.serialize_element(x.name())?;
        }
        seq.end()
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<super::RaftFormat>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        let names: Vec<String> = match Raw::deserialize(d)? {
            Raw::One(s) => s.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect(),
            Raw::Many(v) => v,
        };
        names.iter().map(|n| n.parse().map_err(serde::de::Error::custom)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacities() {
        assert_eq!(parse_capacity("500").unwrap(), (500, 500));
        assert_eq!(parse_capacity("500..1000").unwrap(), (500, 1000));
        assert_eq!(parse_capacity("500..=1000").unwrap(), (500, 1000));
        assert_eq!(parse_capacity("500-1000").unwrap(), (500, 1000));
        assert!(parse_capacity("1000..500").is_err());
        assert!(parse_capacity("0").is_err());
        assert!(parse_capacity("abc").is_err());
    }

    #[test]
    fn the_default_backend_runs_the_default_model_and_each_backend_has_its_model() {
        assert_eq!(IndexSettings::default().backend, EmbedBackend::default());
        assert_eq!(EmbedBackend::default().default_model_dir(), docraft_index::default_model_dir());
        assert!(EmbedBackend::UseM3.default_model_dir().ends_with("use-m3"));
        for b in [EmbedBackend::Onnx, EmbedBackend::Candle] {
            assert!(b.default_model_dir().ends_with("all-minilm-l6-v2"), "{b}");
        }
        for b in [EmbedBackend::UseM3, EmbedBackend::Onnx, EmbedBackend::Candle] {
            assert_eq!(b.name().parse::<EmbedBackend>().unwrap(), b);
            let s = Settings::from_toml(&format!("[index]\nbackend = \"{b}\"\n"), "t").unwrap();
            assert_eq!(s.index.backend, b);
        }
        assert!("use_m3".parse::<EmbedBackend>().unwrap_err().to_string().contains("onnx, candle or use-m3"));
        // Unset, the model directory follows the backend; set, it is the one named.
        let m = ModelSettings::default();
        assert_eq!(m.embedder_path(), docraft_index::default_model_dir());
        assert_eq!(m.embedder_path_for(EmbedBackend::UseM3), docraft_index::use_m3_model_dir());
        assert_eq!(m.embedder_path_for(EmbedBackend::Onnx), docraft_index::minilm_model_dir());
        let m = ModelSettings { embedder: Some("/models/mine".into()), ..ModelSettings::default() };
        assert_eq!(m.embedder_path_for(EmbedBackend::Onnx), PathBuf::from("/models/mine"));
    }

    #[test]
    fn dashes_and_underscores_are_the_same_key() {
        let a = Settings::from_toml("[raft]\nquestions-per-chunk = 2\n", "a").unwrap();
        let b = Settings::from_toml("[raft]\nquestions_per_chunk = 2\n", "b").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.raft.questions_per_chunk, 2);
        // Flattened generator keys and the trainer's keys are keys of their section.
        let c =
            Settings::from_toml("[raft]\ntemperature = 0.1\n[train]\nlora-rank = 8\nwarmup-steps = 3\n", "c").unwrap();
        assert!((c.raft.generator.temperature - 0.1).abs() < 1e-6);
        assert_eq!(c.train.settings.lora_rank, 8);
        assert_eq!(c.train.settings.warmup_steps, Some(3));
    }

    #[test]
    fn typos_name_the_section_and_key() {
        let e = Settings::from_toml("[raft]\nquestions-per-chunck = 2\n", "cfg.toml").unwrap_err().to_string();
        assert!(e.contains("cfg.toml") && e.contains("[raft]") && e.contains("`questions-per-chunck`"), "{e}");
        assert!(e.contains("did you mean `questions_per_chunk`"), "{e}");
        let e = Settings::from_toml("[rafts]\n", "cfg.toml").unwrap_err().to_string();
        assert!(e.contains("unknown section [rafts]"), "{e}");
        let e = Settings::from_toml("[train]\ndata = \"x\"\n", "cfg.toml").unwrap_err().to_string();
        assert!(e.contains("set by docraft run itself"), "{e}");
        let e = Settings::from_toml("[train]\nlora-rank = 1000\n", "cfg.toml").unwrap_err().to_string();
        assert!(e.contains("lora_rank"), "{e}");
        let e = Settings::from_toml("[raft]\ndistractors = \"three\"\n", "cfg.toml").unwrap_err().to_string();
        assert!(e.contains("distractors"), "{e}");
    }

    #[test]
    fn defaults_come_from_the_stage_crates() {
        let s = Settings::default();
        let r = RaftOptions::default();
        assert_eq!(s.raft.distractors, r.distractors);
        assert_eq!(s.raft.max_tokens, r.max_tokens);
        assert!((s.raft.hard_share() - r.hard_share).abs() < 1e-6);
        assert_eq!(docraft_raft::parse_splits(&s.raft.split).unwrap(), r.splits);
        assert_eq!(s.qa.questions_per_chunk, GenerateOptions::default().questions_per_chunk);
        assert_eq!(s.qa.checks.keep_all_chunks, !GenerateOptions::default().skip_chunks);
        assert!(!s.qa.checks.keep_all_chunks && !s.raft.checks.keep_all_chunks, "skipping is on by default");
        let f = Filters::default();
        assert_eq!(
            (s.qa.checks.no_question_filter, s.qa.checks.no_passage_filter, s.qa.checks.no_answer_filter),
            (!f.question_form, !f.self_contained, !f.answer_form)
        );
        assert_eq!(s.raft.checks, s.qa.checks);
        assert!(!s.qa.judge, "the judge is off by default");
        assert_eq!(s.qa.judge_min_score, JudgeOptions::default().min_score);
        assert!((s.raft.min_answer_support - r.min_answer_support).abs() < f32::EPSILON);
        assert_eq!(s.train.settings, docraft_train::Settings::default());
        assert_eq!(s.index.batch, EmbedOptions::default().batch_size);
        assert_eq!(s.eval.max_tokens, QaOptions::default().max_tokens);
    }

    #[test]
    fn the_judge_generator_is_a_table_of_generator_keys() {
        let text = "[qa]\nenabled = true\njudge = true\njudge-min-score = 4\n[qa.judge-generator]\n\
                    backend = \"openai\"\nbase-url = \"http://127.0.0.1:8080/v1\"\nmodel = \"judge\"\n";
        let s = Settings::from_toml(text, "cfg.toml").unwrap();
        let g = s.qa.judge_generator.as_ref().unwrap();
        assert_eq!(
            (g.backend, g.model.as_deref(), s.qa.judge_min_score),
            (docraft_llm::Backend::Openai, Some("judge"), 4)
        );
        let e = Settings::from_toml(
            "[qa]\nenabled = true\njudge = true\n[qa.judge-generator]\nbackend = \"openai\"\n",
            "c",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("judge_generator") && e.contains("base_url"), "{e}");
        let e = Settings::from_toml("[qa]\njudge = true\njudge-min-score = 9\nenabled = true\n", "c")
            .unwrap_err()
            .to_string();
        assert!(e.contains("judge_min_score"), "{e}");
        let e = Settings::from_toml("[qa.judge-generator]\nbase-ur = \"x\"\n", "c").unwrap_err().to_string();
        assert!(e.contains("base-ur") || e.contains("base_ur"), "{e}");
        let e = Settings::from_toml("[raft]\nmin-answer-support = 2.0\n", "c").unwrap_err().to_string();
        assert!(e.contains("min_answer_support"), "{e}");
    }

    #[test]
    fn printed_config_reads_back_as_the_same_settings() {
        let mut s = Settings::default();
        s.raft.limit = Some(16);
        s.raft.format = vec![RaftFormat::Chat, RaftFormat::Eval];
        s.export.format = ExportFormat::Alpaca;
        s.train.settings.max_steps = Some(24);
        s.qa.judge = true;
        s.qa.judge_generator = Some(GeneratorSettings {
            backend: docraft_llm::Backend::Openai,
            base_url: Some("http://127.0.0.1:8080/v1".into()),
            model: Some("judge-model".into()),
            ..GeneratorSettings::default()
        });
        s.raft.checks.keep_all_chunks = true;
        let text = s.to_toml().unwrap();
        assert!(text.contains("# base =   (unset)"), "{text}");
        assert_eq!(Settings::from_toml(&text, "printed").unwrap(), s);
    }
}
