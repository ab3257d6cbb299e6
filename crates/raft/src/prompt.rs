//! The chain-of-thought prompt: files under `prompts/`, rendered for a question and its
//! oracle chunk.
//!
//! Two shapes: free text in the reference's own words (quotes between `##begin_quote##` and
//! `##end_quote##`, then `<ANSWER>:`), for models that follow instructions; and JSON steps
//! whose quotes a JSON Schema restricts to the oracle's own sentences, so a local model under
//! a grammar can only quote verbatim. Both end as the same `cot_answer` text.

use docraft_core::prompt::{PromptError, render};
use docraft_core::{ChatMessage, Role, content_hash, language_name};
use serde_json::{Value, json};

use crate::cot::sentences;

const SYSTEM_EN: &str = include_str!("../prompts/cot.system.en.txt");
const SYSTEM_ES: &str = include_str!("../prompts/cot.system.es.txt");
const USER_EN: &str = include_str!("../prompts/cot.user.en.txt");
const USER_ES: &str = include_str!("../prompts/cot.user.es.txt");
const JSON_EN: &str = include_str!("../prompts/cot.json.en.txt");
const JSON_ES: &str = include_str!("../prompts/cot.json.es.txt");

/// Name of the built-in prompt (part of every record's lineage).
pub const PROMPT_NAME: &str = "raft-cot-v1";

/// Every prompt file by name, for lineage (the run manifest hashes them).
pub const PROMPTS: &[(&str, &str)] =
    &[FILE_SYSTEM_EN, FILE_SYSTEM_ES, FILE_USER_EN, FILE_USER_ES, FILE_JSON_EN, FILE_JSON_ES];

const FILE_SYSTEM_EN: (&str, &str) = ("raft/cot.system.en.txt", SYSTEM_EN);
const FILE_SYSTEM_ES: (&str, &str) = ("raft/cot.system.es.txt", SYSTEM_ES);
const FILE_USER_EN: (&str, &str) = ("raft/cot.user.en.txt", USER_EN);
const FILE_USER_ES: (&str, &str) = ("raft/cot.user.es.txt", USER_ES);
const FILE_JSON_EN: (&str, &str) = ("raft/cot.json.en.txt", JSON_EN);
const FILE_JSON_ES: (&str, &str) = ("raft/cot.json.es.txt", JSON_ES);

/// Most reasoning steps, and the longest thought and answer, the JSON Schema allows.
const MAX_STEPS: usize = 3;
const MAX_THOUGHT_CHARS: usize = 300;
pub(crate) const MAX_ANSWER_CHARS: usize = 500;
/// Most oracle sentences offered as quotes, and the longest one kept whole.
const MAX_SENTENCES: usize = 40;

/// The chain-of-thought prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CotPrompt {
    structured: bool,
}

impl CotPrompt {
    /// `structured`: ask for JSON steps under a schema (see the module docs); otherwise free
    /// text as the reference asks for it.
    #[must_use]
    pub fn new(structured: bool) -> Self {
        Self { structured }
    }

    /// Whether it asks for JSON steps.
    #[must_use]
    pub fn structured(&self) -> bool {
        self.structured
    }

    /// `name@hash` over every template of the shape in use.
    #[must_use]
    pub fn id(&self) -> String {
        let all = if self.structured {
            [SYSTEM_EN, SYSTEM_ES, JSON_EN, JSON_ES, "structured"].concat()
        } else {
            [SYSTEM_EN, SYSTEM_ES, USER_EN, USER_ES].concat()
        };
        format!("{PROMPT_NAME}@{}", &content_hash(all.as_bytes())[..12])
    }

    /// The chat asking for a chain of thought that answers `question` from `oracle`, in the
    /// language `lang` (Spanish gets the Spanish prompt; others the English one naming it).
    /// The question and the oracle are inserted verbatim: placeholders they contain are not
    /// filled.
    ///
    /// # Errors
    /// [`PromptError`] when a template names a variable this prompt does not give (a broken
    /// prompt file).
    pub fn render(&self, question: &str, oracle: &str, lang: &str) -> Result<Vec<ChatMessage>, PromptError> {
        let ((system_name, system), (user_name, user)) = match (lang, self.structured) {
            ("es", false) => (FILE_SYSTEM_ES, FILE_USER_ES),
            ("es", true) => (FILE_SYSTEM_ES, FILE_JSON_ES),
            (_, false) => (FILE_SYSTEM_EN, FILE_USER_EN),
            (_, true) => (FILE_SYSTEM_EN, FILE_JSON_EN),
        };
        let language = language_name(lang);
        let vars = [("language", language.as_str()), ("question", question.trim()), ("context", oracle.trim())];
        Ok(vec![
            ChatMessage::new(Role::System, render(system_name, system, &vars)?.trim_end()),
            ChatMessage::new(Role::User, render(user_name, user, &vars)?.trim_end()),
        ])
    }

    /// For the structured shape: the JSON Schema whose `quote` can only be one of the
    /// oracle's sentences. `None` for free text.
    #[must_use]
    pub fn schema(&self, oracle: &str) -> Option<Value> {
        if !self.structured {
            return None;
        }
        let quotes: Vec<&str> = sentences(oracle).into_iter().take(MAX_SENTENCES).collect();
        let quote = if quotes.is_empty() { json!({"type": "string"}) } else { json!({"enum": quotes}) };
        Some(json!({
            "type": "object",
            "properties": {
                "reasoning": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_STEPS,
                    "items": {
                        "type": "object",
                        "properties": {
                            "thought": {"type": "string", "maxLength": MAX_THOUGHT_CHARS},
                            "quote": quote
                        },
                        "required": ["thought", "quote"],
                        "additionalProperties": false
                    }
                },
                "answer": {"type": "string", "minLength": 1, "maxLength": MAX_ANSWER_CHARS}
            },
            "required": ["reasoning", "answer"],
            "additionalProperties": false
        }))
    }
}
