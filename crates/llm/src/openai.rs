//! Any OpenAI-compatible chat endpoint (OpenAI, llama.cpp's server, vLLM, Ollama) through
//! async-openai.
//!
//! Local by default: an endpoint that is not on this machine is refused unless
//! [`OpenAiConfig::with_remote`] allows it, and then every request that leaves the machine is
//! logged (time, endpoint, size, chunk ids) to the request log.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{LlmError, Result};

/// Requests in flight at once that [`OpenAiConfig::with_concurrency`] accepts.
const CONCURRENCY_RANGE: std::ops::RangeInclusive<usize> = 1..=256;

/// How the endpoint is asked for JSON output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JsonMode {
    /// Not asked: rely on the prompt (for servers that reject `response_format`).
    Off,
    /// `{"type": "json_object"}`: understood by OpenAI, llama.cpp's server, vLLM and Ollama.
    #[default]
    Object,
    /// `{"type": "json_schema"}` with the request's schema (non-strict).
    Schema,
}

impl JsonMode {
    /// The mode's name: `off`, `object` or `schema` (as [`FromStr`](std::str::FromStr) and
    /// serde read it).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Object => "object",
            Self::Schema => "schema",
        }
    }
}

impl std::fmt::Display for JsonMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for JsonMode {
    type Err = LlmError;

    /// `off`, `object` or `schema`.
    fn from_str(s: &str) -> Result<Self> {
        [Self::Off, Self::Object, Self::Schema]
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| LlmError::setting("json_mode", format!("unknown mode {s:?}; known: off, object, schema")))
    }
}

/// Settings of the OpenAI-compatible backend. Build with [`OpenAiConfig::new`] and the
/// `with_*` methods, which check their values; read them back with the getters.
///
/// Local by default: an endpoint that is not on this machine is refused unless
/// [`OpenAiConfig::with_remote`] allows it, and then every request that leaves the machine
/// is logged (time, endpoint, size, chunk ids) to the request log.
///
/// ```
/// use std::time::Duration;
/// use docraft_llm::{JsonMode, OpenAiConfig};
///
/// let cfg = OpenAiConfig::new("http://127.0.0.1:8080/v1/", "qwen")
///     .with_concurrency(8)?
///     .with_timeout(Duration::from_secs(30))?
///     .with_json_mode(JsonMode::Schema);
/// assert_eq!((cfg.base_url(), cfg.host(), cfg.concurrency()), ("http://127.0.0.1:8080/v1", "127.0.0.1", 8));
/// assert!(cfg.clone().with_concurrency(0).is_err());
/// # Ok::<(), docraft_llm::LlmError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenAiConfig {
    base_url: String,
    model: String,
    api_key_env: String,
    concurrency: usize,
    timeout: Duration,
    retries: u32,
    backoff: Duration,
    allow_remote: bool,
    request_log: Option<PathBuf>,
    json_mode: JsonMode,
}

impl OpenAiConfig {
    /// Defaults for `base_url` (including `/v1`, e.g. `http://127.0.0.1:8080/v1`) and
    /// `model` (the name the endpoint knows): key from `OPENAI_API_KEY`, 4 requests at once,
    /// 120 s timeout, 4 retries from 1 s, local endpoints only, JSON object mode.
    #[must_use]
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            model: model.into(),
            api_key_env: "OPENAI_API_KEY".into(),
            concurrency: 4,
            timeout: Duration::from_secs(120),
            retries: 4,
            backoff: Duration::from_secs(1),
            allow_remote: false,
            request_log: None,
            json_mode: JsonMode::Object,
        }
    }

    /// The environment variable holding the API key (unset: no key is sent).
    #[must_use]
    pub fn with_api_key_env(mut self, name: impl Into<String>) -> Self {
        self.api_key_env = name.into();
        self
    }

    /// Requests in flight at once (1..=256).
    ///
    /// # Errors
    /// [`LlmError::Setting`] naming `concurrency` when out of range.
    pub fn with_concurrency(mut self, n: usize) -> Result<Self> {
        check_concurrency(n)?;
        self.concurrency = n;
        Ok(self)
    }

    /// Time limit of one request (more than zero).
    ///
    /// # Errors
    /// [`LlmError::Setting`] naming `timeout` for zero.
    pub fn with_timeout(mut self, t: Duration) -> Result<Self> {
        if t.is_zero() {
            return Err(LlmError::setting("timeout", "must be positive"));
        }
        self.timeout = t;
        Ok(self)
    }

    /// Retries of a request after transient errors (429, 5xx, timeouts, connection errors),
    /// and the first delay, doubled on each further retry (capped at 30 s).
    #[must_use]
    pub fn with_retries(mut self, retries: u32, backoff: Duration) -> Self {
        self.retries = retries;
        self.backoff = backoff;
        self
    }

    /// Allows (or refuses) an endpoint that is not on this machine, logging requests that
    /// leave it to `log` (JSONL of [`RequestLogEntry`]).
    #[must_use]
    pub fn with_remote(mut self, allow: bool, log: Option<PathBuf>) -> Self {
        self.allow_remote = allow;
        self.request_log = log;
        self
    }

    /// How JSON output is requested.
    #[must_use]
    pub fn with_json_mode(mut self, mode: JsonMode) -> Self {
        self.json_mode = mode;
        self
    }

    /// The base URL, without a trailing `/`.
    #[must_use]
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The model name as the endpoint knows it.
    #[must_use]
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The environment variable holding the API key.
    #[must_use]
    pub fn api_key_env(&self) -> &str {
        &self.api_key_env
    }

    /// Requests in flight at once.
    #[must_use]
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// Time limit of one request.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Retries after transient errors.
    #[must_use]
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// The first retry delay.
    #[must_use]
    pub fn backoff(&self) -> Duration {
        self.backoff
    }

    /// Whether an endpoint off this machine is allowed.
    #[must_use]
    pub fn allow_remote(&self) -> bool {
        self.allow_remote
    }

    /// Where requests that leave the machine are logged.
    #[must_use]
    pub fn request_log(&self) -> Option<&Path> {
        self.request_log.as_deref()
    }

    /// How JSON output is requested.
    #[must_use]
    pub fn json_mode(&self) -> JsonMode {
        self.json_mode
    }

    /// The host part of the base URL.
    #[must_use]
    pub fn host(&self) -> &str {
        host_of(&self.base_url)
    }
}

pub(crate) fn check_base_url(url: &str) -> Result<()> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(LlmError::setting("base_url", format!("{url:?} is not an http(s) URL")))
    }
}

pub(crate) fn check_concurrency(n: usize) -> Result<()> {
    if CONCURRENCY_RANGE.contains(&n) {
        Ok(())
    } else {
        Err(LlmError::setting("concurrency", format!("{n} is not in 1..=256")))
    }
}

/// One line of the request log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestLogEntry {
    /// Seconds since the Unix epoch when the request was sent.
    pub time_unix: f64,
    /// The endpoint URL.
    pub endpoint: String,
    /// The model asked.
    pub model: String,
    /// Bytes of the request body.
    pub bytes: usize,
    /// The chunk ids (request tags) it carried.
    pub chunk_ids: Vec<String>,
    /// Which attempt this was (1 = first).
    pub attempt: u32,
    /// `ok`, or the error.
    pub outcome: String,
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// Whether `url` points at this machine: `localhost`, `127.0.0.0/8` or `::1`.
#[must_use]
pub fn is_loopback(url: &str) -> bool {
    let host = host_of(url).to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(feature = "openai")]
mod enabled;
#[cfg(feature = "openai")]
pub use enabled::OpenAiGenerator;

#[cfg(not(feature = "openai"))]
mod disabled;
#[cfg(not(feature = "openai"))]
pub use disabled::OpenAiGenerator;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for local in ["http://127.0.0.1:8080/v1", "http://localhost/v1", "http://[::1]:11434/v1", "http://127.3.4.5"] {
            assert!(is_loopback(local), "{local}");
        }
        for remote in [
            "https://api.openai.com/v1",
            "http://10.0.0.5:8000/v1",
            "http://localhost.evil.com/v1",
            "http://user@192.168.1.2/v1",
            "http://127.0.0.1.nip.io/v1",
        ] {
            assert!(!is_loopback(remote), "{remote}");
        }
    }

    #[test]
    fn json_modes_read_what_they_write() {
        for mode in [JsonMode::Off, JsonMode::Object, JsonMode::Schema] {
            assert_eq!(mode.to_string().parse::<JsonMode>().ok(), Some(mode));
            let json = serde_json::to_string(&mode).ok();
            assert_eq!(json, Some(format!("\"{mode}\"")));
        }
        let err = "yaml".parse::<JsonMode>().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("json_mode") && err.contains("yaml"), "{err}");
    }
}
