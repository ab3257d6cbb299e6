//! Text-generation backends: the [`Generator`](docraft_core::Generator)s that write
//! question/answer pairs, RAFT answers and chat replies.
//!
//! - [`LlamaGenerator`] runs any GGUF model in process with llama.cpp: several sequences
//!   decoded together (continuous batching), JSON constrained by a grammar made from the
//!   request's schema, seeded sampling, the prompt prefix the requests share evaluated once
//!   and reused, optional speculative decoding with a small draft model (greedy requests);
//!   [`LlamaStats`] counts what those saved. Cargo feature `llama` (default); `cuda` adds GPU
//!   offload.
//! - [`OpenAiGenerator`] talks to any OpenAI-compatible endpoint (OpenAI, llama.cpp's server,
//!   vLLM, Ollama): concurrent requests, retries of transient errors only, endpoints off this
//!   machine refused unless allowed and then every request logged ([`RequestLogEntry`]).
//!   Cargo feature `openai` (default).
//!
//! A backend compiled out of the build keeps its types; loading it fails with
//! [`LlmError::NotCompiled`].
//!
//! Most callers need neither type by name: [`GeneratorSettings`] holds every setting of both
//! (the flags of `docraft generate`, or a config file's table), and [`build_generator`]
//! makes the generator they describe.
//!
//! ```
//! use std::path::Path;
//! use docraft_llm::{Backend, GeneratorSettings, LlmError, build_generator};
//!
//! // An endpoint off this machine is refused before anything is sent.
//! let settings = GeneratorSettings {
//!     backend: Backend::Openai,
//!     base_url: Some("https://api.example.com/v1".into()),
//!     model: Some("some-model".into()),
//!     ..GeneratorSettings::default()
//! };
//! let refused = build_generator(&settings, Path::new("qa.requests.jsonl"));
//! # #[cfg(feature = "openai")]
//! assert!(matches!(refused, Err(LlmError::RemoteRefused { .. })));
//!
//! // Allowed, its requests are logged; the caller can say where before building.
//! let allowed = GeneratorSettings { allow_remote: true, ..settings };
//! assert_eq!(allowed.remote_log(Path::new("qa.requests.jsonl")).as_deref(), Some(Path::new("qa.requests.jsonl")));
//! ```

mod error;
mod llama;
mod openai;
mod settings;

pub use error::{LlmError, Result};
pub use llama::{LlamaConfig, LlamaGenerator, LlamaStats, default_gguf};
pub use openai::{JsonMode, OpenAiConfig, OpenAiGenerator, RequestLogEntry, is_loopback};
pub use settings::{Backend, GeneratorSettings, build_generator};
