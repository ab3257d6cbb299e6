//! One set of generator settings for every backend, and the one factory that builds a
//! generator from them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use docraft_core::{Generator, Sampling};
use serde::{Deserialize, Serialize};

use crate::llama::{DEFAULT_DRAFT_MAX, check_context, check_draft_max, check_parallel, check_threads};
use crate::openai::{check_base_url, check_concurrency};
use crate::{JsonMode, LlamaConfig, LlamaGenerator, LlmError, OpenAiConfig, OpenAiGenerator, Result, is_loopback};

/// First delay before retrying a request to an endpoint.
const BACKOFF: Duration = Duration::from_secs(1);

/// Which generator backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// llama.cpp in process, any GGUF file ([`LlamaGenerator`]).
    #[default]
    Llama,
    /// An OpenAI-compatible HTTP endpoint ([`OpenAiGenerator`]).
    Openai,
}

impl Backend {
    /// The backend's name: `llama` or `openai`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Openai => "openai",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Backend {
    type Err = LlmError;

    /// `llama` or `openai`.
    fn from_str(s: &str) -> Result<Self> {
        [Self::Llama, Self::Openai]
            .into_iter()
            .find(|b| b.as_str() == s)
            .ok_or_else(|| LlmError::setting("backend", format!("unknown backend {s:?}; known: llama, openai")))
    }
}

/// Everything that chooses and tunes a generator, for every backend: what `docraft generate`
/// and `docraft raft` take as flags (each field is the flag's long name with `_` for `-`) and
/// what a config file holds. [`Default`] is the one place the defaults are written.
///
/// Fields of the other backend are ignored: `parallel` means nothing to an endpoint.
///
/// ```
/// use docraft_llm::{Backend, GeneratorSettings};
///
/// let settings: GeneratorSettings = serde_json::from_str(
///     r#"{"backend": "openai", "base_url": "http://127.0.0.1:8080/v1", "model": "qwen", "concurrency": 8}"#,
/// )?;
/// assert_eq!((settings.backend, settings.concurrency, settings.retries), (Backend::Openai, 8, 4));
/// settings.validate()?;
/// assert_eq!(settings.local_model(), None, "nothing on disk to hash");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeneratorSettings {
    /// Which generator.
    pub backend: Backend,
    /// llama: the GGUF file (`None`: [`default_gguf`](crate::default_gguf)); openai: the
    /// model name (required).
    pub model: Option<String>,
    /// openai: base URL including `/v1`, e.g. `http://127.0.0.1:8080/v1` (required).
    pub base_url: Option<String>,
    /// openai: environment variable holding the API key.
    pub api_key_env: String,
    /// openai: allow an endpoint that is not on this machine (every request that leaves it
    /// is logged).
    pub allow_remote: bool,
    /// openai: log of requests sent off this machine (`None`: the caller's default).
    pub request_log: Option<PathBuf>,
    /// openai: how JSON output is requested.
    pub json_mode: JsonMode,
    /// openai: requests in flight at once (1..=256).
    pub concurrency: usize,
    /// openai: seconds before a request times out (more than zero).
    pub timeout: f64,
    /// openai: retries after 429, 5xx, timeouts.
    pub retries: u32,
    /// llama: sequences decoded together (1..=64).
    pub parallel: u32,
    /// llama: CPU threads (`None`: all).
    pub threads: Option<u32>,
    /// llama: context per sequence, in tokens (64..=131072).
    pub context: u32,
    /// llama: chat template name when the GGUF has none (e.g. `gemma`, `chatml`).
    pub chat_template: Option<String>,
    /// llama: layers offloaded to the GPU (builds with the `cuda` feature).
    pub gpu_layers: u32,
    /// llama: do not constrain output with a JSON grammar.
    pub no_grammar: bool,
    /// llama: evaluate every prompt whole instead of reusing the cache of the prefix the
    /// prompts share (the system prompt and instructions). The output is the same either way.
    pub no_prefix_reuse: bool,
    /// llama: a small GGUF with the same vocabulary that drafts tokens for the model to check
    /// (speculative decoding). Greedy requests only (temperature 0); the output is the same.
    pub draft_model: Option<PathBuf>,
    /// llama: most tokens the draft model proposes in a row (1..=32; fewer when it is unsure).
    pub draft_max: u32,
    /// llama: a llama.cpp LoRA adapter (GGUF) applied to the model at load time, so a
    /// fine-tuned model serves without merging (not to the draft model).
    pub lora: Option<PathBuf>,
    /// Sampling temperature (0: greedy).
    pub temperature: f32,
    /// Nucleus sampling threshold (0..=1).
    pub top_p: f32,
    /// Seed: the same chunks, model, settings and seed give the same dataset (llama).
    pub seed: u64,
}

impl Default for GeneratorSettings {
    fn default() -> Self {
        Self {
            backend: Backend::Llama,
            model: None,
            base_url: None,
            api_key_env: "OPENAI_API_KEY".to_string(),
            allow_remote: false,
            request_log: None,
            json_mode: JsonMode::Object,
            concurrency: 4,
            timeout: 120.0,
            retries: 4,
            parallel: 8,
            threads: None,
            context: 2048,
            chat_template: None,
            gpu_layers: 0,
            no_grammar: false,
            no_prefix_reuse: false,
            draft_model: None,
            draft_max: DEFAULT_DRAFT_MAX,
            lora: None,
            temperature: 0.7,
            top_p: 0.9,
            seed: 0,
        }
    }
}

impl GeneratorSettings {
    /// The sampling settings: temperature, `top_p` and seed from here, the rest
    /// [`Sampling::default`].
    #[must_use]
    pub fn sampling(&self) -> Sampling {
        Sampling { temperature: self.temperature, top_p: self.top_p, seed: self.seed, ..Sampling::default() }
    }

    /// A generator written as text (a command-line value): a JSON object of these settings'
    /// keys, or else the path of a GGUF file for the local backend; validated.
    ///
    /// # Errors
    /// [`LlmError::Setting`] for a JSON object that is not generator settings, and the
    /// errors of [`GeneratorSettings::validate`].
    pub fn parse_spec(spec: &str) -> Result<Self> {
        let settings = if spec.trim_start().starts_with('{') {
            serde_json::from_str::<Self>(spec)
                .map_err(|e| LlmError::setting("generator", format!("not generator settings: {e}")))?
        } else {
            Self { model: Some(spec.to_string()), ..Self::default() }
        };
        settings.validate()?;
        Ok(settings)
    }

    /// Checks the settings the chosen backend uses, and the sampling ones.
    ///
    /// # Errors
    /// [`LlmError::Setting`] naming the first bad field: for openai a missing `base_url` or
    /// `model`, a `base_url` that is not http(s), `concurrency` outside 1..=256, a `timeout`
    /// that is not a positive number of seconds; for llama `context` outside 64..=131072,
    /// `parallel` outside 1..=64, `threads` of 0, `draft_max` outside 1..=32; for both a
    /// negative `temperature` or a `top_p` outside 0..=1.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(LlmError::setting("temperature", format!("{} is not a number >= 0", self.temperature)));
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            return Err(LlmError::setting("top_p", format!("{} is not in 0..=1", self.top_p)));
        }
        match self.backend {
            Backend::Llama => {
                check_context(self.context)?;
                check_parallel(self.parallel)?;
                check_draft_max(self.draft_max)?;
                if let Some(t) = self.threads {
                    check_threads(t)?;
                }
            }
            Backend::Openai => {
                let Some(url) = &self.base_url else {
                    return Err(LlmError::setting(
                        "base_url",
                        "the openai backend needs the endpoint's URL (e.g. http://127.0.0.1:8080/v1)",
                    ));
                };
                check_base_url(url)?;
                if self.model.as_deref().is_none_or(str::is_empty) {
                    return Err(LlmError::setting("model", "the openai backend needs the model's name"));
                }
                check_concurrency(self.concurrency)?;
                self.timeout_duration()?;
            }
        }
        Ok(())
    }

    /// The model file a local backend reads (for hashing by the pipeline): the GGUF for
    /// llama, [`default_gguf`](crate::default_gguf) when none is named. `None` for openai.
    #[must_use]
    pub fn local_model(&self) -> Option<PathBuf> {
        match self.backend {
            Backend::Llama => Some(self.model.as_ref().map_or_else(crate::default_gguf, PathBuf::from)),
            Backend::Openai => None,
        }
    }

    /// Where requests that leave this machine will be logged: `Some` only for an openai
    /// endpoint that is not on loopback (`request_log`, else `default_log`). The CLI prints
    /// it as a note; the library prints nothing.
    #[must_use]
    pub fn remote_log(&self, default_log: &Path) -> Option<PathBuf> {
        match (self.backend, &self.base_url) {
            (Backend::Openai, Some(url)) if !is_loopback(url) => {
                Some(self.request_log.clone().unwrap_or_else(|| default_log.to_path_buf()))
            }
            _ => None,
        }
    }

    fn timeout_duration(&self) -> Result<Duration> {
        Duration::try_from_secs_f64(self.timeout).ok().filter(|d| !d.is_zero()).ok_or_else(|| {
            LlmError::setting("timeout", format!("{} is not a positive number of seconds", self.timeout))
        })
    }

    /// The llama.cpp settings these make.
    ///
    /// # Errors
    /// [`LlmError::Setting`] as [`LlamaConfig`]'s checks report.
    pub fn llama_config(&self) -> Result<LlamaConfig> {
        let model = self.local_model().unwrap_or_else(crate::default_gguf);
        let mut cfg = LlamaConfig::new(model)
            .with_context(self.context)?
            .with_parallel(self.parallel)?
            .with_gpu_layers(self.gpu_layers)
            .with_grammar(!self.no_grammar)
            .with_prefix_reuse(!self.no_prefix_reuse)
            .with_draft_model(self.draft_model.clone())
            .with_draft_max(self.draft_max)?
            .with_lora(self.lora.clone());
        if let Some(t) = self.threads {
            cfg = cfg.with_threads(t)?;
        }
        if let Some(name) = &self.chat_template {
            cfg = cfg.with_chat_template(name);
        }
        Ok(cfg)
    }

    /// The endpoint settings these make; requests that leave the machine are logged to
    /// `request_log`, else `default_log`.
    ///
    /// # Errors
    /// [`LlmError::Setting`] for a missing `base_url` or `model`, or as [`OpenAiConfig`]'s
    /// checks report.
    pub fn openai_config(&self, default_log: &Path) -> Result<OpenAiConfig> {
        let url = self.base_url.as_deref().ok_or_else(|| LlmError::setting("base_url", "missing"))?;
        check_base_url(url)?;
        let model = self
            .model
            .as_deref()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| LlmError::setting("model", "the openai backend needs the model's name"))?;
        let log = self.request_log.clone().unwrap_or_else(|| default_log.to_path_buf());
        Ok(OpenAiConfig::new(url, model)
            .with_api_key_env(&self.api_key_env)
            .with_concurrency(self.concurrency)?
            .with_timeout(self.timeout_duration()?)?
            .with_retries(self.retries, BACKOFF)
            .with_remote(self.allow_remote, Some(log))
            .with_json_mode(self.json_mode))
    }
}

/// Loads the model or connects to the endpoint that `settings` name. Requests that leave
/// the machine are logged to `settings.request_log`, else `default_log`
/// ([`GeneratorSettings::remote_log`] tells beforehand whether and where).
///
/// # Errors
/// [`LlmError::Setting`] naming the bad field ([`GeneratorSettings::validate`]);
/// [`LlmError::Model`] naming a GGUF file (model, draft model, LoRA adapter) that is missing
/// or unloadable;
/// [`LlmError::RemoteRefused`] for an endpoint off this machine without `allow_remote`;
/// [`LlmError::Io`] naming a request log that cannot be opened;
/// [`LlmError::NotCompiled`] when the backend is compiled out of this build.
pub fn build_generator(settings: &GeneratorSettings, default_log: &Path) -> Result<Box<dyn Generator>> {
    settings.validate()?;
    Ok(match settings.backend {
        Backend::Llama => Box::new(LlamaGenerator::load(settings.llama_config()?)?),
        Backend::Openai => Box::new(OpenAiGenerator::new(settings.openai_config(default_log)?)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openai() -> GeneratorSettings {
        GeneratorSettings {
            backend: Backend::Openai,
            base_url: Some("http://127.0.0.1:8080/v1".into()),
            model: Some("qwen".into()),
            ..GeneratorSettings::default()
        }
    }

    fn setting_name(r: Result<()>) -> Option<&'static str> {
        match r {
            Err(LlmError::Setting { name, .. }) => Some(name),
            _ => None,
        }
    }

    #[test]
    fn defaults_validate_and_match_the_backend_configs() -> Result<()> {
        let d = GeneratorSettings::default();
        d.validate()?;
        openai().validate()?;
        // The defaults of the settings and of the configs agree, so the CLI, config files
        // and library users get the same generator.
        let llama = d.llama_config()?;
        let plain = LlamaConfig::new(crate::default_gguf());
        assert_eq!(llama, plain);
        let log = Path::new("requests.jsonl");
        let oa = openai().openai_config(log)?;
        let plain = OpenAiConfig::new("http://127.0.0.1:8080/v1", "qwen").with_remote(false, Some(log.into()));
        assert_eq!(oa, plain);
        assert_eq!(d.sampling(), Sampling { temperature: 0.7, top_p: 0.9, seed: 0, ..Sampling::default() });
        Ok(())
    }

    #[test]
    fn draft_and_prefix_settings_reach_the_llama_config() -> Result<()> {
        let d = GeneratorSettings::default().llama_config()?;
        assert_eq!((d.draft_model(), d.draft_max(), d.prefix_reuse()), (None, 8, true));
        let s = GeneratorSettings {
            draft_model: Some("d.gguf".into()),
            draft_max: 3,
            no_prefix_reuse: true,
            ..GeneratorSettings::default()
        };
        let cfg = s.llama_config()?;
        assert_eq!((cfg.draft_model(), cfg.draft_max(), cfg.prefix_reuse()), (Some(Path::new("d.gguf")), 3, false));
        Ok(())
    }

    #[test]
    fn the_lora_adapter_reaches_the_llama_config() -> anyhow::Result<()> {
        assert_eq!(GeneratorSettings::default().llama_config()?.lora(), None);
        let s = GeneratorSettings { lora: Some("tuned.gguf".into()), ..GeneratorSettings::default() };
        let cfg = s.llama_config()?;
        assert_eq!((cfg.lora(), cfg.draft_model()), (Some(Path::new("tuned.gguf")), None));
        // A config file names it as `lora`.
        assert_eq!(serde_json::from_str::<GeneratorSettings>(r#"{"lora": "tuned.gguf"}"#)?, s);
        Ok(())
    }

    #[test]
    fn validate_names_the_bad_field() {
        let bad = |f: fn(&mut GeneratorSettings), base: GeneratorSettings| {
            let mut s = base;
            f(&mut s);
            setting_name(s.validate())
        };
        let llama = GeneratorSettings::default;
        assert_eq!(bad(|s| s.base_url = None, openai()), Some("base_url"));
        assert_eq!(bad(|s| s.base_url = Some("127.0.0.1:8080/v1".into()), openai()), Some("base_url"));
        assert_eq!(bad(|s| s.model = None, openai()), Some("model"));
        assert_eq!(bad(|s| s.concurrency = 0, openai()), Some("concurrency"));
        assert_eq!(bad(|s| s.timeout = 0.0, openai()), Some("timeout"));
        assert_eq!(bad(|s| s.timeout = f64::NAN, openai()), Some("timeout"));
        assert_eq!(bad(|s| s.timeout = -1.0, openai()), Some("timeout"));
        assert_eq!(bad(|s| s.context = 8, llama()), Some("context"));
        assert_eq!(bad(|s| s.parallel = 0, llama()), Some("parallel"));
        assert_eq!(bad(|s| s.parallel = 65, llama()), Some("parallel"));
        assert_eq!(bad(|s| s.threads = Some(0), llama()), Some("threads"));
        assert_eq!(bad(|s| s.draft_max = 0, llama()), Some("draft_max"));
        assert_eq!(bad(|s| s.draft_max = 33, llama()), Some("draft_max"));
        assert_eq!(bad(|s| s.temperature = -0.1, llama()), Some("temperature"));
        assert_eq!(bad(|s| s.top_p = 1.5, openai()), Some("top_p"));
        // The other backend's fields are not its business.
        assert_eq!(bad(|s| s.parallel = 0, openai()), None);
        assert_eq!(bad(|s| s.concurrency = 0, llama()), None);
        // The message names the field too.
        let msg = GeneratorSettings { context: 8, ..llama() }.validate().map_err(|e| e.to_string());
        assert!(msg.as_ref().is_err_and(|m| m.contains("context") && m.contains('8')), "{msg:?}");
    }

    #[test]
    fn serde_round_trips_and_rejects_unknown_keys() -> anyhow::Result<()> {
        let mut s = openai();
        s.json_mode = JsonMode::Schema;
        s.threads = Some(3);
        s.request_log = Some("logs/requests.jsonl".into());
        let json = serde_json::to_string(&s)?;
        assert_eq!(serde_json::from_str::<GeneratorSettings>(&json)?, s);
        let toml_text = toml::to_string(&s)?;
        assert!(
            toml_text.contains("backend = \"openai\"") && toml_text.contains("json_mode = \"schema\""),
            "{toml_text}"
        );
        assert_eq!(toml::from_str::<GeneratorSettings>(&toml_text)?, s);
        // Missing keys take the defaults.
        assert_eq!(serde_json::from_str::<GeneratorSettings>("{}")?, GeneratorSettings::default());
        // A misspelt key is an error naming it, not a silently ignored setting.
        let err = serde_json::from_str::<GeneratorSettings>(r#"{"concurency": 8}"#).map(|_| ()).unwrap_err();
        assert!(err.to_string().contains("concurency"), "{err}");
        let err = serde_json::from_str::<GeneratorSettings>(r#"{"backend": "ollama"}"#).map(|_| ()).unwrap_err();
        assert!(err.to_string().contains("ollama"), "{err}");
        Ok(())
    }

    #[test]
    fn backends_parse_and_print_their_names() {
        for b in [Backend::Llama, Backend::Openai] {
            assert_eq!(b.to_string().parse::<Backend>().ok(), Some(b));
        }
        assert_eq!(setting_name("vllm".parse::<Backend>().map(|_| ())), Some("backend"));
    }

    #[test]
    fn only_remote_endpoints_have_a_request_log() {
        let default_log = Path::new("out/qa.requests.jsonl");
        assert_eq!(GeneratorSettings::default().remote_log(default_log), None);
        assert_eq!(openai().remote_log(default_log), None, "loopback: nothing leaves the machine");
        let remote = GeneratorSettings { base_url: Some("https://api.openai.com/v1".into()), ..openai() };
        assert_eq!(remote.remote_log(default_log), Some(default_log.to_path_buf()));
        let named = GeneratorSettings { request_log: Some("mine.jsonl".into()), ..remote };
        assert_eq!(named.remote_log(default_log), Some(PathBuf::from("mine.jsonl")));
    }

    #[test]
    fn the_local_model_is_the_named_gguf_or_the_default() {
        assert_eq!(GeneratorSettings::default().local_model(), Some(crate::default_gguf()));
        let named = GeneratorSettings { model: Some("/m/x.gguf".into()), ..GeneratorSettings::default() };
        assert_eq!(named.local_model(), Some(PathBuf::from("/m/x.gguf")));
        assert_eq!(openai().local_model(), None);
    }

    #[cfg(not(feature = "llama"))]
    #[test]
    fn a_compiled_out_llama_backend_is_a_typed_error() {
        let err = build_generator(&GeneratorSettings::default(), Path::new("x"));
        assert!(matches!(err, Err(LlmError::NotCompiled { feature: "llama", .. })));
    }

    #[cfg(not(feature = "openai"))]
    #[test]
    fn a_compiled_out_openai_backend_is_a_typed_error() {
        let err = build_generator(&openai(), Path::new("x"));
        assert!(matches!(err, Err(LlmError::NotCompiled { feature: "openai", .. })));
    }

    #[test]
    fn build_refuses_bad_settings_before_touching_anything() {
        let err = build_generator(&GeneratorSettings { parallel: 0, ..GeneratorSettings::default() }, Path::new("x"));
        assert!(matches!(err, Err(LlmError::Setting { name: "parallel", .. })));
        let err = build_generator(&GeneratorSettings { model: None, ..openai() }, Path::new("x"));
        assert!(matches!(err, Err(LlmError::Setting { name: "model", .. })));
    }
}
