//! The question/answer prompt: files under `prompts/`, one pair (system, user) per language,
//! rendered for a chunk.
//!
//! Spanish chunks get the Spanish prompt; other languages get the English prompt with the
//! language named, so a French chunk still asks for French questions.

use docraft_core::prompt::render;
use docraft_core::{ChatMessage, Chunk, Role, content_hash, guess_language, language_name};
use serde_json::json;

use crate::error::Result;

const SYSTEM_EN: &str = include_str!("../prompts/qa.system.en.txt");
const USER_EN: &str = include_str!("../prompts/qa.user.en.txt");
const SYSTEM_ES: &str = include_str!("../prompts/qa.system.es.txt");
const USER_ES: &str = include_str!("../prompts/qa.user.es.txt");

/// Name of the built-in prompt (part of every record's lineage).
pub const PROMPT_NAME: &str = "qa-v1";

/// Every prompt file by name, the judge's included, for lineage (the run manifest hashes
/// them).
pub const PROMPTS: &[(&str, &str)] = &[
    FILE_SYSTEM_EN,
    FILE_USER_EN,
    FILE_SYSTEM_ES,
    FILE_USER_ES,
    crate::judge::FILE_SYSTEM_EN,
    crate::judge::FILE_USER_EN,
    crate::judge::FILE_SYSTEM_ES,
    crate::judge::FILE_USER_ES,
];

const FILE_SYSTEM_EN: (&str, &str) = ("qa-gen/qa.system.en.txt", SYSTEM_EN);
const FILE_USER_EN: (&str, &str) = ("qa-gen/qa.user.en.txt", USER_EN);
const FILE_SYSTEM_ES: (&str, &str) = ("qa-gen/qa.system.es.txt", SYSTEM_ES);
const FILE_USER_ES: (&str, &str) = ("qa-gen/qa.user.es.txt", USER_ES);

/// Longest question and answer the JSON schema allows, in characters. A runaway small model
/// is cut off by the grammar instead of writing until `max_tokens`.
const MAX_QUESTION_CHARS: usize = 300;
const MAX_ANSWER_CHARS: usize = 800;

/// The question/answer prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QaPrompt {
    questions_per_chunk: usize,
}

impl QaPrompt {
    /// A prompt asking for `questions_per_chunk` pairs per chunk (at least 1).
    #[must_use]
    pub fn new(questions_per_chunk: usize) -> Self {
        Self { questions_per_chunk: questions_per_chunk.max(1) }
    }

    /// How many pairs it asks for.
    #[must_use]
    pub fn questions_per_chunk(&self) -> usize {
        self.questions_per_chunk
    }

    /// `name@hash`: the hash covers every template and the schema, so editing a prompt file
    /// makes resumed runs redo their chunks instead of mixing prompts.
    #[must_use]
    pub fn id(&self) -> String {
        let all = [SYSTEM_EN, USER_EN, SYSTEM_ES, USER_ES, &self.schema().to_string()].concat();
        format!("{PROMPT_NAME}@{}", &content_hash(all.as_bytes())[..12])
    }

    /// The language code used for a chunk: a guess from its own text, else its document's
    /// `language` metadata, else `en`.
    #[must_use]
    pub fn language_of(chunk: &Chunk) -> String {
        guess_language(&chunk.text)
            .or_else(|| chunk.metadata.get("language").and_then(|v| v.as_str()).map(str::to_string))
            .unwrap_or_else(|| "en".to_string())
    }

    /// The chat for one chunk, in the chunk's language. The chunk's text and names are
    /// inserted verbatim: placeholders they contain are not filled.
    ///
    /// # Errors
    /// [`crate::QaGenError::Prompt`] when a template names a variable this prompt does not
    /// give (a broken prompt file).
    pub fn render(&self, chunk: &Chunk, lang: &str) -> Result<Vec<ChatMessage>> {
        let ((system_name, system), (user_name, user)) = match lang {
            "es" => (FILE_SYSTEM_ES, FILE_USER_ES),
            _ => (FILE_SYSTEM_EN, FILE_USER_EN),
        };
        let headings = if chunk.headings.is_empty() {
            String::new()
        } else {
            let sep = if lang == "es" { ", sección " } else { ", section " };
            format!("{sep}\"{}\"", chunk.headings.join(" > "))
        };
        let source = chunk.source.rsplit(['/', '\\']).next().unwrap_or(&chunk.source);
        let n = self.questions_per_chunk.to_string();
        let language = language_name(lang);
        let vars = [
            ("source", source),
            ("headings", headings.as_str()),
            ("n", n.as_str()),
            ("language", language.as_str()),
            ("text", chunk.text.trim()),
        ];
        Ok(vec![
            ChatMessage::new(Role::System, render(system_name, system, &vars)?.trim_end()),
            ChatMessage::new(Role::User, render(user_name, user, &vars)?.trim_end()),
        ])
    }

    /// The JSON Schema answers must follow: `{"pairs": [{"question", "answer"}, ..]}` with
    /// 1..=N pairs and bounded string lengths.
    #[must_use]
    pub fn schema(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "pairs": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": self.questions_per_chunk,
                    "items": {
                        "type": "object",
                        "properties": {
                            "question": {"type": "string", "minLength": 1, "maxLength": MAX_QUESTION_CHARS},
                            "answer": {"type": "string", "minLength": 1, "maxLength": MAX_ANSWER_CHARS}
                        },
                        "required": ["question", "answer"],
                        "additionalProperties": false
                    }
                }
            },
            "required": ["pairs"],
            "additionalProperties": false
        })
    }
}
