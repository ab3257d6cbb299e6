//! Training formats from `qa.jsonl`, with a train/valid split by source document.
//!
//! The split never puts two pairs of one document on different sides, so a validation score
//! measures documents the model has not seen. Which documents go to validation depends only
//! on the seed and the document ids: the same inputs and seed give the same files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use docraft_core::QaPair;
use docraft_core::jsonl::{JsonlReader, JsonlWriter};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{QaGenError, Result};

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// `{"messages": [{"role": "system"?}, {"role": "user"}, {"role": "assistant"}]}`: OpenAI
    /// chat fine-tuning.
    OpenaiChat,
    /// `{"prompt", "completion"}`.
    Completion,
    /// `{"instruction", "input", "output"}` (+ `"system"` when given).
    Alpaca,
    /// `{"conversations": [{"from": "system"?}, {"from": "human"}, {"from": "gpt"}]}`.
    Sharegpt,
    /// `{"text": question, "label": answer}`.
    TextLabel,
}

impl Format {
    /// Every format, in the order the CLI lists them.
    pub const ALL: [Self; 5] = [Self::OpenaiChat, Self::Completion, Self::Alpaca, Self::Sharegpt, Self::TextLabel];

    /// The format's CLI name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::OpenaiChat => "openai-chat",
            Self::Completion => "completion",
            Self::Alpaca => "alpaca",
            Self::Sharegpt => "sharegpt",
            Self::TextLabel => "text-label",
        }
    }

    /// The format named `name`.
    ///
    /// # Errors
    /// [`QaGenError::Setting`] naming the known formats.
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name).ok_or_else(|| QaGenError::Setting {
            name: "format",
            reason: format!("unknown format {name:?}; known: {}", Self::ALL.map(Self::name).join(", ")),
        })
    }

    /// One record of this format for a question and answer.
    #[must_use]
    pub fn record(self, question: &str, answer: &str, system: Option<&str>) -> Value {
        match self {
            Self::OpenaiChat => {
                json!({ "messages": turns(("role", "content"), ["system", "user", "assistant"], system, question, answer) })
            }
            Self::Completion => match system {
                Some(s) => json!({"prompt": format!("{s}\n\n{question}"), "completion": answer}),
                None => json!({"prompt": question, "completion": answer}),
            },
            Self::Alpaca => {
                let mut v = json!({"instruction": question, "input": "", "output": answer});
                if let Some(s) = system {
                    v["system"] = json!(s);
                }
                v
            }
            Self::Sharegpt => {
                json!({ "conversations": turns(("from", "value"), ["system", "human", "gpt"], system, question, answer) })
            }
            Self::TextLabel => json!({"text": question, "label": answer}),
        }
    }
}

/// A chat as a list of `{speaker_key: role, text_key: text}` turns: the system prompt (when
/// given), the question, the answer.
fn turns(
    (speaker_key, text_key): (&str, &str),
    [system_role, user_role, assistant_role]: [&str; 3],
    system: Option<&str>,
    question: &str,
    answer: &str,
) -> Vec<Value> {
    let turn = |role: &str, text: &str| json!({ speaker_key: role, text_key: text });
    system
        .map(|s| turn(system_role, s))
        .into_iter()
        .chain([turn(user_role, question), turn(assistant_role, answer)])
        .collect()
}

impl std::str::FromStr for Format {
    type Err = QaGenError;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// Settings of an export.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportOptions {
    /// The format.
    pub format: Format,
    /// A system prompt put in every record (formats that have one).
    pub system_prompt: Option<String>,
    /// Share of pairs (0..1) for validation, taken as whole documents.
    pub valid_fraction: f64,
    /// Seed of the document split.
    pub seed: u64,
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportReport {
    /// The training file.
    pub train_path: PathBuf,
    /// Records in it.
    pub train: usize,
    /// The validation file, when a fraction was asked.
    pub valid_path: Option<PathBuf>,
    /// Records in it.
    pub valid: usize,
    /// Documents on each side.
    pub train_docs: usize,
    /// Documents on the validation side.
    pub valid_docs: usize,
}

/// The validation file beside `out`: `train.jsonl` -> `train.valid.jsonl`.
#[must_use]
pub fn valid_path_for(out: &Path) -> PathBuf {
    docraft_core::jsonl::sibling(out, "valid")
}

/// Exports the pairs of `input` (a `qa.jsonl`) to `out` (and its `.valid.jsonl` sibling).
///
/// # Errors
/// [`QaGenError::Setting`] for a fraction outside `0..1`; file errors naming the file and
/// line.
pub fn export(input: &Path, out: &Path, options: &ExportOptions) -> Result<ExportReport> {
    if !(0.0..1.0).contains(&options.valid_fraction) {
        return Err(QaGenError::Setting { name: "valid_fraction", reason: "must be in [0, 1)".into() });
    }
    let pairs = JsonlReader::<QaPair>::open(input)?.collect::<docraft_core::Result<Vec<_>>>()?;
    let valid_docs = split_docs(&pairs, options.valid_fraction, options.seed);
    let system = options.system_prompt.as_deref();
    let mut train_w = JsonlWriter::<Value>::create(out)?;
    let valid_path = (options.valid_fraction > 0.0).then(|| valid_path_for(out));
    let mut valid_w = valid_path.as_ref().map(JsonlWriter::<Value>::create).transpose()?;
    let (mut train, mut valid) = (0, 0);
    for p in &pairs {
        let rec = options.format.record(&p.question, &p.answer, system);
        match valid_w.as_mut() {
            Some(w) if valid_docs.contains(p.chunk.doc_id.as_str()) => {
                w.write(&rec)?;
                valid += 1;
            }
            _ => {
                train_w.write(&rec)?;
                train += 1;
            }
        }
    }
    let all_docs: std::collections::BTreeSet<&str> = pairs.iter().map(|p| p.chunk.doc_id.as_str()).collect();
    Ok(ExportReport {
        train_path: out.to_path_buf(),
        train,
        valid_path,
        valid,
        train_docs: all_docs.len() - valid_docs.len(),
        valid_docs: valid_docs.len(),
    })
}

/// Documents for validation: in the order of `hash(seed, doc_id)`, each one taken when it
/// brings the validation share closer to `fraction` of all pairs (so one large document does
/// not swallow a small target). With two or more documents, at least one stays on each side.
#[must_use]
#[allow(clippy::cast_precision_loss)]
pub fn split_docs(pairs: &[QaPair], fraction: f64, seed: u64) -> std::collections::BTreeSet<String> {
    let mut per_doc: BTreeMap<&str, usize> = BTreeMap::new();
    for p in pairs {
        *per_doc.entry(p.chunk.doc_id.as_str()).or_default() += 1;
    }
    let docs: Vec<(String, usize)> = per_doc.into_iter().map(|(d, n)| (d.to_string(), n)).collect();
    docraft_core::split::assign_splits(&docs, &[1.0 - fraction, fraction], seed)
        .into_iter()
        .filter_map(|(d, split)| (split == 1).then_some(d))
        .collect()
}
