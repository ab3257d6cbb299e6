//! Checks a dataset file before it is uploaded for fine-tuning.
//!
//! For `openai-chat` the checks are those of OpenAI's chat fine-tuning data preparation
//! (the "Data preparation and analysis for chat model fine-tuning" cookbook): each line a
//! JSON object with a `messages` list; each message with `role` and `content` and no keys
//! but `role`, `content`, `name`, `function_call`, `weight`; roles `system`, `user`,
//! `assistant`, `function`; content a non-empty string; an assistant message in every
//! example; warnings for examples without a system or user message; token counts (with a
//! tokenizer the user names, else estimated), examples over the length limit, at least 10
//! examples, and the epochs and billed tokens OpenAI's defaults would give. The other formats
//! get their required keys checked.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::export::Format;
use crate::{QaGenError, Result};

/// Longest example OpenAI trains on, in tokens (longer ones are truncated).
pub const MAX_TOKENS_PER_EXAMPLE: usize = 16_385;
/// Fewest examples OpenAI accepts.
pub const MIN_EXAMPLES: usize = 10;
const TARGET_EPOCHS: usize = 3;
const MIN_TARGET_EXAMPLES: usize = 100;
const MAX_TARGET_EXAMPLES: usize = 25_000;
const MIN_DEFAULT_EPOCHS: usize = 1;
const MAX_DEFAULT_EPOCHS: usize = 25;

/// Counts tokens for the statistics.
pub enum TokenCounter {
    /// A `tokenizers` tokenizer (e.g. a `tokenizer.json` of the target model).
    Tokenizer(Box<tokenizers::Tokenizer>),
    /// About four characters per token.
    Estimate,
}

impl std::fmt::Debug for TokenCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Tokenizer(_) => "TokenCounter::Tokenizer",
            Self::Estimate => "TokenCounter::Estimate",
        })
    }
}

impl TokenCounter {
    /// Loads a `tokenizer.json`.
    ///
    /// # Errors
    /// [`QaGenError::Model`] naming the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        tokenizers::Tokenizer::from_file(path)
            .map(|t| Self::Tokenizer(Box::new(t)))
            .map_err(|e| QaGenError::Model { path: path.to_path_buf(), reason: format!("not a tokenizer.json: {e}") })
    }

    /// Tokens of `text`.
    #[must_use]
    pub fn count(&self, text: &str) -> usize {
        match self {
            Self::Tokenizer(t) => t.encode(text, false).map_or_else(|_| text.len().div_ceil(4), |e| e.len()),
            Self::Estimate => text.chars().count().div_ceil(4),
        }
    }

    /// Whether counts are exact.
    #[must_use]
    pub fn exact(&self) -> bool {
        matches!(self, Self::Tokenizer(_))
    }
}

/// One problem, on one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// 1-based line.
    pub line: usize,
    /// Stable kind (as the cookbook names them, e.g. `missing_content`).
    pub kind: &'static str,
    /// Details.
    pub message: String,
}

/// Min, max, mean, median, 5th and 95th percentile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Distribution {
    /// Smallest.
    pub min: usize,
    /// Largest.
    pub max: usize,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub median: usize,
    /// 5th percentile.
    pub p5: usize,
    /// 95th percentile.
    pub p95: usize,
}

impl Distribution {
    fn of(values: &[usize]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let mut v = values.to_vec();
        v.sort_unstable();
        let at = |q: f64| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
            let i = ((v.len() - 1) as f64 * q).round() as usize;
            v[i]
        };
        #[allow(clippy::cast_precision_loss)]
        let mean = v.iter().sum::<usize>() as f64 / v.len() as f64;
        Self { min: v[0], max: v[v.len() - 1], mean, median: at(0.5), p5: at(0.05), p95: at(0.95) }
    }
}

/// The outcome of a validation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The format checked.
    pub format: Format,
    /// Examples (non-empty lines).
    pub examples: usize,
    /// Errors: the file would be refused.
    pub errors: Vec<Problem>,
    /// Warnings: accepted, but worth a look.
    pub warnings: Vec<Problem>,
    /// Errors by kind.
    pub error_counts: BTreeMap<&'static str, usize>,
    /// Examples without a system message (openai-chat).
    pub missing_system: usize,
    /// Examples without a user message (openai-chat).
    pub missing_user: usize,
    /// Tokens per example.
    pub tokens: Distribution,
    /// Assistant tokens per example (openai-chat).
    pub assistant_tokens: Distribution,
    /// Whether token counts come from a tokenizer.
    pub exact_tokens: bool,
    /// Examples over [`MAX_TOKENS_PER_EXAMPLE`] (they would be truncated).
    pub too_long: usize,
    /// Epochs OpenAI's defaults would train for.
    pub epochs: usize,
    /// Tokens billed per epoch (each example capped at the limit).
    pub billing_tokens_per_epoch: usize,
    /// Tokens billed for the whole training.
    pub billed_tokens: usize,
}

impl Report {
    /// Whether the file passes.
    #[must_use]
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Validates `path` as `format`.
///
/// # Errors
/// [`QaGenError::Io`] when the file cannot be read. Problems *in* the file are in the report.
pub fn validate(path: &Path, format: Format, counter: &TokenCounter) -> Result<Report> {
    let file = std::fs::File::open(path).map_err(|e| QaGenError::io(path, e))?;
    let mut report = Report {
        format,
        examples: 0,
        errors: Vec::new(),
        warnings: Vec::new(),
        error_counts: BTreeMap::new(),
        missing_system: 0,
        missing_user: 0,
        tokens: Distribution::default(),
        assistant_tokens: Distribution::default(),
        exact_tokens: counter.exact(),
        too_long: 0,
        epochs: 0,
        billing_tokens_per_epoch: 0,
        billed_tokens: 0,
    };
    let (mut lens, mut assistant_lens) = (Vec::new(), Vec::new());
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| QaGenError::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        report.examples += 1;
        let n = i + 1;
        let mut err = |kind: &'static str, message: String| report.errors.push(Problem { line: n, kind, message });
        let value: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                err("invalid_json", format!("not JSON: {e}"));
                continue;
            }
        };
        let Value::Object(obj) = &value else {
            err("data_type", "the line is not a JSON object".into());
            continue;
        };
        if format != Format::OpenaiChat {
            let required: &[&str] = match format {
                Format::Completion => &["prompt", "completion"],
                Format::Alpaca => &["instruction", "input", "output"],
                Format::Sharegpt => &["conversations"],
                Format::TextLabel => &["text", "label"],
                Format::OpenaiChat => &[],
            };
            for key in required {
                match obj.get(*key) {
                    None => err("missing_key", format!("no {key:?}")),
                    Some(Value::String(s)) if s.trim().is_empty() && *key != "input" => {
                        err("empty_value", format!("{key:?} is empty"));
                    }
                    Some(Value::String(_) | Value::Array(_)) => {}
                    Some(_) => err("wrong_type", format!("{key:?} is neither a string nor a list")),
                }
            }
            let text: String = obj.values().filter_map(Value::as_str).collect::<Vec<_>>().join("\n");
            lens.push(counter.count(&text));
            continue;
        }
        let Some(messages) = obj.get("messages").and_then(Value::as_array) else {
            err("missing_messages_list", "no \"messages\" list".into());
            continue;
        };
        let (mut tokens, mut assistant_tokens) = (3, 0);
        let (mut has_system, mut has_user, mut has_assistant) = (false, false, false);
        for (j, m) in messages.iter().enumerate() {
            let Value::Object(m) = m else {
                err("message_not_object", format!("message {} is not an object", j + 1));
                continue;
            };
            if !m.contains_key("role") || !m.contains_key("content") {
                err("message_missing_key", format!("message {} lacks \"role\" or \"content\"", j + 1));
            }
            if let Some(k) =
                m.keys().find(|k| !["role", "content", "name", "function_call", "weight"].contains(&k.as_str()))
            {
                err("message_unrecognized_key", format!("message {} has key {k:?}", j + 1));
            }
            let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
            match role {
                "system" => has_system = true,
                "user" => has_user = true,
                "assistant" => has_assistant = true,
                "function" => {}
                other => err("unrecognized_role", format!("message {} has role {other:?}", j + 1)),
            }
            let content = m.get("content").and_then(Value::as_str);
            let has_call = m.contains_key("function_call");
            if content.is_none_or(str::is_empty) && !has_call {
                err("missing_content", format!("message {} has no text content", j + 1));
            }
            if let Some(w) = m.get("weight")
                && !matches!(w.as_u64(), Some(0 | 1))
            {
                err("invalid_weight", format!("message {} has weight {w}, not 0 or 1", j + 1));
            }
            // The cookbook's count: 3 per message, each value's tokens, 1 more for a name.
            tokens += 3;
            for (k, v) in m {
                let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                tokens += counter.count(&text);
                if k == "name" {
                    tokens += 1;
                }
            }
            if role == "assistant" {
                assistant_tokens += content.map_or(0, |c| counter.count(c));
            }
        }
        if !has_assistant {
            err("example_missing_assistant_message", "no assistant message".into());
        }
        if !has_system {
            report.missing_system += 1;
        }
        if !has_user {
            report.missing_user += 1;
            report.warnings.push(Problem { line: n, kind: "missing_user_message", message: "no user message".into() });
        }
        lens.push(tokens);
        assistant_lens.push(assistant_tokens);
    }
    if report.examples < MIN_EXAMPLES {
        report.errors.push(Problem {
            line: 0,
            kind: "too_few_examples",
            message: format!("{} examples; OpenAI requires at least {MIN_EXAMPLES}", report.examples),
        });
    }
    for p in &report.errors {
        *report.error_counts.entry(p.kind).or_default() += 1;
    }
    report.tokens = Distribution::of(&lens);
    report.assistant_tokens = Distribution::of(&assistant_lens);
    report.too_long = lens.iter().filter(|l| **l > MAX_TOKENS_PER_EXAMPLE).count();
    let n = lens.len().max(1);
    report.epochs = if n * TARGET_EPOCHS < MIN_TARGET_EXAMPLES {
        MAX_DEFAULT_EPOCHS.min(MIN_TARGET_EXAMPLES / n)
    } else if n * TARGET_EPOCHS > MAX_TARGET_EXAMPLES {
        MIN_DEFAULT_EPOCHS.max(MAX_TARGET_EXAMPLES / n)
    } else {
        TARGET_EPOCHS
    };
    report.billing_tokens_per_epoch = lens.iter().map(|l| (*l).min(MAX_TOKENS_PER_EXAMPLE)).sum();
    report.billed_tokens = report.epochs * report.billing_tokens_per_epoch;
    if report.missing_system > 0 {
        report.warnings.push(Problem {
            line: 0,
            kind: "missing_system_message",
            message: format!("{} examples have no system message", report.missing_system),
        });
    }
    if report.too_long > 0 {
        report.warnings.push(Problem {
            line: 0,
            kind: "too_long",
            message: format!(
                "{} examples are over {MAX_TOKENS_PER_EXAMPLE} tokens and will be truncated",
                report.too_long
            ),
        });
    }
    Ok(report)
}
