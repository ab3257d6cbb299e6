use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use docraft_core::{FinishReason, GenError, GenRequest, GenResponse, Generator, Usage};
use serde_json::{Value, json};

use super::{JsonMode, OpenAiConfig, RequestLogEntry, is_loopback};
use crate::{LlmError, Result};

/// A chat-completions endpoint speaking OpenAI's protocol.
///
/// [`Generator::generate_batch`] sends the batch with at most `concurrency` requests in
/// flight, each with its own timeout and retries (exponential backoff, only on 429, 5xx,
/// timeouts and connection errors). Token usage from the responses is summed in
/// [`OpenAiGenerator::usage`].
pub struct OpenAiGenerator {
    client: Client<OpenAIConfig>,
    config: OpenAiConfig,
    runtime: tokio::runtime::Runtime,
    remote: bool,
    log: Option<Mutex<std::fs::File>>,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
}

impl std::fmt::Debug for OpenAiGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiGenerator").field("config", &self.config).finish_non_exhaustive()
    }
}

impl OpenAiGenerator {
    /// Connects (lazily) to the endpoint.
    ///
    /// # Errors
    /// [`LlmError::Setting`] naming `base_url` when it is not an http(s) URL;
    /// [`LlmError::RemoteRefused`] for an endpoint off this machine without
    /// `allow_remote`; [`LlmError::Io`] if the request log cannot be opened;
    /// [`LlmError::Backend`] if the async runtime cannot start.
    pub fn new(config: OpenAiConfig) -> Result<Self> {
        super::check_base_url(&config.base_url)?;
        let remote = !is_loopback(&config.base_url);
        if remote && !config.allow_remote {
            return Err(LlmError::RemoteRefused { url: config.base_url.clone() });
        }
        let log = match (&config.request_log, remote) {
            (Some(path), true) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| LlmError::io(dir, e))?;
                }
                let f = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(path)
                    .map_err(|e| LlmError::io(path, e))?;
                Some(Mutex::new(f))
            }
            _ => None,
        };
        let mut oa = OpenAIConfig::new().with_api_base(&config.base_url);
        oa = oa.with_api_key(std::env::var(&config.api_key_env).unwrap_or_default());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| LlmError::Backend { backend: "openai", reason: format!("async runtime: {e}") })?;
        // async-openai's default transport retries 429/5xx on its own, unseen: those requests
        // would leave the machine without a log line and multiply our retries. The plain
        // service sends each request once; the retry policy here is the only one.
        let client = Client::with_config(oa).with_http_service(async_openai::middleware::ReqwestService::default());
        Ok(Self {
            client,
            config,
            runtime,
            remote,
            log,
            prompt_tokens: AtomicU64::new(0),
            completion_tokens: AtomicU64::new(0),
        })
    }

    /// The settings it was made with.
    #[must_use]
    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }

    /// Tokens the endpoint reported so far.
    #[must_use]
    pub fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens.load(Ordering::Relaxed),
            completion_tokens: self.completion_tokens.load(Ordering::Relaxed),
        }
    }

    /// Whether the endpoint is off this machine (and requests are logged).
    #[must_use]
    pub fn is_remote(&self) -> bool {
        self.remote
    }

    fn body(&self, r: &GenRequest) -> Value {
        let mut body = json!({
            "model": self.config.model,
            "messages": r.messages,
            "max_tokens": r.max_tokens,
            "temperature": r.sampling.temperature,
            "top_p": r.sampling.top_p,
            "seed": r.sampling.seed % (1 << 31),
            "stream": false,
        });
        match (&r.json_schema, self.config.json_mode) {
            (Some(_), JsonMode::Object) => body["response_format"] = json!({"type": "json_object"}),
            (Some(schema), JsonMode::Schema) => {
                body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "output", "schema": schema, "strict": false}});
            }
            _ => {}
        }
        body
    }

    fn log(&self, body_bytes: usize, tag: &str, attempt: u32, outcome: &str) {
        let Some(log) = &self.log else { return };
        let entry = RequestLogEntry {
            time_unix: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()),
            endpoint: format!("{}/chat/completions", self.config.base_url),
            model: self.config.model.clone(),
            bytes: body_bytes,
            chunk_ids: tag.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect(),
            attempt,
            outcome: outcome.to_string(),
        };
        if let (Ok(mut f), Ok(line)) = (log.lock(), serde_json::to_string(&entry))
            && let Err(e) = writeln!(f, "{line}").and_then(|()| f.flush())
        {
            // The request has already left; say loudly that its trace is missing.
            eprintln!("warning: request log write failed: {e}");
        }
    }

    async fn one(&self, request: GenRequest) -> std::result::Result<GenResponse, GenError> {
        let body = self.body(&request);
        let bytes = body.to_string().len();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent =
                tokio::time::timeout(self.config.timeout, self.client.chat().create_byot::<Value, Value>(body.clone()))
                    .await;
            let result = match sent {
                Err(_) => Err(GenError::Transient(format!("no answer within {:?}", self.config.timeout))),
                Ok(Ok(v)) => parse_response(&v),
                Ok(Err(e)) => Err(classify(e)),
            };
            if self.remote {
                let outcome = match &result {
                    Ok(_) => "ok".to_string(),
                    Err(e) => e.to_string(),
                };
                self.log(bytes, &request.tag, attempt, &outcome);
            }
            match result {
                Err(GenError::Transient(_)) if attempt <= self.config.retries => {
                    let factor = 1u32 << (attempt - 1).min(10);
                    let delay = self.config.backoff.saturating_mul(factor).min(Duration::from_secs(30));
                    tokio::time::sleep(delay).await;
                }
                Err(GenError::Transient(why)) => {
                    return Err(GenError::Transient(format!("{why} (after {} attempts)", attempt)));
                }
                Ok(r) => {
                    self.prompt_tokens.fetch_add(r.usage.prompt_tokens, Ordering::Relaxed);
                    self.completion_tokens.fetch_add(r.usage.completion_tokens, Ordering::Relaxed);
                    return Ok(r);
                }
                other => return other,
            }
        }
    }
}

fn parse_response(v: &Value) -> std::result::Result<GenResponse, GenError> {
    let choice = v
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(|| GenError::Permanent(format!("response without choices: {}", truncate(&v.to_string(), 300))))?;
    let text = choice.pointer("/message/content").and_then(Value::as_str).unwrap_or_default().to_string();
    let finish = match choice.get("finish_reason").and_then(Value::as_str) {
        Some("length") => FinishReason::Length,
        _ => FinishReason::Stop,
    };
    let n = |k: &str| v.pointer(&format!("/usage/{k}")).and_then(Value::as_u64).unwrap_or(0);
    Ok(GenResponse {
        text,
        finish,
        usage: Usage { prompt_tokens: n("prompt_tokens"), completion_tokens: n("completion_tokens") },
    })
}

fn truncate(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map_or(s, |(i, _)| &s[..i])
}

/// Transient: rate limits, server errors, timeouts, connection failures. Everything else
/// (bad request, auth, malformed response) fails the same way again.
fn classify(e: OpenAIError) -> GenError {
    match e {
        OpenAIError::ApiError(resp) => {
            let status = resp.status_code.as_u16();
            let msg = format!("HTTP {status}: {}", resp.api_error);
            if status == 429 || status == 408 || status >= 500 {
                GenError::Transient(msg)
            } else {
                GenError::Permanent(msg)
            }
        }
        OpenAIError::Reqwest(e) => {
            if e.is_timeout() || e.is_connect() || e.is_request() || e.is_body() {
                GenError::Transient(format!("connection: {e}"))
            } else if let Some(status) = e.status().filter(|s| s.as_u16() == 429 || s.is_server_error()) {
                GenError::Transient(format!("HTTP {status}: {e}"))
            } else {
                GenError::Permanent(format!("http: {e}"))
            }
        }
        OpenAIError::JSONDeserialize(err, body) => {
            GenError::Permanent(format!("malformed response ({err}): {}", truncate(&body, 200)))
        }
        other => GenError::Permanent(other.to_string()),
    }
}

impl Generator for OpenAiGenerator {
    fn generate_batch(&self, requests: &[GenRequest]) -> Vec<std::result::Result<GenResponse, GenError>> {
        let semaphore = tokio::sync::Semaphore::new(self.config.concurrency);
        self.runtime.block_on(futures::future::join_all(requests.iter().cloned().map(|r| {
            let semaphore = &semaphore;
            async move {
                let _permit = semaphore.acquire().await;
                self.one(r).await
            }
        })))
    }

    fn model_id(&self) -> String {
        format!("{}@{}", self.config.model, self.config.host())
    }

    fn preferred_batch(&self) -> usize {
        self.config.concurrency * 2
    }
}
