//! The text-generation interface: chat messages in, text out, for local models and remote
//! endpoints alike.
//!
//! [`Generator`] takes a *batch* of requests and answers each one separately: a local model
//! decodes them as parallel sequences, an HTTP backend sends them concurrently. One failed
//! request never hides the others: every request gets its own `Result`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Who speaks a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The user's turn.
    User,
    /// The model's turn.
    Assistant,
}

impl Role {
    /// The role's name as chat templates and the OpenAI API spell it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

/// One message of a chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who speaks.
    pub role: Role,
    /// What is said.
    pub content: String,
}

impl ChatMessage {
    /// A message from `role`.
    #[must_use]
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self { role, content: content.into() }
    }
}

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// Temperature; `0` means greedy (always the most likely token).
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches `top_p`.
    pub top_p: f32,
    /// Keep only the `top_k` most likely tokens (`0`: no limit).
    pub top_k: u32,
    /// Penalty for repeating recent tokens (`1.0`: none). Local backends only.
    pub repeat_penalty: f32,
    /// Seed of the random choices. The same request with the same seed gives the same text
    /// on a local backend; remote endpoints treat it as a hint.
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Self { temperature: 0.7, top_p: 0.9, top_k: 40, repeat_penalty: 1.1, seed: 0 }
    }
}

/// One generation request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenRequest {
    /// The chat so far; the model writes the next assistant turn.
    pub messages: Vec<ChatMessage>,
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// Sampling settings and seed.
    pub sampling: Sampling,
    /// When set, the output must be JSON matching this JSON Schema. Local backends enforce
    /// it with a grammar; HTTP backends ask for JSON output.
    pub json_schema: Option<serde_json::Value>,
    /// The caller's label for this request (e.g. the chunk id), used in logs.
    pub tag: String,
}

/// Why a generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// The model ended its turn.
    Stop,
    /// `max_tokens` (or the context) ran out first: the text may be cut short.
    Length,
}

/// Tokens a request used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens of the prompt.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, rhs: Self) {
        self.prompt_tokens += rhs.prompt_tokens;
        self.completion_tokens += rhs.completion_tokens;
    }
}

/// A generated answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenResponse {
    /// The text of the assistant turn.
    pub text: String,
    /// Why it stopped.
    pub finish: FinishReason,
    /// Tokens used.
    pub usage: Usage,
}

/// Why a request failed. The variant tells the caller what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum GenError {
    /// Worth retrying later: rate limits (429), server errors (5xx), timeouts, dropped
    /// connections. Backends retry these themselves before giving up.
    #[error("transient: {0}")]
    Transient(String),
    /// Retrying the same request will fail the same way (bad request, refused, bad answer).
    #[error("{0}")]
    Permanent(String),
    /// The prompt plus the requested output do not fit in the model's context.
    #[error("the prompt needs {needed} tokens but the context holds {limit}")]
    ContextLengthExceeded {
        /// Tokens the prompt and `max_tokens` need.
        needed: u64,
        /// What the context holds.
        limit: u64,
    },
    /// The backend was compiled out of this build.
    #[error("the {backend} generator is not compiled in: rebuild with `--features {feature}`")]
    NotCompiled {
        /// The backend's name.
        backend: &'static str,
        /// The cargo feature that enables it.
        feature: &'static str,
    },
}

impl GenError {
    /// Short, stable name of the kind of failure (for counts in summaries).
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Transient(_) => "transient",
            Self::Permanent(_) => "permanent",
            Self::ContextLengthExceeded { .. } => "context_length",
            Self::NotCompiled { .. } => "not_compiled",
        }
    }
}

/// Writes the next assistant turn of chats. Two required methods:
/// [`generate_batch`](Generator::generate_batch) and [`model_id`](Generator::model_id).
///
/// Backends answer a whole batch at once so they can use the machine fully; each request
/// gets its own result, in input order.
pub trait Generator: Send + Sync {
    /// One result per request, in input order.
    fn generate_batch(&self, requests: &[GenRequest]) -> Vec<Result<GenResponse, GenError>>;

    /// Generates one answer.
    ///
    /// # Errors
    /// [`GenError`] as the backend reports it.
    fn generate(&self, request: &GenRequest) -> Result<GenResponse, GenError> {
        self.generate_batch(std::slice::from_ref(request))
            .pop()
            .unwrap_or_else(|| Err(GenError::Permanent("the backend returned no result".to_string())))
    }

    /// Generates one answer, handing its text to `on_text` piece by piece as it is written
    /// (a streaming display). Backends that cannot stream hand it over whole at the end.
    ///
    /// # Errors
    /// [`GenError`] as the backend reports it.
    fn generate_stream(&self, request: &GenRequest, on_text: &mut dyn FnMut(&str)) -> Result<GenResponse, GenError> {
        let r = self.generate(request)?;
        on_text(&r.text);
        Ok(r)
    }

    /// A stable name of the model: part of resume keys and of every record's lineage, so
    /// two different models (or backends) must never share one. Required: a default would
    /// silently mix outputs of different models under one key.
    fn model_id(&self) -> String;

    /// How many requests the backend wants per batch to keep the machine busy.
    fn preferred_batch(&self) -> usize {
        1
    }

    /// Exact token count of `text` for this model, where the backend can tell.
    fn count_tokens(&self, _text: &str) -> Option<usize> {
        None
    }
}

macro_rules! forward_generator {
    ($($ty:ty),*) => {$(
        impl<T: Generator + ?Sized> Generator for $ty {
            fn generate_batch(&self, requests: &[GenRequest]) -> Vec<Result<GenResponse, GenError>> {
                (**self).generate_batch(requests)
            }
            fn generate(&self, request: &GenRequest) -> Result<GenResponse, GenError> {
                (**self).generate(request)
            }
            fn generate_stream(
                &self,
                request: &GenRequest,
                on_text: &mut dyn FnMut(&str),
            ) -> Result<GenResponse, GenError> {
                (**self).generate_stream(request, on_text)
            }
            fn model_id(&self) -> String {
                (**self).model_id()
            }
            fn preferred_batch(&self) -> usize {
                (**self).preferred_batch()
            }
            fn count_tokens(&self, text: &str) -> Option<usize> {
                (**self).count_tokens(text)
            }
        }
    )*};
}

forward_generator!(&T, Box<T>, Arc<T>);

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;
    impl Generator for Echo {
        fn generate_batch(&self, requests: &[GenRequest]) -> Vec<Result<GenResponse, GenError>> {
            requests
                .iter()
                .map(|r| match r.messages.last() {
                    Some(m) => {
                        Ok(GenResponse { text: m.content.clone(), finish: FinishReason::Stop, usage: Usage::default() })
                    }
                    None => Err(GenError::Permanent("empty chat".into())),
                })
                .collect()
        }

        fn model_id(&self) -> String {
            "test:echo".to_string()
        }
    }

    fn req(text: &str) -> GenRequest {
        GenRequest {
            messages: if text.is_empty() { vec![] } else { vec![ChatMessage::new(Role::User, text)] },
            max_tokens: 8,
            sampling: Sampling::default(),
            json_schema: None,
            tag: String::new(),
        }
    }

    #[test]
    fn batch_results_keep_order_and_single_errors() {
        let g: Box<dyn Generator> = Box::new(Echo);
        let out = g.generate_batch(&[req("a"), req(""), req("c")]);
        assert_eq!(out[0].as_ref().map(|r| r.text.as_str()), Ok("a"));
        assert_eq!(out[1].as_ref().map_err(GenError::kind), Err("permanent"));
        assert_eq!(out[2].as_ref().map(|r| r.text.as_str()), Ok("c"));
        assert_eq!(g.generate(&req("z")).map(|r| r.text), Ok("z".to_string()));
        let mut seen = String::new();
        let r = g.generate_stream(&req("streamed"), &mut |t| seen.push_str(t));
        assert_eq!(r.map(|r| r.text), Ok("streamed".to_string()));
        assert_eq!(seen, "streamed");
        // Forwarded through the Box, not replaced by a default.
        assert_eq!(g.model_id(), "test:echo");
    }

    #[test]
    fn roles_serialize_lowercase() -> anyhow::Result<()> {
        let m = ChatMessage::new(Role::Assistant, "hi");
        assert_eq!(serde_json::to_string(&m)?, r#"{"role":"assistant","content":"hi"}"#);
        Ok(())
    }
}
