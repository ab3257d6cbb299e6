//! Training examples from JSONL: chat (`messages`, or ShareGPT `conversations`), completion
//! (`prompt`/`completion`, Alpaca `instruction`/`input`/`output`, `text`/`label`) and plain `text`,
//! tokenized with the model's chat template and a mask of the tokens the loss is computed on.

use std::path::{Path, PathBuf};

use docraft_core::{ChatMessage, Role};
use serde_json::Value;
use tokenizers::Tokenizer;

use crate::error::{Result, TrainError};
use crate::tokenizer::ChatTemplate;

/// One training example before tokenization.
#[derive(Debug, Clone, PartialEq)]
pub enum Example {
    /// A conversation; loss on the assistant turns whose flag is true.
    Chat {
        /// The turns.
        messages: Vec<ChatMessage>,
        /// Per turn: whether the loss covers it (assistant turns with OpenAI's `weight` not 0).
        train: Vec<bool>,
    },
    /// A prompt and its completion; loss on the completion (and end of sequence).
    Completion {
        /// Context.
        prompt: String,
        /// Target.
        completion: String,
    },
    /// Plain text; loss on every token.
    Text(String),
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        // OpenAI content parts: [{"type": "text", "text": ...}]
        Value::Array(parts) => Some(parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join("")),
        _ => None,
    }
}

impl Example {
    /// Reads one JSON record in any of the supported shapes.
    ///
    /// # Errors
    /// A message saying what is missing.
    pub fn from_json(v: &Value) -> std::result::Result<Self, String> {
        if let Some(turns) = v.get("messages").or_else(|| v.get("conversations")).and_then(Value::as_array) {
            let mut messages = Vec::new();
            let mut train = Vec::new();
            for (i, t) in turns.iter().enumerate() {
                let role = t
                    .get("role")
                    .or_else(|| t.get("from"))
                    .and_then(Value::as_str)
                    .ok_or(format!("turn {i} has no role"))?;
                let role = match role {
                    "system" => Role::System,
                    "user" | "human" => Role::User,
                    "assistant" | "gpt" => Role::Assistant,
                    r => return Err(format!("turn {i} has role `{r}`; expected system, user or assistant")),
                };
                let content = t
                    .get("content")
                    .or_else(|| t.get("value"))
                    .and_then(text_of)
                    .ok_or(format!("turn {i} has no content"))?;
                train.push(role == Role::Assistant && t.get("weight").and_then(Value::as_f64) != Some(0.0));
                messages.push(ChatMessage::new(role, content));
            }
            if !train.iter().any(|t| *t) {
                return Err("no assistant turn to learn from".into());
            }
            return Ok(Self::Chat { messages, train });
        }
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        if let (Some(prompt), Some(completion)) = (s("prompt"), s("completion")) {
            return Ok(Self::Completion { prompt, completion });
        }
        if let (Some(instruction), Some(output)) = (s("instruction"), s("output")) {
            let input = s("input").unwrap_or_default();
            let prompt = if input.is_empty() { instruction } else { format!("{instruction}\n\n{input}") };
            let mut messages = Vec::new();
            if let Some(system) = s("system") {
                messages.push(ChatMessage::new(Role::System, system));
            }
            messages.push(ChatMessage::new(Role::User, prompt));
            messages.push(ChatMessage::new(Role::Assistant, output));
            let train = messages.iter().map(|m| m.role == Role::Assistant).collect();
            return Ok(Self::Chat { messages, train });
        }
        if let (Some(text), Some(label)) = (s("text"), s("label")) {
            return Ok(Self::Completion { prompt: text, completion: label });
        }
        if let Some(text) = s("text") {
            return Ok(Self::Text(text));
        }
        Err("expected `messages`, `conversations`, `prompt`+`completion`, `instruction`+`output`, `text`+`label` or `text`".into())
    }
}

/// An example as token ids; `target[i]` says whether token i is predicted (so position i-1 carries loss).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Whether each token is a training target.
    pub target: Vec<bool>,
    /// Whether the example was cut at the length limit.
    pub truncated: bool,
    /// 1-based line in its file.
    pub line: usize,
}

impl Tokens {
    /// `(position, next token)` pairs the loss is computed on.
    #[must_use]
    pub fn targets(&self) -> Vec<(usize, u32)> {
        (1..self.ids.len()).filter(|&i| self.target[i]).map(|i| (i - 1, self.ids[i])).collect()
    }

    /// How many tokens the loss covers.
    #[must_use]
    pub fn target_count(&self) -> usize {
        self.target.iter().skip(1).filter(|t| **t).count()
    }
}

/// Turns examples into [`Tokens`] with a tokenizer and chat template.
#[derive(Debug)]
pub struct Encoder {
    tokenizer: Tokenizer,
    template: ChatTemplate,
    eos: Option<(u32, String)>,
    max_len: usize,
}

impl Encoder {
    /// An encoder cutting examples at `max_len` tokens; `eos` closes completions and texts.
    #[must_use]
    pub fn new(tokenizer: Tokenizer, template: ChatTemplate, eos: Option<String>, max_len: usize) -> Self {
        let eos = eos.and_then(|s| tokenizer.token_to_id(&s).map(|id| (id, s)));
        Self { tokenizer, template, eos, max_len }
    }

    /// The tokenizer.
    #[must_use]
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The chat template.
    #[must_use]
    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }

    /// The end-of-sequence id, if the model has one.
    #[must_use]
    pub fn eos_id(&self) -> Option<u32> {
        self.eos.as_ref().map(|(id, _)| *id)
    }

    /// The text an example renders to and the byte spans the loss covers.
    ///
    /// # Errors
    /// A message when the template fails.
    pub fn render(&self, ex: &Example) -> std::result::Result<(String, Vec<(usize, usize)>), String> {
        let eos = self.eos.as_ref().map_or("", |(_, s)| s.as_str());
        match ex {
            Example::Text(t) => Ok((format!("{t}{eos}"), vec![(0, t.len() + eos.len())])),
            Example::Completion { prompt, completion } => Ok((
                format!("{prompt}{completion}{eos}"),
                vec![(prompt.len(), prompt.len() + completion.len() + eos.len())],
            )),
            Example::Chat { messages, train } => {
                let r = |m: &[ChatMessage], add: bool| self.template.render(m, add).map_err(|e| e.to_string());
                let full = r(messages, false)?;
                let mut spans = Vec::new();
                let mut search_from = 0;
                for (i, m) in messages.iter().enumerate() {
                    if !train[i] {
                        continue;
                    }
                    let prefix = r(&messages[..i], true)?;
                    let upto = r(&messages[..=i], false)?;
                    if full.starts_with(&upto) && upto.starts_with(&prefix) && prefix.len() < upto.len() {
                        spans.push((prefix.len(), upto.len()));
                        search_from = upto.len();
                    } else if let Some(pos) = full[search_from..].find(&m.content) {
                        // Templates whose prefixes are not stable: find the turn's text instead.
                        let start = search_from + pos;
                        let mut end = start + m.content.len();
                        if !eos.is_empty() && full[end..].starts_with(eos) {
                            end += eos.len();
                        }
                        spans.push((start, end));
                        search_from = end;
                    } else {
                        return Err(format!("the chat template dropped assistant turn {i}"));
                    }
                }
                Ok((full, spans))
            }
        }
    }

    /// Tokenizes an example, marking its target tokens and cutting it at the length limit (the middle
    /// of a long context before the targets, else the end).
    ///
    /// # Errors
    /// A message when the template or tokenizer fails, or nothing is left to learn after cutting.
    pub fn encode(&self, ex: &Example, line: usize) -> std::result::Result<Tokens, String> {
        let (text, spans) = self.render(ex)?;
        let enc = self.tokenizer.encode(text.as_str(), false).map_err(|e| format!("tokenizer: {e}"))?;
        let mut ids = enc.get_ids().to_vec();
        let mut target: Vec<bool> =
            enc.get_offsets().iter().map(|&(s, e)| spans.iter().any(|&(a, b)| e > a && s < b)).collect();
        let total = ids.len();
        let truncated = total > self.max_len;
        if truncated {
            // Keep what is learned: when the targets sit after a long context (RAFT documents,
            // a long conversation), cut the middle of the context and keep its beginning (the
            // system prompt) and the end; otherwise cut the end.
            let first = target.iter().position(|t| *t).unwrap_or(0);
            let head = (self.max_len / 8).min(64);
            if first > head {
                let tail = self.max_len - head;
                ids.drain(head..total - tail);
                target.drain(head..total - tail);
            } else {
                ids.truncate(self.max_len);
                target.truncate(self.max_len);
            }
        }
        let out = Tokens { ids, target, truncated, line };
        if out.target_count() == 0 {
            return Err(if truncated {
                format!("no target tokens within max_seq_len {} (the example has {total} tokens)", self.max_len)
            } else {
                "no target tokens".to_string()
            });
        }
        Ok(out)
    }
}

/// A tokenized JSONL file, with the lines that could not be used.
#[derive(Debug)]
pub struct Dataset {
    /// The file.
    pub path: PathBuf,
    /// Usable examples, in file order.
    pub examples: Vec<Tokens>,
    /// Lines that were rejected, each with its cause (never silently dropped).
    pub rejected: Vec<TrainError>,
    /// Examples cut at the length limit (kept).
    pub truncated: usize,
}

impl Dataset {
    /// Reads and tokenizes every line of `path`; bad lines are collected in [`Dataset::rejected`].
    ///
    /// # Errors
    /// [`TrainError::Io`] when the file cannot be read.
    pub fn load(path: &Path, encoder: &Encoder) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(TrainError::io(path))?;
        let mut examples = Vec::new();
        let mut rejected = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            if raw.trim().is_empty() {
                continue;
            }
            let parsed = serde_json::from_str::<Value>(raw)
                .map_err(|e| format!("not JSON: {e}"))
                .and_then(|v| Example::from_json(&v))
                .and_then(|ex| encoder.encode(&ex, line));
            match parsed {
                Ok(t) => examples.push(t),
                Err(message) => rejected.push(TrainError::Example { path: path.to_path_buf(), line, message }),
            }
        }
        let truncated = examples.iter().filter(|e| e.truncated).count();
        Ok(Self { path: path.to_path_buf(), examples, rejected, truncated })
    }

    /// Target tokens over all examples.
    #[must_use]
    pub fn target_tokens(&self) -> usize {
        self.examples.iter().map(Tokens::target_count).sum()
    }
}

/// Rows for one forward pass: token ids padded to a common length, segment ids and the loss
/// positions (flat index into `rows × len`) with their target tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct MicroBatch {
    /// Token rows of equal length.
    pub rows: Vec<Vec<u32>>,
    /// Segment of each token (packed examples, padding).
    pub segments: Vec<Vec<u32>>,
    /// Flat positions that carry loss.
    pub positions: Vec<u32>,
    /// The token predicted at each position.
    pub targets: Vec<u32>,
    /// Real (non-padding) tokens.
    pub tokens: usize,
}

/// Lays out `examples` as micro-batches of `micro` rows: padded (one example per row) or packed
/// (examples concatenated up to `max_len` per row, attention kept within each).
#[must_use]
pub fn micro_batches(examples: &[&Tokens], micro: usize, pad: u32, packing: bool, max_len: usize) -> Vec<MicroBatch> {
    // Each row: list of examples.
    let mut rows: Vec<Vec<&Tokens>> = Vec::new();
    if packing {
        let mut cur: Vec<&Tokens> = Vec::new();
        let mut len = 0;
        for e in examples {
            if len + e.ids.len() > max_len && !cur.is_empty() {
                rows.push(std::mem::take(&mut cur));
                len = 0;
            }
            len += e.ids.len();
            cur.push(e);
        }
        if !cur.is_empty() {
            rows.push(cur);
        }
    } else {
        rows = examples.iter().map(|e| vec![*e]).collect();
    }
    rows.chunks(micro.max(1))
        .map(|chunk| {
            let width = chunk.iter().map(|r| r.iter().map(|e| e.ids.len()).sum::<usize>()).max().unwrap_or(0);
            let mut mb = MicroBatch {
                rows: Vec::new(),
                segments: Vec::new(),
                positions: Vec::new(),
                targets: Vec::new(),
                tokens: 0,
            };
            for (r, row) in chunk.iter().enumerate() {
                let mut ids = Vec::with_capacity(width);
                let mut seg = Vec::with_capacity(width);
                for (s, e) in row.iter().enumerate() {
                    let base = r * width + ids.len();
                    for (p, t) in e.targets() {
                        mb.positions.push((base + p) as u32);
                        mb.targets.push(t);
                    }
                    ids.extend_from_slice(&e.ids);
                    seg.extend(std::iter::repeat_n(s as u32, e.ids.len()));
                }
                mb.tokens += ids.len();
                let pad_seg = row.len() as u32;
                while ids.len() < width {
                    ids.push(pad);
                    seg.push(pad_seg);
                }
                mb.rows.push(ids);
                mb.segments.push(seg);
            }
            mb
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_roles_become_core_roles() {
        let v = serde_json::json!({"conversations": [
            {"from": "system", "value": "S"},
            {"from": "human", "value": "Q"},
            {"from": "gpt", "value": "A"},
        ]});
        let Ok(Example::Chat { messages, train }) = Example::from_json(&v) else {
            panic!("a ShareGPT record is a chat");
        };
        let roles: Vec<Role> = messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, [Role::System, Role::User, Role::Assistant]);
        assert_eq!(train, [false, false, true]);
        // The layout templates see is unchanged: {"role": "user", "content": ...}.
        assert_eq!(serde_json::to_value(&messages[1]).ok(), Some(serde_json::json!({"role": "user", "content": "Q"})));
        let tool =
            serde_json::json!({"messages": [{"role": "tool", "content": "x"}, {"role": "assistant", "content": "y"}]});
        let err = Example::from_json(&tool).err().unwrap_or_default();
        assert!(err.contains("turn 0") && err.contains("`tool`"), "{err}");
    }
}
