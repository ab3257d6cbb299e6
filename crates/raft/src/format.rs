//! The reference's output formats (gorilla `raft/format.py`), written per split.
//!
//! - `hf`: the whole [`RaftRecord`] (reference columns plus `final_answer` and `meta`);
//! - `completion`: `{"prompt": instruction, "completion": cot_answer}` (keys configurable);
//! - `chat`: `{"messages": [system?, user = instruction, assistant = cot_answer]}`;
//! - `eval`: `{"question", "gold_final_answer", "context" = instruction}` plus `meta`.
//!
//! `chat` and `completion` carry nothing else, as fine-tuning endpoints reject unknown keys;
//! their lines follow the `hf` file of the same split line for line, so lineage is one
//! lookup away.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use docraft_core::jsonl::JsonlWriter;
use docraft_core::{RaftEvalRecord, RaftRecord};
use serde_json::{Value, json};

use crate::error::{RaftError, Result, setting};

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    /// The reference's Hugging Face dataset columns, plus ours.
    Hf,
    /// OpenAI completion: prompt and completion.
    Completion,
    /// OpenAI chat: messages.
    Chat,
    /// Evaluation: question, gold final answer, context.
    Eval,
}

impl Format {
    /// Every format.
    pub const ALL: [Self; 4] = [Self::Hf, Self::Completion, Self::Chat, Self::Eval];

    /// The name used on the command line and in file names.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Hf => "hf",
            Self::Completion => "completion",
            Self::Chat => "chat",
            Self::Eval => "eval",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Format {
    type Err = RaftError;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| setting("format", format!("{s:?} is not one of hf, completion, chat, eval")))
    }
}

/// How records become lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatOptions {
    /// `chat`: a system message first.
    pub system_prompt: Option<String>,
    /// `completion`: the prompt column's name.
    pub prompt_key: String,
    /// `completion`: the completion column's name.
    pub completion_key: String,
}

impl Default for FormatOptions {
    fn default() -> Self {
        Self { system_prompt: None, prompt_key: "prompt".into(), completion_key: "completion".into() }
    }
}

/// One record in `format`.
#[must_use]
pub fn to_value(r: &RaftRecord, format: Format, o: &FormatOptions) -> Value {
    match format {
        Format::Hf => serde_json::to_value(r).unwrap_or(Value::Null),
        Format::Completion => {
            let mut m = serde_json::Map::new();
            m.insert(o.prompt_key.clone(), Value::String(r.instruction.clone()));
            m.insert(o.completion_key.clone(), Value::String(r.cot_answer.clone()));
            Value::Object(m)
        }
        Format::Chat => {
            let mut messages = Vec::new();
            if let Some(s) = &o.system_prompt {
                messages.push(json!({"role": "system", "content": s}));
            }
            messages.push(json!({"role": "user", "content": r.instruction}));
            messages.push(json!({"role": "assistant", "content": r.cot_answer}));
            json!({ "messages": messages })
        }
        Format::Eval => serde_json::to_value(RaftEvalRecord::of(r)).unwrap_or(Value::Null),
    }
}

/// One file written by [`export`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// The file (`OUT_STEM.SPLIT.FORMAT.jsonl`).
    pub path: PathBuf,
    /// Its split.
    pub split: String,
    /// Its format.
    pub format: Format,
    /// Lines written.
    pub records: usize,
}

/// Writes `records` (grouped by their `meta.split`, in id order) to one file per split and
/// format beside `out`: `raft.jsonl` gives `raft.train.chat.jsonl` and so on. Each file is
/// written whole under a temporary name, then renamed. `splits` names every split to write,
/// so an empty split still gets its (empty) files.
///
/// # Errors
/// File errors, naming the file.
pub fn export(
    records: &[RaftRecord],
    out: &Path,
    splits: &[String],
    formats: &[Format],
    o: &FormatOptions,
) -> Result<Vec<Exported>> {
    let mut by_split: BTreeMap<&str, Vec<&RaftRecord>> = splits.iter().map(|s| (s.as_str(), Vec::new())).collect();
    for r in records {
        by_split.entry(r.meta.split.as_str()).or_default().push(r);
    }
    let mut written = Vec::new();
    for (split, mut rs) in by_split {
        rs.sort_by(|a, b| a.id.cmp(&b.id));
        for &format in formats {
            let path = crate::RaftFiles::export(out, split, format);
            let tmp = path.with_extension("jsonl.tmp");
            let mut w = JsonlWriter::<Value>::create(&tmp)?;
            let lines: Vec<Value> = rs.iter().map(|r| to_value(r, format, o)).collect();
            w.write_all(&lines)?;
            w.sync()?;
            drop(w);
            std::fs::rename(&tmp, &path)
                .map_err(|source| RaftError::Io { path: path.display().to_string(), source })?;
            written.push(Exported { path, split: split.to_string(), format, records: rs.len() });
        }
    }
    Ok(written)
}
