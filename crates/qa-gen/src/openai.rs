//! Any OpenAI-compatible chat endpoint (OpenAI, llama.cpp's server, vLLM, Ollama) through
//! async-openai.
//!
//! Local by default: an endpoint that is not on this machine is refused unless
//! [`OpenAiConfig::allow_remote`] is set, and then every request that leaves the machine is
//! logged (time, endpoint, size, chunk ids) to [`OpenAiConfig::request_log`].

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{QaGenError, Result};

/// How the endpoint is asked for JSON output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JsonMode {
    /// Not asked: rely on the prompt (for servers that reject `response_format`).
    Off,
    /// `{"type": "json_object"}`: understood by OpenAI, llama.cpp's server, vLLM and Ollama.
    Object,
    /// `{"type": "json_schema"}` with the request's schema (non-strict).
    Schema,
}

impl std::str::FromStr for JsonMode {
    type Err = QaGenError;

    /// `off`, `object` or `schema`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "off" => Ok(Self::Off),
            "object" => Ok(Self::Object),
            "schema" => Ok(Self::Schema),
            other => Err(QaGenError::Setting {
                name: "json_mode",
                reason: format!("unknown mode {other:?}; known: off, object, schema"),
            }),
        }
    }
}

/// Settings of the OpenAI-compatible backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenAiConfig {
    /// Base URL including `/v1`, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// Model name as the endpoint knows it.
    pub model: String,
    /// Environment variable holding the API key (unset: no key is sent).
    pub api_key_env: String,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Time limit of one request.
    pub timeout: Duration,
    /// Retries of a request after transient errors (429, 5xx, timeouts, connection errors).
    pub retries: u32,
    /// First retry delay; doubled on each further retry (capped at 30 s).
    pub backoff: Duration,
    /// Allow an endpoint that is not on this machine.
    pub allow_remote: bool,
    /// Where requests that leave the machine are logged (JSONL).
    pub request_log: Option<PathBuf>,
    /// How JSON output is requested.
    pub json_mode: JsonMode,
}

impl OpenAiConfig {
    /// Defaults for `base_url` and `model`: key from `OPENAI_API_KEY`, 4 requests at once,
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

    /// Requests in flight at once (1..=256).
    ///
    /// # Errors
    /// [`QaGenError::Setting`] when out of range.
    pub fn with_concurrency(mut self, n: usize) -> Result<Self> {
        if !(1..=256).contains(&n) {
            return Err(QaGenError::Setting { name: "concurrency", reason: "must be 1..=256".into() });
        }
        self.concurrency = n;
        Ok(self)
    }

    /// Time limit of one request (at least 1 ms).
    ///
    /// # Errors
    /// [`QaGenError::Setting`] for zero.
    pub fn with_timeout(mut self, t: Duration) -> Result<Self> {
        if t.is_zero() {
            return Err(QaGenError::Setting { name: "timeout", reason: "must be positive".into() });
        }
        self.timeout = t;
        Ok(self)
    }

    /// Retries after transient errors, and the first delay.
    #[must_use]
    pub fn with_retries(mut self, retries: u32, backoff: Duration) -> Self {
        self.retries = retries;
        self.backoff = backoff;
        self
    }

    /// Allows (or refuses) an endpoint that is not on this machine, logging requests that
    /// leave it to `log`.
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

    /// The host part of the base URL.
    #[must_use]
    pub fn host(&self) -> &str {
        host_of(&self.base_url)
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
}
