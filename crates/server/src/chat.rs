//! Chat: `POST /v1/chat/completions` as OpenAI defines it, and the conversations it keeps
//! (`/v1/conversations`).
//!
//! A request in OpenAI's shape (`model`, `messages`, `stream`, `max_tokens`, `temperature`,
//! `seed`; other OpenAI fields are accepted and ignored) is a plain chat with the model. With
//! docraft's extension field `docraft: {collection, k, filter, conversation}` (OpenAI's SDKs
//! send it through `extra_body`) the last user message is answered from the collection by
//! [`docraft_ask::Asker`]: a follow-up is rewritten with the history, the collection's index is
//! searched, and the model answers from the retrieved chunks only, in the question's language,
//! with citations `[file, p. N]`, or declines. The answer carries `sources`, `citations` and
//! `declined` next to OpenAI's fields (in the last chunk when streamed).
//!
//! The history of a question is the user/assistant pairs before it in `messages`, or, with
//! `docraft.conversation`, the turns stored in that conversation (each answer appends one).
//! `system` messages only reach a plain chat: an answer from a collection uses docraft's own
//! prompts. `temperature` defaults to 0 (greedy: the same answer every time), not OpenAI's 1.
//!
//! Models: the base models of `GET /v1/models` and the organization's fine-tuned ones (`ft:…`:
//! the base model's weights with the job's LoRA adapter merged in). The last
//! [`MAX_LOADED_MODELS`] models used stay loaded; loading and generating run on blocking
//! threads.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::{Component, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use docraft_ask::{AskError, AskOptions, Asker, Turn};
use docraft_core::{ChatMessage, FinishReason, GenError, GenRequest, Generator, Role, Sampling};
use docraft_index::{Filter, Retrieval};
use docraft_train::generate::ChatModel;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;
use tokio::sync::mpsc;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::collections::{CollectionRetriever, List, collection_exists, filter_of, retrieval_of, retriever_of};
use crate::db::{Db, now};
use crate::ids::{is_id, new_id};
use crate::models::{find_base, org_models};
use crate::server::AppState;
use crate::{Result, ServerError};

/// The prefix of conversation ids.
pub const CONVERSATION_PREFIX: &str = "conv-";
/// The prefix of the ids of a conversation's turns.
pub const TURN_PREFIX: &str = "turn-";
/// The prefix of chat completion ids.
pub const COMPLETION_PREFIX: &str = "chatcmpl-";
/// Most messages in one request.
pub const MAX_MESSAGES: usize = 64;
/// Longest message, in bytes of text.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;
/// Most tokens of an answer (`max_tokens`, `max_completion_tokens`).
pub const MAX_TOKENS: i64 = 2048;
/// Tokens of an answer when the request does not say.
pub const DEFAULT_MAX_TOKENS: i64 = 256;
/// Most chunks retrieved per question (`docraft.k`).
pub const MAX_K: i64 = 20;
/// Chunks retrieved per question when the request does not say.
pub const DEFAULT_K: i64 = 5;
/// The seed of the sampler when the request does not give one.
pub const DEFAULT_SEED: i64 = 42;
/// Models kept loaded at once (least recently used goes first).
pub const MAX_LOADED_MODELS: usize = 2;
/// Longest conversation title.
pub const MAX_TITLE_CHARS: usize = 200;
/// Characters of a source's text in an answer's `sources`.
pub const SNIPPET_CHARS: usize = 300;
/// Stored turns given to the question rewriter as the history of a conversation.
const HISTORY_TURNS: i64 = 10;

// The models.

/// The chat models loaded in this process: the [`MAX_LOADED_MODELS`] used last.
#[derive(Default)]
pub struct ChatModels {
    /// Least recently used first.
    loaded: Mutex<Vec<(String, Arc<ChatModel>)>>,
    /// One load at a time (a model is hundreds of MB; two requests for one model load it once).
    loading: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ChatModels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatModels").field("loaded", &self.loaded_ids()).finish_non_exhaustive()
    }
}

fn lock_err<T>(_: T) -> ServerError {
    ServerError::Internal("a lock was poisoned".into())
}

fn join_err(e: tokio::task::JoinError) -> ServerError {
    ServerError::Internal(format!("a chat task failed: {e}"))
}

impl ChatModels {
    /// The ids of the loaded models, least recently used first.
    #[must_use]
    pub fn loaded_ids(&self) -> Vec<String> {
        self.loaded.lock().map(|l| l.iter().map(|(id, _)| id.clone()).collect()).unwrap_or_default()
    }

    /// The model `id` when loaded (it becomes the most recently used).
    fn get(&self, id: &str) -> Result<Option<Arc<ChatModel>>> {
        let mut loaded = self.loaded.lock().map_err(lock_err)?;
        let Some(i) = loaded.iter().position(|(k, _)| k == id) else { return Ok(None) };
        let entry = loaded.remove(i);
        let model = entry.1.clone();
        loaded.push(entry);
        Ok(Some(model))
    }

    fn put(&self, id: &str, model: Arc<ChatModel>) -> Result<()> {
        let mut loaded = self.loaded.lock().map_err(lock_err)?;
        loaded.retain(|(k, _)| k != id);
        while loaded.len() >= MAX_LOADED_MODELS {
            loaded.remove(0);
        }
        loaded.push((id.to_string(), model));
        Ok(())
    }

    /// The model of `spec`, loaded on a blocking thread unless it is loaded already.
    async fn get_or_load(&self, spec: &ModelSpec) -> Result<Arc<ChatModel>> {
        if let Some(m) = self.get(&spec.id)? {
            return Ok(m);
        }
        let _one_at_a_time = self.loading.lock().await;
        if let Some(m) = self.get(&spec.id)? {
            return Ok(m);
        }
        let (id, base, adapter) = (spec.id.clone(), spec.base.clone(), spec.adapter.clone());
        let model = tokio::task::spawn_blocking(move || {
            let device = docraft_train::device(false).map_err(|e| ServerError::Internal(e.to_string()))?;
            ChatModel::load(&base, adapter.as_deref(), &device)
                .map(|m| Arc::new(m.with_name(id.clone())))
                .map_err(|e| ServerError::Unavailable(format!("the model {id} could not be loaded: {e}")))
        })
        .await
        .map_err(join_err)??;
        self.put(&spec.id, model.clone())?;
        Ok(model)
    }
}

/// Where a model's weights are.
#[derive(Debug, Clone)]
struct ModelSpec {
    id: String,
    base: PathBuf,
    adapter: Option<PathBuf>,
}

/// The model a request names: a base model of this server or one of the organization's
/// fine-tuned models.
async fn resolve_model(state: &AppState, org_id: &str, name: &str) -> Result<ModelSpec> {
    let not_found = || {
        ServerError::bad_request(
            format!("The model `{name}` does not exist or you do not have access to it."),
            Some("model"),
            Some("model_not_found"),
        )
    };
    if !name.starts_with("ft:") {
        let m = find_base(state, name).await?.ok_or_else(not_found)?;
        return Ok(ModelSpec { id: m.id, base: m.path, adapter: None });
    }
    let m = org_models(state.db(), org_id).await?.into_iter().find(|m| m.id == name).ok_or_else(not_found)?;
    let base_id = m.base_model.clone().unwrap_or_default();
    let base = find_base(state, &base_id).await?.ok_or_else(|| {
        ServerError::Unavailable(format!("the base model {base_id:?} of {name} is not on this server"))
    })?;
    let org_dir = state.org_dir(org_id);
    let dir = org_dir.join(&m.path);
    let inside = m.path.is_relative() && m.path.components().all(|c| matches!(c, Component::Normal(_)));
    if !inside || !dir.is_dir() {
        return Err(ServerError::Unavailable(format!("the adapter of {name} is missing")));
    }
    Ok(ModelSpec { id: m.id, base: base.path, adapter: Some(dir) })
}

// The request.

/// A message of the request. `content` is a string or a list of `{"type": "text", "text"}`
/// parts.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct RequestMessage {
    /// `system` (or `developer`), `user` or `assistant`.
    pub role: String,
    /// The text.
    #[serde(default)]
    pub content: Value,
}

/// OpenAI's `stream_options`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct StreamOptions {
    /// Send a last chunk with the usage and no choices.
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// docraft's extension of a chat request: answer from a collection.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocraftChat {
    /// The collection (`col-…`) the answer comes from.
    #[serde(default)]
    pub collection: Option<String>,
    /// Chunks retrieved (1 to 20, default 5).
    #[serde(default)]
    pub k: Option<i64>,
    /// Metadata conditions on the chunks: `{"key": "value"}` or `{"key": ["a", "b"]}`.
    #[serde(default)]
    pub filter: Option<Map<String, Value>>,
    /// How the chunks are found: `vector`, `keyword` (BM25) or `hybrid` (both, fused by
    /// reciprocal rank; the default), on PostgreSQL as in the data directory.
    #[serde(default)]
    pub retrieval: Option<String>,
    /// A conversation (`conv-…`): its turns are the history, and this answer is stored in it.
    #[serde(default)]
    pub conversation: Option<String>,
}

/// The body of `POST /v1/chat/completions`: OpenAI's fields docraft uses (the others are
/// accepted and ignored) and `docraft`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ChatCompletionRequest {
    /// A base model of `GET /v1/models` or one of the organization's fine-tuned models.
    pub model: String,
    /// The conversation; the last `user` message is the question (1 to 64 messages, 32 KiB each).
    pub messages: Vec<RequestMessage>,
    /// Send the answer as `text/event-stream` chunks.
    #[serde(default)]
    pub stream: Option<bool>,
    /// With `stream`: `include_usage`.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Most tokens of the answer (1 to 2048, default 256).
    #[serde(default)]
    pub max_tokens: Option<i64>,
    /// Most tokens of the answer (wins over `max_tokens`).
    #[serde(default)]
    pub max_completion_tokens: Option<i64>,
    /// 0 to 2; 0 (the default) is greedy: the same answer every time.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass, above 0 and at most 1 (plain chat only).
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Seed of the sampler (default 42).
    #[serde(default)]
    pub seed: Option<i64>,
    /// docraft's extension: answer from a collection.
    #[serde(default)]
    pub docraft: Option<DocraftChat>,
}

/// A request checked against the limits.
#[derive(Debug, Clone)]
struct Checked {
    model: String,
    messages: Vec<ChatMessage>,
    question: String,
    history: Vec<Turn>,
    stream: bool,
    include_usage: bool,
    max_tokens: u32,
    temperature: f32,
    top_p: f32,
    seed: u64,
    collection: Option<String>,
    conversation: Option<String>,
    k: usize,
    filter: Filter,
    retrieval: Retrieval,
}

fn message_text(i: usize, content: &Value) -> Result<String> {
    let bad = |what: &str| {
        ServerError::bad_request(
            format!("messages[{i}].content: {what}"),
            Some(&format!("messages[{i}].content")),
            Some("invalid_value"),
        )
    };
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        Value::Array(parts) => {
            let mut text = String::new();
            for p in parts {
                match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    _ => return Err(bad("only text parts ({\"type\": \"text\", \"text\": …}) are supported")),
                }
                if text.len() > MAX_MESSAGE_BYTES {
                    break;
                }
            }
            Ok(text)
        }
        _ => Err(bad("a string or a list of text parts")),
    }
}

fn check(req: ChatCompletionRequest) -> Result<Checked> {
    if req.messages.is_empty() {
        return Err(ServerError::bad_request("messages is empty", Some("messages"), Some("invalid_value")));
    }
    if req.messages.len() > MAX_MESSAGES {
        return Err(ServerError::bad_request(
            format!("{} messages: at most {MAX_MESSAGES}", req.messages.len()),
            Some("messages"),
            Some("invalid_value"),
        ));
    }
    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(ServerError::bad_request(
                    format!("messages[{i}].role {other:?}: system, developer, user or assistant"),
                    Some(&format!("messages[{i}].role")),
                    Some("invalid_value"),
                ));
            }
        };
        let text = message_text(i, &m.content)?;
        if text.len() > MAX_MESSAGE_BYTES {
            return Err(ServerError::bad_request(
                format!("messages[{i}].content: {} bytes, at most {MAX_MESSAGE_BYTES}", text.len()),
                Some(&format!("messages[{i}].content")),
                Some("invalid_value"),
            ));
        }
        messages.push(ChatMessage::new(role, text));
    }
    let Some(last_user) = messages.iter().rposition(|m| m.role == Role::User && !m.content.trim().is_empty()) else {
        return Err(ServerError::bad_request(
            "messages holds no user message with text: the last one is the question",
            Some("messages"),
            Some("invalid_value"),
        ));
    };
    let question = messages[last_user].content.trim().to_string();
    // The history: each user message answered by the next one, before the question.
    let mut history: Vec<Turn> = messages[..last_user]
        .windows(2)
        .filter(|w| w[0].role == Role::User && w[1].role == Role::Assistant)
        .map(|w| Turn { question: w[0].content.clone(), answer: w[1].content.clone() })
        .collect();
    let keep = usize::try_from(HISTORY_TURNS).unwrap_or(usize::MAX);
    history.drain(..history.len().saturating_sub(keep));

    let (max_tokens, param) = match (req.max_completion_tokens, req.max_tokens) {
        (Some(n), _) => (n, "max_completion_tokens"),
        (None, Some(n)) => (n, "max_tokens"),
        (None, None) => (DEFAULT_MAX_TOKENS, "max_tokens"),
    };
    if !(1..=MAX_TOKENS).contains(&max_tokens) {
        return Err(ServerError::unprocessable(format!("{param} {max_tokens}: 1 to {MAX_TOKENS}"), param));
    }
    let temperature = req.temperature.unwrap_or(0.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ServerError::unprocessable(format!("temperature {temperature}: 0 to 2"), "temperature"));
    }
    let top_p = req.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ServerError::unprocessable(format!("top_p {top_p}: above 0, at most 1"), "top_p"));
    }
    let d = req.docraft.unwrap_or_default();
    let k = d.k.unwrap_or(DEFAULT_K);
    if !(1..=MAX_K).contains(&k) {
        return Err(ServerError::unprocessable(format!("docraft.k {k}: 1 to {MAX_K}"), "docraft.k"));
    }
    if d.collection.is_none()
        && d.conversation.is_none()
        && (d.k.is_some() || d.filter.is_some() || d.retrieval.is_some())
    {
        return Err(ServerError::bad_request(
            "docraft.k, docraft.filter and docraft.retrieval need docraft.collection or docraft.conversation",
            Some("docraft.collection"),
            Some("invalid_value"),
        ));
    }
    let filter = filter_of(d.filter.as_ref())?;
    let retrieval = retrieval_of(d.retrieval.as_deref(), "docraft.retrieval")?;
    #[allow(clippy::cast_possible_truncation)]
    let (temperature, top_p) = (temperature as f32, top_p as f32);
    Ok(Checked {
        model: req.model,
        messages,
        question,
        history,
        stream: req.stream.unwrap_or(false),
        include_usage: req.stream_options.and_then(|o| o.include_usage).unwrap_or(false),
        max_tokens: u32::try_from(max_tokens).unwrap_or(1),
        temperature,
        top_p,
        seed: u64::from_ne_bytes(req.seed.unwrap_or(DEFAULT_SEED).to_ne_bytes()),
        collection: d.collection,
        conversation: d.conversation,
        k: usize::try_from(k).unwrap_or(1),
        filter,
        retrieval,
    })
}

// The answer.

/// A retrieved chunk, as an answer lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatSource {
    /// The number the model saw (`[1]`) and the citations refer to.
    pub number: usize,
    /// The document (`doc-…`).
    pub document_id: String,
    /// Its file name.
    pub filename: String,
    /// `file, p. N`: how the answer cites it.
    pub label: String,
    /// First and last page (PDF).
    pub pages: Option<[u32; 2]>,
    /// Byte span of the chunk in the document's extracted text.
    pub span: [usize; 2],
    /// The chunk's first 300 characters.
    pub snippet: String,
    /// Similarity to the question.
    pub score: f32,
    /// Whether the answer cites it.
    pub cited: bool,
}

/// A source the answer cites.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatCitation {
    /// The source's number.
    pub number: usize,
    /// `file, p. N`, as written in the answer.
    pub label: String,
    /// The document.
    pub document_id: String,
    /// Its file name.
    pub filename: String,
    /// First and last page (PDF).
    pub pages: Option<[u32; 2]>,
    /// The chunk.
    pub chunk_id: String,
    /// `marker` (the model cited it), `overlap` (a sentence uses its words) or `quote` (its
    /// sentence that best matches the question follows the answer).
    pub how: String,
    /// The sentence it supports (overlap and quote).
    pub sentence: Option<String>,
}

/// Tokens used (estimates for answers from a collection).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CompletionUsage {
    /// Tokens of the prompt.
    pub prompt_tokens: u64,
    /// Tokens of the answer.
    pub completion_tokens: u64,
    /// Both.
    pub total_tokens: u64,
}

/// The assistant's message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: String,
    /// The answer.
    pub content: String,
    /// Always `null`.
    pub refusal: Option<String>,
}

/// One choice (there is always exactly one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatChoice {
    /// Always 0.
    pub index: u32,
    /// The answer.
    pub message: AssistantMessage,
    /// `stop`, or `length` when a plain chat ran out of `max_tokens`.
    pub finish_reason: String,
    /// Always `null`.
    pub logprobs: Option<Value>,
}

/// OpenAI's `chat.completion`, plus where the answer comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletion {
    /// `chatcmpl-…`
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    /// The model that answered.
    pub model: String,
    /// The answer.
    pub choices: Vec<ChatChoice>,
    /// Tokens used.
    pub usage: CompletionUsage,
    /// Every retrieved chunk, by number (empty for a plain chat).
    pub sources: Vec<ChatSource>,
    /// The sources the answer cites, in the order cited.
    pub citations: Vec<ChatCitation>,
    /// The documents do not answer the question; the answer says so.
    pub declined: bool,
    /// The conversation this turn was stored in.
    pub conversation: Option<String>,
}

/// What a blocking generation produced.
#[derive(Debug, Clone)]
struct Outcome {
    /// Every piece handed to the stream, joined.
    text: String,
    finish: &'static str,
    sources: Vec<ChatSource>,
    citations: Vec<ChatCitation>,
    declined: bool,
    usage: CompletionUsage,
}

/// A question to answer from a collection.
struct Rag {
    retriever: CollectionRetriever,
    k: usize,
    question: String,
    history: Vec<Turn>,
}

/// One generation, run on a blocking thread.
struct Job {
    model: Arc<ChatModel>,
    messages: Vec<ChatMessage>,
    max_tokens: u32,
    temperature: f32,
    top_p: f32,
    seed: u64,
    rag: Option<Rag>,
}

fn gen_err(e: &GenError) -> ServerError {
    match e {
        GenError::ContextLengthExceeded { .. } => {
            ServerError::bad_request(e.to_string(), Some("messages"), Some("context_length_exceeded"))
        }
        _ => ServerError::Internal(format!("generation: {e}")),
    }
}

fn ask_err(e: AskError) -> ServerError {
    match e {
        AskError::Setting { name, message } => ServerError::unprocessable(format!("{name}: {message}"), name),
        AskError::Generate { source, .. } => gen_err(&source),
        other => ServerError::Internal(format!("answering: {other}")),
    }
}

fn first_chars(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn meta_str(c: &docraft_core::Chunk, key: &str) -> String {
    c.metadata.get(key).and_then(Value::as_str).map_or_else(|| c.source.clone(), str::to_string)
}

impl Job {
    fn tokens(&self, text: &str) -> u64 {
        self.model.count_tokens(text).unwrap_or(text.len() / 4) as u64
    }

    fn run(self, on_text: &mut dyn FnMut(&str)) -> Result<Outcome> {
        let mut text = String::new();
        let mut forward = |t: &str| {
            text.push_str(t);
            on_text(t);
        };
        let Some(rag) = &self.rag else {
            let request = GenRequest {
                messages: self.messages.clone(),
                max_tokens: self.max_tokens,
                sampling: Sampling {
                    temperature: self.temperature,
                    top_p: self.top_p,
                    seed: self.seed,
                    ..Sampling::default()
                },
                json_schema: None,
                tag: "chat".into(),
            };
            let r = self.model.generate_stream(&request, &mut forward).map_err(|e| gen_err(&e))?;
            let usage = CompletionUsage {
                prompt_tokens: r.usage.prompt_tokens,
                completion_tokens: r.usage.completion_tokens,
                total_tokens: r.usage.prompt_tokens + r.usage.completion_tokens,
            };
            let finish = if r.finish == FinishReason::Length { "length" } else { "stop" };
            return Ok(Outcome { text, finish, sources: Vec::new(), citations: Vec::new(), declined: false, usage });
        };
        // The HNSW index is read-locked for each search only, so the ingest worker can add
        // documents while an answer is generated.
        let retriever = &rag.retriever;
        let options = AskOptions {
            k: rag.k,
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            seed: self.seed,
            ..AskOptions::default()
        }
        .for_scores(retriever.retrieval() == Retrieval::Vector);
        let asker = Asker::new(retriever, self.model.as_ref()).with_options(options).map_err(ask_err)?;
        let answer = asker.ask(&rag.question, &rag.history, &mut forward).map_err(ask_err)?;
        let sources: Vec<ChatSource> = answer
            .sources
            .iter()
            .map(|s| ChatSource {
                number: s.number,
                document_id: meta_str(&s.chunk, "document_id"),
                filename: meta_str(&s.chunk, "filename"),
                label: s.label.clone(),
                pages: s.chunk.pages.map(|p| [p.first, p.last]),
                span: [s.chunk.span.start, s.chunk.span.end],
                snippet: first_chars(&s.chunk.text, SNIPPET_CHARS),
                score: s.score,
                cited: answer.citations.iter().any(|c| c.number == s.number),
            })
            .collect();
        let citations = answer
            .citations
            .iter()
            .map(|c| {
                let source = sources.iter().find(|s| s.number == c.number);
                ChatCitation {
                    number: c.number,
                    label: c.label.clone(),
                    document_id: source.map(|s| s.document_id.clone()).unwrap_or_default(),
                    filename: source.map_or_else(|| c.source.clone(), |s| s.filename.clone()),
                    pages: c.pages.map(|p| [p.first, p.last]),
                    chunk_id: c.chunk_id.as_str().to_string(),
                    how: serde_json::to_value(c.how)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    sentence: c.sentence.clone(),
                }
            })
            .collect();
        let shown: u64 = answer.sources.iter().filter(|s| s.in_prompt).map(|s| self.tokens(&s.chunk.text)).sum();
        // The prompt's instructions and numbering: about a hundred tokens.
        let prompt_tokens = shown + self.tokens(&rag.question) + 100;
        let completion_tokens = self.tokens(&text);
        let usage =
            CompletionUsage { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens };
        Ok(Outcome { text, finish: "stop", sources, citations, declined: answer.declined, usage })
    }
}

/// A finished answer: its content (the streamed text less trailing white space) and the
/// conversation it was stored in.
struct Finished {
    outcome: Outcome,
    content: String,
    conversation: Option<String>,
}

/// Starts the generation: its text pieces come over the receiver as they are made; the task
/// stores the turn (also when the client went away) and yields the whole answer.
fn start(
    state: AppState,
    job: Job,
    conversation: Option<String>,
    question: String,
) -> (mpsc::UnboundedReceiver<String>, tokio::task::JoinHandle<Result<Finished>>) {
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    let task = tokio::spawn(async move {
        let outcome = tokio::task::spawn_blocking(move || {
            job.run(&mut |t: &str| {
                if !t.is_empty() {
                    let _ = tx.send(t.to_string());
                }
            })
        })
        .await
        .map_err(join_err)??;
        let content = outcome.text.trim_end().to_string();
        let conversation = match conversation {
            Some(id) => {
                append_turn(state.db(), &id, &question, &content, &outcome.sources).await?;
                Some(id)
            }
            None => None,
        };
        Ok(Finished { outcome, content, conversation })
    });
    (rx, task)
}

/// The fields every chunk and the completion share.
struct Head {
    id: String,
    created: i64,
    model: String,
}

fn completion(head: &Head, f: Finished) -> ChatCompletion {
    ChatCompletion {
        id: head.id.clone(),
        object: "chat.completion".into(),
        created: head.created,
        model: head.model.clone(),
        choices: vec![ChatChoice {
            index: 0,
            message: AssistantMessage { role: "assistant".into(), content: f.content, refusal: None },
            finish_reason: f.outcome.finish.into(),
            logprobs: None,
        }],
        usage: f.outcome.usage,
        sources: f.outcome.sources,
        citations: f.outcome.citations,
        declined: f.outcome.declined,
        conversation: f.conversation,
    }
}

/// Holds back trailing white space until more text follows, so that the streamed pieces join
/// into exactly the content of the same answer unstreamed (which ends without it).
#[derive(Debug, Default)]
struct HoldTrailingSpace {
    pending: String,
}

impl HoldTrailingSpace {
    fn push(&mut self, piece: &str) -> String {
        self.pending.push_str(piece);
        let keep = self.pending.trim_end().len();
        let out = self.pending[..keep].to_string();
        self.pending.drain(..keep);
        out
    }
}

/// A `chat.completion.chunk` with `extra`'s fields beside OpenAI's (serialized as the
/// completion is, so that scores read the same streamed or not).
fn chunk_event(head: &Head, choices: &Value, extra: &impl Serialize) -> SseEvent {
    #[derive(Serialize)]
    struct ChunkOut<'a, E: Serialize> {
        id: &'a str,
        object: &'static str,
        created: i64,
        model: &'a str,
        system_fingerprint: Option<&'a str>,
        choices: &'a Value,
        #[serde(flatten)]
        extra: E,
    }
    let chunk = ChunkOut {
        id: &head.id,
        object: "chat.completion.chunk",
        created: head.created,
        model: &head.model,
        system_fingerprint: None,
        choices,
        extra,
    };
    SseEvent::default().data(serde_json::to_string(&chunk).unwrap_or_default())
}

/// What the last chunk adds to OpenAI's fields.
#[derive(Serialize)]
struct LastChunk<'a> {
    sources: &'a [ChatSource],
    citations: &'a [ChatCitation],
    declined: bool,
    conversation: Option<&'a str>,
}

fn delta(delta: &Value, finish_reason: Option<&str>) -> Value {
    json!([{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": null}])
}

/// The answer as OpenAI's stream: a chunk with the role, one per piece of text, a last one
/// with `finish_reason` and the sources, optionally the usage, then `[DONE]`.
fn stream_response(
    head: Head,
    rx: mpsc::UnboundedReceiver<String>,
    task: tokio::task::JoinHandle<Result<Finished>>,
    include_usage: bool,
) -> Response {
    #[derive(PartialEq)]
    enum Phase {
        Start,
        Text,
        End,
        Done,
    }
    struct S {
        head: Head,
        rx: mpsc::UnboundedReceiver<String>,
        task: Option<tokio::task::JoinHandle<Result<Finished>>>,
        hold: HoldTrailingSpace,
        include_usage: bool,
        phase: Phase,
        queue: VecDeque<SseEvent>,
    }
    let start = S {
        head,
        rx,
        task: Some(task),
        hold: HoldTrailingSpace::default(),
        include_usage,
        phase: Phase::Start,
        queue: VecDeque::new(),
    };
    let stream = futures::stream::unfold(start, |mut s| async move {
        loop {
            if let Some(e) = s.queue.pop_front() {
                return Some((Ok::<_, Infallible>(e), s));
            }
            match s.phase {
                Phase::Start => {
                    let first = delta(&json!({"role": "assistant", "content": ""}), None);
                    s.queue.push_back(chunk_event(&s.head, &first, &Map::new()));
                    s.phase = Phase::Text;
                }
                Phase::Text => match s.rx.recv().await {
                    Some(piece) => {
                        let text = s.hold.push(&piece);
                        if !text.is_empty() {
                            let piece = delta(&json!({"content": text}), None);
                            s.queue.push_back(chunk_event(&s.head, &piece, &Map::new()));
                        }
                    }
                    None => s.phase = Phase::End,
                },
                Phase::End => {
                    let finished = match s.task.take() {
                        Some(task) => task.await.map_err(join_err).and_then(|r| r),
                        None => Err(ServerError::Internal("the answer was taken twice".into())),
                    };
                    match finished {
                        Ok(f) => {
                            let extra = LastChunk {
                                sources: &f.outcome.sources,
                                citations: &f.outcome.citations,
                                declined: f.outcome.declined,
                                conversation: f.conversation.as_deref(),
                            };
                            let last = delta(&json!({}), Some(f.outcome.finish));
                            s.queue.push_back(chunk_event(&s.head, &last, &extra));
                            if s.include_usage {
                                let usage = json!({"usage": f.outcome.usage});
                                s.queue.push_back(chunk_event(&s.head, &json!([]), &usage));
                            }
                        }
                        Err(e) => {
                            if e.status().is_server_error() {
                                tracing::error!(error = %e, "a streamed chat failed");
                            }
                            let body = serde_json::to_string(&e.body()).unwrap_or_default();
                            s.queue.push_back(SseEvent::default().data(body));
                        }
                    }
                    s.queue.push_back(SseEvent::default().data("[DONE]"));
                    s.phase = Phase::Done;
                }
                Phase::Done => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

/// Answers a chat: OpenAI's chat completions, answered from a collection with citations when
/// the request has `docraft.collection` (or `docraft.conversation`), a plain chat with the
/// model otherwise. With `stream`, `text/event-stream` of `chat.completion.chunk` objects
/// ending with `data: [DONE]`; the last chunk before it carries `finish_reason` and
/// `sources`, `citations`, `declined`.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "chat", security(("bearer" = [])),
    request_body = ChatCompletionRequest,
    responses((status = 200, description = "The answer (with `stream`: server-sent `chat.completion.chunk` events)",
               content((ChatCompletion = "application/json"), (String = "text/event-stream"))),
              (status = 400, description = "Unusable request; an unknown model (`model_not_found`)",
               body = crate::ErrorBody),
              (status = 404, description = "No such collection or conversation", body = crate::ErrorBody),
              (status = 422, description = "A parameter out of range", body = crate::ErrorBody),
              (status = 503, description = "The model or the embedder is not set up", body = crate::ErrorBody)))]
pub async fn chat_completions(State(state): State<AppState>, Caller(org): Caller, body: Bytes) -> Result<Response> {
    let req: ChatCompletionRequest = serde_json::from_slice(&body)
        .map_err(|e| ServerError::bad_request(format!("invalid request: {e}"), None, Some("invalid_json")))?;
    let c = check(req)?;
    let conversation = match &c.conversation {
        Some(id) => Some(load_conversation(state.db(), &org.id, id).await?),
        None => None,
    };
    let collection = match (&c.collection, &conversation) {
        (Some(col), Some(conv)) if *col != conv.collection_id => {
            return Err(ServerError::bad_request(
                format!("conversation {} belongs to collection {}, not {col}", conv.id, conv.collection_id),
                Some("docraft.collection"),
                Some("invalid_value"),
            ));
        }
        (Some(col), _) => Some(col.clone()),
        (None, Some(conv)) => Some(conv.collection_id.clone()),
        (None, None) => None,
    };
    if let Some(col) = &collection {
        collection_exists(state.db(), &org.id, col).await?;
    }
    let spec = resolve_model(&state, &org.id, &c.model).await?;
    let model = state.chat_models().get_or_load(&spec).await?;
    let rag = match &collection {
        Some(col) => {
            let retriever = retriever_of(&state, &org.id, col, c.filter.clone(), c.retrieval).await?;
            let history = match &conversation {
                Some(conv) => stored_history(state.db(), &conv.id).await?,
                None => c.history.clone(),
            };
            Some(Rag { retriever, k: c.k, question: c.question.clone(), history })
        }
        None => None,
    };
    let job = Job {
        model,
        messages: c.messages,
        max_tokens: c.max_tokens,
        temperature: c.temperature,
        top_p: c.top_p,
        seed: c.seed,
        rag,
    };
    let head = Head { id: new_id(COMPLETION_PREFIX)?, created: now(), model: spec.id };
    let (rx, task) = start(state.clone(), job, conversation.map(|v| v.id), c.question);
    if c.stream {
        return Ok(stream_response(head, rx, task, c.include_usage));
    }
    drop(rx);
    let finished = task.await.map_err(join_err)??;
    Ok(Json(completion(&head, finished)).into_response())
}

// Conversations.

/// A conversation: questions over one collection and their answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Conversation {
    /// `conv-…`
    pub id: String,
    /// Always `conversation`.
    pub object: String,
    /// The collection its answers come from.
    pub collection_id: String,
    /// The title given, else the first question.
    pub title: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last turn.
    pub updated_at: i64,
    /// The turns, oldest first (retrieving one conversation only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turns: Option<Vec<ConversationTurn>>,
}

/// One question of a conversation and its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConversationTurn {
    /// `turn-…`
    pub id: String,
    /// 1, 2, … in the conversation.
    pub seq: i64,
    /// The question as asked.
    pub question: String,
    /// The answer as sent.
    pub answer: String,
    /// The retrieved chunks (as the answer's `sources`).
    pub sources: Value,
    /// Unix seconds.
    pub created_at: i64,
}

/// The body of `POST /v1/conversations`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConversation {
    /// The collection (`col-…`) the answers come from.
    pub collection: String,
    /// Up to 200 characters; by default the first question.
    #[serde(default)]
    pub title: Option<String>,
}

fn conversation_of(row: &AnyRow) -> Result<Conversation> {
    let d = || ServerError::db("decode conversation");
    Ok(Conversation {
        id: row.try_get("id").map_err(d())?,
        object: "conversation".into(),
        collection_id: row.try_get("collection_id").map_err(d())?,
        title: row.try_get("title").map_err(d())?,
        created_at: row.try_get("created_at").map_err(d())?,
        updated_at: row.try_get("updated_at").map_err(d())?,
        turns: None,
    })
}

async fn load_conversation(db: &Db, org_id: &str, id: &str) -> Result<Conversation> {
    let nf = || ServerError::NotFound { kind: "conversation", id: id.to_string() };
    if !is_id(id, CONVERSATION_PREFIX) {
        return Err(nf());
    }
    let row = sqlx::query(
        "SELECT id, collection_id, title, created_at, updated_at FROM conversations \
         WHERE id = $1 AND organization_id = $2",
    )
    .bind(id)
    .bind(org_id)
    .fetch_optional(db.pool())
    .await
    .map_err(ServerError::db("find conversation"))?
    .ok_or_else(nf)?;
    conversation_of(&row)
}

/// The last turns of a conversation, oldest first, as the history of its next question.
async fn stored_history(db: &Db, conversation_id: &str) -> Result<Vec<Turn>> {
    let rows = sqlx::query(
        "SELECT question, answer FROM conversation_turns WHERE conversation_id = $1 ORDER BY seq DESC LIMIT $2",
    )
    .bind(conversation_id)
    .bind(HISTORY_TURNS)
    .fetch_all(db.pool())
    .await
    .map_err(ServerError::db("conversation history"))?;
    let d = || ServerError::db("decode turn");
    let mut turns = Vec::with_capacity(rows.len());
    for r in rows.iter().rev() {
        turns.push(Turn { question: r.try_get("question").map_err(d())?, answer: r.try_get("answer").map_err(d())? });
    }
    Ok(turns)
}

/// Appends a turn (numbered after the last one; a number taken by a concurrent answer is
/// tried again) and titles an untitled conversation with its first question.
async fn append_turn(
    db: &Db,
    conversation_id: &str,
    question: &str,
    answer: &str,
    sources: &[ChatSource],
) -> Result<()> {
    let sources = serde_json::to_string(sources).map_err(|e| ServerError::Internal(e.to_string()))?;
    let t = now();
    let mut tries = 0;
    loop {
        let id = new_id(TURN_PREFIX)?;
        let inserted = sqlx::query(
            "INSERT INTO conversation_turns (id, conversation_id, seq, question, answer, sources, created_at) \
             SELECT $1, $2, COALESCE(MAX(seq), 0) + 1, $3, $4, $5, $6 FROM conversation_turns \
             WHERE conversation_id = $7",
        )
        .bind(&id)
        .bind(conversation_id)
        .bind(question)
        .bind(answer)
        .bind(&sources)
        .bind(t)
        .bind(conversation_id)
        .execute(db.pool())
        .await;
        match inserted {
            Ok(_) => break,
            Err(_) if tries < 3 => tries += 1,
            Err(e) => return Err(ServerError::db("append turn")(e)),
        }
    }
    sqlx::query(
        "UPDATE conversations SET updated_at = $1, title = CASE WHEN title = '' THEN $2 ELSE title END WHERE id = $3",
    )
    .bind(t)
    .bind(first_chars(question, MAX_TITLE_CHARS))
    .bind(conversation_id)
    .execute(db.pool())
    .await
    .map_err(ServerError::db("update conversation"))?;
    Ok(())
}

/// Starts a conversation over one of the organization's collections.
#[utoipa::path(post, path = "/v1/conversations", tag = "chat", security(("bearer" = [])),
    request_body = CreateConversation,
    responses((status = 200, description = "The conversation", body = Conversation),
              (status = 400, description = "Unusable request", body = crate::ErrorBody),
              (status = 404, description = "No such collection", body = crate::ErrorBody)))]
pub async fn create_conversation(
    State(state): State<AppState>,
    Caller(org): Caller,
    body: Bytes,
) -> Result<Json<Conversation>> {
    let req: CreateConversation = serde_json::from_slice(&body)
        .map_err(|e| ServerError::bad_request(format!("invalid request: {e}"), None, Some("invalid_json")))?;
    let title = req.title.unwrap_or_default().trim().to_string();
    if title.chars().count() > MAX_TITLE_CHARS || title.chars().any(char::is_control) {
        return Err(ServerError::bad_request(
            format!("title: at most {MAX_TITLE_CHARS} characters, no control characters"),
            Some("title"),
            Some("invalid_value"),
        ));
    }
    collection_exists(state.db(), &org.id, &req.collection).await?;
    let id = new_id(CONVERSATION_PREFIX)?;
    let t = now();
    sqlx::query(
        "INSERT INTO conversations (id, organization_id, collection_id, title, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(&org.id)
    .bind(&req.collection)
    .bind(&title)
    .bind(t)
    .bind(t)
    .execute(state.db().pool())
    .await
    .map_err(ServerError::db("insert conversation"))?;
    Ok(Json(load_conversation(state.db(), &org.id, &id).await?))
}

/// The organization's conversations, most recently active first (without their turns).
#[utoipa::path(get, path = "/v1/conversations", tag = "chat", security(("bearer" = [])),
    responses((status = 200, description = "The conversations", body = List<Conversation>)))]
pub async fn list_conversations(
    State(state): State<AppState>,
    Caller(org): Caller,
) -> Result<Json<List<Conversation>>> {
    let rows = sqlx::query(
        "SELECT id, collection_id, title, created_at, updated_at FROM conversations WHERE organization_id = $1 \
         ORDER BY updated_at DESC, id DESC",
    )
    .bind(&org.id)
    .fetch_all(state.db().pool())
    .await
    .map_err(ServerError::db("list conversations"))?;
    let data = rows.iter().map(conversation_of).collect::<Result<Vec<_>>>()?;
    Ok(Json(List { object: "list".into(), data }))
}

/// One conversation with its turns, oldest first.
#[utoipa::path(get, path = "/v1/conversations/{id}", tag = "chat", security(("bearer" = [])),
    params(("id" = String, Path, description = "The conversation's id")),
    responses((status = 200, description = "The conversation and its turns", body = Conversation),
              (status = 404, description = "No such conversation", body = crate::ErrorBody)))]
pub async fn retrieve_conversation(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Conversation>> {
    let mut conv = load_conversation(state.db(), &org.id, &id).await?;
    let rows = sqlx::query(
        "SELECT id, seq, question, answer, sources, created_at FROM conversation_turns \
         WHERE conversation_id = $1 ORDER BY seq",
    )
    .bind(&conv.id)
    .fetch_all(state.db().pool())
    .await
    .map_err(ServerError::db("list turns"))?;
    let d = || ServerError::db("decode turn");
    let mut turns = Vec::with_capacity(rows.len());
    for r in &rows {
        let sources: String = r.try_get("sources").map_err(d())?;
        turns.push(ConversationTurn {
            id: r.try_get("id").map_err(d())?,
            seq: r.try_get("seq").map_err(d())?,
            question: r.try_get("question").map_err(d())?,
            answer: r.try_get("answer").map_err(d())?,
            sources: serde_json::from_str(&sources).unwrap_or(Value::Null),
            created_at: r.try_get("created_at").map_err(d())?,
        });
    }
    conv.turns = Some(turns);
    Ok(Json(conv))
}

/// Deletes a conversation and its turns.
#[utoipa::path(delete, path = "/v1/conversations/{id}", tag = "chat", security(("bearer" = [])),
    params(("id" = String, Path, description = "The conversation's id")),
    responses((status = 200, description = "Deleted"),
              (status = 404, description = "No such conversation", body = crate::ErrorBody)))]
pub async fn delete_conversation(
    State(state): State<AppState>,
    Caller(org): Caller,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Value>> {
    let conv = load_conversation(state.db(), &org.id, &id).await?;
    sqlx::query("DELETE FROM conversation_turns WHERE conversation_id = $1")
        .bind(&conv.id)
        .execute(state.db().pool())
        .await
        .map_err(ServerError::db("delete turns"))?;
    sqlx::query("DELETE FROM conversations WHERE id = $1 AND organization_id = $2")
        .bind(&conv.id)
        .bind(&org.id)
        .execute(state.db().pool())
        .await
        .map_err(ServerError::db("delete conversation"))?;
    Ok(Json(json!({"id": conv.id, "object": "conversation", "deleted": true})))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn req(v: Value) -> Result<Checked> {
        check(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn trailing_space_is_held_until_text_follows() {
        let mut h = HoldTrailingSpace::default();
        let pieces = ["Bolts ", "take 45", " N·m.  ", "\n", "[a, p. 2]", " \n"];
        let out: String = pieces.iter().map(|p| h.push(p)).collect();
        assert_eq!(out, pieces.concat().trim_end());
    }

    #[test]
    fn requests_are_checked() {
        let m =
            |n: usize| -> Vec<Value> { (0..n).map(|i| json!({"role": "user", "content": format!("q{i}")})).collect() };
        let c = req(json!({"model": "x", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first?"}, {"role": "assistant", "content": "one"},
            {"role": "user", "content": [{"type": "text", "text": "second?"}]}],
            "n": 1, "logit_bias": {}, "seed": -3}))
        .unwrap();
        assert_eq!((c.question.as_str(), c.history.len(), c.max_tokens, c.k), ("second?", 1, 256, 5));
        assert_eq!(c.history[0].answer, "one");
        let e = req(json!({"model": "x", "messages": m(65)})).unwrap_err();
        assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST);
        let e = req(json!({"model": "x", "messages": m(1), "max_tokens": 0})).unwrap_err();
        assert_eq!(e.body().error.param.as_deref(), Some("max_tokens"));
        assert_eq!(e.status(), axum::http::StatusCode::UNPROCESSABLE_ENTITY);
        let e = req(json!({"model": "x", "messages": m(1), "max_completion_tokens": 4096})).unwrap_err();
        assert_eq!(e.body().error.param.as_deref(), Some("max_completion_tokens"));
        let e = req(json!({"model": "x", "messages": m(1), "docraft": {"collection": "col-x", "k": 21}})).unwrap_err();
        assert_eq!(e.body().error.param.as_deref(), Some("docraft.k"));
        assert!(req(json!({"model": "x", "messages": [{"role": "assistant", "content": "hi"}]})).is_err());
        assert!(req(json!({"model": "x", "messages": [{"role": "tool", "content": "hi"}]})).is_err());
        let typo = json!({"model": "x", "messages": m(1), "docraft": {"colection": "col-x"}});
        assert!(serde_json::from_value::<ChatCompletionRequest>(typo).is_err());
        let big = "a".repeat(MAX_MESSAGE_BYTES + 1);
        assert!(req(json!({"model": "x", "messages": [{"role": "user", "content": big}]})).is_err());
    }
}
